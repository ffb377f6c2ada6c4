package aggregator_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// Issue 16, "two master aggregators": a master aggregator replaced while
// it was down (AGGREGATOR SET AS MASTER on the child) restarts unable to
// reach the new master. It must not elect itself with its old sole-voter
// configuration: the leaves, which every aggregator reaches, witness the
// newer master.

// replacedMaster kills the master aggregator of a two-leaf cluster with
// one child, makes the child master by force, and returns the cluster.
func replacedMaster(t *testing.T) *testutil.Cluster {
	c := testutil.StartCluster(t, 2, 1)
	child := c.Children[0]
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE tm PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("tm"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("tm"), "CREATE REFERENCE TABLE r (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("tm"), "INSERT INTO t VALUES (1), (2)")
	c.MA.Kill()
	testutil.Exec(t, child.DB(""), "AGGREGATOR SET AS MASTER")
	if got := nodeRole(child.DB("")); got != "master aggregator" {
		t.Fatalf("the child after AGGREGATOR SET AS MASTER: role %q", got)
	}
	testutil.Exec(t, child.DB("tm"), "INSERT INTO t VALUES (3)")
	testutil.Exec(t, child.DB("tm"), "CREATE TABLE after_takeover (a INT PRIMARY KEY)")
	return c
}

// expectNotMaster checks that the restarted old master did not take over:
// it is no master, and DDL through it fails naming the new master.
func expectNotMaster(t *testing.T, c *testutil.Cluster, newMaster *testutil.Node) {
	t.Helper()
	// a sole voter elects itself within a second or two of its start
	time.Sleep(2 * time.Second)
	if got := nodeRole(c.MA.DB("")); got == "master aggregator" {
		t.Errorf("two master aggregators: the old master elected itself while the new one (port %d) was unreachable", newMaster.Port)
	}
	want := fmt.Sprintf("replaced as master by 127.0.0.1:%d", newMaster.Port)
	expectErrorContains(t, c.MA.DB("tm"), "CREATE TABLE from_old_master (a INT PRIMARY KEY)", want)
	expectErrorContains(t, c.MA.DB("tm"), "INSERT INTO r VALUES (9)", want)
}

// expectRejoined waits until the old master is a child of the new one,
// with its metadata, and DDL through it works.
func expectRejoined(t *testing.T, c *testutil.Cluster, newMaster *testutil.Node) {
	t.Helper()
	old := c.MA.DB("tm")
	eventually(t, 20*time.Second, func() string {
		if got := nodeRole(c.MA.DB("")); got != "aggregator" {
			return "old master's role: " + got
		}
		if got := masterPort(old); got != port(newMaster) {
			return "old master sees as master: " + got
		}
		if _, err := old.Exec("INSERT INTO after_takeover VALUES (1)"); err != nil {
			return "insert through the old master: " + err.Error()
		}
		return ""
	})
	if got := nodeRole(newMaster.DB("")); got != "master aggregator" {
		t.Fatalf("the new master's role is %q", got)
	}
	testutil.Exec(t, old, "CREATE TABLE through_old (a INT PRIMARY KEY)")
	testutil.ExpectRows(t, newMaster.DB("tm"), "SELECT COUNT(*) FROM through_old", "0")
	testutil.ExpectRows(t, old, "SELECT COUNT(*) FROM t", "3")
}

// TestReplacedMasterNewMasterPaused: the new master is paused (SIGSTOP:
// connections hang) while the old one restarts.
func TestReplacedMasterNewMasterPaused(t *testing.T) {
	c := replacedMaster(t)
	child := c.Children[0]
	child.Pause()
	c.MA.Start()
	expectNotMaster(t, c, child)
	// reads through the old master go on meanwhile, as through a child
	// cut off from its master
	testutil.ExpectRows(t, c.MA.DB("tm"), "SELECT COUNT(*) FROM t", "3")
	child.Resume()
	expectRejoined(t, c, child)
}

// TestReplacedMasterNewMasterDown: the new master is down when the old
// one restarts; the operator then makes the old one master again by force,
// and the other, back, must not take over either.
func TestReplacedMasterNewMasterDown(t *testing.T) {
	c := replacedMaster(t)
	child := c.Children[0]
	child.Kill()
	c.MA.Start()
	expectNotMaster(t, c, child)

	// the new master is lost for good: the old one takes over again
	testutil.Exec(t, c.MA.DB(""), "AGGREGATOR SET AS MASTER")
	if got := nodeRole(c.MA.DB("")); got != "master aggregator" {
		t.Fatalf("the old master after AGGREGATOR SET AS MASTER: role %q", got)
	}
	testutil.Exec(t, c.MA.DB("tm"), "CREATE TABLE back_on_old (a INT PRIMARY KEY)")
	testutil.ExpectRows(t, c.MA.DB("tm"), "SELECT COUNT(*) FROM t", "3")

	// the child returns: it was replaced in turn and follows
	child.Start()
	eventually(t, 20*time.Second, func() string {
		if got := nodeRole(child.DB("")); got != "aggregator" {
			return "the returning child's role: " + got
		}
		if got := masterPort(child.DB("tm")); got != port(c.MA) {
			return "the returning child sees as master: " + got
		}
		if _, err := child.DB("tm").Exec("INSERT INTO back_on_old VALUES (1)"); err != nil {
			return "insert through the returning child: " + err.Error()
		}
		return ""
	})
	if got := nodeRole(c.MA.DB("")); got != "master aggregator" {
		t.Fatalf("the master's role is %q after the child returned", got)
	}
	if v := raftVoters(c.MA.DB("")); v != port(c.MA) {
		t.Errorf("voters: %s, want only the master %s", v, port(c.MA))
	}
	testutil.ExpectRows(t, c.MA.DB("tm"), "SELECT COUNT(*) FROM back_on_old", "1")

}

// TestPausedMasterReplaced: the master aggregator is paused (SIGSTOP) and
// the child takes over by force. Resumed, the old master still leads its
// own sole-voter configuration, until the first answer from the new
// master carries a newer raft term (which the code before issue 16
// relied on) or a leaf refuses its older master epoch (it steps down):
// either way it ends a child of the new master.
func TestPausedMasterReplaced(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	child := c.Children[0]
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE tm PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("tm"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("tm"), "INSERT INTO t VALUES (1), (2)")
	c.MA.Pause()
	testutil.Exec(t, child.DB(""), "AGGREGATOR SET AS MASTER")
	testutil.Exec(t, child.DB("tm"), "INSERT INTO t VALUES (3)")
	testutil.Exec(t, child.DB("tm"), "CREATE TABLE after_takeover (a INT PRIMARY KEY)")
	c.MA.Resume()
	expectRejoined(t, c, child)
	if v := raftVoters(child.DB("")); v != port(child) {
		t.Errorf("voters: %s, want only the master %s", v, port(child))
	}
}

// TestMasterStartsBeforeLeaves: a whole-cluster restart in the wrong
// order, the master aggregator first while its child and the leaves are
// down. It hears from no one, so it does not take over (another
// aggregator may have been made master meanwhile) until the leaves are
// up; then it does by itself.
func TestMasterStartsBeforeLeaves(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	child := c.Children[0]
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE tm PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("tm"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("tm"), "INSERT INTO t VALUES (1), (2), (3)")
	c.MA.Stop()
	child.Stop()
	for _, l := range c.Leaves {
		l.Stop()
	}
	c.MA.Start()
	time.Sleep(2 * time.Second)
	if got := nodeRole(c.MA.DB("")); got == "master aggregator" {
		t.Errorf("the master aggregator took over hearing from no leaf and no aggregator")
	}
	expectErrorContains(t, c.MA.DB("tm"), "CREATE TABLE u (a INT PRIMARY KEY)", "heard from no leaf and no other aggregator")
	for _, l := range c.Leaves {
		l.Start()
	}
	eventually(t, 15*time.Second, func() string {
		if got := nodeRole(c.MA.DB("")); got != "master aggregator" {
			return "role once the leaves are up: " + got
		}
		return ""
	})
	child.Start()
	testutil.Exec(t, c.MA.DB("tm"), "CREATE TABLE u (a INT PRIMARY KEY)")
	testutil.ExpectRows(t, c.MA.DB("tm"), "SELECT COUNT(*) FROM t", "3")
	eventually(t, 15*time.Second, func() string {
		if _, err := child.DB("tm").Exec("INSERT INTO u VALUES (1)"); err != nil {
			return "insert through the child: " + err.Error()
		}
		return ""
	})
}

// TestMasterCutOffReplaced: the master aggregator and its child lose
// each other (every link between them cut through proxies; both still
// reach the leaves) and the child is made master by force. The old
// master, which never stopped, leads its own sole-voter configuration:
// two masters. The leaves carry the new master's newer epoch and refuse
// the old one's: it steps down and holds, saying who replaced it, and
// rejoins as a child when the links heal.
func TestMasterCutOffReplaced(t *testing.T) {
	// the master is reached at 127.0.0.2 (its own port numbers), only
	// through proxies; the child at proxy ports on 127.0.0.1
	ma := testutil.StartNode(t, "--master-aggregator", "--advertise-host", "127.0.0.2")
	maSQL := testutil.StartProxyAt(t, "127.0.0.2", ma.Port, ma.Addr())
	maInternal := testutil.StartProxyAt(t, "127.0.0.2", ma.InternalPort, fmt.Sprintf("127.0.0.1:%d", ma.InternalPort))
	c := testutil.NewCluster(t, ma)
	for i := 0; i < 2; i++ {
		c.AddLeaf(testutil.StartNode(t), 0)
	}
	child, childInternal := testutil.StartNodeBehindInternalProxy(t, nil)
	childSQL := testutil.StartProxy(t, 0, child.Addr())
	testutil.Exec(t, ma.DB(""), fmt.Sprintf("ADD AGGREGATOR root@'127.0.0.1':%d", childSQL.Port))
	c.Children = append(c.Children, child)
	c.WaitCaughtUp(child, 10*time.Second)
	testutil.Exec(t, ma.DB(""), "CREATE DATABASE tm PARTITIONS 4")
	testutil.Exec(t, ma.DB("tm"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, ma.DB("tm"), "INSERT INTO t VALUES (1), (2)")
	c.WaitCaughtUp(child, 10*time.Second)

	links := []*testutil.Proxy{maSQL, maInternal, childSQL, childInternal}
	for _, p := range links {
		p.Cut()
	}
	testutil.Exec(t, child.DB(""), "AGGREGATOR SET AS MASTER")
	testutil.Exec(t, child.DB("tm"), "INSERT INTO t VALUES (3)")
	testutil.Exec(t, child.DB("tm"), "CREATE TABLE after_takeover (a INT PRIMARY KEY)")
	eventually(t, 10*time.Second, func() string {
		if got := nodeRole(ma.DB("")); got != "aggregator" {
			return "two master aggregators: the cut-off old master's role is " + got
		}
		return ""
	})
	expectErrorContains(t, ma.DB("tm"), "CREATE TABLE from_old_master (a INT PRIMARY KEY)",
		fmt.Sprintf("replaced as master by 127.0.0.1:%d", childSQL.Port))
	if got := nodeRole(child.DB("")); got != "master aggregator" {
		t.Fatalf("the new master's role is %q", got)
	}

	for _, p := range links {
		if err := p.Restore(); err != nil {
			t.Fatal(err)
		}
	}
	old := ma.DB("tm")
	eventually(t, 20*time.Second, func() string {
		if got := masterPort(old); got != fmt.Sprint(childSQL.Port) {
			return "the old master sees as master: " + got
		}
		if _, err := old.Exec("INSERT INTO after_takeover VALUES (1)"); err != nil {
			return "insert through the old master: " + err.Error()
		}
		return ""
	})
	testutil.Exec(t, old, "CREATE TABLE through_old (a INT PRIMARY KEY)")
	testutil.ExpectRows(t, child.DB("tm"), "SELECT COUNT(*) FROM through_old", "0")
	testutil.ExpectRows(t, old, "SELECT COUNT(*) FROM t", "3")
	if got := nodeRole(child.DB("")); got != "master aggregator" {
		t.Fatalf("the new master's role is %q after the links healed", got)
	}
}
