package aggregator

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT c FROM sbtest1 WHERE id=5", "SELECT c FROM sbtest1 WHERE id=? [v1=INT64(5)]"},
		{"select * from t where a = 'it''s' and b = -7 and c = 1.5e3 limit 10",
			"select * from t where a = ? and b = -? and c = ? limit ? [v1=VARCHAR(\"it's\") v2=INT64(7) v3=FLOAT64(1.5e3) v4=INT64(10)]"},
		{"UPDATE t SET v = \"x\" WHERE id = 18446744073709551615", "UPDATE t SET v = ? WHERE id = ? [v1=VARCHAR(\"x\") v2=UINT64(18446744073709551615)]"},
		{"DELETE FROM t WHERE id = /* c */ 3", "DELETE FROM t WHERE id = /* c */ ? [v1=INT64(3)]"},
		{"SELECT * FROM t WHERE id IN (5,66) AND v IN ('a','b')AND w=7", "SELECT * FROM t WHERE id IN (?,?) AND v IN (?,?)AND w=? [v1=INT64(5) v2=INT64(66) v3=VARCHAR(\"a\") v4=VARCHAR(\"b\") v5=INT64(7)]"},
		{"SELECT * FROM t WHERE v='a\\'b'", "SELECT * FROM t WHERE v=? [v1=VARCHAR(\"a'b\")]"},
		{"SELECT * FROM t", "no literals"},
		{"SELECT * FROM t WHERE id = 99999999999999999999999", "no literals"},
		{"SELECT * FROM t WHERE a = 'unterminated", "no literals"},
	} {
		got := "no literals"
		if text, vars, ok := normalize(tc.in); ok {
			var vs []string
			for k, v := range vars {
				vs = append(vs, fmt.Sprintf("%s=%s(%s)", k, v.Type, quoteIfText(v.Type.String(), string(v.Value))))
			}
			sort.Strings(vs)
			got = text + " [" + strings.Join(vs, " ") + "]"
		}
		if got != tc.want {
			t.Errorf("normalize(%q)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func quoteIfText(typ, v string) string {
	if typ == "VARCHAR" {
		return fmt.Sprintf("%q", v)
	}
	return v
}

func TestValuesOnly(t *testing.T) {
	for q, want := range map[string]bool{
		"select c from t where id = ?":                     true,
		"select c from t where id = ? limit ?":             true,
		"update t set v = v + ? where id = ?":              true,
		"delete from t where id = ?":                       true,
		"select ? from t where id = ?":                     false, // the column would be named after the value
		"select c from t where id = ? order by ?":          false, // ORDER BY 1 is a column position
		"select c from t where id = ? group by ?":          false,
		"select c from t where id = (select ? from r)":     false,
		"select cast(c as char(?)) from t where id = ?":    false,
		"select c from t where id = ? having count(*) > ?": false,
		"insert into t values (?)":                         false,
	} {
		stmt, err := ast.Parse(q)
		if err != nil {
			if want {
				t.Errorf("%s: %v", q, err)
			}
			continue
		}
		if got := valuesOnly(stmt); got != want {
			t.Errorf("valuesOnly(%s) = %v, want %v", q, got, want)
		}
	}
}

// BenchmarkNormalize is what a text query costs before its template is
// found: one pass of the tokenizer.
func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := normalize("SELECT c FROM sbtest1 WHERE id=4711"); !ok {
			b.Fatal("not normalized")
		}
	}
}
