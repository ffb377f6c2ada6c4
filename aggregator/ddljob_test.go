package aggregator_test

import (
	"database/sql"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// Schema changes of sharded tables are durable jobs (issue 16, partial
// DDL): a change that one partition refuses is undone on the others, and
// one whose master aggregator dies in the middle is finished (or undone)
// by the next master, so a table never keeps partitions of different
// shapes.

var autoIncOption = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// partitionDefs reads the definition of table in every partition of db on
// the leaves (the leaf's own SHOW CREATE TABLE, its AUTO_INCREMENT counter
// left out), by partition database.
func partitionDefs(t *testing.T, c *testutil.Cluster, db, table string) (map[string]string, error) {
	t.Helper()
	out := map[string]string{}
	part := regexp.MustCompile("^" + regexp.QuoteMeta(db) + `_\d+$`)
	for _, l := range c.Leaves {
		ldb := l.DB("")
		dbs, err := testutil.RenderRows(ldb, "|", "SHOW DATABASES")
		if err != nil {
			return nil, err
		}
		for _, name := range dbs {
			if !part.MatchString(name) {
				continue
			}
			rows, err := testutil.RenderRows(ldb, "|", fmt.Sprintf("SHOW CREATE TABLE `%s`.`%s`", name, table))
			if err != nil {
				return nil, fmt.Errorf("%s on leaf %d: %w", name, l.Port, err)
			}
			out[name] = autoIncOption.ReplaceAllString(rows[0], "")
		}
	}
	return out, nil
}

// sameDefs reports "" when every partition has want (or, want "", the same
// definition), else what differs.
func sameDefs(defs map[string]string, want string) string {
	var names []string
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if want == "" {
			want = defs[n]
		}
		if defs[n] != want {
			return fmt.Sprintf("partition %s has\n%s\nwant\n%s", n, defs[n], want)
		}
	}
	return ""
}

