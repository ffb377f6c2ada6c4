package node_test

import (
	"math"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// FLOAT and DOUBLE columns carry MySQL's decimals 31 (NOT_FIXED_DEC), in
// text and prepared results: PHP's mysqlnd rounds a prepared FLOAT to the
// decimals it is given, and DBD::MariaDB formats doubles with them.
func TestFloatColumnDecimals(t *testing.T) {
	n := testutil.StartNode(t)
	testutil.Exec(t, n.DB(""), "CREATE DATABASE fd")
	testutil.Exec(t, n.DB("fd"), "CREATE TABLE t (id INT PRIMARY KEY, f FLOAT, g DOUBLE)")
	testutil.Exec(t, n.DB("fd"), "INSERT INTO t VALUES (1, 1.5, 0.1)")
	check := func(mode, q string, args ...interface{}) {
		db := n.DB("fd")
		if len(args) > 0 {
			db = n.PreparingDB("fd")
		}
		rows, err := db.Query(q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		cts, err := rows.ColumnTypes()
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range cts {
			// go-sql-driver reports decimals 31 as MaxInt64
			p, s, ok := ct.DecimalSize()
			if !ok || p != math.MaxInt64 || s != math.MaxInt64 {
				t.Errorf("%s %s column %s: decimal size %d, %d, %v; want NOT_FIXED_DEC", mode, q, ct.Name(), p, s, ok)
			}
		}
	}
	check("text", "SELECT f, g, g + 1 FROM t")
	check("prepared", "SELECT f, g, g + 1 FROM t WHERE id = ?", 1)
}
