package gmsfix

import (
	"fmt"
	"testing"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
)

// TestHashGroupByMatchesGMS runs grouped queries with GMS's grouping
// iterator and with hashGroupIter (and IntegerMod) over the same rows and
// wants the same rows in the same order: the same values must group
// together (strings by their collation's weights, NULLs apart, numbers
// of different Go types by value as GMS prints them).
func TestHashGroupByMatchesGMS(t *testing.T) {
	db := memory.NewDatabase("d")
	pro := memory.NewDBProvider(db)
	fastAnalyzer := analyzer.NewBuilder(pro).AddPostValidationRule(IntegerModRuleID, IntegerMod).Build()
	o := newGroupByOverride()
	fastAnalyzer.ExecBuilder = o.outer
	fast := sqle.New(fastAnalyzer, &sqle.Config{})
	plain := sqle.New(analyzer.NewBuilder(pro).Build(), &sqle.Config{})
	ctx := sql.NewContext(t.Context(), sql.WithSession(memory.NewSession(sql.NewBaseSession(), pro)))
	ctx.SetCurrentDatabase("d")
	run := func(e *sqle.Engine, q string) string {
		t.Helper()
		_, it, _, err := e.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rows, err := sql.RowIterToRows(ctx, it)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return fmt.Sprint(rows)
	}
	run(plain, "CREATE TABLE t (id INT PRIMARY KEY, k INT, u BIGINT UNSIGNED, s VARCHAR(10) COLLATE utf8mb4_0900_ai_ci, b VARBINARY(10), f DOUBLE, d DECIMAL(10,2), dt DATE)")
	for i := 0; i < 300; i++ {
		s := []string{"'a'", "'A'", "'b'", "'B '", "NULL", "'é'", "'e'"}[i%7]
		f := []string{"0.5", "1", "-0.5", "NULL", "2.25"}[i%5]
		run(plain, fmt.Sprintf("INSERT INTO t VALUES (%d, %d, %d, %s, %s, %s, %d.%02d, '2026-01-%02d')",
			i, i%13-6, uint64(i%4)*(1<<62), s, s, f, i%9, i%3*25, i%28+1))
	}
	run(plain, "INSERT INTO t VALUES (1000, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
	for _, q := range []string{
		"SELECT k, COUNT(*), SUM(id), AVG(id), MIN(s), MAX(f) FROM t GROUP BY k",
		"SELECT s, COUNT(*), SUM(k) FROM t GROUP BY s",
		"SELECT b, COUNT(*) FROM t GROUP BY b",
		"SELECT u, COUNT(*) FROM t GROUP BY u",
		"SELECT f, COUNT(*), SUM(d) FROM t GROUP BY f",
		"SELECT d, COUNT(*) FROM t GROUP BY d",
		"SELECT dt, COUNT(*) FROM t GROUP BY dt",
		"SELECT k % 4 AS g, COUNT(*), AVG(k) FROM t GROUP BY g",
		"SELECT id % 7, k % 3, COUNT(*) FROM t GROUP BY id % 7, k % 3",
		"SELECT k, s, COUNT(DISTINCT f), GROUP_CONCAT(id ORDER BY id) FROM t GROUP BY k, s",
		"SELECT k, ANY_VALUE(s), COUNT(*) FROM t GROUP BY k HAVING COUNT(*) > 20 ORDER BY k",
		"SELECT COALESCE(f, k), COUNT(*) FROM t GROUP BY COALESCE(f, k)",
		"SELECT k % 0, COUNT(*) FROM t GROUP BY k % 0",
	} {
		before := o.built.Load()
		got := run(fast, q)
		if o.built.Load() == before {
			t.Errorf("%s: hashGroupIter did not run", q)
		}
		if want := run(plain, q); got != want {
			t.Errorf("%s:\n got %s\nwant %s", q, got, want)
		}
	}
}
