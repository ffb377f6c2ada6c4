package aggregator_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// fieldsOf runs q and splits each row into its columns; nil on error.
func fieldsOf(db *sql.DB, q string) [][]string {
	rows, err := testutil.RenderRows(db, "|", q)
	if err != nil {
		return nil
	}
	var out [][]string
	for _, r := range rows {
		out = append(out, strings.Split(r, "|"))
	}
	return out
}

// nodeRole is a node's role from CANOPY NODE STATUS ("master aggregator",
// "aggregator", "leaf"), or "" if it does not answer.
func nodeRole(db *sql.DB) string {
	if rows := fieldsOf(db, "CANOPY NODE STATUS"); len(rows) == 1 {
		return rows[0][0]
	}
	return ""
}

// raftVoters lists the voting aggregators' ports in CANOPY RAFT MEMBERS.
func raftVoters(db *sql.DB) string {
	var out []string
	for _, f := range fieldsOf(db, "CANOPY RAFT MEMBERS") { // Aggregator|Raft_Address|Suffrage|Master_Aggregator
		if f[2] == "voter" {
			out = append(out, f[0][strings.LastIndex(f[0], ":")+1:])
		}
	}
	return strings.Join(out, ",")
}

// masterPort is the port SHOW AGGREGATORS on db names as master, or "".
func masterPort(db *sql.DB) string {
	for _, f := range fieldsOf(db, "SHOW AGGREGATORS") { // Host|Port|State|…|Master_Aggregator
		if f[5] == "1" {
			return f[1]
		}
	}
	return ""
}

func port(n *testutil.Node) string { return fmt.Sprint(n.Port) }

// TestMasterAggregatorFailure follows 002_938ff6d769c13d84.txt: with the
// master aggregator down DML goes on through a child, DDL fails saying
// why; a restart re-establishes everything; AGGREGATOR SET AS MASTER on
// the child makes it master for good, and the old master, back, is a
// child.
func TestMasterAggregatorFailure(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	child := c.Children[0]
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE m PARTITIONS 4")
	cdb := child.DB("m")
	testutil.Exec(t, cdb, "CREATE REFERENCE TABLE r (id INT PRIMARY KEY, name TEXT)")
	testutil.Exec(t, cdb, "INSERT INTO r VALUES (1, 'before')")
	load := startWriteLoad(t, 4, cdb)
	time.Sleep(300 * time.Millisecond)

	// The master dies: DML through the child goes on; DDL says why not.
	c.MA.Kill()
	time.Sleep(time.Second)
	load.verify("master aggregator down", cdb, c.Leaves)
	expectErrorContains(t, cdb, "CREATE TABLE x (a INT PRIMARY KEY)", "AGGREGATOR SET AS MASTER")
	expectErrorContains(t, cdb, "INSERT INTO r VALUES (2, 'down')", "master aggregator")
	testutil.ExpectRows(t, cdb, "SELECT name FROM r WHERE id = 1", "before")

	// A restart re-establishes everything.
	c.MA.Start()
	eventually(t, 15*time.Second, func() string {
		if _, err := cdb.Exec("CREATE TABLE x (a INT PRIMARY KEY)"); err != nil {
			return "DDL through the child after the master's restart: " + err.Error()
		}
		return ""
	})
	testutil.Exec(t, cdb, "INSERT INTO r VALUES (2, 'restarted')")

	// Lost for good: the child takes over.
	c.MA.Kill()
	start := time.Now()
	testutil.Exec(t, child.DB(""), "AGGREGATOR SET AS MASTER")
	t.Logf("AGGREGATOR SET AS MASTER took %s", time.Since(start).Round(time.Millisecond))
	if got := nodeRole(child.DB("")); got != "master aggregator" {
		t.Fatalf("the child after AGGREGATOR SET AS MASTER: role %q", got)
	}
	if got := masterPort(cdb); got != port(child) {
		t.Errorf("SHOW AGGREGATORS names %s as master, want %s", got, port(child))
	}
	testutil.Exec(t, cdb, "CREATE TABLE y (a INT PRIMARY KEY)")
	testutil.Exec(t, cdb, "INSERT INTO r VALUES (3, 'new master')")
	for _, l := range c.Leaves {
		testutil.ExpectRows(t, l.DB("m"), "SELECT name FROM r ORDER BY id", "before", "restarted", "new master")
	}
	load.verify("after AGGREGATOR SET AS MASTER", cdb, c.Leaves)
	expectErrorContains(t, child.DB(""), "AGGREGATOR SET AS MASTER", "already the master")

	// The new master watches the leaves.
	c.Leaves[1].Kill()
	waitLeafState(t, cdb, c.Leaves[1].Port, "offline", 10*time.Second)
	c.Leaves[1].Start()
	waitLeafState(t, cdb, c.Leaves[1].Port, "online", 20*time.Second)

	// The old master comes back as a child of the new one.
	c.MA.Start()
	old := c.MA.DB("m")
	eventually(t, 20*time.Second, func() string {
		if got := nodeRole(c.MA.DB("")); got != "aggregator" {
			return "old master's role: " + got
		}
		if got := masterPort(old); got != port(child) {
			return "old master sees as master: " + got
		}
		rows, err := testutil.RenderRows(old, "|", "SELECT name FROM r ORDER BY id")
		if err != nil || strings.Join(rows, ",") != "before,restarted,new master" {
			return fmt.Sprintf("reference table on the old master: %v %v", rows, err)
		}
		return ""
	})
	if got := nodeRole(child.DB("")); got != "master aggregator" {
		t.Fatalf("the returning old master took over: the child's role is %q", got)
	}
	testutil.Exec(t, old, "CREATE TABLE z (a INT PRIMARY KEY)")
	testutil.Exec(t, old, "INSERT INTO z VALUES (1), (2)")
	testutil.Exec(t, old, "INSERT INTO r VALUES (4, 'through the old master')")
	testutil.ExpectRows(t, cdb, "SELECT COUNT(*) FROM z", "2")
	testutil.ExpectRows(t, cdb, "SELECT name FROM r WHERE id = 4", "through the old master")
	load.verify("old master back as a child", cdb, c.Leaves)
	if v := raftVoters(cdb); v != port(child) {
		t.Errorf("voters with two aggregators: %s, want only the master %s", v, port(child))
	}
}

