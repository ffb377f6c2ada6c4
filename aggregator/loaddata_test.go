package aggregator_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

func affectedBy(t *testing.T, db *sql.DB, q string) int64 {
	t.Helper()
	n, err := testutil.Exec(t, db, q).RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLoadDataThroughAggregators(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	root := c.MA.DB("")
	testutil.Exec(t, root, "CREATE DATABASE ld PARTITIONS 4")
	ma := c.MA.DB("ld")
	child := c.Children[0].DB("ld")
	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(40), n INT)")
	testutil.Exec(t, ma, "CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)")
	testutil.Exec(t, ma, "CREATE REFERENCE TABLE r (id INT PRIMARY KEY, s VARCHAR(40))")

	load := func(db *sql.DB, data, rest string) (sql.Result, error) {
		return db.Exec(fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' %s", testutil.LocalFile(t, data), rest))
	}
	_, err := load(ma, "1,a,1\n", "INTO TABLE t FIELDS TERMINATED BY ','")
	if me := testutil.MySQLError(err); me == nil || me.Number != 3948 || string(me.SQLState[:]) != "42000" {
		t.Fatalf("LOAD DATA LOCAL without local_infile: %v, want error 3948 (42000)", err)
	}
	for _, n := range append([]*testutil.Node{c.MA}, c.Children...) {
		testutil.Exec(t, n.DB(""), "SET GLOBAL local_infile = 1")
	}

	t.Run("rows land on the partition of their shard key", func(t *testing.T) {
		var b strings.Builder
		const rows = 2000
		for i := 1; i <= rows; i++ {
			switch i % 3 {
			case 0:
				fmt.Fprintf(&b, "%d,\"s,%d\",%d\n", i, i, i%7)
			case 1:
				fmt.Fprintf(&b, "%d,s\\,%d,%d\n", i, i, i%7)
			default:
				fmt.Fprintf(&b, "\"%d\",\"s,\"\"%d\"\"\",\\N\n", i, i)
			}
		}
		res, err := load(ma, b.String(), `INTO TABLE t FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"'`)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != rows {
			t.Errorf("LOAD DATA affected %d rows, want %d", n, rows)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(id), COUNT(n) FROM t", fmt.Sprintf("%d,%d,%d", rows, rows*(rows+1)/2, rows-(rows+1)/3))
		for _, i := range []int{1, 2, 3, 500, 1001, 1999} {
			want := fmt.Sprintf("s,%d", i)
			if i%3 == 2 {
				want = fmt.Sprintf(`s,"%d"`, i)
			}
			testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT s FROM t WHERE id = %d", i), want)
			testutil.ExpectRows(t, child, fmt.Sprintf("SELECT s FROM t WHERE id = %d", i), want)
		}
		// every partition holds exactly the rows its hash gives it
		key := sharding.NewKey([]gmssql.Type{types.Int32})
		count := map[int]int{}
		for i := 1; i <= rows; i++ {
			p, _ := key.Partition([]interface{}{i}, 4)
			count[p]++
		}
		for p, port := range partitionMasters(t, ma, "ld") {
			leaf := leafByPort(c, port).DB("")
			testutil.ExpectRows(t, leaf, fmt.Sprintf("SELECT COUNT(*) FROM ld_%d.t", p), strconv.Itoa(count[p]))
		}
	})

	t.Run("duplicates: LOCAL ignores, REPLACE replaces, a server file fails whole", func(t *testing.T) {
		testutil.Exec(t, ma, "DELETE FROM t")
		testutil.Exec(t, ma, "INSERT INTO t VALUES (1, 'old', 0), (2, 'old', 0)")
		res, err := load(ma, "1,new,1\n3,c,3\n4,d,4\n", "INTO TABLE t FIELDS TERMINATED BY ','")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 2 {
			t.Errorf("LOAD DATA LOCAL with a duplicate affected %d rows, want 2", n)
		}
		testutil.ExpectRows(t, ma, "SELECT id, s FROM t ORDER BY id", "1,old", "2,old", "3,c", "4,d")
		if _, err := load(child, "2,new,2\n5,e,5\n", "REPLACE INTO TABLE t FIELDS TERMINATED BY ','"); err != nil {
			t.Fatal(err)
		}
		testutil.ExpectRows(t, ma, "SELECT id, s FROM t ORDER BY id", "1,old", "2,new", "3,c", "4,d", "5,e")

		// the aggregator reads a server file itself: a duplicate key is
		// an error (not LOCAL, no IGNORE) and no row of the file stays
		f := filepath.Join(t.TempDir(), "dup.csv")
		if err := os.WriteFile(f, []byte("6,f,6\n7,g,7\n3,dup,3\n8,h,8\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		testutil.ExpectError(t, ma, 1062, "23000", fmt.Sprintf("LOAD DATA INFILE '%s' INTO TABLE t FIELDS TERMINATED BY ','", f))
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t", "5")
		testutil.Exec(t, ma, fmt.Sprintf("LOAD DATA INFILE '%s' IGNORE INTO TABLE t FIELDS TERMINATED BY ','", f))
		testutil.ExpectRows(t, ma, "SELECT id, s FROM t WHERE id >= 3 ORDER BY id", "3,c", "4,d", "5,e", "6,f", "7,g", "8,h")
	})

	t.Run("AUTO_INCREMENT, column lists and SET", func(t *testing.T) {
		res, err := load(ma, "10\n20\n30\n", "INTO TABLE ai (@x) SET v = @x + 1")
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := res.LastInsertId(); id == 0 {
			t.Errorf("LOAD DATA into an AUTO_INCREMENT table reported no insert id")
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(DISTINCT id), SUM(v) FROM ai", "3,63")
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM ai WHERE id IS NULL OR id = 0", "0")
	})

	t.Run("in a transaction", func(t *testing.T) {
		testutil.Exec(t, ma, "DELETE FROM t")
		tx, err := ma.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE t FIELDS TERMINATED BY ','", testutil.LocalFile(t, "1,a,1\n2,b,2\n3,c,3\n"))); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 3 {
			t.Errorf("inside the transaction: %d rows (%v), want 3", n, err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t", "0")
	})

	t.Run("reference table", func(t *testing.T) {
		if _, err := load(ma, "1,\"x,y\"\n2,z\n", `INTO TABLE r FIELDS TERMINATED BY ',' ENCLOSED BY '"'`); err != nil {
			t.Fatal(err)
		}
		testutil.ExpectRows(t, ma, "SELECT * FROM r ORDER BY id", "1,x,y", "2,z")
	})
}

func TestDeleteAllThroughAggregators(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	root := c.MA.DB("")
	testutil.Exec(t, root, "CREATE DATABASE da PARTITIONS 4")
	ma := c.MA.DB("da")
	child := c.Children[0].DB("")
	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, ma, "CREATE REFERENCE TABLE r (id INT PRIMARY KEY, v INT)")
	var vals []string
	for i := 1; i <= 100; i++ {
		vals = append(vals, fmt.Sprintf("(%d, %d)", i, i))
	}
	fill := func(table string) { testutil.Exec(t, ma, "INSERT INTO "+table+" VALUES "+strings.Join(vals, ",")) }

	for _, table := range []string{"t", "r"} {
		fill(table)
		if n := affectedBy(t, ma, "DELETE FROM "+table); n != 100 {
			t.Errorf("DELETE FROM %s affected %d rows, want 100", table, n)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM "+table, "0")
		// no current database, on a child aggregator
		fill(table)
		if n := affectedBy(t, child, "DELETE FROM da."+table); n != 100 {
			t.Errorf("DELETE FROM da.%s affected %d rows, want 100", table, n)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM "+table, "0")
		fill(table)
		testutil.Exec(t, root, "TRUNCATE TABLE da."+table)
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM "+table, "0")
	}

	// in a transaction, undone by ROLLBACK
	fill("t")
	tx, err := ma.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("DELETE FROM t"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t", "100")

	// a LIMIT across partitions is refused, not run on each partition
	testutil.ExpectError(t, ma, 1235, "42000", "DELETE FROM t LIMIT 10")
	testutil.ExpectError(t, ma, 1235, "42000", "DELETE FROM t ORDER BY v LIMIT 10")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t", "100")
	if n := affectedBy(t, ma, "DELETE FROM t WHERE id = 7 LIMIT 1"); n != 1 {
		t.Errorf("DELETE … WHERE id = 7 LIMIT 1 affected %d rows, want 1", n)
	}
	// reference tables are whole on every node: LIMIT is MySQL's
	fill("r")
	if n := affectedBy(t, ma, "DELETE FROM r ORDER BY id DESC LIMIT 10"); n != 10 {
		t.Errorf("DELETE FROM r ORDER BY id DESC LIMIT 10 affected %d rows, want 10", n)
	}
	testutil.ExpectRows(t, ma, "SELECT MAX(id) FROM r", "90")
}
