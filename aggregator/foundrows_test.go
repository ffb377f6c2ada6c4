package aggregator_test

import (
	"database/sql"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestClientFoundRows: a client that connected with CLIENT_FOUND_ROWS
// (DBD::MariaDB and Connector/J do by default) gets the rows an UPDATE or
// an ON DUPLICATE KEY UPDATE found through an aggregator, as from a
// leaf; other clients, sharing the aggregator's leaf connections, still
// get the rows changed.
func TestClientFoundRows(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE fr PARTITIONS 4")
	plain := c.MA.DB("fr")
	testutil.Exec(t, plain, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, plain, "INSERT INTO t VALUES (1, 1), (2, 2), (3, 3), (4, 4)")

	cfg, err := mysql.ParseDSN(c.MA.DSN("fr"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientFoundRows = true
	found, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer found.Close()

	affected := func(db *sql.DB, q string) int64 {
		t.Helper()
		n, err := testutil.Exec(t, db, q).RowsAffected()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// alternate the two kinds of client, so pooled connections switch
	for i := 0; i < 3; i++ {
		if n := affected(found, "UPDATE t SET v = 1 WHERE id = 1"); n != 1 {
			t.Errorf("found rows, routed UPDATE changing nothing: %d rows, want 1", n)
		}
		if n := affected(plain, "UPDATE t SET v = 1 WHERE id = 1"); n != 0 {
			t.Errorf("routed UPDATE changing nothing: %d rows, want 0", n)
		}
		if n := affected(found, "UPDATE t SET v = id WHERE id <= 4"); n != 4 {
			t.Errorf("found rows, UPDATE on every partition changing nothing: %d rows, want 4", n)
		}
		if n := affected(plain, "UPDATE t SET v = id WHERE id <= 4"); n != 0 {
			t.Errorf("UPDATE on every partition changing nothing: %d rows, want 0", n)
		}
		if n := affected(found, "INSERT INTO t VALUES (2, 2) ON DUPLICATE KEY UPDATE v = 2"); n != 1 {
			t.Errorf("found rows, ON DUPLICATE KEY UPDATE changing nothing: %d rows, want 1", n)
		}
		if n := affected(plain, "INSERT INTO t VALUES (2, 2) ON DUPLICATE KEY UPDATE v = 2"); n != 0 {
			t.Errorf("ON DUPLICATE KEY UPDATE changing nothing: %d rows, want 0", n)
		}
	}
}
