package aggregator_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// proxiedLeaf is a leaf whose MySQL port (what aggregators use) and
// internal port (what replication uses) are behind proxies.
type proxiedLeaf struct {
	*testutil.Node
	sql, internal *testutil.Proxy
}

func startProxiedLeaf(t *testing.T, c *testutil.Cluster) *proxiedLeaf {
	n, internal := testutil.StartNodeBehindInternalProxy(t, nil)
	l := &proxiedLeaf{Node: n, sql: testutil.StartProxy(t, 0, n.Addr()), internal: internal}
	testutil.Exec(t, c.MA.DB(""), fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.sql.Port))
	c.Leaves = append(c.Leaves, n)
	return l
}

// TestNetworkFaults cuts links with TCP proxies (toxiproxy) under a write
// load through two aggregators, sync replication: a leaf the aggregators
// cannot reach (its connections stall) is failed over to its pair and
// attached again when the link heals; a cut link between a pair does not
// stall the commits of the pair's partitions for longer than the failure
// timeout (the unreachable sync replica is taken out), and the replica
// comes back by itself when the link heals. No acknowledged write is lost.
func TestNetworkFaults(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 2000")
	var leaves []*proxiedLeaf
	for i := 0; i < 4; i++ {
		leaves = append(leaves, startProxiedLeaf(t, c))
	}
	c.AddAggregator(testutil.StartNode(t))
	testutil.Exec(t, ma, "CREATE DATABASE nf WITH SYNC REPLICATION PARTITIONS 8")
	db := c.MA.DB("nf")
	load := startWriteLoad(t, 8, db, c.Children[0].DB("nf"))
	time.Sleep(time.Second)

	// 1. the aggregators lose a leaf: its connections stall
	a := leaves[0]
	cut := time.Now()
	if err := a.sql.Blackhole(); err != nil {
		t.Fatal(err)
	}
	t.Logf("aggregators cut off from a leaf → first write on its partitions: %s", load.firstWrite(ma, a.sql.Port, cut))
	waitLeafState(t, ma, a.sql.Port, "offline", 10*time.Second)
	load.verify("leaf unreachable from the aggregators", ma, c.Leaves)
	a.sql.Heal()
	waitLeafState(t, ma, a.sql.Port, "online", 60*time.Second)
	load.verify("link to the leaf healed", ma, c.Leaves)

	// 2. the link between a pair is cut: a's partitions' sync replicas on
	// its pair are unreachable from a, though both answer the aggregators
	b := leaves[1]
	before := partitionCopies(t, ma, "nf")
	var onA []int
	for o := 0; o < 8; o++ {
		if before[o][0] == strconv.Itoa(a.sql.Port) && before[o][1] == strconv.Itoa(b.sql.Port) {
			onA = append(onA, o)
		}
	}
	if len(onA) == 0 {
		t.Fatalf("no partition mastered on a with its replica on b: %v", before)
	}
	cut = time.Now()
	b.internal.Cut()
	// a commit waits for its sync replica until that replica is taken out
	id := load.idOn(onA[0])
	testutil.Exec(t, db, fmt.Sprintf("INSERT INTO kv VALUES (%d, 3)", id))
	load.Ack(id)
	took := time.Since(cut)
	t.Logf("pair link cut → a commit on the master's partition returned after %s", took)
	if took > 10*time.Second {
		t.Errorf("a commit waited %s for an unreachable sync replica", took)
	}
	eventually(t, 5*time.Second, func() string {
		now := partitionCopies(t, ma, "nf")
		for _, o := range onA {
			if now[o][1] != "" {
				return fmt.Sprintf("partition %d still has its unreachable replica %s", o, now[o][1])
			}
		}
		return ""
	})
	settled := time.Now()
	time.Sleep(time.Second)
	if w := load.latency(settled, time.Now()); w.failed > 0 {
		t.Errorf("inserts failed with the replica taken out: %s", w)
	}
	load.verify("pair link cut", ma, c.Leaves)
	if leafState(t, ma, a.sql.Port) != "online" || leafState(t, ma, b.sql.Port) != "online" {
		t.Errorf("a cut pair link took a leaf offline: %q", testutil.Rows(t, ma, "SHOW LEAVES"))
	}

	// the link heals: the replicas come back by themselves
	if err := b.internal.Restore(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() string {
		now := partitionCopies(t, ma, "nf")
		for _, o := range onA {
			if now[o][1] != strconv.Itoa(b.sql.Port) {
				return fmt.Sprintf("partition %d: replica %q, want it back on %d", o, now[o][1], b.sql.Port)
			}
		}
		return ""
	})
	load.verify("pair link healed", ma, c.Leaves)

	// 3. the re-made replicas are complete: a dies, b takes over
	a.Kill()
	waitLeafState(t, ma, a.sql.Port, "offline", 10*time.Second)
	waitReadable(t, db)
	time.Sleep(500 * time.Millisecond)
	load.Stop()
	load.verify("master of the re-made replicas killed", ma, c.Leaves)
}
