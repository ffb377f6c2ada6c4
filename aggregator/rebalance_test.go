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

// TestRebalanceGrowAndEnableHA replays the seed's cluster growth under a
// write load through two aggregators: leaves added to a redundancy-1
// cluster get their share with REBALANCE PARTITIONS (EXPLAIN first), then
// high availability is enabled on the running cluster (redundancy 2, a
// group-2 leaf for each leaf, REBALANCE) and masters end up split across
// the pairs. No acknowledged write is lost, the bank total never changes.
func TestRebalanceGrowAndEnableHA(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE rb PARTITIONS 6")
	load := startWriteLoad(t, 6, c.MA.DB("rb"), c.Children[0].DB("rb"))
	testutil.ExpectRows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON rb")

	c.AddLeaf(testutil.StartNode(t), 0)
	plan := testutil.Rows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON rb")
	third := strconv.Itoa(c.Leaves[2].Port)
	var phases []string
	for _, r := range plan {
		f := strings.Split(r, ",") // Action,Ordinal,Target_Host,Target_Port,Phase,Estimated_Time_Remaining_Ms
		phases = append(phases, f[0]+"/"+f[4])
		if f[0] != "DROP PARTITION" && f[3] != third {
			t.Errorf("plan row %s: copies and promotions go to the new leaf %s", r, third)
		}
	}
	if want := "COPY PARTITION/1,COPY PARTITION/1,PROMOTE PARTITION/2,PROMOTE PARTITION/2,DROP PARTITION/3,DROP PARTITION/3"; strings.Join(phases, ",") != want {
		t.Fatalf("EXPLAIN REBALANCE PARTITIONS: %q", plan)
	}
	testutil.Exec(t, ma, "REBALANCE PARTITIONS ON rb")
	perLeaf := map[string]int{}
	for _, m := range partitionMasters(t, ma, "rb") {
		perLeaf[m]++
	}
	for _, l := range c.Leaves {
		if perLeaf[strconv.Itoa(l.Port)] != 2 {
			t.Errorf("after rebalance masters per leaf: %v", perLeaf)
		}
	}
	for _, r := range testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON rb") {
		if !strings.Contains(r, ",success,") {
			t.Errorf("SHOW REBALANCE STATUS row %s", r)
		}
	}
	t.Logf("rebalance onto a third leaf: %q", testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON rb"))
	testutil.ExpectRows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON rb")
	load.verify("after growing to 3 leaves", ma, c.Leaves)

	// enable high availability on the running cluster
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	for i := 0; i < 3; i++ {
		c.AddLeaf(testutil.StartNode(t), 2)
	}
	testutil.Exec(t, ma, "REBALANCE PARTITIONS ON rb")
	t.Logf("enabling HA: %q", testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON rb"))
	copies := partitionCopies(t, ma, "rb")
	pairOf := map[string]string{}
	for _, r := range testutil.Rows(t, ma, "SHOW LEAVES") {
		f := strings.Split(r, ",") // Host,Port,Availability_Group,Pair_Host,Pair_Port,…
		pairOf[f[1]] = f[4]
	}
	masters := map[string]int{}
	for o := 0; o < 6; o++ {
		m, r := copies[o][0], copies[o][1]
		if m == "" || pairOf[m] != r {
			t.Errorf("partition %d: master %s replica %s, want the replica on the master's pair", o, m, r)
		}
		masters[m]++
	}
	if len(masters) != 6 {
		t.Errorf("masters per leaf after enabling HA: %v, want one on each of the 6 leaves", masters)
	}
	testutil.ExpectRows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON rb")
	testutil.ExpectRows(t, ma, "EXPLAIN RESTORE REDUNDANCY ON rb")
	testutil.Exec(t, ma, "RESTORE REDUNDANCY ON rb")
	load.verify("after enabling HA", ma, c.Leaves)

	// The rebalanced copies fail over like any other. The database was
	// created with the default ASYNC replication, so writes acknowledged
	// just before the kill may be lost: reported, not asserted.
	victim := c.Leaves[0]
	victim.Kill()
	waitLeafState(t, ma, victim.Port, "offline", 10*time.Second)
	waitReadable(t, c.MA.DB("rb")) // the promotions follow the state change
	load.Stop()
	lost, acked := load.lost()
	t.Logf("async failover: %d of %d acknowledged inserts lost; bank total %d (want %d)", len(lost), acked, bankTotal(t, c.MA.DB("rb")), bankAccounts*bankStart)
	// the dead leaf's partitions failed over to their pairs: FORCE has nothing to replace
	for _, r := range testutil.Rows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON rb FORCE") {
		if strings.HasPrefix(r, "CREATE PARTITION") {
			t.Errorf("EXPLAIN REBALANCE … FORCE after a failover in redundancy 2 replaces %s", r)
		}
	}
	expectErrorContains(t, ma, "REBALANCE PARTITIONS ON nosuch", "Unknown database")
}

