package aggregator_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// These tests run real clusters: every node is a canopy process on
// loopback, and the tests talk to them with go-sql-driver/mysql.

// column returns the values of one column of a result, by name.
func column(t *testing.T, db *sql.DB, q, name string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	idx := -1
	for i, c := range cols {
		if strings.EqualFold(c, name) {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("%s: no column %s in %v", q, name, cols)
	}
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		if vals[idx].Valid {
			out = append(out, vals[idx].String)
		} else {
			out = append(out, "NULL")
		}
	}
	return out
}

func columns(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	return strings.Join(cols, ",")
}

// eventually retries check until it returns "" or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func expectErrorContains(t *testing.T, db *sql.DB, q, want string) {
	t.Helper()
	_, err := db.Exec(q)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: got %v, want an error containing %q", q, err, want)
	}
}

func TestClusterFormation(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	ma := c.MA.DB("")

	t.Run("show leaves", func(t *testing.T) {
		if got, want := columns(t, ma, "SHOW LEAVES"), "Host,Port,Availability_Group,Pair_Host,Pair_Port,State,Opened_Connections,Average_Roundtrip_Latency_ms"; got != want {
			t.Errorf("SHOW LEAVES columns %s, want %s", got, want)
		}
		ports := column(t, ma, "SHOW LEAVES", "Port")
		if len(ports) != 2 || ports[0] != strconv.Itoa(c.Leaves[0].Port) || ports[1] != strconv.Itoa(c.Leaves[1].Port) {
			t.Errorf("SHOW LEAVES ports %v", ports)
		}
		if st := column(t, ma, "SHOW LEAVES", "State"); strings.Join(st, ",") != "online,online" {
			t.Errorf("leaf states %v", st)
		}
		// Latency comes from the SELECT 1 heartbeats.
		eventually(t, 5*time.Second, func() string {
			for _, l := range column(t, ma, "SHOW LEAVES", "Average_Roundtrip_Latency_ms") {
				if v, err := strconv.ParseFloat(l, 64); err != nil || v <= 0 || v > 1000 {
					return "leaf latency " + l
				}
			}
			return ""
		})
	})

	t.Run("add aggregator", func(t *testing.T) {
		child := testutil.StartNode(t)
		c.AddAggregator(child)
		if got, want := columns(t, ma, "SHOW AGGREGATORS"), "Host,Port,State,Opened_Connections,Average_Roundtrip_Latency_ms,Master_Aggregator"; got != want {
			t.Errorf("SHOW AGGREGATORS columns %s, want %s", got, want)
		}
		ports := column(t, ma, "SHOW AGGREGATORS", "Port")
		master := column(t, ma, "SHOW AGGREGATORS", "Master_Aggregator")
		if strings.Join(ports, ",") != fmt.Sprintf("%d,%d", c.MA.Port, child.Port) || strings.Join(master, ",") != "1,0" {
			t.Errorf("SHOW AGGREGATORS ports %v master %v", ports, master)
		}
		eventually(t, 5*time.Second, func() string {
			st := column(t, ma, "SHOW AGGREGATORS", "State")
			if strings.Join(st, ",") != "online,online" {
				return fmt.Sprintf("aggregator states %v", st)
			}
			return ""
		})
		// The child knows the cluster too.
		testutil.ExpectRows(t, child.DB(""), "SELECT PORT, MASTER_AGGREGATOR FROM information_schema.AGGREGATORS ORDER BY MASTER_AGGREGATOR DESC",
			fmt.Sprintf("%d,1", c.MA.Port), fmt.Sprintf("%d,0", child.Port))
		testutil.ExpectRows(t, child.DB(""), fmt.Sprintf("SELECT COUNT(*) FROM information_schema.LEAVES WHERE PORT IN (%d, %d)", c.Leaves[0].Port, c.Leaves[1].Port), "2")

		testutil.Exec(t, ma, fmt.Sprintf("REMOVE AGGREGATOR '127.0.0.1':%d", child.Port))
		if ports := column(t, ma, "SHOW AGGREGATORS", "Port"); len(ports) != 1 {
			t.Errorf("after REMOVE AGGREGATOR: %v", ports)
		}
		// A removed aggregator is a plain node again and can join anew.
		testutil.ExpectRows(t, child.DB(""), "CANOPY NODE STATUS", fmt.Sprintf(",,%d,%d,0", child.Port, child.InternalPort))
		c.AddAggregator(child)
		testutil.Exec(t, ma, fmt.Sprintf("REMOVE AGGREGATOR '127.0.0.1':%d", child.Port))
	})

	t.Run("errors", func(t *testing.T) {
		// Already a leaf of this cluster.
		expectErrorContains(t, ma, fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", c.Leaves[0].Port), "already in the cluster")
		// Nothing listens there.
		dead := testutil.FreePorts(t, 1)[0]
		expectErrorContains(t, ma, fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", dead), "reach")
		// A leaf of another cluster.
		other := testutil.StartCluster(t, 1, 0)
		expectErrorContains(t, ma, fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", other.Leaves[0].Port), "another cluster")
		expectErrorContains(t, ma, fmt.Sprintf("ADD AGGREGATOR root@'127.0.0.1':%d", other.MA.Port), "another cluster")
		// The master cannot be removed as a child.
		expectErrorContains(t, ma, fmt.Sprintf("REMOVE AGGREGATOR '127.0.0.1':%d", c.MA.Port), "master aggregator")
		expectErrorContains(t, ma, "REMOVE AGGREGATOR '127.0.0.1':1", "not part of the cluster")
		expectErrorContains(t, ma, fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d INTO GROUP 3", dead), "group")
		// Cluster statements on a leaf say where to run them.
		expectErrorContains(t, c.Leaves[0].DB(""), "SHOW LEAVES", "not an aggregator")
		expectErrorContains(t, c.Leaves[0].DB(""), "CREATE DATABASE x PARTITIONS 2", "not an aggregator")
	})

	t.Run("bootstrap aggregator", func(t *testing.T) {
		n := testutil.StartNode(t)
		db := n.DB("")
		testutil.Exec(t, db, fmt.Sprintf("BOOTSTRAP AGGREGATOR '127.0.0.1':%d", n.Port))
		eventually(t, 5*time.Second, func() string {
			m := column(t, db, "SHOW AGGREGATORS", "Master_Aggregator")
			if strings.Join(m, ",") != "1" {
				return fmt.Sprintf("after BOOTSTRAP AGGREGATOR: %v", m)
			}
			return ""
		})
		expectErrorContains(t, db, fmt.Sprintf("BOOTSTRAP AGGREGATOR '127.0.0.1':%d", n.Port), "already")
		// It runs a cluster: a leaf joins it.
		leaf := testutil.StartNode(t)
		testutil.Exec(t, db, fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", leaf.Port))
		testutil.Exec(t, db, "CREATE DATABASE b PARTITIONS 2")
		testutil.ExpectRows(t, leaf.DB(""), "SHOW DATABASES LIKE 'b\\_%'", "b_0", "b_1")
	})
}

// partitionMasters maps partition ordinal to the port of its master leaf,
// from SHOW PARTITIONS.
func partitionMasters(t *testing.T, db *sql.DB, database string) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, r := range testutil.Rows(t, db, "SHOW PARTITIONS ON "+database) {
		f := strings.Split(r, ",") // Ordinal,Host,Port,Role,Locked
		if f[3] != "Master" {
			continue
		}
		o, _ := strconv.Atoi(f[0])
		out[o] = f[2]
	}
	return out
}

func leafByPort(c *testutil.Cluster, port string) *testutil.Node {
	for _, l := range c.Leaves {
		if strconv.Itoa(l.Port) == port {
			return l
		}
	}
	return nil
}

func TestPartitionedDatabases(t *testing.T) {
	c := testutil.StartCluster(t, 4, 1)
	ma := c.MA.DB("")

	// Default: 8 partitions per leaf, spread evenly.
	testutil.Exec(t, ma, "CREATE DATABASE d1")
	masters := partitionMasters(t, ma, "d1")
	if len(masters) != 32 {
		t.Fatalf("CREATE DATABASE d1: %d partitions, want 32", len(masters))
	}
	perLeaf := map[string]int{}
	for _, port := range masters {
		perLeaf[port]++
	}
	for _, l := range c.Leaves {
		if n := perLeaf[strconv.Itoa(l.Port)]; n != 8 {
			t.Errorf("leaf %d holds %d partitions of d1, want 8", l.Port, n)
		}
		// The partitions are databases on the leaf.
		got := testutil.Rows(t, l.DB(""), "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'd1\\_%'")
		if got[0] != "8" {
			t.Errorf("leaf %d has %s partition databases of d1", l.Port, got[0])
		}
	}

	// Both spellings of the partition count.
	testutil.Exec(t, ma, "CREATE DATABASE d2 PARTITIONS=6")
	testutil.Exec(t, ma, "CREATE DATABASE d3 PARTITIONS 4")
	if n := len(partitionMasters(t, ma, "d2")); n != 6 {
		t.Errorf("d2: %d partitions", n)
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(*), COUNT(DISTINCT PORT) FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'd3' AND ROLE = 'Master'", "4,4")
	if got, want := columns(t, ma, "SHOW PARTITIONS ON d3"), "Ordinal,Host,Port,Role,Locked"; got != want {
		t.Errorf("SHOW PARTITIONS columns %s, want %s", got, want)
	}
	// TABLE_STATISTICS: each partition's rows, summing to the table's.
	testutil.Exec(t, ma, "CREATE TABLE d3.t (id INT PRIMARY KEY, v VARCHAR(20))")
	for i := 0; i < 10; i++ {
		testutil.Exec(t, ma, fmt.Sprintf("INSERT INTO d3.t VALUES (%d, 'x'), (%d, 'y'), (%d, 'z')", 3*i, 3*i+1, 3*i+2))
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(DISTINCT ORDINAL), SUM(`ROWS`), MIN(DATA_LENGTH) > 0, MIN(PARTITION_TYPE) FROM information_schema.TABLE_STATISTICS WHERE DATABASE_NAME = 'd3' AND TABLE_NAME = 't'",
		"4,30,1,Master")
	expectErrorContains(t, ma, "CREATE DATABASE d3", "database exists")
	testutil.Exec(t, ma, "CREATE DATABASE IF NOT EXISTS d3")
	expectErrorContains(t, ma, "SHOW PARTITIONS ON nope", "Unknown database")

	// The child aggregator sees them and uses them as databases.
	child := c.Children[0].DB("")
	c.WaitCaughtUp(c.Children[0], 5*time.Second)
	testutil.ExpectRows(t, child, "SHOW DATABASES LIKE 'd%'", "d1", "d2", "d3")

	// Cluster variables live in the metadata; a child forwards SET GLOBAL.
	testutil.Exec(t, child, "SET @@GLOBAL.default_partitions_per_leaf = 2")
	testutil.ExpectRows(t, ma, "SELECT @@default_partitions_per_leaf", "2")
	testutil.ExpectRows(t, child, "SHOW VARIABLES LIKE 'default_partitions_per_leaf'", "default_partitions_per_leaf,2")
	testutil.ExpectError(t, ma, 1231, "42000", "SET GLOBAL redundancy_level = 3")
	testutil.ExpectError(t, ma, 1231, "42000", "SET GLOBAL default_partitions_per_leaf = 0")
	testutil.Exec(t, ma, "CREATE DATABASE d4")
	if n := len(partitionMasters(t, ma, "d4")); n != 8 {
		t.Errorf("d4 with 2 partitions per leaf: %d partitions", n)
	}
	testutil.Exec(t, ma, "DROP DATABASE d4")

	// DROP DATABASE removes every partition.
	testutil.Exec(t, ma, "DROP DATABASE d1")
	for _, l := range c.Leaves {
		testutil.ExpectRows(t, l.DB(""), "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'd1%'", "0")
	}
	expectErrorContains(t, ma, "DROP DATABASE d1", "doesn't exist")
	testutil.Exec(t, ma, "DROP DATABASE IF EXISTS d1")
	c.WaitCaughtUp(c.Children[0], 5*time.Second)
	testutil.ExpectRows(t, child, "SHOW DATABASES LIKE 'd%'", "d2", "d3")
}

func TestShardedAndReferenceTables(t *testing.T) {
	c := testutil.StartCluster(t, 4, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE s PARTITIONS 8")
	ma := c.MA.DB("s")
	child := c.Children[0].DB("s")

	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), n INT, KEY (n))")
	testutil.Exec(t, ma, "CREATE TABLE kv (k VARCHAR(20), seq INT, val INT, PRIMARY KEY (k, seq), SHARD KEY (k))")
	testutil.Exec(t, ma, "CREATE TABLE spread (x INT, y INT)")
	testutil.Exec(t, ma, "CREATE REFERENCE TABLE r (k INT PRIMARY KEY, name VARCHAR(10))")

	t.Run("rows land on the partition of their shard key hash", func(t *testing.T) {
		var vals []string
		for i := 1; i <= 200; i++ {
			vals = append(vals, fmt.Sprintf("(%d, 'v%d', %d)", i, i, i%7))
		}
		r := testutil.Exec(t, ma, "INSERT INTO t VALUES "+strings.Join(vals, ","))
		if n, _ := r.RowsAffected(); n != 200 {
			t.Errorf("multi-row INSERT affected %d rows, want 200", n)
		}
		key := sharding.NewKey([]gmssql.Type{types.Int32})
		masters := partitionMasters(t, ma, "s")
		count := map[int]int{}
		for i := 1; i <= 200; i++ {
			p, err := key.Partition([]interface{}{i}, 8)
			if err != nil {
				t.Fatal(err)
			}
			count[p]++
			if i%20 != 0 {
				continue
			}
			leaf := leafByPort(c, masters[p]).DB("")
			testutil.ExpectRows(t, leaf, fmt.Sprintf("SELECT v FROM s_%d.t WHERE id = %d", p, i), fmt.Sprintf("v%d", i))
		}
		for p := 0; p < 8; p++ {
			leaf := leafByPort(c, masters[p]).DB("")
			testutil.ExpectRows(t, leaf, fmt.Sprintf("SELECT COUNT(*) FROM s_%d.t", p), strconv.Itoa(count[p]))
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(id), MIN(v), MAX(n) FROM t", "200,20100,v1,6")
		testutil.ExpectRows(t, child, "SELECT v FROM t WHERE id = 77", "v77")
	})

	t.Run("keyless tables spread rows", func(t *testing.T) {
		var vals []string
		for i := 0; i < 400; i++ {
			vals = append(vals, fmt.Sprintf("(%d, %d)", i, i%3))
		}
		testutil.Exec(t, ma, "INSERT INTO spread VALUES "+strings.Join(vals, ","))
		testutil.ExpectRows(t, ma, "SELECT y, COUNT(*) FROM spread GROUP BY y ORDER BY y", "0,134", "1,133", "2,133")
		masters := partitionMasters(t, ma, "s")
		for p := 0; p < 8; p++ {
			n := testutil.Rows(t, leafByPort(c, masters[p]).DB(""), fmt.Sprintf("SELECT COUNT(*) FROM s_%d.spread", p))[0]
			if v, _ := strconv.Atoi(n); v < 20 {
				t.Errorf("partition %d holds %s of 400 keyless rows", p, n)
			}
		}
	})

	t.Run("updates and deletes", func(t *testing.T) {
		testutil.Exec(t, ma, "INSERT INTO kv VALUES ('a',1,10),('a',2,20),('b',1,30),('c',1,40)")
		r := testutil.Exec(t, ma, "UPDATE kv SET val = val + 1 WHERE k = 'a'")
		if n, _ := r.RowsAffected(); n != 2 {
			t.Errorf("routed UPDATE affected %d rows, want 2", n)
		}
		r = testutil.Exec(t, child, "UPDATE kv SET val = val * 2 WHERE val > 20")
		if n, _ := r.RowsAffected(); n != 3 {
			t.Errorf("broadcast UPDATE affected %d rows, want 3", n)
		}
		testutil.ExpectRows(t, ma, "SELECT k, seq, val FROM kv ORDER BY k, seq", "a,1,11", "a,2,42", "b,1,60", "c,1,80")
		testutil.ExpectError(t, ma, 1235, "42000", "UPDATE kv SET k = 'z' WHERE seq = 1")
		r = testutil.Exec(t, child, "DELETE FROM kv WHERE k = 'b'")
		if n, _ := r.RowsAffected(); n != 1 {
			t.Errorf("routed DELETE affected %d rows", n)
		}
		testutil.Exec(t, ma, "DELETE FROM kv WHERE val < 50")
		testutil.ExpectRows(t, child, "SELECT k FROM kv", "c")
		testutil.ExpectError(t, ma, 1062, "23000", "INSERT INTO t VALUES (5, 'dup', 0)")
		testutil.ExpectRows(t, ma, "SELECT v FROM t WHERE id = 5", "v5")
	})

	t.Run("unique keys must contain the shard key", func(t *testing.T) {
		testutil.ExpectError(t, ma, 1744, "HY000", "CREATE TABLE bad (a INT, b INT, PRIMARY KEY (a), UNIQUE KEY (b))")
		testutil.ExpectError(t, ma, 1744, "HY000", "CREATE TABLE bad (a INT, b INT, PRIMARY KEY (a, b), SHARD KEY (a), UNIQUE KEY ub (b))")
		testutil.Exec(t, ma, "CREATE TABLE good (a INT, b INT, PRIMARY KEY (a, b), SHARD KEY (a), UNIQUE KEY (a))")
		testutil.ExpectError(t, ma, 1146, "42S02", "SELECT * FROM bad")
	})

	t.Run("reference tables are everywhere", func(t *testing.T) {
		testutil.Exec(t, ma, "INSERT INTO r VALUES (1,'one'),(2,'two')")
		testutil.Exec(t, child, "INSERT INTO r VALUES (3,'three')") // forwarded to the master
		testutil.Exec(t, child, "UPDATE r SET name = 'TWO' WHERE k = 2")
		for _, n := range append(append([]*testutil.Node{c.MA}, c.Children...), c.Leaves...) {
			testutil.ExpectRows(t, n.DB(""), "SELECT k, name FROM s.r ORDER BY k", "1,one", "2,TWO", "3,three")
		}
		// A leaf's copy is read-only: it changes only through the master.
		_, err := c.Leaves[0].DB("s").Exec("INSERT INTO r VALUES (9, 'nine')")
		if me := testutil.MySQLError(err); me == nil || me.Number != 1290 {
			t.Errorf("write to a leaf's reference copy: %v, want error 1290", err)
		}
		// Joins of sharded and reference tables.
		testutil.ExpectRows(t, child, "SELECT t.id, r.name FROM t JOIN r ON t.id = r.k ORDER BY t.id", "1,one", "2,TWO", "3,three")
	})

	t.Run("auto increment is unique across aggregators", func(t *testing.T) {
		testutil.Exec(t, ma, "CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, who VARCHAR(5))")
		seen := map[int64]string{}
		for i := 0; i < 20; i++ {
			for who, db := range map[string]*sql.DB{"ma": ma, "child": child} {
				r := testutil.Exec(t, db, "INSERT INTO ai (who) VALUES (?)", who)
				id, err := r.LastInsertId()
				if err != nil || id <= 0 {
					t.Fatalf("LAST_INSERT_ID %d, %v", id, err)
				}
				if prev, dup := seen[id]; dup {
					t.Fatalf("id %d given to %s and %s", id, prev, who)
				}
				seen[id] = who
			}
		}
		testutil.Exec(t, child, "INSERT INTO ai (who) VALUES ('m1'),('m2'),('m3')")
		testutil.ExpectRows(t, ma, "SELECT COUNT(*), COUNT(DISTINCT id) FROM ai", "43,43")
		testutil.Exec(t, ma, "INSERT INTO ai VALUES (99999999999, 'given')")
		testutil.ExpectRows(t, child, "SELECT who FROM ai WHERE id = 99999999999", "given")
	})

	t.Run("ddl from a child aggregator", func(t *testing.T) {
		testutil.Exec(t, child, "CREATE TABLE fromchild (a INT PRIMARY KEY, b INT)")
		testutil.Exec(t, child, "INSERT INTO fromchild VALUES (1, 2), (3, 4)")
		testutil.Exec(t, child, "ALTER TABLE fromchild ADD COLUMN c INT DEFAULT 9")
		testutil.ExpectRows(t, ma, "SELECT a, b, c FROM fromchild ORDER BY a", "1,2,9", "3,4,9")
		testutil.Exec(t, child, "CREATE INDEX ib ON fromchild (b)")
		testutil.ExpectRows(t, child, "SELECT a FROM fromchild WHERE b = 4", "3")
		testutil.Exec(t, child, "TRUNCATE TABLE fromchild")
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM fromchild", "0")
		testutil.Exec(t, child, "DROP TABLE fromchild")
		testutil.ExpectError(t, ma, 1146, "42S02", "SELECT * FROM fromchild")
		for _, l := range c.Leaves {
			testutil.ExpectRows(t, l.DB(""), "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'fromchild'", "0")
		}
	})

	t.Run("transactions", func(t *testing.T) {
		tx, err := child.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := 1000; i < 1010; i++ {
			if _, err := tx.Exec("INSERT INTO t VALUES (?, 'tx', 0)", i); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := tx.QueryRow("SELECT COUNT(*) FROM t WHERE v = 'tx'").Scan(&n); err != nil || n != 10 {
			t.Errorf("inside the transaction: %d rows, %v", n, err)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t WHERE v = 'tx'", "0")
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t WHERE v = 'tx'", "0")
		tx, _ = child.Begin()
		tx.Exec("INSERT INTO t VALUES (2000, 'tx2', 0), (2001, 'tx2', 0), (2002, 'tx2', 0)")
		tx.Exec("UPDATE t SET n = 5 WHERE v = 'tx2'")
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(n) FROM t WHERE v = 'tx2'", "3,15")
	})

	// Point statements are planned once per shape: text queries with their
	// literals taken out, and prepared statements.
	for _, mode := range []string{"text", "prepared"} {
		t.Run("routed by template: "+mode, func(t *testing.T) {
			dbs := []*sql.DB{ma, child}
			if mode == "prepared" {
				dbs = []*sql.DB{c.MA.PreparingDB("s"), c.Children[0].PreparingDB("s")}
			}
			tbl := "pt_" + mode
			testutil.Exec(t, ma, "CREATE TABLE "+tbl+" (id INT PRIMARY KEY, v VARCHAR(20), n INT)")
			for i := 1; i <= 60; i++ {
				testutil.Exec(t, dbs[0], "INSERT INTO "+tbl+" VALUES (?, ?, ?)", i, fmt.Sprintf("p%d", i), i)
			}
			runs := func() float64 {
				return c.MA.Metric("canopy_routed_templates_total") + c.Children[0].Metric("canopy_routed_templates_total")
			}
			before := runs()
			routed := 0
			for _, db := range dbs {
				for i := 1; i <= 60; i += 7 {
					expectArgs(t, db, "SELECT v, n FROM "+tbl+" WHERE id = ?", []any{i}, fmt.Sprintf("p%d,%d", i, i))
					routed++
				}
				expectArgs(t, db, "SELECT v FROM "+tbl+" WHERE id = ?", []any{"5"}, "p5") // an integer string hashes as the integer
				routed++
				expectArgs(t, db, "SELECT v FROM "+tbl+" WHERE id = ?", []any{nil})
				expectArgs(t, db, "SELECT COUNT(*) FROM "+tbl+" WHERE id = ? OR id = ?", []any{1, 2}, "2")
			}
			testutil.Exec(t, dbs[1], "UPDATE "+tbl+" SET n = n + ? WHERE id = ?", 100, 9)
			testutil.Exec(t, dbs[0], "DELETE FROM "+tbl+" WHERE id = ?", 10)
			routed += 2
			key := sharding.NewKey([]gmssql.Type{types.Int32})
			masters := partitionMasters(t, ma, "s")
			for id, want := range map[int][]string{9: {"109"}, 10: nil} {
				p, _ := key.Partition([]interface{}{id}, 8)
				testutil.ExpectRows(t, leafByPort(c, masters[p]).DB(""), fmt.Sprintf("SELECT n FROM s_%d.%s WHERE id = %d", p, tbl, id), want...)
			}
			// inside a transaction the template runs on the transaction's connection
			tx, err := dbs[0].Begin()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("UPDATE "+tbl+" SET v = ? WHERE id = ?", "gone", 11); err != nil {
				t.Fatal(err)
			}
			var v string
			if err := tx.QueryRow("SELECT v FROM "+tbl+" WHERE id = ?", 11).Scan(&v); err != nil || v != "gone" {
				t.Fatalf("read own write: %q %v", v, err)
			}
			tx.Rollback()
			expectArgs(t, dbs[0], "SELECT v FROM "+tbl+" WHERE id = ?", []any{11}, "p11")
			routed += 3
			// a schema change plans the statement again
			testutil.Exec(t, ma, "ALTER TABLE "+tbl+" ADD COLUMN w INT DEFAULT 42")
			expectArgs(t, dbs[1], "SELECT * FROM "+tbl+" WHERE id = ?", []any{12}, "12,p12,12,42")
			routed++
			if got := int(runs() - before); got != routed {
				t.Errorf("%d statements routed by template, want %d", got, routed)
			}
		})
	}

	t.Run("explain", func(t *testing.T) {
		routed := strings.Join(testutil.Rows(t, ma, "EXPLAIN SELECT * FROM t WHERE id = 42"), "\n")
		key := sharding.NewKey([]gmssql.Type{types.Int32})
		p, _ := key.Partition([]interface{}{42}, 8)
		if !strings.Contains(routed, fmt.Sprintf("single partition:%d", p)) || !strings.Contains(routed, fmt.Sprintf("s_%d.t", p)) {
			t.Errorf("EXPLAIN of a shard key lookup:\n%s", routed)
		}
		gather := strings.Join(testutil.Rows(t, child, "EXPLAIN SELECT n, COUNT(*) FROM t WHERE n > 3 GROUP BY n"), "\n")
		if !strings.Contains(gather, "Gather partitions:all") || !strings.Contains(gather, "WHERE (`n` > 3)") || !strings.Contains(gather, "GroupBy") {
			t.Errorf("EXPLAIN of an aggregate:\n%s", gather)
		}
		sub := strings.Join(testutil.Rows(t, ma, "EXPLAIN SELECT id FROM t WHERE n IN (SELECT id FROM t WHERE v = 'v3')"), "\n")
		if strings.Count(sub, "Leaf SQL:") != 2 || !strings.Contains(sub, "WHERE (`v` = 'v3')") {
			t.Errorf("EXPLAIN with a subquery shows each sharded scan:\n%s", sub)
		}
	})
}

func TestMetadataSurvivesRestarts(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE m PARTITIONS 4")
	ma := c.MA.DB("m")
	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, ma, "CREATE REFERENCE TABLE r (id INT PRIMARY KEY, name TEXT)")
	testutil.Exec(t, ma, "INSERT INTO t VALUES (1,10),(2,20),(3,30),(4,40),(5,50)")
	testutil.Exec(t, ma, "INSERT INTO r VALUES (1,'a'),(2,'b')")
	testutil.Exec(t, ma, "SET @@GLOBAL.default_partitions_per_leaf = 3")
	before := testutil.Rows(t, ma, "SHOW PARTITIONS ON m")
	c.WaitCaughtUp(c.Children[0], 5*time.Second)

	check := func(t *testing.T, n *testutil.Node) {
		t.Helper()
		db := n.DB("m")
		testutil.ExpectRows(t, db, "SELECT COUNT(*), SUM(v) FROM t", "5,150")
		testutil.ExpectRows(t, db, "SELECT t.id, r.name FROM t JOIN r USING (id) ORDER BY id", "1,a", "2,b")
		testutil.ExpectRows(t, db, "SELECT v FROM t WHERE id = 4", "40")
		if got := testutil.Rows(t, db, "SHOW PARTITIONS ON m"); strings.Join(got, ";") != strings.Join(before, ";") {
			t.Errorf("partitions after restart %v, before %v", got, before)
		}
		testutil.ExpectRows(t, db, "SHOW VARIABLES LIKE 'default_partitions_per_leaf'", "default_partitions_per_leaf,3")
	}

	// A child restarted while the master is down serves from its own copy.
	c.MA.Kill()
	c.Children[0].Kill()
	c.Children[0].Start()
	check(t, c.Children[0])
	expectErrorContains(t, c.Children[0].DB("m"), "CREATE TABLE x (a INT PRIMARY KEY)", "master aggregator")

	// Everything killed and restarted.
	for _, l := range c.Leaves {
		l.Kill()
	}
	c.Children[0].Kill()
	for _, l := range c.Leaves {
		l.Start()
	}
	c.MA.Start()
	c.Children[0].Start()
	check(t, c.MA)
	check(t, c.Children[0])
	eventually(t, 10*time.Second, func() string {
		if st := column(t, c.MA.DB(""), "SHOW AGGREGATORS", "State"); strings.Join(st, ",") != "online,online" {
			return fmt.Sprintf("aggregators after restart: %v", st)
		}
		return ""
	})

	// The cluster still takes DDL and writes, and the child follows.
	ma = c.MA.DB("m")
	testutil.Exec(t, ma, "CREATE TABLE after (a INT PRIMARY KEY)")
	testutil.Exec(t, c.Children[0].DB("m"), "INSERT INTO after VALUES (1),(2),(3)")
	testutil.Exec(t, c.Children[0].DB("m"), "INSERT INTO r VALUES (3, 'c')")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM after", "3")
	testutil.ExpectRows(t, c.Leaves[1].DB("m"), "SELECT name FROM r WHERE id = 3", "c")
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE m2")
	if n := len(partitionMasters(t, ma, "m2")); n != 6 {
		t.Errorf("CREATE DATABASE with default_partitions_per_leaf = 3 on 2 leaves: %d partitions", n)
	}
}

// expectArgs runs a query with arguments (a prepared statement) and
// compares its rows.
func expectArgs(t *testing.T, db *sql.DB, q string, args []any, want ...string) {
	t.Helper()
	got := testutil.Rows(t, db, q, args...)
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("%s %v\n got: %q\nwant: %q", q, args, got, want)
	}
}

// TestLimitInsideTransaction: a query whose reader stops early (LIMIT
// without ORDER BY reads a few rows of many partitions' streams) must
// not close the transaction's leaf connections mid-result: that ended
// the transaction on the leaves and lost its writes.
func TestLimitInsideTransaction(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE lt PARTITIONS 4")
	db := c.MA.DB("lt")
	testutil.Exec(t, db, "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(50))")
	var vals []string
	for i := 1; i <= 4000; i++ {
		vals = append(vals, fmt.Sprintf("(%d, 'row %d')", i, i))
	}
	testutil.Exec(t, db, "INSERT INTO big VALUES "+strings.Join(vals, ","))

	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO big VALUES (5001, 'in txn'), (5002, 'in txn'), (5003, 'in txn')"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := 0; i < 3; i++ {
		var id int
		if err := conn.QueryRowContext(ctx, "SELECT id FROM big LIMIT 1").Scan(&id); err != nil {
			t.Fatalf("LIMIT 1 in the transaction: %v", err)
		}
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM big WHERE id > 5000").Scan(&n); err != nil || n != 3 {
		t.Fatalf("the transaction sees %d of its 3 rows (%v)", n, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatalf("COMMIT: %v", err)
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM big", "4003")
}
