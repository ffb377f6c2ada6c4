package testutil

import (
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"
)

// Cluster is a master aggregator with leaves and child aggregators, each
// a real process.
type Cluster struct {
	t        testing.TB
	MA       *Node
	Leaves   []*Node
	Children []*Node
}

// StartCluster starts a master aggregator, adds leaves and child
// aggregators to it, and waits until every node is online.
func StartCluster(t testing.TB, leaves, children int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, MA: StartNode(t, "--master-aggregator")}
	for i := 0; i < leaves; i++ {
		c.AddLeaf(StartNode(t), 0)
	}
	for i := 0; i < children; i++ {
		c.AddAggregator(StartNode(t))
	}
	return c
}

// NewCluster is a cluster of a running master aggregator alone, for tests
// that set cluster variables before they add nodes.
func NewCluster(t testing.TB, ma *Node) *Cluster { return &Cluster{t: t, MA: ma} }

// AddLeaf adds a running node as a leaf (group 0: the default).
func (c *Cluster) AddLeaf(n *Node, group int) {
	c.t.Helper()
	q := fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", n.Port)
	if group > 0 {
		q += fmt.Sprintf(" INTO GROUP %d", group)
	}
	if _, err := c.MA.DB("").Exec(q); err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	c.Leaves = append(c.Leaves, n)
}

// AddAggregator adds a running node as a child aggregator and waits until
// it has the cluster metadata.
func (c *Cluster) AddAggregator(n *Node) {
	c.t.Helper()
	q := fmt.Sprintf("ADD AGGREGATOR root@'127.0.0.1':%d", n.Port)
	if _, err := c.MA.DB("").Exec(q); err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	c.Children = append(c.Children, n)
	c.WaitCaughtUp(n, 10*time.Second)
}

// RemoveAggregator takes a child aggregator out of the cluster (REMOVE
// AGGREGATOR), so that one a subtest started leaves no dead voter in the
// metadata group when it is stopped.
func (c *Cluster) RemoveAggregator(n *Node) {
	c.t.Helper()
	q := fmt.Sprintf("REMOVE AGGREGATOR '127.0.0.1':%d", n.Port)
	if _, err := c.MA.DB("").Exec(q); err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	c.Children = slices.DeleteFunc(c.Children, func(m *Node) bool { return m == n })
}

// RaftIndex is the metadata index a node has applied (CANOPY NODE STATUS).
func RaftIndex(db *sql.DB) (int64, error) {
	rows, err := db.Query("CANOPY NODE STATUS")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]interface{}, len(cols))
	var idx int64
	for i := range vals {
		vals[i] = new(sql.RawBytes)
	}
	vals[len(cols)-1] = &idx // Raft_Index is the last column
	if !rows.Next() {
		return 0, fmt.Errorf("CANOPY NODE STATUS: no row")
	}
	if err := rows.Scan(vals...); err != nil {
		return 0, err
	}
	return idx, rows.Err()
}

// WaitCaughtUp waits until aggregator n has applied every metadata change
// the master aggregator has.
func (c *Cluster) WaitCaughtUp(n *Node, timeout time.Duration) {
	c.t.Helper()
	want, err := RaftIndex(c.MA.DB(""))
	if err != nil {
		c.t.Fatalf("master aggregator status: %v", err)
	}
	deadline := time.Now().Add(timeout)
	db := n.DB("")
	for {
		got, err := RaftIndex(db)
		if err == nil && got >= want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("aggregator on port %d at metadata index %d (err %v), master at %d", n.Port, got, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