// TestClusterStatusAndOrphans: SHOW CLUSTER STATUS lists every copy with
// its role; a partition database the metadata does not place on its leaf
// is an Orphan, which EXPLAIN CLEAR ORPHAN DATABASES lists and CLEAR
// ORPHAN DATABASES drops, leaving the data alone.
func TestClusterStatusAndOrphans(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	// the test makes an orphan by hand on the first leaf
	c.AddLeaf(testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=client-internal-access"}), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE orph PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE orph.t (id INT PRIMARY KEY)")
	testutil.Exec(t, ma, "INSERT INTO orph.t VALUES (1), (2), (3), (4), (5), (6)")
	masters := partitionMasters(t, ma, "orph")
	a, b := c.Leaves[0], c.Leaves[1]
	var foreign int // a partition mastered on b
	for o, m := range masters {
		if m == strconv.Itoa(b.Port) {
			foreign = o
		}
	}
	orphan := fmt.Sprintf("orph_%d", foreign)
	testutil.Exec(t, a.DB(""), "CREATE DATABASE "+orphan)

	roles := map[string]int{}
	var orphans []string
	for _, r := range testutil.Rows(t, ma, "SHOW CLUSTER STATUS") {
		f := strings.Split(r, ",") // Host,Port,Database,Role,State,Position,Details
		roles[f[3]]++
		if f[3] == "Orphan" {
			orphans = append(orphans, f[1]+"/"+f[2])
		}
	}
	if roles["Master"] != 4 || roles["Reference"] != 2 || len(orphans) != 1 || orphans[0] != fmt.Sprintf("%d/%s", a.Port, orphan) {
		t.Fatalf("SHOW CLUSTER STATUS roles %v, orphans %v", roles, orphans)
	}
	testutil.ExpectRows(t, ma, "EXPLAIN CLEAR ORPHAN DATABASES", fmt.Sprintf("127.0.0.1,%d,%s,DROP", a.Port, orphan))
	testutil.Exec(t, ma, "CLEAR ORPHAN DATABASES")
	for _, r := range testutil.Rows(t, a.DB(""), "SHOW DATABASES") {
		if r == orphan {
			t.Errorf("the orphan %s is still on its leaf", orphan)
		}
	}
	testutil.ExpectRows(t, ma, "EXPLAIN CLEAR ORPHAN DATABASES")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM orph.t", "6")
}

