package gmsfix

import (
	"math"
	"strings"
	"testing"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/expression/function/aggregation"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

func TestExactResultType(t *testing.T) {
	for _, c := range []struct {
		arg      sql.Type
		sum, avg string // "" when not exact
	}{
		{types.Int32, "decimal(32,0)", "decimal(32,4)"},
		{types.Int64, "decimal(41,0)", "decimal(41,4)"},
		{types.Uint64, "decimal(42,0)", "decimal(42,4)"},
		{types.Int8, "decimal(25,0)", "decimal(25,4)"},
		{types.Boolean, "decimal(25,0)", "decimal(25,4)"},
		{types.MustCreateDecimalType(10, 2), "decimal(32,2)", "decimal(32,6)"},
		{types.MustCreateDecimalType(65, 30), "decimal(65,30)", "decimal(65,30)"},
		{types.MustCreateDecimalType(50, 28), "decimal(65,28)", "decimal(65,30)"},
		{types.Float64, "", ""},
		{types.Float32, "", ""},
		{types.LongText, "", ""},
		{types.Datetime, "", ""},
		{types.Null, "", ""},
	} {
		for _, avg := range []bool{false, true} {
			want := c.sum
			if avg {
				want = c.avg
			}
			got := ""
			if dt, ok := ExactResultType(c.arg, avg); ok {
				got = dt.String()
			}
			if got != want {
				t.Errorf("ExactResultType(%s, avg %v) = %q, want %q", c.arg, avg, got, want)
			}
		}
	}
}

func TestExactSumBuffer(t *testing.T) {
	for _, c := range []struct {
		name string
		vals []interface{}
		avg  bool
		want string
	}{
		{"empty", nil, false, "<nil>"},
		{"nulls only", []interface{}{nil, nil}, true, "<nil>"},
		{"ints", []interface{}{int32(1), nil, int8(2), int64(3), uint16(4)}, false, "10"},
		{"int64 overflow", []interface{}{int64(math.MaxInt64), int64(math.MaxInt64), int64(2)}, false, "18446744073709551616"},
		{"int64 underflow", []interface{}{int64(math.MinInt64), int64(-1), int64(math.MinInt64)}, false, "-18446744073709551617"},
		{"uint64", []interface{}{uint64(math.MaxUint64), uint64(1), int64(-2)}, false, "18446744073709551614"},
		{"decimals and ints", []interface{}{decimal.RequireFromString("1.25"), int64(2), decimal.RequireFromString("-0.05")}, false, "3.2"},
		{"string from an exact expression", []interface{}{"1.5", int64(1)}, false, "2.5"},
		{"avg rounds half up", []interface{}{int64(1), int64(2), int64(2)}, true, "1.6667"},
		{"avg negative", []interface{}{int64(-1), int64(-2), int64(-2)}, true, "-1.6667"},
		{"avg ignores NULL", []interface{}{int64(1), nil, int64(2)}, true, "1.5"},
	} {
		b := &exactSumBuffer{expr: expression.NewGetField(0, types.Int64, "x", true), avg: c.avg, scale: 4}
		ctx := sql.NewEmptyContext()
		for _, v := range c.vals {
			if err := b.Update(ctx, sql.Row{v}); err != nil {
				t.Fatal(err)
			}
		}
		v, err := b.Eval(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := "<nil>"
		if v != nil {
			got = v.(decimal.Decimal).String()
		}
		if got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

// TestExactSums runs queries through GMS with the rule: result names stay
// what GMS names them, types and display are MySQL's.
func TestExactSums(t *testing.T) {
	db := memory.NewDatabase("db")
	pro := memory.NewDBProvider(db)
	e := sqle.New(analyzer.NewBuilder(pro).AddPostAnalyzeRule(ExactSumsRuleID, ExactSums).Build(), &sqle.Config{})
	ctx := sql.NewContext(t.Context(), sql.WithSession(memory.NewSession(sql.NewBaseSession(), pro)))
	ctx.SetCurrentDatabase("db")
	query := func(q string) (string, string, []string) {
		t.Helper()
		sch, it, _, err := e.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rows, err := sql.RowIterToRows(ctx, it)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var names, typs, out []string
		for _, c := range sch {
			names = append(names, c.Name)
			typs = append(typs, c.Type.String())
		}
		for _, r := range rows {
			var vals []string
			for i, v := range r {
				s, err := sch[i].Type.SQL(ctx, nil, v)
				if err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				if v == nil {
					vals = append(vals, "NULL")
				} else {
					vals = append(vals, s.ToString())
				}
			}
			out = append(out, strings.Join(vals, ","))
		}
		return strings.Join(names, ","), strings.Join(typs, ","), out
	}
	for _, q := range []string{ // statements: their OK results are not rendered
		"CREATE TABLE t (id INT PRIMARY KEY, p TEXT, d DECIMAL(10,2), f DOUBLE, u BIGINT UNSIGNED)",
		"INSERT INTO t VALUES (1, 'abc', 1.25, 1.5, 18446744073709551615), (2, 'abcdefg', 2.50, 2.25, 18446744073709551615), (3, NULL, NULL, NULL, 1)",
		"CREATE VIEW v AS SELECT p, SUM(id) s FROM t GROUP BY p",
	} {
		_, it, _, err := e.Query(ctx, q)
		if err == nil {
			_, err = sql.RowIterToRows(ctx, it)
		}
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, c := range []struct{ q, names, types, rows string }{
		{"SELECT SUM(LENGTH(p)), sum(id), SUM(d), sum(f) FROM t", "SUM(LENGTH(p)),sum(id),SUM(d),sum(f)",
			"decimal(32,0),decimal(32,0),decimal(32,2),double", "10,6,3.75,3.75"},
		{"SELECT avg(id), AVG(d), avg(f), SUM(u) FROM t", "avg(id),AVG(d),avg(f),SUM(u)",
			"decimal(32,4),decimal(32,6),double,decimal(42,0)", "2.0000,1.875000,1.875,36893488147419103231"},
		{"SELECT SUM(id), AVG(id) FROM t WHERE id > 9", "SUM(id),AVG(id)", "decimal(32,0),decimal(32,4)", "NULL,NULL"},
		{"SELECT SUM(id) AS s, SUM(id) + 1, SUM(id) / 4 FROM t GROUP BY p IS NULL ORDER BY SUM(id)",
			"s,SUM(id) + 1,SUM(id) / 4", "decimal(32,0),decimal(32,0),decimal(36,4)", "3,4,0.7500; 3,4,0.7500"},
		{"SELECT SUM(id) s FROM t GROUP BY p HAVING s > 1 ORDER BY s", "s", "decimal(32,0)", "2; 3"},
		{"SELECT s, s + 1 FROM (SELECT SUM(id) s FROM t) d", "s,s + 1", "decimal(32,0),decimal(32,0)", "6,7"},
		{"WITH c AS (SELECT SUM(d) s FROM t) SELECT * FROM c", "s", "decimal(32,2)", "3.75"},
		{"SELECT * FROM v ORDER BY s", "p,s", "text,decimal(32,0)", "abc,1; abcdefg,2; NULL,3"},
		{"SELECT (SELECT SUM(id) FROM t)", "(SELECT SUM(id) FROM t)", "decimal(32,0)", "6"},
		// ROUND(d) is typed DECIMAL(10,2), 8 integer digits, for 9 here
		{"SELECT AVG(ROUND(d * 100000000)) FROM t", "AVG(ROUND(d * 100000000))", "decimal(32,6)", "187500000.000000"},
		{"SELECT SUM(DISTINCT id % 2), AVG(DISTINCT id % 2) FROM t", "SUM(DISTINCT id % 2),AVG(DISTINCT id % 2)", "decimal(23,0),decimal(23,4)", "1,0.5000"},
	} {
		names, typs, rows := query(c.q)
		if names != c.names || typs != c.types || strings.Join(rows, "; ") != c.rows {
			t.Errorf("%s\n got: %s | %s | %s\nwant: %s | %s | %s", c.q, names, typs, strings.Join(rows, "; "), c.names, c.types, c.rows)
		}
	}
}

// BenchmarkSumBuffer compares GMS's SUM buffer (float64) with the exact
// one over int32 values (the scan-aggregate benchmark sums INT columns).
func BenchmarkSumBuffer(b *testing.B) {
	rows := make([]sql.Row, 1024)
	for i := range rows {
		rows[i] = sql.Row{int32(i * 7919 % 100000)}
	}
	field := expression.NewGetField(0, types.Int32, "x", true)
	ctx := sql.NewEmptyContext()
	run := func(b *testing.B, buf sql.AggregationBuffer) {
		for i := 0; i < b.N; i++ {
			if err := buf.Update(ctx, rows[i%len(rows)]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := buf.Eval(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("gms-float64", func(b *testing.B) { run(b, aggregation.NewSumBuffer(field)) })
	b.Run("exact", func(b *testing.B) { run(b, &exactSumBuffer{expr: field}) })
	b.Run("gms-avg-float64", func(b *testing.B) { run(b, aggregation.NewAvgBuffer(field)) })
	b.Run("exact-avg", func(b *testing.B) { run(b, &exactSumBuffer{expr: field, avg: true, scale: 4}) })
	dec := expression.NewGetField(0, types.MustCreateDecimalType(10, 2), "d", true)
	drows := make([]sql.Row, len(rows))
	for i := range drows {
		drows[i] = sql.Row{decimal.New(int64(i*7919%100000), -2)}
	}
	rows = drows
	b.Run("gms-decimal", func(b *testing.B) { run(b, aggregation.NewSumBuffer(dec)) })
	b.Run("exact-decimal", func(b *testing.B) { run(b, &exactSumBuffer{expr: dec}) })
}
