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