// TestDisableHAAndRemoveLeaf follows the seed's "Disabling High
// Availability" under a write load: REMOVE LEAF of each group-2 leaf
// hands its masters to its pair, then redundancy_level goes back to 1;
// in redundancy 1, REMOVE LEAF moves a leaf's masters to the others.
func TestDisableHAAndRemoveLeaf(t *testing.T) {
	c := startPairedCluster(t, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE dh WITH SYNC REPLICATION PARTITIONS 8")
	load := startWriteLoad(t, 8, c.MA.DB("dh"), c.Children[0].DB("dh"))
	time.Sleep(300 * time.Millisecond)

	var kept []*testutil.Node
	for _, r := range testutil.Rows(t, ma, "SHOW LEAVES") {
		f := strings.Split(r, ",") // Host,Port,Availability_Group,…
		if f[2] == "2" {
			testutil.Exec(t, ma, "REMOVE LEAF '127.0.0.1':"+f[1])
		} else {
			kept = append(kept, leafByPort(c, f[1]))
		}
	}
	leaves := testutil.Rows(t, ma, "SHOW LEAVES")
	if len(leaves) != 2 || !strings.Contains(leaves[0], ",1,NULL,NULL,online,") || !strings.Contains(leaves[1], ",1,NULL,NULL,online,") {
		t.Fatalf("SHOW LEAVES after removing group 2: %q", leaves)
	}
	testutil.Exec(t, ma, "SET @@GLOBAL.redundancy_level = 1")
	for o, cp := range partitionCopies(t, ma, "dh") {
		if cp[0] == "" || cp[1] != "" {
			t.Errorf("partition %d after disabling HA: master %q replicas %q", o, cp[0], cp[1])
		}
	}
	testutil.ExpectRows(t, ma, "EXPLAIN CLEAR ORPHAN DATABASES")
	load.verify("after disabling HA", ma, kept)

	// redundancy 1: a third leaf, then the first one removed
	third := testutil.StartNode(t)
	c.AddLeaf(third, 0)
	testutil.Exec(t, ma, "REBALANCE PARTITIONS ON dh")
	gone := kept[0]
	testutil.Exec(t, ma, fmt.Sprintf("REMOVE LEAF '127.0.0.1':%d", gone.Port))
	for o, m := range partitionMasters(t, ma, "dh") {
		if m == port(gone) {
			t.Errorf("partition %d still has its master on the removed leaf", o)
		}
	}
	if n := len(partitionMasters(t, ma, "dh")); n != 8 {
		t.Errorf("after REMOVE LEAF in redundancy 1: %d partitions have a master, want 8", n)
	}
	if st := testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON dh"); len(st) == 0 {
		t.Errorf("REMOVE LEAF recorded no steps")
	}
	load.verify("after REMOVE LEAF in redundancy 1", ma, []*testutil.Node{kept[1], third})
}

