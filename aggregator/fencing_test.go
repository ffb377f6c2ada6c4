package aggregator_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// staleWrite is a write sent straight to a leaf's partition database, as
// an aggregator that has not applied a failover would send it.
type staleWrite struct {
	db  string // partition database
	id  int
	err error
}

// writeStale sends one INSERT per partition database on conns, each on
// its own connection, and returns their outcomes once all answered.
// Sent while the leaf is paused, they wait in its sockets and run the
// moment it resumes.
func writeStale(conns map[string]*sql.Conn, id int) <-chan []staleWrite {
	out := make(chan []staleWrite, 1)
	go func() {
		done := make(chan staleWrite)
		for db, c := range conns {
			go func(db string, c *sql.Conn) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := c.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s.t VALUES (%d, 1)", db, id))
				done <- staleWrite{db, id, err}
			}(db, c)
		}
		var res []staleWrite
		for range conns {
			res = append(res, <-done)
		}
		out <- res
	}()
	return out
}

// leafConns opens one connection to leaf per partition database.
func leafConns(t *testing.T, leaf *testutil.Node, dbs []string) map[string]*sql.Conn {
	t.Helper()
	db := leaf.DB("")
	out := map[string]*sql.Conn{}
	for _, name := range dbs {
		c, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.ExecContext(context.Background(), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		out[name] = c
	}
	return out
}

// copyStates maps a leaf's partition databases to their Role/State in
// SHOW DATABASES EXTENDED.
func copyStates(t *testing.T, leaf *testutil.Node) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range testutil.Rows(t, leaf.DB(""), "SHOW DATABASES EXTENDED") {
		f := strings.Split(r, ",")
		out[f[0]] = f[2] + "/" + f[3]
	}
	return out
}

