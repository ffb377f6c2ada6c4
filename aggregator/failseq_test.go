package aggregator_test

import (
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// Failure sequences (issue 16): failures that come in pairs, each of
// which once lost acknowledged writes.

// startPair starts a master aggregator and one pair of leaves (group 1,
// group 2) with a synchronous database fs of 4 partitions.
func startPair(t *testing.T) (*testutil.Cluster, *sql.DB) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	c.AddLeaf(testutil.StartNode(t), 1)
	c.AddLeaf(testutil.StartNode(t), 2)
	testutil.Exec(t, ma, "CREATE DATABASE fs WITH SYNC REPLICATION PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE fs.t (id INT PRIMARY KEY, v INT)")
	return c, ma
}

// insertRange inserts ids [from, to) one statement each and fails the
// test on any error: every row is an acknowledged write.
func insertRange(t *testing.T, db *sql.DB, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := db.Exec("INSERT INTO fs.t VALUES (?, ?)", i, i)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("insert %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // a failover in progress: not acknowledged, try again
		}
	}
}

// waitAllMastered waits until every partition of db has a master and
// a replica.
func waitAllMastered(t *testing.T, ma *sql.DB, db string, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() string {
		copies := partitionCopies(t, ma, db)
		for o := 0; o < n; o++ {
			if copies[o][0] == "" || copies[o][1] == "" {
				return fmt.Sprintf("partition %d: master %q replica %q (%q)", o, copies[o][0], copies[o][1], testutil.Rows(t, ma, "SHOW PARTITIONS ON "+db))
			}
		}
		return ""
	})
}

// missingIDs lists the ids in [0, n) that fs.t lacks.
func missingIDs(t *testing.T, db *sql.DB, n int) []int {
	t.Helper()
	have := map[int]bool{}
	for _, r := range testutil.Rows(t, db, "SELECT id FROM fs.t") {
		id, _ := strconv.Atoi(r)
		have[id] = true
	}
	var out []int
	for i := 0; i < n; i++ {
		if !have[i] {
			out = append(out, i)
		}
	}
	return out
}

// TestDoubleFailureReturnOrder: A dies, its pair B takes over and
// acknowledges sync commits alone, B dies, A returns first. A's copies are
// older than B's: none may become master. When B returns, its copies take
// over and A catches up from them. Nothing acknowledged is lost. (It once
// made A's copies masters and dropped B's: 200 of 300 writes lost.)
func TestDoubleFailureReturnOrder(t *testing.T) {
	c, ma := startPair(t)
	a, b := c.Leaves[0], c.Leaves[1]
	insertRange(t, ma, 0, 100)

	a.Kill()
	waitLeafState(t, ma, a.Port, "offline", 10*time.Second)
	insertRange(t, ma, 100, 300) // acknowledged by B alone
	b.Kill()
	waitLeafState(t, ma, b.Port, "offline", 10*time.Second)

	a.Start()
	// A answers again; it may be attached, but must not master anything
	time.Sleep(3 * time.Second)
	for o, cp := range partitionCopies(t, ma, "fs") {
		if cp[0] == strconv.Itoa(a.Port) {
			t.Fatalf("partition %d was given to the leaf with the older copy (%q)", o, testutil.Rows(t, ma, "SHOW PARTITIONS ON fs"))
		}
	}
	if _, err := ma.Exec("SELECT COUNT(*) FROM fs.t"); err == nil {
		t.Fatalf("a read succeeded while only the older copies are up")
	} else if me := testutil.MySQLError(err); me == nil || me.Number != 1777 {
		t.Fatalf("read while only the older copies are up: %v, want 1777", err)
	}
	status := strings.Join(testutil.Rows(t, ma, "SHOW CLUSTER STATUS"), "\n")
	if !strings.Contains(status, fmt.Sprintf("NULL,NULL,fs_0,No master,waiting,NULL,waiting for a copy on '127.0.0.1':%d", b.Port)) ||
		!strings.Contains(status, "so it waits for '127.0.0.1':"+strconv.Itoa(b.Port)) {
		t.Errorf("SHOW CLUSTER STATUS does not say what the partitions wait for:\n%s", status)
	}

	b.Start()
	waitLeafState(t, ma, b.Port, "online", 60*time.Second)
	waitLeafState(t, ma, a.Port, "online", 60*time.Second)
	waitAllMastered(t, ma, "fs", 4, 60*time.Second)
	if m := missingIDs(t, ma, 300); len(m) > 0 {
		t.Fatalf("%d acknowledged inserts lost: %v", len(m), m)
	}
	// both copies hold everything: lose B again, A alone serves it all
	insertRange(t, ma, 300, 320)
	b.Kill()
	waitLeafState(t, ma, b.Port, "offline", 10*time.Second)
	insertRange(t, ma, 320, 330)
	if m := missingIDs(t, ma, 330); len(m) > 0 {
		t.Fatalf("after B died again, %d acknowledged inserts lost: %v", len(m), m)
	}
}