// TestRebalanceForce follows seed 003's redundancy 1 "irrecoverably
// lost" leaf: REBALANCE PARTITIONS … FORCE replaces its partitions with
// empty ones (saying so in SHOW WARNINGS), the database works again as a
// whole, and when the leaf does come back its old copies are orphans that
// neither come back to life nor duplicate rows.
func TestRebalanceForce(t *testing.T) {
	c := testutil.StartCluster(t, 3, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE f PARTITIONS 6")
	testutil.Exec(t, ma, "CREATE TABLE f.x (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL DEFAULT 'd', KEY (v))")
	testutil.Exec(t, ma, "CREATE REFERENCE TABLE f.r (id INT PRIMARY KEY)")
	testutil.Exec(t, ma, "INSERT INTO f.r VALUES (1)")
	var vals []string
	for i := 1; i <= 60; i++ {
		vals = append(vals, fmt.Sprintf("(%d, 'v%d')", i, i))
	}
	testutil.Exec(t, ma, "INSERT INTO f.x VALUES "+strings.Join(vals, ","))

	gone := c.Leaves[2]
	lost := map[int]bool{}
	for o, m := range partitionMasters(t, ma, "f") {
		if m == strconv.Itoa(gone.Port) {
			lost[o] = true
		}
	}
	key := sharding.NewKey([]gmssql.Type{types.Int32})
	var lostIDs []int
	for id := 1; id <= 60; id++ {
		if p, _ := key.Partition([]interface{}{id}, 6); lost[p] {
			lostIDs = append(lostIDs, id)
		}
	}
	if len(lost) != 2 || len(lostIDs) == 0 {
		t.Fatalf("leaf 3 masters %v holding %d rows; want 2 partitions with rows", lost, len(lostIDs))
	}

	gone.Kill()
	waitLeafState(t, ma, gone.Port, "offline", 5*time.Second)
	testutil.ExpectError(t, ma, 1777, "HY000", "SELECT COUNT(*) FROM f.x")

	// EXPLAIN shows the replacement; without FORCE nothing is replaced
	var creates []string
	for _, r := range testutil.Rows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON f FORCE") {
		f := strings.Split(r, ",") // Action,Ordinal,Target_Host,Target_Port,Phase,Estimated_Time_Remaining_Ms
		if f[0] == "CREATE PARTITION" {
			o, _ := strconv.Atoi(f[1])
			if !lost[o] || f[3] == strconv.Itoa(gone.Port) || f[4] != "1" {
				t.Errorf("EXPLAIN REBALANCE … FORCE row %s (lost %v)", r, lost)
			}
			creates = append(creates, f[1])
		}
	}
	if len(creates) != 2 {
		t.Fatalf("EXPLAIN REBALANCE … FORCE creates %v, want the lost %v", creates, lost)
	}
	testutil.Exec(t, ma, "REBALANCE PARTITIONS ON f")
	testutil.ExpectError(t, ma, 1777, "HY000", "SELECT COUNT(*) FROM f.x")

	conn, err := ma.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "REBALANCE PARTITIONS ON f FORCE"); err != nil {
		t.Fatalf("REBALANCE PARTITIONS ON f FORCE: %v", err)
	}
	var level, msg string
	var code int
	if err := conn.QueryRowContext(context.Background(), "SHOW WARNINGS").Scan(&level, &code, &msg); err != nil {
		t.Fatalf("SHOW WARNINGS after FORCE: %v", err)
	}
	for o := range lost {
		if !strings.Contains(msg, fmt.Sprintf("f:%d", o)) || !strings.Contains(msg, "lost") {
			t.Errorf("FORCE warning %q does not name f:%d", msg, o)
		}
	}

	// whole again: the lost rows are gone, everything else is there, and
	// the new partitions take writes (with the table's defaults and keys)
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM f.x", strconv.Itoa(60-len(lostIDs)))
	for _, id := range lostIDs {
		testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT COUNT(*) FROM f.x WHERE id = %d", id), "0")
		testutil.Exec(t, ma, fmt.Sprintf("INSERT INTO f.x (id) VALUES (%d)", id))
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(v = 'd') FROM f.x", "60,"+strconv.Itoa(len(lostIDs)))
	testutil.ExpectError(t, ma, 1062, "23000", fmt.Sprintf("INSERT INTO f.x (id) VALUES (%d)", lostIDs[0]))
	for o, m := range partitionMasters(t, ma, "f") {
		if m == strconv.Itoa(gone.Port) {
			t.Errorf("partition %d still mastered on the lost leaf", o)
		}
	}
	if plan := testutil.Rows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON f FORCE"); len(plan) != 0 {
		t.Errorf("after FORCE the plan is %q, want empty", plan)
	}

	// the leaf comes back after all: its copies are orphans, not data
	gone.Start()
	waitLeafState(t, ma, gone.Port, "online", 15*time.Second)
	testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(v = 'd') FROM f.x", "60,"+strconv.Itoa(len(lostIDs)))
	var orphans []string
	for _, r := range testutil.Rows(t, ma, "SHOW CLUSTER STATUS") {
		f := strings.Split(r, ",") // Host,Port,Database,Role,…
		if f[3] == "Orphan" {
			orphans = append(orphans, f[2])
			if f[1] != strconv.Itoa(gone.Port) {
				t.Errorf("orphan on the wrong leaf: %s", r)
			}
		}
	}
	if len(orphans) != 2 {
		t.Errorf("orphans %v, want the returning leaf's two old partitions", orphans)
	}
	testutil.Exec(t, ma, "CLEAR ORPHAN DATABASES")
	testutil.ExpectRows(t, ma, "EXPLAIN CLEAR ORPHAN DATABASES")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM f.x", "60")
	testutil.ExpectRows(t, ma, "SELECT id FROM f.r", "1")
}