// TestPromoteAggregatorToMaster: a graceful swap and back, with the
// master answering.
func TestPromoteAggregatorToMaster(t *testing.T) {
	c := testutil.StartCluster(t, 1, 1)
	child := c.Children[0]
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE p PARTITIONS 2")
	testutil.Exec(t, c.MA.DB("p"), "CREATE REFERENCE TABLE r (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("p"), "INSERT INTO r VALUES (1)")

	testutil.Exec(t, c.MA.DB(""), fmt.Sprintf("PROMOTE AGGREGATOR '127.0.0.1':%d TO MASTER", child.Port))
	if got := nodeRole(child.DB("")); got != "master aggregator" {
		t.Fatalf("after PROMOTE AGGREGATOR the child's role is %q", got)
	}
	eventually(t, 10*time.Second, func() string {
		if got := nodeRole(c.MA.DB("")); got != "aggregator" {
			return "old master's role: " + got
		}
		if v := raftVoters(child.DB("")); v != port(child) {
			return "voters: " + v
		}
		return ""
	})
	testutil.Exec(t, c.MA.DB("p"), "INSERT INTO r VALUES (2)") // forwarded to the new master
	testutil.Exec(t, c.MA.DB("p"), "CREATE TABLE s (a INT PRIMARY KEY)")
	testutil.ExpectRows(t, child.DB("p"), "SELECT COUNT(*) FROM r", "2")
	testutil.ExpectRows(t, c.Leaves[0].DB("p"), "SELECT COUNT(*) FROM r", "2")

	// and back, by AGGREGATOR SET AS MASTER on the old master
	testutil.Exec(t, c.MA.DB(""), "AGGREGATOR SET AS MASTER")
	if got := nodeRole(c.MA.DB("")); got != "master aggregator" {
		t.Fatalf("after AGGREGATOR SET AS MASTER with a live master: role %q", got)
	}
	testutil.Exec(t, child.DB("p"), "INSERT INTO r VALUES (3)")
	eventually(t, 10*time.Second, func() string {
		rows, err := testutil.RenderRows(child.DB("p"), "|", "SELECT COUNT(*) FROM r")
		if err != nil || rows[0] != "3" {
			return fmt.Sprintf("reference rows on the child: %v %v", rows, err)
		}
		return ""
	})
	expectErrorContains(t, c.MA.DB(""), "PROMOTE AGGREGATOR '127.0.0.1':1 TO MASTER", "not part of the cluster")
}

// TestMasterAggregatorElection: with three aggregators every one votes,
// and losing the master elects another without anyone's help.
func TestMasterAggregatorElection(t *testing.T) {
	c := testutil.StartCluster(t, 2, 2)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE e PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("e"), "CREATE REFERENCE TABLE r (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("e"), "INSERT INTO r VALUES (1)")
	want := strings.Join([]string{port(c.MA), port(c.Children[0]), port(c.Children[1])}, ",")
	eventually(t, 10*time.Second, func() string {
		if v := raftVoters(c.MA.DB("")); v != want {
			return "voters: " + v
		}
		return ""
	})
	load := startWriteLoad(t, 4, c.Children[0].DB("e"), c.Children[1].DB("e"))
	time.Sleep(300 * time.Millisecond)

	c.MA.Kill()
	killed := time.Now()
	var master *testutil.Node
	eventually(t, 10*time.Second, func() string {
		for _, ch := range c.Children {
			if nodeRole(ch.DB("")) == "master aggregator" {
				master = ch
				return ""
			}
		}
		return "no child became master"
	})
	t.Logf("a new master aggregator was elected %s after the old one was killed", time.Since(killed).Round(time.Millisecond))
	other := c.Children[0]
	if other == master {
		other = c.Children[1]
	}
	eventually(t, 10*time.Second, func() string {
		if _, err := other.DB("e").Exec("CREATE TABLE after_election (a INT PRIMARY KEY)"); err != nil {
			return "DDL through the other child: " + err.Error()
		}
		return ""
	})
	testutil.Exec(t, other.DB("e"), "INSERT INTO r VALUES (2)")
	load.verify("after the election", master.DB("e"), c.Leaves)

	c.MA.Start()
	eventually(t, 20*time.Second, func() string {
		if got := nodeRole(c.MA.DB("")); got != "aggregator" {
			return "old master's role: " + got
		}
		rows, err := testutil.RenderRows(c.MA.DB("e"), "|", "SELECT COUNT(*) FROM r")
		if err != nil || rows[0] != "2" {
			return fmt.Sprintf("reference rows on the old master: %v %v", rows, err)
		}
		return ""
	})
	testutil.Exec(t, c.MA.DB("e"), "INSERT INTO after_election VALUES (1)")
	load.verify("old master back", master.DB("e"), c.Leaves)
}
