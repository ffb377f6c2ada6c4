package aggregator_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// leafState is a leaf's State in SHOW LEAVES.
func leafState(t *testing.T, ma *sql.DB, port int) string {
	t.Helper()
	for _, r := range testutil.Rows(t, ma, "SHOW LEAVES") {
		f := strings.Split(r, ",") // Host,Port,Group,Pair_Host,Pair_Port,State,…
		if f[1] == strconv.Itoa(port) {
			return f[5]
		}
	}
	return "absent"
}

func waitLeafState(t *testing.T, ma *sql.DB, port int, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, timeout, func() string {
		if got := leafState(t, ma, port); got != want {
			return fmt.Sprintf("leaf %d is %s, want %s", port, got, want)
		}
		return ""
	})
	return time.Since(start)
}

// TestRedundancy1Walkthrough replays the seed's redundancy-1 ATTACH LEAF
// example: a dead leaf's partitions have no master (error 1777, NULL rows
// in SHOW PARTITIONS) while the others keep working; the restarted leaf is
// attached automatically, or waits detached for ATTACH LEAF when
// auto_attach is off.
func TestRedundancy1Walkthrough(t *testing.T) {
	c := testutil.StartCluster(t, 4, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE test PARTITIONS 8")
	testutil.Exec(t, ma, "CREATE TABLE test.x (id INT PRIMARY KEY)")
	var vals []string
	for i := 1; i <= 100; i++ {
		vals = append(vals, fmt.Sprintf("(%d)", i))
	}
	testutil.Exec(t, ma, "INSERT INTO test.x VALUES "+strings.Join(vals, ","))
	testutil.ExpectRows(t, ma, "SELECT MIN(id), MAX(id), COUNT(*) FROM test.x", "1,100,100")

	leaf4 := c.Leaves[3]
	masters := partitionMasters(t, ma, "test")
	var lost []int
	for o := 0; o < 8; o++ {
		if masters[o] == strconv.Itoa(leaf4.Port) {
			lost = append(lost, o)
		}
	}
	if len(lost) != 2 {
		t.Fatalf("leaf 4 masters %v, want 2 partitions", lost)
	}

	leaf4.Kill()
	took := waitLeafState(t, ma, leaf4.Port, "offline", 5*time.Second)
	t.Logf("killed leaf offline after %s", took)
	// the partition map follows the leaf's state within moments
	eventually(t, 5*time.Second, func() string {
		for _, r := range testutil.Rows(t, ma, "SHOW PARTITIONS ON test") {
			f := strings.Split(r, ",")
			o, _ := strconv.Atoi(f[0])
			isLost := o == lost[0] || o == lost[1]
			if isLost != (f[1] == "NULL") {
				return fmt.Sprintf("SHOW PARTITIONS row %s: lost partitions are %v", r, lost)
			}
		}
		return ""
	})
	testutil.ExpectError(t, ma, 1777, "HY000", "SELECT MIN(id), MAX(id), COUNT(*) FROM test.x")
	_, err := ma.Exec("SELECT COUNT(*) FROM test.x")
	if me := testutil.MySQLError(err); me == nil || me.Message != fmt.Sprintf("Partition test:%d has no master instance.", lost[0]) {
		t.Errorf("query over a lost partition: %v", err)
	}
	// the partitions that have a master still work
	key := sharding.NewKey([]gmssql.Type{types.Int32})
	for id := 1; id <= 100; id++ {
		p, _ := key.Partition([]interface{}{id}, 8)
		if p != lost[0] && p != lost[1] {
			testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT id FROM test.x WHERE id = %d", id), strconv.Itoa(id))
			testutil.Exec(t, ma, fmt.Sprintf("DELETE FROM test.x WHERE id = %d", id))
			testutil.Exec(t, ma, fmt.Sprintf("INSERT INTO test.x VALUES (%d)", id))
			break
		}
	}

	leaf4.Start()
	waitLeafState(t, ma, leaf4.Port, "online", 10*time.Second)
	testutil.ExpectRows(t, ma, "SELECT MIN(id), MAX(id), COUNT(*) FROM test.x", "1,100,100")
	status := testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON test")
	if len(status) != 2 || !strings.HasPrefix(status[0], fmt.Sprintf("ATTACH PARTITION,%d,127.0.0.1,%d,1,success,", lost[0], leaf4.Port)) {
		t.Errorf("SHOW REBALANCE STATUS ON test = %q", status)
	}

	// auto_attach off: the returning leaf waits detached
	testutil.Exec(t, ma, "SET GLOBAL auto_attach = Off")
	leaf4.Kill()
	waitLeafState(t, ma, leaf4.Port, "offline", 5*time.Second)
	leaf4.Start()
	waitLeafState(t, ma, leaf4.Port, "detached", 10*time.Second)
	testutil.ExpectError(t, ma, 1777, "HY000", "SELECT COUNT(*) FROM test.x")
	testutil.Exec(t, ma, fmt.Sprintf("ATTACH LEAF '127.0.0.1':%d", leaf4.Port))
	if got := leafState(t, ma, leaf4.Port); got != "online" {
		t.Fatalf("after ATTACH LEAF the leaf is %s", got)
	}
	testutil.ExpectRows(t, ma, "SELECT MIN(id), MAX(id), COUNT(*) FROM test.x", "1,100,100")

	// DETACH LEAF takes it out of service on purpose; ATTACH LEAF ALL brings it back
	testutil.Exec(t, ma, fmt.Sprintf("DETACH LEAF '127.0.0.1':%d", leaf4.Port))
	if got := leafState(t, ma, leaf4.Port); got != "detached" {
		t.Fatalf("after DETACH LEAF the leaf is %s", got)
	}
	testutil.ExpectError(t, ma, 1777, "HY000", "SELECT COUNT(*) FROM test.x")
	testutil.Exec(t, ma, "ATTACH LEAF ALL")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM test.x", "100")
}

// partitionCopies maps ordinal → "master port/replica ports" from SHOW
// PARTITIONS.
func partitionCopies(t *testing.T, db *sql.DB, database string) map[int][2]string {
	t.Helper()
	out := map[int][2]string{}
	for _, r := range testutil.Rows(t, db, "SHOW PARTITIONS ON "+database) {
		f := strings.Split(r, ",")
		o, _ := strconv.Atoi(f[0])
		cur := out[o]
		switch f[3] {
		case "Master":
			cur[0] = f[2]
		case "Slave":
			cur[1] += f[2]
		}
		out[o] = cur
	}
	return out
}

// startPairedCluster starts a redundancy-2 cluster: a master aggregator,
// four leaves in two pairs and a child aggregator. A failure timeout of
// 0 keeps the default.
func startPairedCluster(t *testing.T, failureTimeoutMs int) *testutil.Cluster {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	if failureTimeoutMs > 0 {
		testutil.Exec(t, ma, fmt.Sprintf("SET GLOBAL leaf_failure_timeout_ms = %d", failureTimeoutMs))
	}
	for i := 0; i < 4; i++ {
		c.AddLeaf(testutil.StartNode(t), 0)
	}
	c.AddAggregator(testutil.StartNode(t))
	return c
}

// TestRedundancy2Failover runs a steady insert load and bank transfers
// through two aggregators on a redundancy-2 cluster with synchronous
// replication, kills a leaf with SIGKILL, lets it return (auto-attach
// drops its stale masters and re-provisions them as replicas), then kills
// its pair: no acknowledged write is ever lost and the bank total never
// changes.
func TestRedundancy2Failover(t *testing.T) {
	c := startPairedCluster(t, 3000)
	ma := c.MA.DB("")
	leaves := testutil.Rows(t, ma, "SHOW LEAVES")
	for i, want := range []string{"1", "2", "1", "2"} {
		f := strings.Split(leaves[i], ",")
		if f[2] != want || f[4] == "NULL" {
			t.Fatalf("SHOW LEAVES row %d = %s: want group %s with a pair", i, leaves[i], want)
		}
	}
	testutil.Exec(t, ma, "CREATE DATABASE ha WITH SYNC REPLICATION PARTITIONS 8")
	copies := partitionCopies(t, ma, "ha")
	for o := 0; o < 8; o++ {
		if copies[o][0] == "" || copies[o][1] == "" || copies[o][0] == copies[o][1] {
			t.Fatalf("partition %d: master %q replica %q", o, copies[o][0], copies[o][1])
		}
	}
	hadb, child := c.MA.DB("ha"), c.Children[0].DB("ha")
	load := startWriteLoad(t, 8, hadb, child)
	verify := func(step string) {
		t.Helper()
		load.verify(step, ma, c.Leaves)
	}

	// a replica shows itself as a sync slave on its leaf
	roles := strings.Join(testutil.Rows(t, c.Leaves[1].DB(""), "SHOW DATABASES EXTENDED"), "\n")
	if !strings.Contains(roles, "sync slave,replicating") || !strings.Contains(roles, "master,online") {
		t.Errorf("SHOW DATABASES EXTENDED on a leaf:\n%s", roles)
	}
	testutil.ExpectError(t, c.Leaves[1].DB(""), 1290, "HY000",
		fmt.Sprintf("INSERT INTO ha_%d.kv VALUES (1, 1)", replicaOrdinalOn(t, copies, c.Leaves[1].Port)))

	time.Sleep(time.Second)
	victim := c.Leaves[0]
	killed := time.Now()
	victim.Kill()
	t.Logf("kill -9 → first write on its partitions: %s", load.firstWrite(ma, victim.Port, killed))
	waitLeafState(t, ma, victim.Port, "offline", 5*time.Second)
	time.Sleep(time.Second)
	verify("after kill -9 failover")
	// the master aggregator's event log tells what it did: the failure
	// and a failover of each partition the victim mastered
	mastered := 0
	for _, cp := range copies {
		if cp[0] == strconv.Itoa(victim.Port) {
			mastered++
		}
	}
	victimAddr := fmt.Sprintf("127.0.0.1:%d", victim.Port)
	testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT SEVERITY, COUNT(*) FROM information_schema.MV_EVENTS WHERE EVENT_TYPE LIKE 'leaf is not answering heartbeats%%' AND DETAILS LIKE '%%leaf=%s%%' GROUP BY 1", victimAddr),
		"WARNING,1")
	testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT COUNT(*) FROM information_schema.MV_EVENTS WHERE EVENT_TYPE = 'partition failed over' AND DETAILS LIKE '%%from=%s%%'", victimAddr), strconv.Itoa(mastered))

	victim.Start()
	waitLeafState(t, ma, victim.Port, "online", 60*time.Second)
	copies = partitionCopies(t, ma, "ha")
	masterCount := map[string]int{}
	for o := 0; o < 8; o++ {
		if copies[o][0] == "" || copies[o][1] == "" {
			t.Fatalf("after re-attach partition %d: master %q replica %q", o, copies[o][0], copies[o][1])
		}
		masterCount[copies[o][0]]++
	}
	// the pair handed half of its masters back
	if masterCount[strconv.Itoa(victim.Port)] != 2 || masterCount[strconv.Itoa(c.Leaves[1].Port)] != 2 {
		t.Errorf("after re-attach masters per leaf: %v", masterCount)
	}
	t.Logf("rebalance status after auto-attach: %q", testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON ha"))
	time.Sleep(500 * time.Millisecond)
	verify("after auto-attach")

	// its pair dies: the re-provisioned copies take over
	pair := c.Leaves[1]
	killed = time.Now()
	pair.Kill()
	t.Logf("kill -9 of the pair → first write: %s", load.firstWrite(ma, pair.Port, killed))
	waitLeafState(t, ma, pair.Port, "offline", 5*time.Second)
	verify("after the pair's failover")
	pair.Start()
	waitLeafState(t, ma, pair.Port, "online", 60*time.Second)

	time.Sleep(500 * time.Millisecond)
	load.Stop()
	verify("after the pair returned")
}

// replicaOrdinalOn is an ordinal whose replica is on the leaf at port.
func replicaOrdinalOn(t *testing.T, copies map[int][2]string, port int) int {
	for o, c := range copies {
		if c[1] == strconv.Itoa(port) {
			return o
		}
	}
	t.Fatalf("no replica on leaf %d", port)
	return 0
}

// TestFailedCommitEndsTransaction: when a distributed COMMIT fails the
// transaction is over, as in MySQL; the same connection's next autocommit
// statement commits on its own (it once ran inside the dead transaction
// and was acknowledged but never committed).
func TestFailedCommitEndsTransaction(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	// the test demotes the partition by hand, as a handover would
	c.AddLeaf(testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=client-internal-access"}), 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE fc PARTITIONS 1")
	db := c.MA.DB("fc")
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY)")
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES (1)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	leaf := c.Leaves[0].DB("")
	testutil.Exec(t, leaf, "CANOPY DEMOTE PARTITION 'fc_0'")
	if _, err := conn.ExecContext(ctx, "COMMIT"); err == nil {
		t.Fatal("COMMIT on a demoted partition succeeded")
	}
	testutil.Exec(t, leaf, "CANOPY PROMOTE PARTITION 'fc_0'")
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT id FROM t", "2")
}