// TestRebalanceTwoFourEight grows a redundancy-1 cluster from 2 to 4 to 8
// leaves with REBALANCE PARTITIONS, then shrinks it back to 4 with REMOVE
// LEAF, all under a write load through two aggregators: each step leaves
// the masters spread evenly, no acknowledged write is lost, and no
// single-row insert fails (they wait out each cutover). It logs
// insert latency while idle and during each rebalance, and the longest
// PROMOTE PARTITION (the write pause of a moved partition), for
// BENCHMARKS.md.
func TestRebalanceTwoFourEight(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE grow PARTITIONS 16")
	load := startWriteLoad(t, 16, c.MA.DB("grow"), c.Children[0].DB("grow"))
	idle := time.Now()
	time.Sleep(2 * time.Second)
	t.Logf("idle, 2 leaves: %s", load.latency(idle, time.Now()))

	evenly := func(step string, leaves int) {
		t.Helper()
		perLeaf := map[string]int{}
		for _, m := range partitionMasters(t, ma, "grow") {
			perLeaf[m]++
		}
		for _, l := range c.Leaves {
			if perLeaf[strconv.Itoa(l.Port)] != 16/leaves {
				t.Fatalf("%s: masters per leaf %v, want %d on each of %d leaves", step, perLeaf, 16/leaves, leaves)
			}
		}
		testutil.ExpectRows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON grow")
	}
	for _, n := range []int{4, 8} {
		for len(c.Leaves) < n {
			c.AddLeaf(testutil.StartNode(t), 0)
		}
		start := time.Now()
		testutil.Exec(t, ma, "REBALANCE PARTITIONS ON grow")
		during := load.latency(start, time.Now())
		var longest int
		for _, r := range testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON grow") {
			f := strings.Split(r, ",") // Action,Ordinal,Target_Host,Target_Port,Phase,Status,Running_Time
			if f[5] != "success" {
				t.Errorf("SHOW REBALANCE STATUS row %s", r)
			}
			if ms, _ := strconv.Atoi(f[6]); f[0] == "PROMOTE PARTITION" && ms > longest {
				longest = ms
			}
		}
		t.Logf("rebalance onto %d leaves took %s: %s; longest PROMOTE %d ms", n, time.Since(start).Round(time.Millisecond), during, longest)
		if during.failed > 0 {
			// a moving partition's autocommit writes wait for its new master
			t.Errorf("rebalance onto %d leaves: %d single-row inserts failed", n, during.failed)
		}
		evenly(fmt.Sprintf("grown to %d leaves", n), n)
		load.verify(fmt.Sprintf("grown to %d leaves", n), ma, c.Leaves)
		idle = time.Now()
		time.Sleep(2 * time.Second)
		t.Logf("idle, %d leaves: %s", n, load.latency(idle, time.Now()))
	}

	start := time.Now()
	for _, l := range c.Leaves[4:] {
		testutil.Exec(t, ma, fmt.Sprintf("REMOVE LEAF '127.0.0.1':%d", l.Port))
	}
	during := load.latency(start, time.Now())
	t.Logf("REMOVE LEAF of 4 leaves took %s: %s", time.Since(start).Round(time.Millisecond), during)
	if during.failed > 0 {
		t.Errorf("REMOVE LEAF: %d single-row inserts failed", during.failed)
	}
	removed := c.Leaves[4:]
	c.Leaves = c.Leaves[:4]
	for _, l := range removed {
		if leafState(t, ma, l.Port) != "absent" {
			t.Errorf("leaf %d is still in SHOW LEAVES", l.Port)
		}
	}
	evenly("shrunk to 4 leaves", 4)
	load.verify("shrunk to 4 leaves", ma, c.Leaves)
}

// createPad makes table pad of 1200 rows of 4000 bytes (about 4.6 MiB):
// enough data that a copy capped at 1 MB/s takes seconds.
func createPad(t *testing.T, db *sql.DB) {
	testutil.Exec(t, db, "CREATE TABLE pad (id INT PRIMARY KEY, p TEXT)")
	for i := 0; i < 1200; i += 100 {
		var vals []string
		for j := i; j < i+100; j++ {
			vals = append(vals, fmt.Sprintf("(%d, REPEAT('x', 4000))", j))
		}
		testutil.Exec(t, db, "INSERT INTO pad VALUES "+strings.Join(vals, ","))
	}
}