func mustDefs(t *testing.T, c *testutil.Cluster, db, table string) map[string]string {
	t.Helper()
	defs, err := partitionDefs(t, c, db, table)
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

func anyDef(defs map[string]string) string {
	for _, d := range defs {
		return d
	}
	return ""
}

// TestAlterRefusedByOnePartition: an ALTER that only one partition's rows
// refuse (a UNIQUE key over duplicates that all hash to one partition) is
// refused whole, as MySQL refuses it: the leaf's error reaches the
// client and the table is unchanged on every partition, its added column
// included (the engine applies an ALTER's clauses one at a time, so the
// refusing partition itself had taken the column), a renamed column with
// its values. A DROP COLUMN only goes forward: it is tried on an empty
// copy first, and may not come with changes rows can refuse.
func TestAlterRefusedByOnePartition(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE dr PARTITIONS 4")
	db := c.MA.DB("dr")
	testutil.Exec(t, db, "CREATE TABLE t (k INT, v INT, w VARCHAR(20), SHARD KEY (k), KEY (v))")
	var rows []string
	for i := 1; i <= 20; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d, 'w%d')", i, i*10, i))
	}
	testutil.Exec(t, db, "INSERT INTO t VALUES "+strings.Join(rows, ", ")+", (3, 30, 'again')") // one duplicate (k, v)
	before := mustDefs(t, c, "dr", "t")
	if msg := sameDefs(before, ""); msg != "" || len(before) != 4 {
		t.Fatalf("before the ALTER (%d partitions): %s", len(before), msg)
	}
	unchanged := func(after string) {
		t.Helper()
		if msg := sameDefs(mustDefs(t, c, "dr", "t"), anyDef(before)); msg != "" {
			t.Fatalf("after %s: %s", after, msg)
		}
		testutil.ExpectRows(t, db, "SELECT COUNT(*), SUM(v) FROM t", "21,2130")
		testutil.ExpectRows(t, db, "SELECT * FROM t WHERE k = 5", "5,50,w5")
		testutil.ExpectRows(t, db, "SELECT w FROM t WHERE k = 3 ORDER BY w", "again", "w3")
	}

	for _, q := range []string{
		"ALTER TABLE t ADD COLUMN c INT DEFAULT 7, ADD UNIQUE KEY u (k, v)",
		"ALTER TABLE t CHANGE COLUMN w ww VARCHAR(30), DROP INDEX v, ADD COLUMN c INT DEFAULT 7 FIRST, ADD UNIQUE KEY u (k, v)",
		"CREATE UNIQUE INDEX u ON t (k, v)",
	} {
		_, err := db.Exec(q)
		if me := testutil.MySQLError(err); me == nil || me.Number != 1062 {
			t.Fatalf("%s: %v, want the leaf's error 1062", q, err)
		}
		unchanged(q)
	}
	jobs := testutil.Rows(t, db, "SHOW DDL JOBS")
	if len(jobs) == 0 || !strings.Contains(jobs[0], ",dr,t,alter,rolled back,") || !strings.Contains(jobs[0], "Duplicate entry") {
		t.Errorf("SHOW DDL JOBS after a refused ALTER: %q", jobs)
	}
	testutil.Exec(t, db, "INSERT INTO t VALUES (21, 210, 'w21')")
	testutil.Exec(t, db, "DELETE FROM t WHERE k = 21")

	// a change that drops a column only goes forward
	_, err := db.Exec("ALTER TABLE t DROP COLUMN w, DROP COLUMN nope")
	if me := testutil.MySQLError(err); me == nil {
		t.Fatalf("dropping a column that is not there: %v, want an error", err)
	}
	unchanged("DROP COLUMN nope")
	_, err = db.Exec("ALTER TABLE t DROP COLUMN w, ADD UNIQUE KEY u (k, v)")
	if me := testutil.MySQLError(err); me == nil || me.Number != 1235 {
		t.Fatalf("DROP COLUMN with a unique key: %v, want 1235", err)
	}
	unchanged("DROP COLUMN with ADD UNIQUE")

	// without the duplicate the same ALTER goes through everywhere
	testutil.Exec(t, db, "DELETE FROM t WHERE k = 3")
	testutil.Exec(t, db, "INSERT INTO t VALUES (3, 30, 'w3')")
	testutil.Exec(t, db, "ALTER TABLE t ADD COLUMN c INT DEFAULT 7, ADD UNIQUE KEY u (k, v)")
	after := mustDefs(t, c, "dr", "t")
	if msg := sameDefs(after, ""); msg != "" || !strings.Contains(anyDef(after), "UNIQUE KEY `u`") {
		t.Fatalf("after the ALTER: %s\n%s", msg, anyDef(after))
	}
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE k = 3", "3,30,w3,7")
	if _, err := db.Exec("INSERT INTO t VALUES (3, 30, 'x', 1)"); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1062 {
		t.Errorf("a duplicate after the unique key was added: %v, want 1062", err)
	}
	testutil.Exec(t, db, "ALTER TABLE t DROP COLUMN w")
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE k = 3", "3,30,7")
	if msg := sameDefs(mustDefs(t, c, "dr", "t"), ""); msg != "" {
		t.Error(msg)
	}
}

// alterCrash runs an ALTER through an aggregator that dies at its third
// partition (failpoint ddl-partition-done@3): the rest of the table's 8
// partitions never hear of it from that master.
func alterCrash(t *testing.T, via *testutil.Node, db, q string) {
	t.Helper()
	if _, err := via.DB(db).Exec(q); err == nil {
		t.Fatalf("%s through an aggregator that dies in the middle succeeded", q)
	}
	if !via.WaitExit(15 * time.Second) {
		t.Fatal("the aggregator did not stop at the failpoint")
	}
}

