package aggregator_test

import (
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestSavepoints: ROLLBACK TO SAVEPOINT undoes what the transaction wrote
// on the leaves since the savepoint (it used to undo only the aggregator's
// own part and commit the leaves' rows), including on a leaf the
// transaction first wrote to after it; RELEASE forgets the savepoint and
// the ones after it; a view read in between keeps the savepoints.
func TestSavepoints(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE sv PARTITIONS 4")
	db := c.MA.DB("sv")
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, db, "CREATE VIEW vt AS SELECT id, v FROM t")

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"INSERT INTO t VALUES (1, 1)",
		"SAVEPOINT a",
		// rows on every partition, so on a leaf the transaction had not
		// written to when it set the savepoint
		"INSERT INTO t VALUES (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8)",
		"UPDATE t SET v = 100 WHERE id = 1",
		"SELECT COUNT(*) FROM vt",
		"ROLLBACK TO SAVEPOINT a",
		"INSERT INTO t VALUES (10, 10)",
		"SAVEPOINT b",
		"INSERT INTO t VALUES (11, 11)",
		"RELEASE SAVEPOINT b",
	} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err = tx.Exec("ROLLBACK TO SAVEPOINT b")
	if me := testutil.MySQLError(err); me == nil || me.Number != 1305 {
		t.Fatalf("ROLLBACK TO a released savepoint: %v, want 1305", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT id, v FROM t ORDER BY id", "1,1", "10,10", "11,11")
}
