package node_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// expectPrepareError prepares q on one connection (server-side) and wants
// MySQL's error number and SQLSTATE; the connection must stay usable.
func expectPrepareError(t *testing.T, db *sql.DB, code uint16, state, q string) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := conn.PrepareContext(ctx, q)
	if err == nil {
		st.Close()
		t.Errorf("PREPARE %s: no error, want %d (%s)", q, code, state)
	} else if me := testutil.MySQLError(err); me == nil || me.Number != code || string(me.SQLState[:]) != state {
		t.Errorf("PREPARE %s: %v, want %d (%s)", q, err, code, state)
	}
	var one int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("connection after PREPARE %s: %v", q, err)
	}
}

// preparedRows prepares q on one connection, runs it with args and
// returns its rows (columns joined by ","); the connection must stay
// usable.
func preparedRows(t *testing.T, db *sql.DB, q string, args ...interface{}) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := conn.PrepareContext(ctx, q)
	if err != nil {
		t.Fatalf("PREPARE %s: %v", q, err)
	}
	defer st.Close()
	rows, err := testutil.RenderRows(stmtQuerier{st}, ",", "", args...)
	if err != nil {
		t.Fatalf("EXECUTE %s: %v", q, err)
	}
	var one int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("connection after %s: %v", q, err)
	}
	return rows
}

// stmtQuerier runs a prepared statement for testutil.RenderRows.
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...interface{}) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}

// TestPreparedStatementsLeaf: on a leaf, prepared EXPLAIN counts its
// parameters and returns the plan; statements vitess' protocol parser
// refuses get MySQL's answers (1064 for syntax, also for two statements;
// 1065 for nothing; 1295 for Canopy's statements that return rows); the
// connection stays open after each, with and without TLS.
func TestPreparedStatementsLeaf(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{{"plain", nil}, {"tls", []string{"--require-secure-transport"}}} {
		t.Run(tc.name, func(t *testing.T) {
			n := testutil.StartNode(t, tc.args...)
			testutil.Exec(t, n.DB(""), "CREATE DATABASE test")
			testutil.Exec(t, n.DB("test"), "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
			testutil.Exec(t, n.DB("test"), "INSERT INTO t VALUES (1, 10), (2, 20)")
			db := n.PreparingDB("test")

			// the driver checks the count of arguments against the prepare's
			if got := preparedRows(t, db, "EXPLAIN SELECT v FROM t WHERE id = ? AND v > ?", 1, 5); len(got) == 0 {
				t.Errorf("prepared EXPLAIN with two parameters: no rows")
			}
			plan := strings.Join(preparedRows(t, db, "EXPLAIN SELECT v FROM t WHERE id = ?", 1), "\n")
			if !strings.Contains(plan, "IndexedTableAccess(t)") || !strings.Contains(plan, "[1, 1]") {
				t.Errorf("prepared EXPLAIN: %q, want an index lookup of 1", plan)
			}
			if got := preparedRows(t, db, "DESCRIBE SELECT * FROM t"); len(got) == 0 {
				t.Errorf("prepared DESCRIBE: no rows")
			}
			expectPrepareError(t, db, 1146, "42S02", "EXPLAIN SELECT * FROM nosuch WHERE id = ?")

			expectPrepareError(t, db, 1064, "42000", "SELEC 1")
			expectPrepareError(t, db, 1064, "42000", "SELECT 1; SELECT 2")
			expectPrepareError(t, db, 1065, "42000", " ; ")
			expectPrepareError(t, db, 1146, "42S02", "SELECT * FROM nosuch WHERE id = ?")
			expectPrepareError(t, db, 1295, "HY000", "SHOW DATABASES EXTENDED")
			expectPrepareError(t, db, 1295, "HY000", "SHOW REPLICATION STATUS")
			// a leaf's grammar has no SHARD KEY or REFERENCE tables
			expectPrepareError(t, db, 1064, "42000", "CREATE TABLE s (id INT PRIMARY KEY, SHARD KEY (id))")

			// ordinary prepares are untouched, arguments included
			if got := preparedRows(t, db, "SELECT v FROM t WHERE id IN (?, ?) ORDER BY v", 1, 2); strings.Join(got, " ") != "10 20" {
				t.Errorf("prepared SELECT: %v", got)
			}
			testutil.Exec(t, db, "REPLACE INTO t VALUES (?, ?)", 1, 11)
			testutil.Exec(t, db, "INSERT INTO t VALUES (?, ?) ON DUPLICATE KEY UPDATE v = v + ?", 2, 0, 1)
			testutil.ExpectRows(t, db, "SELECT * FROM t ORDER BY id", "1,11", "2,21")
		})
	}
}
