package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/replication"
	"github.com/canopydb/canopy/storage"
)

// A leaf's part in partition replication (DESIGN.md §3): the master
// aggregator tells it, with CANOPY REPLICATE, which of its master
// partitions to ship to which replicas; it keeps that list durably (a
// restarted master must not acknowledge a synchronous commit its replica
// lacks) and makes every commit of a synchronous partition wait until its
// replicas have it.

// ReplicaTarget is one replica a leaf ships a partition to.
type ReplicaTarget struct {
	DB     string `json:"db"`
	Target string `json:"target"` // the replica's internal address
	Sync   bool   `json:"sync,omitempty"`
	Limit  int64  `json:"limit,omitempty"` // bytes/s while it is a copy being provisioned
}

const replicationKey = "replication"

// replicaWaitTimeout bounds how long a commit waits for a synchronous
// replica. The master aggregator drops a dead replica from the list within
// its failure detection time, well below this.
const replicaWaitTimeout = 30 * time.Second

func (n *Node) loadReplication() error {
	v, ok, err := n.store.GetLocal(replicationKey)
	if err != nil || !ok || len(v) == 0 {
		return err
	}
	var ts []ReplicaTarget
	if err := json.Unmarshal(v, &ts); err != nil {
		return fmt.Errorf("replication targets: %w", err)
	}
	n.applyReplication(ts)
	return nil
}

// setReplication replaces the list of replicas this leaf ships to.
func (n *Node) setReplication(config string) error {
	var ts []ReplicaTarget
	if err := json.Unmarshal([]byte(config), &ts); err != nil {
		return mysql.NewSQLError(1105, "HY000", "CANOPY REPLICATE: bad target list: %v", err)
	}
	if err := n.store.SetLocal(replicationKey, []byte(config)); err != nil {
		return err
	}
	n.applyReplication(ts)
	return nil
}

func (n *Node) applyReplication(ts []ReplicaTarget) {
	want := map[[2]string]bool{}
	syncs := map[string][]string{}
	for _, t := range ts {
		want[[2]string{t.DB, t.Target}] = true
		n.hub.EnsureSync(t.DB, t.Target, t.Sync)
		n.hub.SetLimit(t.DB, t.Target, t.Limit)
		if t.Sync {
			syncs[t.DB] = append(syncs[t.DB], t.Target)
		}
	}
	n.replMu.Lock()
	n.syncTargets = syncs
	n.replMu.Unlock()
	n.hub.Retain(func(db, target string) bool { return want[[2]string{db, target}] })
}

// waitReplicas is the store's commit hook: a commit of a partition with
// synchronous replicas returns once they have it durable.
func (n *Node) waitReplicas(db string, lsn uint64) error {
	n.replMu.Lock()
	targets := n.syncTargets[db]
	n.replMu.Unlock()
	if len(targets) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), replicaWaitTimeout)
	defer cancel()
	err := n.hub.WaitTargets(ctx, db, targets, lsn)
	if err == nil {
		return nil
	}
	n.metrics.unconfirmedCommits.Inc()
	if errors.Is(err, replication.ErrFenced) {
		return mysql.NewSQLError(1105, "HY000",
			"Commit on %s is not confirmed: the partition failed over to its replica while this leaf was unreachable, and this copy will be discarded. Retry the transaction", db)
	}
	return mysql.NewSQLError(1105, "HY000",
		"Commit on %s is durable on the master partition but its synchronous replica did not confirm it (%v); it may be lost on failover", db, err)
}

// promotePartition makes a replica partition a master (PROMOTE PARTITION).
// At an epoch the copy's term becomes the epoch (storage.PromoteAt); with
// the incarnation the master aggregator last read from this node, it
// also confirms a master suspect since a pause (storage.PromoteConfirmed).
// A stream still applying to the copy is ended: its old master learns
// from its next connection that it was fenced.
func (n *Node) promotePartition(db string, epoch, incarnation *uint64) (*sqltypes.Result, error) {
	before, _ := n.store.Position(db)
	wasReplica := n.store.IsReplica(db)
	var pos storage.Position
	var err error
	switch {
	case epoch != nil && incarnation != nil:
		pos, err = n.store.PromoteConfirmed(db, *epoch, *incarnation)
	case epoch != nil:
		pos, err = n.store.PromoteAt(db, *epoch)
	default:
		pos, err = n.store.Promote(db)
	}
	if err != nil {
		return nil, err
	}
	n.receiver.End(db)
	if wasReplica || pos != before {
		n.log.Info("partition promoted to master", "database", db, "position", pos)
	} else {
		n.log.Debug("partition confirmed master", "database", db, "position", pos)
	}
	return positionResult(pos.Term, pos.LSN), nil
}

// DefaultPauseFence is Config.PauseFence's default: shorter than the
// shortest pause that can end in a failover (the heartbeat probe waits
// 1 s for its answer, whatever leaf_failure_timeout_ms is).
const DefaultPauseFence = 750 * time.Millisecond

// enableFencing makes this leaf notice its own pauses (storage fence.go).
func (n *Node) enableFencing() {
	d := n.cfg.PauseFence
	if d == 0 {
		d = DefaultPauseFence
	}
	if d < 0 {
		return
	}
	n.store.EnableFencing(storage.Fencing{Threshold: d, PartitionOf: func(name string) (string, bool) {
		db, _, ok := meta.PartitionOf(name)
		return db, ok
	}})
}

// demoteWait bounds how long a hand-over waits for the partition's
// in-doubt transactions; their coordinators normally resolve them in
// milliseconds.
const demoteWait = 5 * time.Second

// demotePartition makes a master partition a replica for a planned
// hand-over (the master aggregator then promotes the replica that has
// caught up with the returned position).
func (n *Node) demotePartition(ctx context.Context, db string) (*sqltypes.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, demoteWait)
	defer cancel()
	pos, err := n.store.Demote(ctx, db)
	if err != nil {
		return nil, err
	}
	n.log.Info("partition demoted to replica for a hand-over", "database", db, "position", pos)
	return positionResult(pos.Term, pos.LSN), nil
}

// dropPartition drops a partition database whatever its role (DROP
// PARTITION, and discarding a stale copy on attach).
func (n *Node) dropPartition(db string) error {
	n.hub.Retain(func(d, _ string) bool { return d != db })
	if !n.store.HasDatabase(db) {
		return nil
	}
	return n.store.DropDatabase(db)
}

func positionResult(term, lsn uint64) *sqltypes.Result {
	return &sqltypes.Result{
		Fields: []*querypb.Field{intField("Term"), intField("LSN")},
		Rows:   [][]sqltypes.Value{{uintValue(term), uintValue(lsn)}},
	}
}

// replicaCounts counts the connected async and sync replicas of each
// database this node ships.
func (n *Node) replicaCounts() map[string][2]int64 {
	out := map[string][2]int64{}
	for _, st := range n.hub.Statuses() {
		if !st.Connected {
			continue
		}
		c := out[st.Database]
		if st.Sync {
			c[1]++
		} else {
			c[0]++
		}
		out[st.Database] = c
	}
	return out
}