// TestPausedMasterFencing (issue 16, async fencing): a master leaf paused
// with SIGSTOP long enough to be failed over, then resumed, must not
// acknowledge a write to the partitions it no longer masters: an
// aggregator that has not applied the failover would send it there (the
// test sends it straight to the leaf, queued while the leaf is stopped),
// and the copy is dropped when the leaf is attached again. Its copies then
// show themselves fenced (their senders were refused by the new masters).
// An async and a sync database. Then a pause shorter than the failure
// timeout: the leaf refuses writes until the master aggregator confirms it
// is still master, which it does at once; writes through the aggregator
// wait for it, and nothing is lost. Last, a start is a pause of unknown
// length: killed, failed over and restarted, the leaf refuses writes too.
func TestPausedMasterFencing(t *testing.T) {
	began := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 2000")
	testutil.Exec(t, ma, "SET GLOBAL auto_attach = OFF") // the resumed leaf's copies are looked at before it is attached
	for i := 0; i < 2; i++ {
		// the test writes to partitions directly, as an aggregator does
		c.AddLeaf(testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=client-internal-access"}), 0)
	}
	testutil.Exec(t, ma, "CREATE DATABASE af PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE DATABASE sf WITH SYNC REPLICATION PARTITIONS 4")
	for _, d := range []string{"af", "sf"} {
		testutil.Exec(t, ma, fmt.Sprintf("CREATE TABLE %s.t (id INT PRIMARY KEY, v INT)", d))
	}
	victim := c.Leaves[0]
	var owned []string // the victim's master partitions
	for _, d := range []string{"af", "sf"} {
		for o, m := range partitionMasters(t, ma, d) {
			if m == port(victim) {
				owned = append(owned, fmt.Sprintf("%s_%d", d, o))
			}
		}
	}
	if len(owned) != 4 {
		t.Fatalf("the victim masters %v, want 2 partitions of each database", owned)
	}
	conns := leafConns(t, victim, owned)
	for _, w := range <-writeStale(conns, 1) {
		if w.err != nil {
			t.Fatalf("write to %s before the pause: %v", w.db, w.err)
		}
	}
	acked := map[string][]int{} // partition database → ids the victim acknowledged
	for _, name := range owned {
		acked[name] = append(acked[name], 1)
	}

	// paused until failed over; a write sent meanwhile runs as it resumes
	phase("pause until failed over")
	victim.Pause()
	waitLeafState(t, ma, victim.Port, "offline", 10*time.Second)
	eventually(t, 5*time.Second, func() string {
		for _, d := range []string{"af", "sf"} {
			for o, m := range partitionMasters(t, ma, d) {
				if m == port(victim) {
					return fmt.Sprintf("%s:%d still mastered by the paused leaf", d, o)
				}
			}
		}
		return ""
	})
	stale := writeStale(conns, 2)
	time.Sleep(200 * time.Millisecond)
	victim.Resume()
	for _, w := range <-stale {
		if w.err == nil {
			acked[w.db] = append(acked[w.db], w.id)
			t.Errorf("the resumed old master acknowledged a write to %s, which failed over while it was paused", w.db)
		} else {
			t.Logf("write to %s on the resumed old master: %v", w.db, w.err)
		}
	}
	// its copies say what they are, and keep refusing writes
	softly(t, 10*time.Second, func() string {
		states := copyStates(t, victim)
		for _, name := range owned {
			if !strings.HasSuffix(states[name], "/fenced") {
				return fmt.Sprintf("%s on the resumed leaf is %s, want fenced (its async sender was refused by the new master)", name, states[name])
			}
		}
		return ""
	})
	for _, w := range <-writeStale(conns, 3) {
		if w.err == nil {
			acked[w.db] = append(acked[w.db], w.id)
			t.Errorf("the fenced old master acknowledged a write to %s", w.db)
		}
	}

	// attached again: its stale copies are replaced; nothing acknowledged is lost
	phase("attach")
	waitLeafState(t, ma, victim.Port, "detached", 10*time.Second)                      // auto_attach is off
	testutil.Exec(t, ma, fmt.Sprintf("ATTACH LEAF '127.0.0.1':%d FORCE", victim.Port)) // as auto-attach does
	checkAcked(t, c, acked)

	phase("pause shorter than the failure timeout")
	// a pause shorter than the failure timeout: the copies are suspect
	// when the leaf resumes, confirmed by the master aggregator at once
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 30000")
	owned = owned[:0]
	for _, d := range []string{"af", "sf"} {
		for o, m := range partitionMasters(t, ma, d) {
			if m == port(victim) {
				owned = append(owned, fmt.Sprintf("%s_%d", d, o))
			}
		}
	}
	if len(owned) == 0 {
		t.Fatal("the re-attached leaf masters no partition")
	}
	conns = leafConns(t, victim, owned)
	victim.Pause()
	time.Sleep(3 * time.Second)
	stale = writeStale(conns, 4)
	time.Sleep(200 * time.Millisecond)
	resumed := time.Now()
	victim.Resume()
	// writes through the aggregator wait for the confirmation (they are
	// refused whole, and run again)
	viaMA := make(chan error, 1)
	go func() {
		for i := 0; i < 20; i++ {
			for _, d := range []string{"af", "sf"} {
				if _, err := c.MA.DB(d).Exec(fmt.Sprintf("INSERT INTO t VALUES (%d, 2)", 100+i)); err != nil {
					viaMA <- fmt.Errorf("insert %d into %s through the master aggregator after the pause: %w", 100+i, d, err)
					return
				}
			}
		}
		viaMA <- nil
	}()
	for _, w := range <-stale {
		if w.err == nil {
			acked[w.db] = append(acked[w.db], w.id)
		} else {
			t.Logf("write to %s as the leaf resumed: %v", w.db, w.err)
		}
	}
	eventually(t, 5*time.Second, func() string {
		states := copyStates(t, victim)
		for _, name := range owned {
			if states[name] != "master/online" {
				return fmt.Sprintf("%s on the resumed leaf is %s, want master/online (confirmed)", name, states[name])
			}
		}
		return ""
	})
	t.Logf("SIGCONT → the leaf's masters confirmed: %s", time.Since(resumed).Round(time.Millisecond))
	if err := <-viaMA; err != nil {
		t.Error(err)
	}
	for _, w := range <-writeStale(conns, 5) {
		if w.err != nil {
			t.Errorf("write to %s after the master aggregator confirmed the leaf: %v", w.db, w.err)
		} else {
			acked[w.db] = append(acked[w.db], w.id)
		}
	}
	if got := leafState(t, ma, victim.Port); got != "online" {
		t.Errorf("a leaf paused for less than the failure timeout is %s", got)
	}
	checkAcked(t, c, acked)
	for _, d := range []string{"af", "sf"} {
		testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT COUNT(*) FROM %s.t WHERE id >= 100", d), "20")
	}

	phase("restart")
	// a start is a pause of unknown length: killed, failed over and
	// started again, the leaf takes no write on its old masters
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 2000")
	owned = owned[:0]
	for _, d := range []string{"af", "sf"} {
		for o, m := range partitionMasters(t, ma, d) {
			if m == port(victim) {
				owned = append(owned, fmt.Sprintf("%s_%d", d, o))
			}
		}
	}
	victim.Kill()
	waitLeafState(t, ma, victim.Port, "offline", 10*time.Second)
	phase("start")
	victim.Start()
	conns = leafConns(t, victim, owned)
	for _, w := range <-writeStale(conns, 6) {
		if w.err == nil {
			acked[w.db] = append(acked[w.db], w.id)
			t.Errorf("the restarted old master acknowledged a write to %s, which failed over while it was down", w.db)
		}
	}
	softly(t, 10*time.Second, func() string {
		states := copyStates(t, victim)
		for _, name := range owned {
			if !strings.HasSuffix(states[name], "/fenced") {
				return fmt.Sprintf("%s on the restarted leaf is %s, want fenced", name, states[name])
			}
		}
		return ""
	})
	phase("attach")
	waitLeafState(t, ma, victim.Port, "detached", 10*time.Second) // auto_attach is off
	testutil.Exec(t, ma, fmt.Sprintf("ATTACH LEAF '127.0.0.1':%d FORCE", victim.Port))
	checkAcked(t, c, acked)
	phase("done")
}

// checkAcked checks that every acknowledged id is in its partition
// database's table on the partition's master.
func checkAcked(t *testing.T, c *testutil.Cluster, acked map[string][]int) {
	t.Helper()
	ma := c.MA.DB("")
	for name, ids := range acked {
		i := strings.LastIndexByte(name, '_')
		d := name[:i]
		ord, _ := strconv.Atoi(name[i+1:])
		var have []string
		eventually(t, 10*time.Second, func() string {
			leaf := leafByPort(c, partitionMasters(t, ma, d)[ord])
			if leaf == nil {
				return fmt.Sprintf("%s has no master", name)
			}
			rows, err := testutil.RenderRows(leaf.DB(""), ",", fmt.Sprintf("SELECT id FROM %s.t ORDER BY id", name))
			if err != nil {
				return err.Error()
			}
			have = rows
			return ""
		})
		for _, id := range ids {
			found := false
			for _, h := range have {
				found = found || h == strconv.Itoa(id)
			}
			if !found {
				t.Errorf("acknowledged id %d of %s lost (its master holds %v)", id, name, have)
			}
		}
	}
}

// softly is eventually that reports a failure and goes on.
func softly(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Error(msg)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