// TestRedundancy2Pause pauses a leaf with SIGSTOP under a write load (it
// accepts connections and answers nothing): it is failed over after the
// failure timeout, and when it resumes, the commits it was holding fail
// (its replicas were promoted: fencing), it is attached again, its stale
// copies replaced, and the pair's masters split. Nothing acknowledged is
// lost.
//
// CANOPY_PAUSE_DEFAULT_TIMEOUT=1 keeps the default failure timeout, to
// measure the default's pause → first write (BENCHMARKS.md).
func TestRedundancy2Pause(t *testing.T) {
	timeout := 2000
	if os.Getenv("CANOPY_PAUSE_DEFAULT_TIMEOUT") != "" {
		timeout = 0
	}
	c := startPairedCluster(t, timeout)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE ps WITH SYNC REPLICATION PARTITIONS 8")
	load := startWriteLoad(t, 8, c.MA.DB("ps"), c.Children[0].DB("ps"))
	time.Sleep(time.Second)

	victim := c.Leaves[0]
	victimPort := strconv.Itoa(victim.Port)
	paused := time.Now()
	victim.Pause()
	took := load.firstWrite(ma, victim.Port, paused)
	t.Logf("SIGSTOP → first write on its partitions: %s (leaf_failure_timeout_ms %s)", took, testutil.Rows(t, ma, "SELECT @@leaf_failure_timeout_ms")[0])
	if timeout == 0 && took > 10*time.Second {
		t.Errorf("with the default failure timeout a paused leaf's partitions took writes again after %s, more than 10 s", took)
	}
	waitLeafState(t, ma, victim.Port, "offline", 5*time.Second)
	load.verify("after the paused leaf's failover", ma, c.Leaves)

	victim.Resume()
	waitLeafState(t, ma, victim.Port, "online", 60*time.Second)
	perLeaf := map[string]int{}
	for _, m := range partitionMasters(t, ma, "ps") {
		perLeaf[m]++
	}
	if perLeaf[victimPort] != 2 {
		t.Errorf("after the resumed leaf was attached, masters per leaf: %v", perLeaf)
	}
	t.Logf("attach after resume: %q", testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON ps"))
	time.Sleep(500 * time.Millisecond)
	load.Stop()
	load.verify("after the resumed leaf was attached", ma, c.Leaves)
}

// TestCleanClusterRestart stops a redundancy-2 cluster in the seed's
// order (master aggregator first, then the rest) and starts it leaves
// first: no leaf is failed over, every partition keeps its master and
// replica, and the data is all there.
func TestCleanClusterRestart(t *testing.T) {
	c := startPairedCluster(t, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE rs WITH SYNC REPLICATION PARTITIONS 8")
	testutil.Exec(t, ma, "CREATE TABLE rs.t (id INT PRIMARY KEY)")
	var vals []string
	for i := 1; i <= 200; i++ {
		vals = append(vals, fmt.Sprintf("(%d)", i))
	}
	testutil.Exec(t, ma, "INSERT INTO rs.t VALUES "+strings.Join(vals, ","))
	before := testutil.Rows(t, ma, "SHOW PARTITIONS ON rs")

	c.MA.Stop()
	for _, n := range c.Children {
		n.Stop()
	}
	for _, n := range c.Leaves {
		n.Stop()
	}
	for _, n := range c.Leaves {
		n.Start()
	}
	c.MA.Start()
	for _, n := range c.Children {
		n.Start()
	}
	ma = c.MA.DB("")
	// several detection periods: a leaf wrongly taken for dead would be offline by now
	time.Sleep(3 * time.Second)
	for _, r := range testutil.Rows(t, ma, "SHOW LEAVES") {
		if f := strings.Split(r, ","); f[5] != "online" {
			t.Errorf("after a clean restart: SHOW LEAVES row %s", r)
		}
	}
	if after := testutil.Rows(t, ma, "SHOW PARTITIONS ON rs"); strings.Join(after, ";") != strings.Join(before, ";") {
		t.Errorf("partitions changed across a clean restart:\nbefore %q\nafter  %q", before, after)
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM rs.t", "200")
	testutil.Exec(t, c.Children[0].DB("rs"), "INSERT INTO t VALUES (201)")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM rs.t", "201")
}

// TestReplicaFarBehind: a replica leaf is down while its masters write
// far more than their logs keep (--log-retain 50). When it returns, its
// copies are provisioned from snapshots (the log they need is gone), and
// they are complete: killing their masters afterwards loses no
// acknowledged write.
func TestReplicaFarBehind(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	for i := 0; i < 4; i++ {
		c.AddLeaf(testutil.StartNode(t, "--log-retain", "50"), 0)
	}
	testutil.Exec(t, ma, "CREATE DATABASE fb WITH SYNC REPLICATION PARTITIONS 4")
	db := c.MA.DB("fb")
	load := startWriteLoad(t, 4, db)
	behind, pair := c.Leaves[1], c.Leaves[0] // a pair (SHOW LEAVES pairs them in ADD LEAF order)
	held := 0
	for _, cp := range partitionCopies(t, ma, "fb") {
		if cp[0] == port(behind) || cp[1] == port(behind) {
			held++
		}
	}
	behind.Kill()
	waitLeafState(t, ma, behind.Port, "offline", 5*time.Second)
	// far more writes than the logs keep, and time for them to be truncated
	start, _ := strconv.Atoi(testutil.Rows(t, db, "SELECT COUNT(*) FROM kv")[0])
	eventually(t, 60*time.Second, func() string {
		n, _ := strconv.Atoi(testutil.Rows(t, db, "SELECT COUNT(*) FROM kv")[0])
		if n-start < 800 {
			return fmt.Sprintf("%d inserts while the replica is down", n-start)
		}
		return ""
	})
	time.Sleep(3 * time.Second)

	behind.Start()
	waitLeafState(t, ma, behind.Port, "online", 60*time.Second)
	if got := behind.Metric("canopy_snapshots_received_total"); int(got) < held {
		t.Errorf("the returning leaf installed %v snapshots for the %d partitions it holds", got, held)
	}
	t.Logf("re-provisioned %d partitions: %v snapshot bytes", held, behind.Metric("canopy_snapshot_bytes_received_total"))
	load.verify("after the far-behind replica returned", ma, c.Leaves)

	// its copies take over: complete, nothing acknowledged is lost
	pair.Kill()
	waitLeafState(t, ma, pair.Port, "offline", 5*time.Second)
	waitReadable(t, db)
	time.Sleep(500 * time.Millisecond)
	load.Stop()
	load.verify("after failing over to the re-provisioned copies", ma, c.Leaves)
}
