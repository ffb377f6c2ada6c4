package manager

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
)

// Replica links. A synchronous replica that its master cannot reach holds
// every commit of its partition (until the commit times out), although
// both leaves answer the master aggregator: the link between a pair is
// cut, not a leaf. The master aggregator watches each master leaf's
// streams (SHOW REPLICATION STATUS); a sync replica unreachable for
// leaf_failure_timeout_ms is taken out of its partition. Commits then go
// on with the master as the only copy, and that replica is no longer a
// failover candidate (it may lack acknowledged commits). A partition
// without its replica gets one back as soon as a copy to the pair gets
// through.

const (
	replicaWatchInterval = time.Second
	// restoreInterval spaces the attempts to give partitions their
	// replica back (each waits up to the failure timeout on a link still
	// cut before it gives up).
	restoreInterval = 10 * time.Second
)

func (a *Manager) replicaWatchLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(replicaWatchInterval)
	defer tick.Stop()
	var lastRestore time.Time
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		if !a.IsMaster() {
			continue
		}
		a.watchReplicas()
		if time.Since(lastRestore) >= restoreInterval {
			lastRestore = time.Now()
			a.restoreReplicas()
		}
	}
}

// watchReplicas takes sync replicas whose master has not reached them for
// the failure timeout out of their partitions.
func (a *Manager) watchReplicas() {
	st := a.State()
	timeout := member.VariableMillis(st, "leaf_failure_timeout_ms")
	byInternal := map[string]string{} // internal address → leaf
	for _, l := range st.Leaves {
		byInternal[meta.Addr(l.Host, l.InternalPort)] = l.Addr()
	}
	for _, l := range st.Leaves {
		if l.State != meta.LeafOnline || a.beats.Down(l.Addr()) {
			continue
		}
		status, err := a.leafStatus(l.Addr())
		if err != nil {
			continue
		}
		for _, stream := range status.Streams {
			if !stream.Sync || stream.Connected {
				continue
			}
			down := time.Duration(stream.DownMs) * time.Millisecond
			replica := byInternal[stream.Target]
			if down < timeout || replica == "" {
				continue
			}
			if r, ok := st.Leaf(replica); !ok || r.State != meta.LeafOnline {
				continue // a leaf that is down is failure detection's business
			}
			db, ordinal, ok := partitionOf(st, stream.Database)
			if !ok {
				continue
			}
			if p := st.Database(db).Partitions[ordinal]; p.Master != l.Addr() || !slices.Contains(p.Replicas, replica) {
				continue
			}
			a.log.Warn("sync replica unreachable from its master; taking it out of the partition so that commits go on",
				"partition", stream.Database, "master", l.Addr(), "replica", replica, "down", down.String(), "err", stream.Error)
			err := a.updatePartition(db, ordinal, func(p *meta.Partition) error {
				if p.Master != l.Addr() {
					return fmt.Errorf("its master moved to %s", p.Master)
				}
				p.Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return r == replica })
				p.Unlinked = replica
				return nil
			})
			if err != nil {
				a.log.Error("taking an unreachable replica out", "partition", stream.Database, "err", err)
			}
		}
	}
}

// partitionOf finds the database and ordinal of a partition database name.
func partitionOf(st *meta.State, name string) (string, int, bool) {
	for _, dn := range st.DatabaseNames() {
		d := st.Database(dn)
		for _, p := range d.Partitions {
			if meta.PartitionName(d.Name, p.Ordinal) == name {
				return d.Name, p.Ordinal, true
			}
		}
	}
	return "", 0, false
}

// restoreReplicas gives the partitions whose replica watchReplicas took
// out (Partition.Unlinked, in the metadata) a copy on that leaf again,
// unless another cluster operation is running. Other missing replicas
// are the operator's (REBALANCE PARTITIONS, RESTORE REDUNDANCY), as in
// the seeds.
func (a *Manager) restoreReplicas() {
	st := a.State()
	for _, name := range st.DatabaseNames() {
		for _, p := range st.Database(name).Partitions {
			if p.Unlinked == "" {
				continue
			}
			replica := p.Unlinked
			if st.PairOf(p.Master) != replica {
				// the pairs changed since: the operator's now
				err := a.updatePartition(name, p.Ordinal, func(q *meta.Partition) error {
					q.Unlinked = ""
					return nil
				})
				if err != nil {
					a.log.Warn("forgetting an unlinked replica", "database", name, "ordinal", p.Ordinal, "err", err)
				}
				continue
			}
			if a.leafGone(replica) != "" || a.leafGone(p.Master) != "" {
				continue // not now
			}
			// one partition at a time, never waiting for (or holding up
			// for long) an operation someone asked for
			if !a.ha.mu.TryLock() {
				return
			}
			a.log.Info("giving a partition its replica back", "database", name, "ordinal", p.Ordinal, "replica", replica)
			err := a.copyPartition(context.Background(), meta.Step{Action: meta.ActionCopy, DB: name, Ordinal: p.Ordinal, Target: replica, Phase: meta.PhaseCopy})
			a.ha.mu.Unlock()
			if err != nil {
				a.log.Warn("the replica is not back yet", "database", name, "ordinal", p.Ordinal, "replica", replica, "err", err)
			}
		}
	}
}