// TestCopyEnteredOnlyWhenSynchronous: a copy being provisioned is shipped
// asynchronously (and capped); it may be entered in the partition map,
// where it is a failover candidate, only once it holds every acknowledged
// commit. The master is killed the moment the copy shows as a replica,
// under a write load: no acknowledged insert may be missing. (A copy was
// once entered when it reached the master's position of the copy's
// start, still behind the commits acknowledged since.)
func TestCopyEnteredOnlyWhenSynchronous(t *testing.T) {
	c, ma := startPair(t)
	a, b := c.Leaves[0], c.Leaves[1]
	testutil.Exec(t, ma, "CREATE TABLE fs.big (id INT PRIMARY KEY, pad LONGTEXT)")
	testutil.Exec(t, ma, "SET GLOBAL copy_bandwidth_mb_per_sec = 1")
	pad := strings.Repeat("x", 8<<10)
	a.Kill()
	waitLeafState(t, ma, a.Port, "offline", 10*time.Second)
	for i := 0; i < 200; i++ { // 1.6 MB the copy must catch up with
		testutil.Exec(t, ma, "INSERT INTO fs.big VALUES (?, ?)", -1-i, pad)
	}

	var mu sync.Mutex
	var acked []int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := ma.Exec("INSERT INTO fs.big VALUES (?, ?)", i, pad); err == nil {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}
		}(w)
	}
	a.Start()
	aPort := strconv.Itoa(a.Port)
	deadline := time.Now().Add(60 * time.Second)
	var entered []string // ordinals A holds a replica of when B dies
	for {
		for _, r := range testutil.Rows(t, ma, "SHOW PARTITIONS ON fs") {
			if f := strings.Split(r, ","); f[2] == aPort && f[3] == "Slave" {
				entered = append(entered, f[0])
			}
		}
		if len(entered) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the returning leaf never became a replica: %q", testutil.Rows(t, ma, "SHOW PARTITIONS ON fs"))
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("copy entered as a replica of %v", entered)
	b.Kill()
	close(stop)
	wg.Wait()
	t.Logf("load stopped")
	waitLeafState(t, ma, b.Port, "offline", 10*time.Second)
	// the partitions the copy was entered for fail over to it; the
	// others wait for B (1777) and are not what this test checks
	eventually(t, 30*time.Second, func() string {
		copies := partitionCopies(t, ma, "fs")
		for _, o := range entered {
			n, _ := strconv.Atoi(o)
			if copies[n][0] != aPort {
				return fmt.Sprintf("partition %d (A's replica when B died) has master %q", n, copies[n][0])
			}
		}
		return ""
	})
	t.Logf("failed over")
	var lost []int
	checked := 0
	for _, id := range acked {
		var got int
		err := ma.QueryRow("SELECT id FROM fs.big WHERE id = ?", id).Scan(&got)
		if me := testutil.MySQLError(err); me != nil && me.Number == 1777 {
			continue
		}
		checked++
		if err == sql.ErrNoRows {
			lost = append(lost, id)
		} else if err != nil {
			t.Fatalf("read %d: %v", id, err)
		}
	}
	t.Logf("checked %d acknowledged inserts on partitions the copy took over", checked)
	t.Logf("%d inserts acknowledged under the load", len(acked))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged inserts lost: %v", len(lost), lost)
	}
}