// waitConsistent waits until the cluster has no unfinished schema change
// (SHOW DDL JOBS through agg) and every partition of db.table has the
// same definition, which it returns.
func waitConsistent(t *testing.T, c *testutil.Cluster, agg *sql.DB, db, table string, timeout time.Duration) string {
	t.Helper()
	var def string
	eventually(t, timeout, func() string {
		defs, err := partitionDefs(t, c, db, table)
		if err != nil {
			return err.Error()
		}
		if msg := sameDefs(defs, ""); msg != "" {
			return "partitions disagree: " + msg
		}
		def = anyDef(defs)
		jobs, err := testutil.RenderRows(agg, "|", "SHOW DDL JOBS")
		if err != nil {
			return "SHOW DDL JOBS: " + err.Error()
		}
		for _, j := range jobs {
			if f := strings.Split(j, "|"); len(f) > 4 && (f[4] == "running" || f[4] == "rolling back") {
				return "unfinished job: " + j
			}
		}
		return ""
	})
	return def
}

// TestAlterMasterCrashMidway: the master aggregator dies after three of
// eight partitions took an ALTER. Restarted, it finds the unfinished job
// and finishes it: every partition and the aggregators' copy end with the
// same columns, and the table takes reads, writes and the next ALTER.
func TestAlterMasterCrashMidway(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0) // the only aggregator stays master across its restart
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE dc PARTITIONS 8")
	db := c.MA.DB("dc")
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	var rows []string
	for i := 1; i <= 40; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, i*10))
	}
	testutil.Exec(t, db, "INSERT INTO t VALUES "+strings.Join(rows, ", "))

	c.MA.Stop()
	c.MA.Env = []string{"CANOPY_FAILPOINT=ddl-partition-done@3"}
	c.MA.Start()
	alterCrash(t, c.MA, "dc", "ALTER TABLE t ADD COLUMN c INT DEFAULT 7")
	c.MA.Env = nil
	c.MA.Start()

	db = c.MA.DB("dc")
	def := waitConsistent(t, c, db, "dc", "t", 20*time.Second)
	checkAltered(t, db, def, "t", 40)
}

// TestAlterMasterCrashRollsBack: the master dies in the middle of an
// ALTER that a partition it had not reached refuses (a UNIQUE key over
// its duplicates). Restarted, it goes on with the job, meets the refusal
// and rolls the change back on every partition that had made it.
func TestAlterMasterCrashRollsBack(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE db8 PARTITIONS 8")
	db := c.MA.DB("db8")
	testutil.Exec(t, db, "CREATE TABLE t (k INT, v INT, SHARD KEY (k))")
	var rows []string
	for i := 1; i <= 40; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, i*10))
	}
	// a duplicate in a partition other than the first, which the change
	// runs on alone before the others
	key := sharding.NewKey([]gmssql.Type{types.Int32})
	dup := 0
	for i := 1; dup == 0; i++ {
		if p, _ := key.Partition([]interface{}{i}, 8); p != 0 {
			dup = i
		}
	}
	rows = append(rows, fmt.Sprintf("(%d, %d)", dup, dup*10))
	testutil.Exec(t, db, "INSERT INTO t VALUES "+strings.Join(rows, ", "))
	before := anyDef(mustDefs(t, c, "db8", "t"))

	c.MA.Stop()
	c.MA.Env = []string{"CANOPY_FAILPOINT=ddl-partition-done@2"}
	c.MA.Start()
	alterCrash(t, c.MA, "db8", "ALTER TABLE t ADD COLUMN c INT DEFAULT 7, ADD UNIQUE KEY u (k, v)")
	c.MA.Env = nil
	c.MA.Start()
	db = c.MA.DB("db8")
	if def := waitConsistent(t, c, db, "db8", "t", 20*time.Second); def != before {
		t.Fatalf("after the interrupted ALTER was taken up, the partitions have\n%s\nwant the definition before\n%s", def, before)
	}
	jobs := testutil.Rows(t, db, "SHOW DDL JOBS")
	if len(jobs) == 0 || !strings.Contains(jobs[0], ",db8,t,alter,rolled back,") || !strings.Contains(jobs[0], "Duplicate entry") {
		t.Errorf("SHOW DDL JOBS: %q, want the ALTER rolled back for the duplicate", jobs)
	}
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE k = 5", "5,50")
	testutil.ExpectRows(t, db, "SELECT COUNT(*), SUM(v) FROM t", fmt.Sprintf("41,%d", 8200+dup*10))
	testutil.Exec(t, db, "INSERT INTO t VALUES (100, 1)")
}

