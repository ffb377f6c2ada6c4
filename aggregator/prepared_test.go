package aggregator_test

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// stmtQuerier runs a prepared statement for testutil.RenderRows.
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...interface{}) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}

// onConn prepares q on one connection (server-side), runs it with args and
// returns its rows or the error of the prepare or the execution; the
// connection must stay usable either way.
func onConn(t *testing.T, db *sql.DB, q string, args ...interface{}) ([]string, error) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rows []string
	st, err := conn.PrepareContext(ctx, q)
	if err == nil {
		rows, err = testutil.RenderRows(stmtQuerier{st}, ",", "", args...)
		st.Close()
	}
	var one int
	if cerr := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); cerr != nil {
		t.Errorf("connection after %s: %v", q, cerr)
	}
	return rows, err
}

func wantCode(t *testing.T, err error, code uint16, state, q string) {
	t.Helper()
	if me := testutil.MySQLError(err); me == nil || me.Number != code || string(me.SQLState[:]) != state {
		t.Errorf("%s: %v, want %d (%s)", q, err, code, state)
	}
}

// TestPreparedStatementsCluster: prepared statements through the master
// and a child aggregator. REPLACE and ON DUPLICATE KEY UPDATE of sharded
// and reference tables prepare (the engine checks them on the tables'
// definitions) and run as their text does, refusals included; EXPLAIN
// counts its parameters and returns the cluster's plan; Canopy's DDL
// prepares, its statements that return rows get 1295, syntax errors 1064;
// no connection closes.
func TestPreparedStatementsCluster(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE ps PARTITIONS 4")
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, v INT)",
		"CREATE REFERENCE TABLE r (id INT PRIMARY KEY, v INT)",
	} {
		testutil.Exec(t, c.MA.DB("ps"), q)
	}
	c.WaitCaughtUp(c.Children[0], 10e9)

	for i, node := range []*testutil.Node{c.MA, c.Children[0]} {
		db := node.PreparingDB("ps")
		base := i * 100
		for _, s := range []struct {
			q    string
			args []interface{}
		}{
			{"REPLACE INTO t VALUES (?, ?)", []interface{}{base + 1, 1}},
			{"REPLACE INTO t VALUES (?, ?)", []interface{}{base + 1, 2}},
			{"REPLACE INTO t (id, v) VALUES (?, 3), (?, 3)", []interface{}{base + 2, base + 3}},
			{"INSERT INTO t VALUES (?, ?) ON DUPLICATE KEY UPDATE v = v + VALUES(v)", []interface{}{base + 2, 10}},
			{"INSERT INTO t VALUES (?, 1) ON DUPLICATE KEY UPDATE id = id, v = ?", []interface{}{base + 3, 7}},
			{"REPLACE INTO r VALUES (?, ?)", []interface{}{base + 1, 1}},
			{"INSERT INTO r VALUES (?, ?) ON DUPLICATE KEY UPDATE v = v + ?", []interface{}{base + 1, 0, 5}},
			{"REPLACE INTO t VALUES (" + strconv.Itoa(base+4) + ", 4)", nil}, // no parameters
		} {
			if _, err := onConn(t, db, s.q, s.args...); err != nil {
				t.Errorf("%s %v: %v", s.q, s.args, err)
			}
		}
		got := testutil.Rows(t, db, "SELECT * FROM t WHERE id > ? AND id < ? ORDER BY id", base, base+100)
		if want := []string{strconv.Itoa(base+1) + ",2", strconv.Itoa(base+2) + ",13", strconv.Itoa(base+3) + ",7", strconv.Itoa(base+4) + ",4"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("sharded rows through %d: %v, want %v", i, got, want)
		}
		if got := testutil.Rows(t, db, "SELECT v FROM r WHERE id = ?", base+1); strings.Join(got, " ") != "6" {
			t.Errorf("reference row through %d: %v, want 6", i, got)
		}

		// the text path's refusals
		for _, q := range []string{
			"INSERT INTO t VALUES (?, 1) ON DUPLICATE KEY UPDATE id = 1000",
			"INSERT INTO t VALUES (?, 1) ON DUPLICATE KEY UPDATE id = id + 1",
		} {
			_, err := onConn(t, db, q, base+1)
			wantCode(t, err, 1235, "42000", q)
		}
		testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t WHERE id >= 1000", "0")
		_, err := onConn(t, db, "REPLACE INTO nosuch VALUES (?)", 1)
		wantCode(t, err, 1146, "42S02", "REPLACE INTO nosuch")
		_, err = onConn(t, db, "INSERT INTO t VALUES (?, 1) ON DUPLICATE KEY UPDATE nosuch = 1", 1)
		wantCode(t, err, 1054, "42S22", "ON DUPLICATE KEY UPDATE nosuch")

		// EXPLAIN: the parameters counted, the plan of the bound statement
		rows, err := onConn(t, db, "EXPLAIN SELECT * FROM t WHERE id = ? AND v > ?", base+1, 0)
		if plan := strings.Join(rows, "\n"); err != nil || !strings.Contains(plan, "single partition") || !strings.Contains(plan, "id = "+strconv.Itoa(base+1)) {
			t.Errorf("prepared EXPLAIN through %d: %v %q", i, err, plan)
		}
		rows, err = onConn(t, db, "EXPLAIN REPLACE INTO t VALUES (?, ?)", base+1, 1)
		if err != nil || len(rows) == 0 {
			t.Errorf("prepared EXPLAIN REPLACE through %d: %v %q", i, err, rows)
		}

		// Canopy's DDL prepares; its statements that return rows do not
		for _, q := range []string{
			"CREATE TABLE s" + strconv.Itoa(i) + " (id INT PRIMARY KEY, v INT, SHARD KEY (id))",
			"CREATE REFERENCE TABLE rr" + strconv.Itoa(i) + " (id INT PRIMARY KEY)",
		} {
			if _, err := onConn(t, db, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
		testutil.Exec(t, db, "INSERT INTO s"+strconv.Itoa(i)+" VALUES (?, ?)", 1, 1)
		_, err = onConn(t, db, "CREATE TABLE s"+strconv.Itoa(i)+" (id INT PRIMARY KEY, SHARD KEY (id))")
		wantCode(t, err, 1050, "42S01", "CREATE TABLE of an existing table")
		for _, q := range []string{"SHOW LEAVES", "SHOW AGGREGATORS", "SHOW PARTITIONS ON ps", "SHOW DATABASES EXTENDED", "EXPLAIN REBALANCE PARTITIONS ON ps"} {
			_, err := onConn(t, db, q)
			wantCode(t, err, 1295, "HY000", q)
		}
		for _, q := range []string{"SELEC 1", "SELECT 1; SELECT 2", "REPLACE INTO t VALUES (1, 1); SELECT 1"} {
			_, err := onConn(t, db, q)
			wantCode(t, err, 1064, "42000", q)
		}
		_, err = onConn(t, db, "SELECT * FROM nosuch WHERE id = ?", 1)
		wantCode(t, err, 1146, "42S02", "SELECT FROM nosuch")
	}
}
