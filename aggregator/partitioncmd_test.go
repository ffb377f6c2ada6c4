package aggregator_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestPartitionCommands runs the low-level partition commands by hand:
// copy a partition, promote the copy dropping the old master, detach it
// (no master: statements on it fail, the copy is an orphan), attach it
// back, drop a replica; and the refusals that keep data safe.
func TestPartitionCommands(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	ma := c.MA.DB("lp")
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE lp PARTITIONS 2")
	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	for i := 0; i < 40; i++ {
		testutil.Exec(t, ma, "INSERT INTO t VALUES (?, ?)", i, i)
	}
	count := func() { testutil.ExpectRows(t, ma, "SELECT COUNT(*), SUM(v) FROM t", "40,780") }
	from := partitionMasters(t, ma, "lp")[0]
	var to *testutil.Node
	for _, l := range c.Leaves {
		if port(l) != from {
			to = l
		}
	}
	on := fmt.Sprintf("'127.0.0.1':%d", to.Port)
	fromOn := "'127.0.0.1':" + from

	testutil.Exec(t, ma, "COPY PARTITION lp:0 TO "+on)
	if got := partitionCopies(t, ma, "lp")[0]; got != [2]string{from, port(to)} {
		t.Fatalf("after COPY PARTITION: master,replica = %v, want %s,%d", got, from, to.Port)
	}
	if got := strings.Join(testutil.Rows(t, ma, "SHOW REBALANCE STATUS ON lp"), ";"); !strings.HasPrefix(got, fmt.Sprintf("COPY PARTITION,0,127.0.0.1,%d,1,success,", to.Port)) {
		t.Errorf("SHOW REBALANCE STATUS after COPY PARTITION: %s", got)
	}
	expectErrorContains(t, ma, "COPY PARTITION lp:0 TO "+on, "already holds")
	expectErrorContains(t, ma, "DROP PARTITION lp:0 ON "+fromOn, "holds the master")
	expectErrorContains(t, ma, "PROMOTE PARTITION lp:1 ON "+fromOn, "no replica")
	expectErrorContains(t, ma, "COPY PARTITION lp:7 TO "+on, "no partition 7")

	testutil.Exec(t, ma, "PROMOTE PARTITION lp:0 ON "+on+" WITH DROP")
	if got := partitionCopies(t, ma, "lp")[0]; got != [2]string{port(to), ""} {
		t.Fatalf("after PROMOTE PARTITION WITH DROP: master,replica = %v, want %d alone", got, to.Port)
	}
	if dbs := testutil.Rows(t, leafByPort(c, from).DB(""), "SHOW DATABASES"); strings.Contains(strings.Join(dbs, ","), "lp_0") {
		t.Errorf("the old master still holds lp_0: %v", dbs)
	}
	count()

	// Detached, the partition has no master and its copy is an orphan.
	testutil.Exec(t, ma, "DETACH PARTITION lp:0 ON "+on)
	testutil.ExpectError(t, ma, 1777, "HY000", "SELECT COUNT(*) FROM t")
	if st := strings.Join(testutil.Rows(t, ma, "SHOW CLUSTER STATUS"), ";"); !strings.Contains(st, fmt.Sprintf("%d,lp_0,Orphan", to.Port)) {
		t.Errorf("SHOW CLUSTER STATUS does not show the detached copy as an orphan: %s", st)
	}
	expectErrorContains(t, ma, "DROP PARTITION lp:0 ON "+on, "ATTACH PARTITION")
	testutil.Exec(t, ma, "ATTACH PARTITION lp:0 ON "+on)
	if got := partitionMasters(t, ma, "lp")[0]; got != port(to) {
		t.Fatalf("after ATTACH PARTITION the master of 0 is %q", got)
	}
	count()
	testutil.Exec(t, ma, "INSERT INTO t VALUES (100, 0)")

	// A replica made and dropped.
	testutil.Exec(t, ma, "COPY PARTITION lp:1 TO "+fromOn)
	testutil.Exec(t, ma, "DROP PARTITION lp:1 ON "+fromOn)
	if got := partitionCopies(t, ma, "lp")[1]; got[1] != "" {
		t.Errorf("after DROP PARTITION of the replica: %v", got)
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t", "41")
}

// TestCopyBandwidthCap: copy_bandwidth_mb_per_sec bounds how fast a
// partition copy ships; the copy without a cap is the throughput figure
// of BENCHMARKS.md.
func TestCopyBandwidthCap(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	ma := c.MA.DB("bw")
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE bw PARTITIONS 2")
	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, pad TEXT)")
	const rows, pad = 800, 4000
	for i := 0; i < rows; i += 50 {
		var vals []string
		for j := i; j < i+50; j++ {
			vals = append(vals, fmt.Sprintf("(%d, REPEAT('x', %d))", j, pad))
		}
		testutil.Exec(t, ma, "INSERT INTO t VALUES "+strings.Join(vals, ","))
	}
	masters := partitionMasters(t, ma, "bw")
	other := func(o int) string {
		for _, l := range c.Leaves {
			if port(l) != masters[o] {
				return fmt.Sprintf("'127.0.0.1':%d", l.Port)
			}
		}
		return ""
	}
	perPartition := float64(rows*pad) / 2 / (1 << 20) // MiB, about

	start := time.Now()
	testutil.Exec(t, ma, "COPY PARTITION bw:0 TO "+other(0))
	free := time.Since(start)
	t.Logf("uncapped copy of about %.1f MiB: %s (%.1f MiB/s)", perPartition, free.Round(time.Millisecond), perPartition/free.Seconds())

	testutil.Exec(t, c.MA.DB(""), "SET GLOBAL copy_bandwidth_mb_per_sec = 1")
	testutil.ExpectRows(t, ma, "SELECT @@copy_bandwidth_mb_per_sec", "1")
	start = time.Now()
	testutil.Exec(t, ma, "COPY PARTITION bw:1 TO "+other(1))
	capped := time.Since(start)
	t.Logf("copy capped at 1 MB/s: %s", capped.Round(time.Millisecond))
	if min := time.Duration(perPartition * 0.7 * float64(time.Second)); capped < min {
		t.Errorf("a copy of about %.1f MiB capped at 1 MB/s took %s, less than %s", perPartition, capped, min)
	}
	testutil.ExpectError(t, c.MA.DB(""), 1231, "42000", "SET GLOBAL copy_bandwidth_mb_per_sec = 'fast'")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM t", fmt.Sprint(rows))
}
