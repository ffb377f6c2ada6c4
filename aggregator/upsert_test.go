package aggregator_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestUpsertShardKey: INSERT … ON DUPLICATE KEY UPDATE may not move a row
// to another shard key (the row would stay in its old partition, where a
// lookup by the new key never finds it): it is refused as an UPDATE of the
// shard key is, unless the assignment keeps the value. REPLACE stays in
// one partition: the rows it replaces share a unique key with the new
// row, and every unique key contains the shard key.
func TestUpsertShardKey(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE up PARTITIONS 8")
	db := c.MA.DB("up")
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE u (a INT, b INT, c INT, v INT, PRIMARY KEY (a, b), UNIQUE KEY (a, b, c), SHARD KEY (a, b))",
		"CREATE TABLE w (a INT, b INT, c INT, PRIMARY KEY (a, b), UNIQUE KEY ac (a, c), SHARD KEY (a))",
		"INSERT INTO t VALUES (6, 1)",
		"INSERT INTO u VALUES (1, 1, 1, 0)",
	} {
		testutil.Exec(t, db, q)
	}

	for _, q := range []string{
		"INSERT INTO t VALUES (6, 1) ON DUPLICATE KEY UPDATE id = 1000",
		"INSERT INTO t VALUES (7, 1) ON DUPLICATE KEY UPDATE id = 1000", // no duplicate now, but there could be
		"INSERT INTO t VALUES (6, 1), (8, 2) ON DUPLICATE KEY UPDATE v = v + 1, id = id + 1",
		"INSERT INTO t VALUES (6, 1) ON DUPLICATE KEY UPDATE t.id = VALUES(v)",
		"INSERT INTO t (id, v) SELECT id + 1, v FROM t ON DUPLICATE KEY UPDATE id = 5",
		"INSERT INTO u VALUES (1, 1, 1, 0) ON DUPLICATE KEY UPDATE b = 2",
		"INSERT INTO u VALUES (1, 1, 1, 0) ON DUPLICATE KEY UPDATE a = VALUES(b)",
	} {
		_, err := db.Exec(q)
		me := testutil.MySQLError(err)
		if me == nil || me.Number != 1235 || !strings.Contains(me.Message, "UPDATE of shard key column") {
			t.Errorf("%s: got %v, want error 1235 about the shard key", q, err)
		}
	}
	testutil.ExpectRows(t, db, "SELECT * FROM t ORDER BY id", "6,1")
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE id = 1000")

	// assignments that keep the shard key are fine
	for _, q := range []string{
		"INSERT INTO t VALUES (6, 2) ON DUPLICATE KEY UPDATE id = VALUES(id), v = VALUES(v)",
		"INSERT INTO t VALUES (6, 9) ON DUPLICATE KEY UPDATE id = id, v = v + 1",
		"INSERT INTO t VALUES (6, 9) ON DUPLICATE KEY UPDATE t.id = up.t.id, v = v + 1",
		"INSERT INTO u VALUES (1, 1, 1, 5) ON DUPLICATE KEY UPDATE a = a, b = VALUES(b), v = v + VALUES(v)",
	} {
		testutil.Exec(t, db, q)
	}
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE id = 6", "6,4")
	testutil.ExpectRows(t, db, "SELECT * FROM t", "6,4")
	testutil.ExpectRows(t, db, "SELECT * FROM u WHERE a = 1 AND b = 1", "1,1,1,5")

	// REPLACE: the replaced rows are in the new row's partition
	testutil.Exec(t, db, "REPLACE INTO t VALUES (6, 10)")
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE id = 6", "6,10")
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "1")
	// INSERT … SELECT from a table that has a column of the shard key's
	// name: in `id = id` the name is ambiguous, refused as a single
	// server refuses it; it never takes the source row's id (which would
	// move the row to another shard key)
	testutil.Exec(t, db, "CREATE TABLE src (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, db, "INSERT INTO src VALUES (1, 6)")
	for _, q := range []string{
		"INSERT INTO t (id, v) SELECT v, id FROM src ON DUPLICATE KEY UPDATE id = id",
		"INSERT INTO t (id, v) SELECT v, id FROM src ON DUPLICATE KEY UPDATE id = id, v = 0",
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), `ambiguous column name "id"`) {
			t.Errorf("%s: %v, want the ambiguous column refused", q, err)
		}
	}
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE id = 6", "6,10")
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE id = 1")
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "1")

	var rows []string
	for a := 0; a < 40; a++ {
		rows = append(rows, fmt.Sprintf("(%d, 1, %d)", a, a))
	}
	testutil.Exec(t, db, "REPLACE INTO w VALUES "+strings.Join(rows, ", ")) // split over the partitions
	rows = rows[:0]
	for a := 0; a < 40; a++ {
		rows = append(rows, fmt.Sprintf("(%d, 2, %d)", a, a)) // conflicts with (a, 1, a) on the unique key (a, c)
	}
	testutil.Exec(t, db, "REPLACE INTO w VALUES "+strings.Join(rows, ", "))
	testutil.ExpectRows(t, db, "SELECT COUNT(*), SUM(b), COUNT(DISTINCT a) FROM w", "40,80,40")
	for _, a := range []int{0, 7, 39} {
		testutil.ExpectRows(t, db, fmt.Sprintf("SELECT * FROM w WHERE a = %d", a), fmt.Sprintf("%d,2,%d", a, a))
	}
}