// TestRebalanceInterrupted kills a leaf a rebalance is copying onto, in
// the middle of the copy phase: REBALANCE stops within seconds and says
// what failed, every partition keeps its master and the writes go on;
// once the leaf is back, the same REBALANCE runs to the end.
func TestRebalanceInterrupted(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE intr PARTITIONS 8")
	db := c.MA.DB("intr")
	createPad(t, db)
	load := startWriteLoad(t, 8, db)
	testutil.Exec(t, ma, "SET GLOBAL copy_bandwidth_mb_per_sec = 1")
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	victim := c.Leaves[3]

	done := make(chan error, 1)
	go func() {
		_, err := ma.Exec("REBALANCE PARTITIONS ON intr")
		done <- err
	}()
	eventually(t, 10*time.Second, func() string {
		for _, r := range testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON intr") {
			f := strings.Split(r, ",") // Action,Ordinal,Target_Host,Target_Port,Phase,Status,Running_Time
			if f[0] == "COPY PARTITION" && f[3] == port(victim) && f[5] == "running" {
				return ""
			}
		}
		return "no copy onto the victim running yet"
	})
	victim.Kill()
	killed := time.Now()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("REBALANCE did not stop within 20 s of its target's death")
	}
	t.Logf("REBALANCE stopped %s after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "stopped") || !strings.Contains(err.Error(), port(victim)) {
		t.Fatalf("REBALANCE with its target killed: %v, want an error naming the leaf", err)
	}
	var failed int
	for _, r := range testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON intr") {
		if strings.Contains(r, ",error,") {
			failed++
		}
	}
	if failed == 0 {
		t.Errorf("SHOW REBALANCE STATUS shows no failed step: %q", testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON intr"))
	}
	if m := partitionMasters(t, ma, "intr"); len(m) != 8 {
		t.Fatalf("after the failed rebalance partitions have masters %v, want all 8", m)
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM pad", "1200")
	load.verify("after the failed rebalance", ma, c.Leaves[:3])

	victim.Start()
	waitLeafState(t, ma, victim.Port, "online", 15*time.Second)
	testutil.Exec(t, ma, "SET GLOBAL copy_bandwidth_mb_per_sec = 0")
	testutil.Exec(t, ma, "REBALANCE PARTITIONS ON intr")
	perLeaf := map[string]int{}
	for _, m := range partitionMasters(t, ma, "intr") {
		perLeaf[m]++
	}
	for _, l := range c.Leaves {
		if perLeaf[port(l)] != 2 {
			t.Errorf("after the re-run masters per leaf are %v, want 2 each", perLeaf)
			break
		}
	}
	testutil.ExpectRows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON intr")
	testutil.ExpectRows(t, db, "SELECT COUNT(*), MIN(LENGTH(p)), MAX(LENGTH(p)) FROM pad", "1200,4000,4000")
	load.verify("after the re-run", ma, c.Leaves)
	for _, r := range testutil.Rows(t, ma, "SHOW CLUSTER STATUS") {
		if strings.Contains(r, ",Orphan,") {
			t.Logf("left after the re-run: %s", r)
		}
	}
}

// TestFailoverDuringRebalance kills a master leaf of a redundancy-2
// cluster while a rebalance onto a new pair is copying: failover does not
// wait for the rebalance (its partitions take writes again within the
// usual time), no acknowledged write is lost, and once the leaf is back
// a re-run of REBALANCE balances the cluster.
func TestFailoverDuringRebalance(t *testing.T) {
	c := startPairedCluster(t, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE fdr WITH SYNC REPLICATION PARTITIONS 8")
	db := c.MA.DB("fdr")
	createPad(t, db)
	load := startWriteLoad(t, 8, db, c.Children[0].DB("fdr"))
	testutil.Exec(t, ma, "SET GLOBAL copy_bandwidth_mb_per_sec = 1")
	c.AddLeaf(testutil.StartNode(t), 1)
	c.AddLeaf(testutil.StartNode(t), 2)

	done := make(chan error, 1)
	go func() {
		_, err := ma.Exec("REBALANCE PARTITIONS ON fdr")
		done <- err
	}()
	eventually(t, 10*time.Second, func() string {
		for _, r := range testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON fdr") {
			if f := strings.Split(r, ","); f[0] == "COPY PARTITION" && f[5] == "running" {
				return ""
			}
		}
		return "no copy running yet"
	})
	victim := c.Leaves[0]
	killed := time.Now()
	victim.Kill()
	took := load.firstWrite(ma, victim.Port, killed)
	t.Logf("kill -9 during a rebalance → first write on its partitions: %s", took)
	if took > 5*time.Second {
		t.Errorf("failover during a rebalance took %s", took)
	}
	select {
	case err := <-done:
		t.Logf("the rebalance ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("REBALANCE still running 60 s after the kill")
	}
	load.verify("after the failover during the rebalance", ma, c.Leaves)

	victim.Start()
	waitLeafState(t, ma, victim.Port, "online", 60*time.Second)
	testutil.Exec(t, ma, "SET GLOBAL copy_bandwidth_mb_per_sec = 0")
	testutil.Exec(t, ma, "REBALANCE PARTITIONS ON fdr")
	testutil.ExpectRows(t, ma, "EXPLAIN REBALANCE PARTITIONS ON fdr")
	copies := partitionCopies(t, ma, "fdr")
	for o := 0; o < 8; o++ {
		if copies[o][0] == "" || copies[o][1] == "" {
			t.Errorf("after the re-run partition %d: master %q replica %q", o, copies[o][0], copies[o][1])
		}
	}
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM pad", "1200")
	load.verify("after the re-run", ma, c.Leaves)
}