// checkAltered checks a table of 40 rows (id, v = 10·id) after an
// interrupted ADD COLUMN c INT DEFAULT 7 that was finished or undone
// (def: its partitions' definition): the aggregator plans with the same
// columns the partitions have.
func checkAltered(t *testing.T, db *sql.DB, def, table string, n int) {
	t.Helper()
	added := strings.Contains(def, "`c` int DEFAULT")
	t.Logf("after the interruption the column is there: %v", added)
	row := "5,50"
	if added {
		row = "5,50,7"
	}
	eventually(t, 10*time.Second, func() string {
		got, err := testutil.RenderRows(db, ",", "SELECT * FROM "+table+" WHERE id = 5")
		if err != nil || len(got) != 1 || got[0] != row {
			return fmt.Sprintf("SELECT * FROM %s WHERE id = 5: %q %v, want %s", table, got, err, row)
		}
		return ""
	})
	testutil.ExpectRows(t, db, "SELECT COUNT(*), SUM(v) FROM "+table, fmt.Sprintf("%d,%d", n, 10*n*(n+1)/2))
	if added {
		testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM "+table+" WHERE c = 7", fmt.Sprint(n))
		testutil.Exec(t, db, "INSERT INTO "+table+" VALUES (1000, 1, 2)")
	} else {
		testutil.Exec(t, db, "INSERT INTO "+table+" VALUES (1000, 1)")
	}
	testutil.Exec(t, db, "ALTER TABLE "+table+" ADD COLUMN d INT DEFAULT 9")
	testutil.ExpectRows(t, db, "SELECT d FROM "+table+" WHERE id = 1000", "9")
}

// TestAlterNewMasterFinishes: with three aggregators, the master dies in
// the middle of an ALTER's fan-out; the aggregators elect another, which
// finds the job in the metadata and finishes it.
func TestAlterNewMasterFinishes(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=ddl-partition-done@3"}, "--master-aggregator"))
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddAggregator(testutil.StartNode(t))
	c.AddAggregator(testutil.StartNode(t))
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE dn PARTITIONS 8")
	testutil.Exec(t, c.MA.DB("dn"), "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	var rows []string
	for i := 1; i <= 40; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, i*10))
	}
	testutil.Exec(t, c.MA.DB("dn"), "INSERT INTO t VALUES "+strings.Join(rows, ", "))

	alterCrash(t, c.MA, "dn", "ALTER TABLE t ADD COLUMN c INT DEFAULT 7")
	master := newMaster(t, c.Children)
	def := waitConsistent(t, c, master.DB(""), "dn", "t", 30*time.Second)
	checkAltered(t, master.DB("dn"), def, "t", 40)
}

