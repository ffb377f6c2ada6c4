package node_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// loadRows runs a LOAD DATA LOCAL of data with the clauses and returns the
// table's rows.
func loadRows(t *testing.T, db *sql.DB, table, data, clauses string) []string {
	t.Helper()
	testutil.Exec(t, db, "DELETE FROM "+table)
	testutil.Exec(t, db, fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE %s %s", testutil.LocalFile(t, data), table, clauses))
	return testutil.Rows(t, db, "SELECT * FROM "+table+" ORDER BY 1")
}

func TestLeafLoadData(t *testing.T) {
	n, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(40), n INT)")

	// local_infile is off by default, as in MySQL 8
	_, err := db.Exec(fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE t", testutil.LocalFile(t, "1\ta\t2\n")))
	if me := testutil.MySQLError(err); me == nil || me.Number != 3948 || string(me.SQLState[:]) != "42000" ||
		me.Message != "Loading local data is disabled; this must be enabled on both the client and server sides" {
		t.Fatalf("LOAD DATA LOCAL without local_infile: %v, want error 3948 (42000)", err)
	}
	testutil.Exec(t, n.DB(""), "SET GLOBAL local_infile = 1")

	csv := `FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"'`
	for _, c := range []struct {
		name, data, clauses string
		want                []string
	}{
		{"defaults", "1\ta\t10\n2\t\\N\t\\N\n", "", []string{"1,a,10", "2,NULL,NULL"}},
		{"unquoted with OPTIONALLY ENCLOSED BY", "1,abc,3\n2,def,4\n", csv, []string{"1,abc,3", "2,def,4"}},
		{"enclosed fields", "1,\"a,b\",3\n2,\"line\nbreak\",4\n", csv, []string{"1,a,b,3", "2,line\nbreak,4"}},
		{"doubled and escaped enclosures", "1,\"say \"\"hi\"\"\",1\n2,\"x\\\"y\",2\n", csv, []string{`1,say "hi",1`, `2,x"y,2`}},
		{"NULL", "1,NULL,\\N\n2,\"NULL\",5\n", csv, []string{"1,NULL,NULL", "2,NULL,5"}},
		{"backslashes kept", "1\ta\\\\b\\tc\t1\n", "", []string{"1,a\\b\tc,1"}},
		{"ESCAPED BY", "1,a^,b,1\n", `FIELDS TERMINATED BY ',' ESCAPED BY '^'`, []string{"1,a,b,1"}},
		{"no escape", "1,a\\b,1\n", `FIELDS TERMINATED BY ',' ESCAPED BY ''`, []string{`1,a\b,1`}},
		{"CRLF lines and a header", "id,s,n\r\n1,a,1\r\n2,b,2\r\n", csv + ` LINES TERMINATED BY '\r\n' IGNORE 1 LINES`, []string{"1,a,1", "2,b,2"}},
		{"LINES STARTING BY", "xx1,a,1\nskipped\nyyxx2,b,2\n", `FIELDS TERMINATED BY ',' LINES STARTING BY 'xx'`, []string{"1,a,1", "2,b,2"}},
		{"column list, variables and SET", "a,1,10\nb,2,20\n", `FIELDS TERMINATED BY ',' (s, id, @x) SET n = @x * 2`, []string{"1,a,20", "2,b,40"}},
		{"SET from a column", "1,a\n2,b\n", `FIELDS TERMINATED BY ',' (id, s) SET n = id + 100`, []string{"1,a,101", "2,b,102"}},
	} {
		got := loadRows(t, db, "t", c.data, c.clauses)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}

	// an enclosed "NULL" is the string, the bare word (with ENCLOSED BY) and \N are NULL
	loadRows(t, db, "t", "1,NULL,\\N\n2,\"NULL\",0\n", csv)
	testutil.ExpectRows(t, db, "SELECT id, s IS NULL, n IS NULL FROM t ORDER BY id", "1,1,1", "2,0,0")

	// LOCAL implies IGNORE: a duplicate key is skipped; REPLACE replaces
	testutil.Exec(t, db, "DELETE FROM t")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1, 'old', 0)")
	testutil.Exec(t, db, fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE t FIELDS TERMINATED BY ','", testutil.LocalFile(t, "1,new,1\n2,b,2\n")))
	testutil.ExpectRows(t, db, "SELECT * FROM t ORDER BY id", "1,old,0", "2,b,2")
	testutil.Exec(t, db, fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' REPLACE INTO TABLE t FIELDS TERMINATED BY ','", testutil.LocalFile(t, "1,new,1\n")))
	testutil.ExpectRows(t, db, "SELECT * FROM t ORDER BY id", "1,new,1", "2,b,2")
}

func TestLeafDeleteAll(t *testing.T) {
	n, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	fill := func() { testutil.Exec(t, db, "INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)") }
	affected := func(db *sql.DB, q string) int64 {
		t.Helper()
		n, err := testutil.Exec(t, db, q).RowsAffected()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	fill()
	if got := affected(db, "DELETE FROM t"); got != 3 {
		t.Errorf("DELETE FROM t affected %d rows, want 3", got)
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "0")

	// qualified, no current database
	fill()
	none := n.DB("")
	if got := affected(none, "DELETE FROM test.t"); got != 3 {
		t.Errorf("DELETE FROM test.t affected %d rows, want 3", got)
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "0")

	// a DELETE is undone by ROLLBACK (a TRUNCATE would not be)
	fill()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("DELETE FROM t"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "3")

	if got := affected(db, "DELETE FROM t LIMIT 2"); got != 2 {
		t.Errorf("DELETE FROM t LIMIT 2 affected %d rows, want 2", got)
	}
	if got := affected(db, "DELETE FROM t ORDER BY id DESC LIMIT 1"); got != 1 {
		t.Errorf("DELETE … ORDER BY id DESC LIMIT 1 affected %d rows, want 1", got)
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "0")

	fill()
	testutil.Exec(t, none, "TRUNCATE TABLE test.t")
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM t", "0")
}
