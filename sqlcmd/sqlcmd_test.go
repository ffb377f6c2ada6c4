package sqlcmd

import (
	"reflect"
	"testing"
)

func TestSplitFirst(t *testing.T) {
	cases := []struct{ in, first, rest string }{
		{"SELECT 1", "SELECT 1", ""},
		{"SELECT 1; SELECT 2", "SELECT 1", "SELECT 2"},
		{"SELECT ';'; SELECT 2", "SELECT ';'", "SELECT 2"},
		{`SELECT "a;b" ;x`, `SELECT "a;b" `, "x"},
		{"SELECT 'it''s;'; y", "SELECT 'it''s;'", "y"},
		{"SELECT 'a\\';b'; z", "SELECT 'a\\';b'", "z"},
		{"SELECT 1 -- c;d\n; e", "SELECT 1 -- c;d\n", "e"},
		{"SELECT /* ; */ 1; f", "SELECT /* ; */ 1", "f"},
		{"SELECT `a;b`; g", "SELECT `a;b`", "g"},
	}
	for _, c := range cases {
		first, rest := SplitFirst(c.in)
		if first != c.first || rest != c.rest {
			t.Errorf("SplitFirst(%q) = %q, %q; want %q, %q", c.in, first, rest, c.first, c.rest)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Command
	}{
		{"SHOW DATABASES EXTENDED", ShowDatabasesExtended{}},
		{"show databases   extended", ShowDatabasesExtended{}},
		{"SHOW DATABASES", nil},
		{"SHOW DATABASES EXTENDED LIKE 'x'", nil},
		{"SELECT 1", nil},
		{"EXPLAIN SELECT * FROM t WHERE id = 1", Explain{Query: "SELECT * FROM t WHERE id = 1"}},
		{"  explain  update t set a = 1", Explain{Query: "update t set a = 1"}},
		{"DESCRIBE SELECT 1", Explain{Query: "SELECT 1"}},
		{"EXPLAIN t", nil},
		{"DESCRIBE t", nil},
		{"EXPLAIN FORMAT=TREE SELECT 1", nil},
		{"", nil},
	}
	for _, c := range cases {
		if got := Parse(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}
