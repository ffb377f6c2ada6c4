package aggregator_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// dumpTables are the tables of TestDumpRoundTrip: every way a table is
// distributed, and the column types a dump must carry through.
var dumpTables = []struct {
	name, ddl string
	order     string // ORDER BY of a full compare
	key       string // what identifies a row in its partition ("": spread rows)
}{
	{"keyed", "CREATE TABLE keyed (id INT, k INT, name VARCHAR(40), PRIMARY KEY (id, k), SHARD KEY (k), KEY ix_name (name))", "id, k", "id, k"},
	{"pk", "CREATE TABLE pk (id BIGINT PRIMARY KEY, d DECIMAL(20,6), dt DATETIME(6), j JSON, b VARBINARY(16), u VARCHAR(30), UNIQUE KEY uq (u, id), KEY ix_dt (dt))", "id", "id"},
	{"spread", "CREATE TABLE spread (x INT, note TEXT, KEY ix_x (x))", "x, note", ""},
	{"ref", "CREATE REFERENCE TABLE ref (id INT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(20))", "id", ""},
	{"auto", "CREATE TABLE auto (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT, KEY ix_v (v))", "id", "id"},
	{"ser", "CREATE TABLE ser (id SERIAL, v INT)", "id", "id"},
}

// TestDumpRoundTrip: mariadb-dump of a sharded database through an
// aggregator, loaded with mariadb into another cluster (as a new database,
// and with --databases as itself), comes back distributed the same way:
// the same SHOW CREATE TABLE, partition count, partition of every row and
// rows; AUTO_INCREMENT goes on above the loaded rows.
func TestDumpRoundTrip(t *testing.T) {
	dump, err := exec.LookPath("mariadb-dump")
	if err != nil {
		t.Skip("mariadb-dump is not installed (apt-get install mariadb-client; .ci/run installs it)")
	}
	client := requireMariaDB(t)
	c1 := testutil.StartCluster(t, 2, 0)
	c2 := testutil.StartCluster(t, 2, 0)

	src := c1.MA.DB("")
	testutil.Exec(t, src, "CREATE DATABASE src PARTITIONS 5")
	s := c1.MA.DB("src")
	for _, tb := range dumpTables {
		testutil.Exec(t, s, tb.ddl)
	}
	var keyed, pk, spread []string
	for i := 1; i <= 60; i++ {
		name := fmt.Sprintf("'n%d'", i)
		if i%7 == 0 {
			name = "NULL"
		}
		keyed = append(keyed, fmt.Sprintf("(%d, %d, %s)", i, i%9, name))
		pk = append(pk, fmt.Sprintf("(%d, %d.%06d, '2024-02-%02d 23:59:%02d.%06d', '{\"a\": [%d, \"x\", null], \"s\": \"é\"}', X'00ff%02x5c27', 'héllo ✓ 日本 %d')",
			i*1000003, -i*12345, i, 1+i%28, i%60, i*7, i, i, i))
		spread = append(spread, fmt.Sprintf("(%d, 'line\\n%d \\'q\\' \\\\ 😀')", i%13, i))
	}
	testutil.Exec(t, s, "INSERT INTO keyed VALUES "+strings.Join(keyed, ", "))
	testutil.Exec(t, s, "INSERT INTO pk VALUES "+strings.Join(pk, ", "))
	testutil.Exec(t, s, "INSERT INTO pk VALUES (0, NULL, NULL, NULL, NULL, NULL)")
	testutil.Exec(t, s, "INSERT INTO spread VALUES "+strings.Join(spread, ", ")+", (NULL, NULL)")
	testutil.Exec(t, s, "INSERT INTO ref (label) VALUES ('one'), ('two'), (NULL)")
	for i := 0; i < 3; i++ {
		testutil.Exec(t, s, "INSERT INTO auto (v) VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10)")
		testutil.Exec(t, s, "INSERT INTO ser (v) VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10)")
	}

	// information_schema and SHOW through the aggregator: no partitions
	testutil.ExpectRows(t, src, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'src%'", "src")
	testutil.ExpectRows(t, src, "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'src%'", "src")
	testutil.ExpectRows(t, src, "SHOW DATABASES LIKE 'src%'", "src")
	// SHOW CREATE of distributed objects: what replays them
	create := showCreates(t, s)
	for name, want := range map[string]string{
		"keyed": "  /*!90618 SHARD */ KEY (`k`)\n)",
		"pk":    "  UNIQUE KEY `uq` (`u`,`id`)\n)", // the primary key is the shard key: the default
		"ref":   "CREATE /*!90618 REFERENCE */ TABLE `ref`",
		"auto":  "AUTO_INCREMENT=31 ",
		"ser":   "  UNIQUE KEY `id` (`id`),\n  /*!90618 SHARD */ KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=31 ",
	} {
		if !strings.Contains(create[name], want) {
			t.Errorf("SHOW CREATE TABLE %s:\n%s\nlacks %q", name, create[name], want)
		}
	}
	if strings.Contains(create["spread"], "SHARD") || strings.Contains(create["pk"], "SHARD") {
		t.Errorf("SHOW CREATE TABLE shows a shard key that is the default:\n%s\n%s", create["spread"], create["pk"])
	}
	testutil.ExpectRows(t, src, "SHOW CREATE DATABASE src",
		"src,CREATE DATABASE `src` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin */ /*!90618 PARTITIONS 5 */")

	run := func(path string, n *testutil.Node, stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(path, append([]string{"-h127.0.0.1", fmt.Sprintf("-P%d", n.Port), "-uroot"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", path, args, err, stderr.String())
		}
		return out
	}
	plain := run(dump, c1.MA, nil, "src")
	withDB := run(dump, c1.MA, nil, "--databases", "src")

	// a new database on the other cluster: the test gives its partitions
	dst := c2.MA.DB("")
	testutil.Exec(t, dst, "CREATE DATABASE dst PARTITIONS 5")
	run(client, c2.MA, plain, "dst")
	// the dump's own CREATE DATABASE: its partition count comes along
	// (this cluster's default is 16)
	run(client, c2.MA, withDB)

	for _, db := range []string{"dst", "src"} {
		t.Run(db, func(t *testing.T) {
			d := c2.MA.DB(db)
			if got, want := partitionCount(t, dst, db), partitionCount(t, src, "src"); got != want {
				t.Errorf("SHOW PARTITIONS ON %s: %d partitions, want %d", db, got, want)
			}
			got := showCreates(t, d)
			for _, tb := range dumpTables {
				if got[tb.name] != create[tb.name] {
					t.Errorf("SHOW CREATE TABLE %s:\n%s\nwant\n%s", tb.name, got[tb.name], create[tb.name])
				}
				q := fmt.Sprintf("SELECT * FROM %s ORDER BY %s", tb.name, tb.order)
				want, err := testutil.RenderRows(s, "|", q)
				if err != nil {
					t.Fatal(err)
				}
				have, err := testutil.RenderRows(d, "|", q)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(have, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s rows:\n%s\nwant\n%s", tb.name, strings.Join(have, "\n"), strings.Join(want, "\n"))
				}
				if tb.key != "" {
					if got, want := placement(t, c2, db, tb.name, tb.key), placement(t, c1, "src", tb.name, tb.key); got != want {
						t.Errorf("%s: rows in partitions\n%s\nwant\n%s", tb.name, got, want)
					}
				}
			}
			testutil.ExpectRows(t, d, "SELECT COUNT(*) FROM spread", "61")
			// AUTO_INCREMENT goes on above the loaded values
			testutil.Exec(t, d, "INSERT INTO auto (v) VALUES (99)")
			testutil.Exec(t, d, "INSERT INTO ser (v) VALUES (99)")
			testutil.Exec(t, d, "INSERT INTO ref (label) VALUES ('new')")
			testutil.ExpectRows(t, d, "SELECT id > 30 FROM auto WHERE v = 99", "1")
			testutil.ExpectRows(t, d, "SELECT id > 30 FROM ser WHERE v = 99", "1")
			testutil.ExpectRows(t, d, "SELECT id FROM ref WHERE label = 'new'", "4")
			// reference rows are on every leaf
			for _, l := range c2.Leaves {
				testutil.ExpectRows(t, l.DB(""), "SELECT COUNT(*) FROM "+db+".ref", "4")
			}
		})
	}
}

// showCreates is SHOW CREATE TABLE of each of dumpTables.
func showCreates(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range dumpTables {
		var name, text string
		if err := db.QueryRow("SHOW CREATE TABLE "+tb.name).Scan(&name, &text); err != nil {
			t.Fatalf("SHOW CREATE TABLE %s: %v", tb.name, err)
		}
		out[tb.name] = text
	}
	return out
}

func partitionCount(t *testing.T, db *sql.DB, database string) int {
	t.Helper()
	n := 0
	for _, r := range testutil.Rows(t, db, "SHOW PARTITIONS ON "+database) {
		if strings.Split(r, ",")[3] == "Master" {
			n++
		}
	}
	return n
}

// placement lists which partition holds each row of a table (by key), read
// from the partitions on the leaves.
func placement(t *testing.T, c *testutil.Cluster, database, table, key string) string {
	t.Helper()
	var out []string
	for ordinal, port := range partitionMasters(t, c.MA.DB(""), database) {
		leaf := leafByPort(c, port)
		if leaf == nil {
			t.Fatalf("partition %d of %s on port %s: not a leaf of the cluster", ordinal, database, port)
		}
		for _, r := range testutil.Rows(t, leaf.DB(""), fmt.Sprintf("SELECT %s FROM %s_%d.%s", key, database, ordinal, table)) {
			out = append(out, strconv.Itoa(ordinal)+":"+r)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// TestUniqueKeyShardKey: a table without primary key and SHARD KEY whose
// only keys are unique is sharded on its first unique key (a NOT NULL one
// first, as MySQL picks the clustered key), so CREATE TABLE t (id SERIAL, …)
// works; unique keys that cannot share a shard key still get 1744; and
// mariadb-slap's auto-generated tables and loads run through an aggregator.
func TestUniqueKeyShardKey(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	root := c.MA.DB("")
	testutil.Exec(t, root, "CREATE DATABASE uk PARTITIONS 4")
	db := c.MA.DB("uk")
	testutil.Exec(t, db, "CREATE TABLE s (id SERIAL, v INT)")
	testutil.Exec(t, db, "CREATE TABLE u (a INT UNIQUE, b INT NOT NULL, v INT, UNIQUE KEY ub (b, a))")
	testutil.Exec(t, db, "CREATE TABLE nn (a INT, b INT NOT NULL, UNIQUE KEY ua (a, b), UNIQUE KEY ub (b))")
	testutil.ExpectError(t, db, 1744, "HY000", "CREATE TABLE bad (a INT UNIQUE, b INT UNIQUE)")
	testutil.ExpectError(t, db, 1744, "HY000", "CREATE TABLE bad (a INT UNIQUE, SHARD KEY ())")
	for table, key := range map[string]string{"s": "`id`", "u": "`a`", "nn": "`b`"} {
		var name, text string
		if err := db.QueryRow("SHOW CREATE TABLE "+table).Scan(&name, &text); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "/*!90618 SHARD */ KEY ("+key+")") {
			t.Errorf("SHOW CREATE TABLE %s: %s\nwant shard key %s", table, text, key)
		}
	}
	testutil.ExpectRows(t, db, "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'uk' AND TABLE_NAME = 's' AND COLUMN_NAME = 'id'", "bigint unsigned")
	testutil.Exec(t, db, "INSERT INTO s (v) VALUES (1), (2), (3), (4), (5), (6), (7), (8)")
	testutil.ExpectError(t, db, 1062, "23000", "INSERT INTO s VALUES (3, 0)")
	// routed by the shard key: one partition
	if plan := strings.Join(testutil.Rows(t, db, "EXPLAIN SELECT v FROM s WHERE id = 3"), "\n"); !strings.Contains(plan, "partitions:single") {
		t.Errorf("EXPLAIN of a lookup by the unique key that shards s:\n%s", plan)
	}
	testutil.ExpectRows(t, db, "SELECT v FROM s WHERE id = 3", "3")

	slap, err := exec.LookPath("mariadb-slap")
	if err != nil {
		t.Skip("mariadb-slap is not installed (it comes with mariadb-client, which .ci/run installs)")
	}
	for _, load := range []string{"mixed", "write", "read", "update", "key"} {
		cmd := exec.Command(slap, "-h127.0.0.1", fmt.Sprintf("-P%d", c.MA.Port), "-uroot",
			"--auto-generate-sql", "--auto-generate-sql-add-autoincrement", "--auto-generate-sql-load-type="+load,
			"--concurrency=4", "--number-of-queries=200", "--iterations=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Average number of seconds") {
			t.Errorf("mariadb-slap --auto-generate-sql-load-type=%s: %v\n%s", load, err, out)
		}
	}
	// mariadb-slap dropped its database
	testutil.ExpectRows(t, root, "SHOW DATABASES LIKE 'mysqlslap'")
}