// TestReplicaMissingHeartbeatAtFailover: the replica misses heartbeats
// (paused) at the moment its master dies. It is still the partition's
// only whole copy and is online: it becomes master and is promoted once
// it answers. (Failover once skipped a replica with a failed heartbeat,
// leaving the partition without master, 1777, until someone acted.)
func TestReplicaMissingHeartbeatAtFailover(t *testing.T) {
	c, ma := startPair(t)
	a, b := c.Leaves[0], c.Leaves[1]
	insertRange(t, ma, 0, 40)
	b.Pause()
	a.Kill()
	waitLeafState(t, ma, a.Port, "offline", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	b.Resume()
	waitLeafState(t, ma, b.Port, "online", 5*time.Second)
	bPort := strconv.Itoa(b.Port)
	waitMastersOn(t, ma, "fs", bPort, 15*time.Second)
	insertRange(t, ma, 40, 60)
	if m := missingIDs(t, ma, 60); len(m) > 0 {
		t.Fatalf("%d acknowledged inserts lost: %v", len(m), m)
	}
}

// TestFailoverSurvivesMasterCrash: the master aggregator dies right after
// the raft command that failed a leaf over, before it told the new
// masters. The command held the leaf's state and the new partition map
// together, and the next master aggregator promotes the masters it names
// (it does not know whether the old one did): writes resume.
func TestFailoverSurvivesMasterCrash(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=master-after-leaf-down"}, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	c.AddLeaf(testutil.StartNode(t), 1)
	c.AddLeaf(testutil.StartNode(t), 2)
	c.AddAggregator(testutil.StartNode(t))
	c.AddAggregator(testutil.StartNode(t))
	want := strings.Join([]string{port(c.MA), port(c.Children[0]), port(c.Children[1])}, ",")
	eventually(t, 10*time.Second, func() string {
		if v := raftVoters(ma); v != want {
			return "voters: " + v
		}
		return ""
	})
	testutil.Exec(t, ma, "CREATE DATABASE fs WITH SYNC REPLICATION PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE fs.t (id INT PRIMARY KEY, v INT)")
	child := c.Children[0].DB("")
	c.WaitCaughtUp(c.Children[0], 10*time.Second)
	insertRange(t, child, 0, 50)

	c.Leaves[0].Kill()
	if !c.MA.WaitExit(15 * time.Second) {
		t.Fatal("the master aggregator did not reach the failpoint")
	}
	master := newMaster(t, c.Children)
	mdb := master.DB("")
	bPort := strconv.Itoa(c.Leaves[1].Port)
	waitMastersOn(t, mdb, "fs", bPort, 15*time.Second)
	insertRange(t, mdb, 50, 80)
	if m := missingIDs(t, mdb, 80); len(m) > 0 {
		t.Fatalf("%d acknowledged inserts lost: %v", len(m), m)
	}
}

// TestRebalanceResumedByNewMaster: the master aggregator dies in the
// middle of a rebalance. The operation journal in the metadata shows the
// job running; the next master marks it interrupted, plans the rest from
// the current map and runs it: the rebalance finishes without anyone
// running it again, and every aggregator shows its steps.
func TestRebalanceResumedByNewMaster(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=master-mid-rebalance"}, "--master-aggregator"))
	ma := c.MA.DB("")
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddAggregator(testutil.StartNode(t))
	c.AddAggregator(testutil.StartNode(t))
	want := strings.Join([]string{port(c.MA), port(c.Children[0]), port(c.Children[1])}, ",")
	eventually(t, 10*time.Second, func() string {
		if v := raftVoters(ma); v != want {
			return "voters: " + v
		}
		return ""
	})
	testutil.Exec(t, ma, "CREATE DATABASE rb PARTITIONS 8")
	testutil.Exec(t, ma, "CREATE TABLE rb.t (id INT PRIMARY KEY)")
	for i := 0; i < 8; i++ {
		testutil.Exec(t, ma, fmt.Sprintf("INSERT INTO rb.t VALUES (%d),(%d),(%d),(%d)", 4*i, 4*i+1, 4*i+2, 4*i+3))
	}
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	if _, err := ma.Exec("REBALANCE PARTITIONS ON rb"); err == nil {
		t.Fatal("the rebalance finished although the master aggregator should have died in it")
	}
	if !c.MA.WaitExit(10 * time.Second) {
		t.Fatal("the master aggregator did not reach the failpoint")
	}
	master := newMaster(t, c.Children)
	mdb := master.DB("")
	eventually(t, 60*time.Second, func() string {
		perLeaf := map[string]int{}
		for _, m := range partitionMasters(t, mdb, "rb") {
			perLeaf[m]++
		}
		for _, l := range c.Leaves {
			if perLeaf[strconv.Itoa(l.Port)] != 2 {
				return fmt.Sprintf("masters per leaf %v", perLeaf)
			}
		}
		return ""
	})
	// the journal shows the resumed run, on every aggregator
	for _, ch := range c.Children {
		eventually(t, 10*time.Second, func() string {
			rows := testutil.Rows(t, ch.DB(""), "SHOW REBALANCE STATUS ON rb")
			for _, r := range rows {
				if f := strings.Split(r, ","); f[5] != "success" {
					return fmt.Sprintf("on %d: %q", ch.Port, rows)
				}
			}
			if len(rows) == 0 {
				return fmt.Sprintf("on %d: no steps", ch.Port)
			}
			return ""
		})
	}
	testutil.ExpectRows(t, mdb, "SELECT COUNT(*) FROM rb.t", "32")
}

// TestShutdownAcknowledgesNothingLost: an aggregator told to stop
// (SIGTERM) while clients keep writing on open connections either runs a
// statement through the cluster or refuses it (1053); it once ran the
// statements that arrived after it dropped its aggregator on its own
// local copy of the database, acknowledging inserts that went nowhere.
func TestShutdownAcknowledgesNothingLost(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE sd PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE sd.t (id INT PRIMARY KEY)")
	child := c.Children[0]
	c.WaitCaughtUp(child, 10*time.Second)
	db, err := sql.Open("mysql", child.DSN("sd"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	var mu sync.Mutex
	var acked []int
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := db.Exec("INSERT INTO t VALUES (?)", i); err == nil {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	child.Terminate()
	if !child.WaitExit(30 * time.Second) {
		t.Fatal("the aggregator did not stop")
	}
	close(stop)
	wg.Wait()
	have := map[int]bool{}
	for _, r := range testutil.Rows(t, ma, "SELECT id FROM sd.t") {
		id, _ := strconv.Atoi(r)
		have[id] = true
	}
	var lost []int
	for _, id := range acked {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	t.Logf("%d inserts acknowledged", len(acked))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged inserts are not in the table: %v", len(lost), lost[:min(len(lost), 20)])
	}
}

// newMaster waits until one of the children reports itself master
// aggregator (the master was killed) and returns it.
func newMaster(t *testing.T, children []*testutil.Node) *testutil.Node {
	t.Helper()
	var master *testutil.Node
	eventually(t, 15*time.Second, func() string {
		for _, ch := range children {
			if nodeRole(ch.DB("")) == "master aggregator" {
				master = ch
				return ""
			}
		}
		return "no child became master"
	})
	return master
}

// waitMastersOn waits until the leaf on port masters every partition of
// database db.
func waitMastersOn(t *testing.T, ma *sql.DB, db, port string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() string {
		for o, cp := range partitionCopies(t, ma, db) {
			if cp[0] != port {
				return fmt.Sprintf("partition %d has master %q", o, cp[0])
			}
		}
		return ""
	})
}