// TestDDLJobsShowAndWait: a running schema change is listed by SHOW DDL
// JOBS (on every aggregator); another schema change of the same table
// waits for it and, when it does not finish in time, fails with an error
// that names it, while other tables' changes go on.
func TestDDLJobsShowAndWait(t *testing.T) {
	// the first ALTER's job stalls 10 s after its first partition
	c := testutil.NewCluster(t, testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=ddl-job-stall*1"}, "--master-aggregator"))
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddAggregator(testutil.StartNode(t))
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE dj PARTITIONS 4")
	db := c.MA.DB("dj")
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, db, "CREATE TABLE u (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30), (4, 40)")

	done := make(chan error, 1)
	go func() {
		_, err := db.Exec("ALTER TABLE t ADD COLUMN c INT DEFAULT 7")
		done <- err
	}()
	child := c.Children[0].DB("")
	eventually(t, 10*time.Second, func() string {
		rows, err := testutil.RenderRows(child, "|", "SHOW DDL JOBS")
		if err != nil {
			return "SHOW DDL JOBS: " + err.Error()
		}
		for _, r := range rows {
			// Job_ID|Database|Table|Kind|State|Progress|Statement|Error|Started|Finished
			f := strings.Split(r, "|")
			if len(f) == 10 && f[1] == "dj" && f[2] == "t" && f[3] == "alter" && f[4] == "running" && strings.Contains(f[6], "ADD COLUMN c") {
				return ""
			}
		}
		return fmt.Sprintf("no running job of dj.t in SHOW DDL JOBS: %q", rows)
	})
	start := time.Now()
	_, err := c.Children[0].DB("dj").Exec("ALTER TABLE t ADD COLUMN d INT")
	if me := testutil.MySQLError(err); me == nil || me.Number != 1105 || !strings.Contains(me.Message, "unfinished schema change") {
		t.Errorf("a second ALTER of the table while the first runs: %v, want 1105 naming the unfinished job", err)
	}
	t.Logf("the second ALTER failed after %s", time.Since(start).Round(time.Millisecond))
	testutil.Exec(t, db, "ALTER TABLE u ADD COLUMN c INT") // another table does not wait

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the stalled ALTER: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled ALTER did not return")
	}
	rows := testutil.Rows(t, db, "SHOW DDL JOBS")
	found := false
	for _, r := range rows {
		found = found || strings.Contains(r, ",dj,t,alter,done,4/4,")
	}
	if !found {
		t.Errorf("SHOW DDL JOBS after the ALTER: %q, want dj.t done 4/4", rows)
	}
	testutil.Exec(t, db, "ALTER TABLE t ADD COLUMN d INT DEFAULT 1")
	testutil.ExpectRows(t, db, "SELECT * FROM t WHERE id = 2", "2,20,7,1")
	if msg := sameDefs(mustDefs(t, c, "dj", "t"), ""); msg != "" {
		t.Error(msg)
	}
}

// TestInterruptedCreateDatabase: a master aggregator that dies after
// making a database's partitions and its own copy, before listing it in
// the metadata, leaves nothing behind once it is back: the job it
// recorded is rolled back, and the database can be created again.
func TestInterruptedCreateDatabase(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	c.MA.Stop()
	c.MA.Env = []string{"CANOPY_FAILPOINT=create-database-before-listing"}
	c.MA.Start()
	if _, err := c.MA.DB("").Exec("CREATE DATABASE cd PARTITIONS 4"); err == nil {
		t.Fatal("CREATE DATABASE through an aggregator that dies before listing it succeeded")
	}
	if !c.MA.WaitExit(10 * time.Second) {
		t.Fatal("the master aggregator did not stop at the failpoint")
	}
	c.MA.Env = nil
	c.MA.Start()
	eventually(t, 15*time.Second, func() string {
		for _, l := range c.Leaves {
			if rows, err := testutil.RenderRows(l.DB(""), "|", "SHOW DATABASES LIKE 'cd%'"); err != nil || len(rows) > 0 {
				return fmt.Sprintf("leaf %d still has %q %v", l.Port, rows, err)
			}
		}
		if rows, err := testutil.RenderRows(c.MA.DB(""), "|", "SHOW DATABASES LIKE 'cd%'"); err != nil || len(rows) > 0 {
			return fmt.Sprintf("the master aggregator still has %q %v", rows, err)
		}
		return ""
	})
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE cd PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("cd"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("cd"), "INSERT INTO t VALUES (1), (2), (3), (4), (5)")
	testutil.ExpectRows(t, c.MA.DB("cd"), "SELECT COUNT(*) FROM t", "5")
}
