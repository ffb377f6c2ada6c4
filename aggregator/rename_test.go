package aggregator_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestRenameTables: RENAME TABLE and ALTER TABLE … RENAME of sharded and
// reference tables, with and without a current database, several at once,
// through the master and a child aggregator: the metadata follows (a
// statement right after it, on any aggregator, routes by the new name),
// every row is still there, and AUTO_INCREMENT goes on where it was.
func TestRenameTables(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE rn PARTITIONS 4")
	ma, child := c.MA.DB("rn"), c.Children[0].DB("rn")
	maNoDB, childNoDB := c.MA.DB(""), c.Children[0].DB("")
	for _, q := range []string{
		"CREATE TABLE a (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE x (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
		"CREATE REFERENCE TABLE r (id INT PRIMARY KEY, name VARCHAR(10))",
		"INSERT INTO r VALUES (1, 'one'), (2, 'two')",
		"INSERT INTO x VALUES (1, 100)",
	} {
		testutil.Exec(t, ma, q)
	}
	var rows []string
	for i := 1; i <= 50; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, i*10))
	}
	testutil.Exec(t, ma, "INSERT INTO a VALUES "+strings.Join(rows, ", "))
	testutil.Exec(t, ma, "INSERT INTO ai (v) VALUES (1), (2), (3), (4), (5), (6), (7), (8)")

	// expect checks a table on both aggregators: all its rows, and a
	// routed lookup
	expect := func(table string, count int, id, v int) {
		t.Helper()
		for _, db := range []*testutil.Node{c.MA, c.Children[0]} {
			d := db.DB("rn")
			testutil.ExpectRows(t, d, "SELECT COUNT(*), SUM(v) FROM "+table, fmt.Sprintf("%d,%d", count, 10*count*(count+1)/2))
			testutil.ExpectRows(t, d, fmt.Sprintf("SELECT v FROM %s WHERE id = %d", table, id), strconv.Itoa(v))
		}
	}
	gone := func(table string) {
		t.Helper()
		for _, n := range []*testutil.Node{c.MA, c.Children[0]} {
			_, err := n.DB("rn").Exec("SELECT * FROM " + table)
			if me := testutil.MySQLError(err); me == nil || me.Number != 1146 {
				t.Errorf("SELECT * FROM %s on %s after the rename: %v, want error 1146", table, n.Addr(), err)
			}
		}
	}

	testutil.Exec(t, ma, "RENAME TABLE a TO b")
	expect("b", 50, 7, 70)
	gone("a")
	testutil.Exec(t, ma, "ALTER TABLE b RENAME TO c")
	expect("c", 50, 8, 80)
	gone("b")
	// writes route by the new name
	testutil.Exec(t, child, "INSERT INTO c VALUES (51, 510)")
	expect("c", 51, 51, 510)

	// qualified names, no current database, a sharded and a reference
	// table in one statement
	testutil.Exec(t, maNoDB, "RENAME TABLE rn.c TO rn.d, rn.r TO rn.r2")
	expect("d", 51, 9, 90)
	gone("c")
	testutil.ExpectRows(t, child, "SELECT name FROM r2 WHERE id = 2", "two")
	testutil.ExpectRows(t, child, "SELECT COUNT(*) FROM d JOIN r2 ON d.id = r2.id", "2")

	// through the child (it forwards to the master), both spellings
	testutil.Exec(t, childNoDB, "ALTER TABLE rn.d RENAME rn.e")
	expect("e", 51, 10, 100)
	testutil.Exec(t, child, "ALTER TABLE r2 RENAME TO r3")
	testutil.ExpectRows(t, ma, "SELECT name FROM r3 WHERE id = 1", "one")

	// a chain and a swap of two sharded tables
	testutil.Exec(t, ma, "RENAME TABLE e TO f, f TO g")
	expect("g", 51, 11, 110)
	testutil.Exec(t, ma, "RENAME TABLE g TO tmp, x TO g, tmp TO x")
	expect("x", 51, 12, 120)
	testutil.ExpectRows(t, child, "SELECT id, v FROM g", "1,100")
	testutil.ExpectRows(t, child, "SHOW TABLES", "ai", "g", "r3", "x")

	// AUTO_INCREMENT values go on after a rename
	testutil.Exec(t, ma, "RENAME TABLE ai TO ai2")
	testutil.Exec(t, ma, "INSERT INTO ai2 (v) VALUES (9), (10)")
	testutil.Exec(t, child, "INSERT INTO ai2 (v) VALUES (11)")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*), COUNT(DISTINCT id) FROM ai2", "11,11")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM ai2 WHERE id > (SELECT MAX(id) FROM ai2 WHERE v <= 8) AND v = 9", "1")

	// what it refuses, before renaming anything
	testutil.Exec(t, maNoDB, "CREATE DATABASE other")
	for _, tc := range []struct {
		q    string
		code uint16
	}{
		{"RENAME TABLE x TO g", 1050},
		{"RENAME TABLE x TO y, g TO y", 1050},
		{"RENAME TABLE x TO other.x", 1235},
		{"ALTER TABLE x RENAME TO other.x", 1235},
	} {
		_, err := ma.Exec(tc.q)
		if me := testutil.MySQLError(err); me == nil || me.Number != tc.code {
			t.Errorf("%s: got %v, want error %d", tc.q, err, tc.code)
		}
	}
	expect("x", 51, 13, 130)
	testutil.ExpectRows(t, ma, "SELECT id, v FROM g", "1,100")
}

// TestRenameUndone: a rename that fails on one partition (a table of the
// new name is there, made on its leaf behind the cluster's back) is
// renamed back on the partitions where it ran, so the table keeps one
// name everywhere: every row is still reachable under the old name, and
// the rename works once the obstacle is gone.
func TestRenameUndone(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=client-internal-access"}), 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE ru PARTITIONS 4")
	ma := c.MA.DB("ru")
	testutil.Exec(t, ma, "CREATE TABLE a (id INT PRIMARY KEY, v INT)")
	var rows []string
	for i := 1; i <= 40; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, i*10))
	}
	testutil.Exec(t, ma, "INSERT INTO a VALUES "+strings.Join(rows, ", "))
	leaf := c.Leaves[1].DB("")
	parts := testutil.Rows(t, leaf, "SHOW DATABASES LIKE 'ru\\_%'")
	if len(parts) != 2 {
		t.Fatalf("partitions on the second leaf: %q", parts)
	}
	// the leaf's second partition refuses; its first renames before that
	obstacle := parts[1] + ".b"
	testutil.Exec(t, leaf, "CREATE TABLE "+obstacle+" (x INT)")

	_, err := ma.Exec("RENAME TABLE a TO b")
	if me := testutil.MySQLError(err); me == nil || me.Number != 1050 {
		t.Fatalf("RENAME TABLE onto a partition's own b: %v, want error 1050", err)
	}
	check := func(table string) {
		t.Helper()
		testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(v) FROM "+table, "40,8200")
		for i := 1; i <= 40; i++ { // each partition, by a routed lookup
			testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT v FROM %s WHERE id = %d", table, i), strconv.Itoa(i*10))
		}
	}
	check("a")
	testutil.ExpectRows(t, leaf, "SHOW TABLES FROM "+parts[0], "a") // renamed, then back
	if _, err := ma.Exec("SELECT * FROM b"); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1146 {
		t.Errorf("SELECT from b after the failed rename: %v, want 1146", err)
	}

	testutil.Exec(t, leaf, "DROP TABLE "+obstacle)
	testutil.Exec(t, ma, "RENAME TABLE a TO b")
	check("b")
}
