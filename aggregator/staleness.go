package aggregator

import (
	"context"
	"strings"
	"time"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/dolthub/vitess/go/mysql"
)

// Metadata that is behind. An aggregator plans with its raft-applied
// metadata, but its copy of each distributed database (schemas, reference
// tables) arrives by another stream, so the two can disagree for a moment:
// a restarted child may hold a table before the raft entry that made it,
// a table created through another aggregator may not have reached this
// one yet, and the master itself lists a new table only once every leaf
// has it. Planned with metadata that does not list a table, a statement
// would run on the copy, which holds no rows.

// settleMetadata returns the metadata to plan in with: a child aggregator
// first catches up with the master when the statement names a table or
// database it cannot place, and any aggregator waits (up to
// cutoverWait) for a table its copy holds to be listed.
func (a *Aggregator) settleMetadata(ctx context.Context, in *planner.Input, st *meta.State) (*meta.State, error) {
	copied, unknown := a.unplaced(planner.Unlisted(*in))
	if copied == nil && !unknown {
		return st, nil
	}
	if !a.IsMaster() && a.catchUp(ctx, copied != nil) {
		if err := a.waitSchemas(ctx, planner.Databases(*in)...); err != nil {
			return st, err
		}
		st = a.State()
		in.Catalog = catalog{a, st}
		copied, _ = a.unplaced(planner.Unlisted(*in))
	}
	deadline := time.Now().Add(cutoverWait)
	for copied != nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return st, mysql.NewSQLError(1146, "42S02",
				"Table '%s.%s' is not in the cluster's metadata although this aggregator's copy of the database has it: "+
					"a CREATE TABLE is still running (retry), or one was interrupted (DROP TABLE it and create it again)", copied.DB, copied.Name)
		}
		time.Sleep(20 * time.Millisecond)
		st = a.State()
		in.Catalog = catalog{a, st}
		copied, _ = a.unplaced(planner.Unlisted(*in))
	}
	return st, nil
}

// unplaced sorts the names the metadata does not list as tables: copied
// is a table this node's copy of a distributed database holds (the
// metadata is behind, or a CREATE TABLE has not listed it yet); unknown
// reports a name nothing here knows, in a database the metadata lists or
// one that is a copy of another aggregator's (either may have been
// created through another aggregator a moment ago). Views, this node's own
// databases and the system schemas are placed.
func (a *Aggregator) unplaced(names []planner.TableName) (copied *planner.TableName, unknown bool) {
	for i, t := range names {
		switch {
		case t.DBListed:
			if _, ok := a.store.TableSchema(t.DB, t.Name); ok {
				return &names[i], unknown
			}
			unknown = unknown || !a.store.HasView(t.DB, t.Name)
		case a.store.HasDatabase(t.DB):
			unknown = unknown || a.store.IsReplica(t.DB)
		default:
			unknown = unknown || !systemSchema(t.DB)
		}
	}
	return nil, unknown
}

func systemSchema(db string) bool {
	switch strings.ToLower(db) {
	case "information_schema", "mysql", "performance_schema", "sys":
		return true
	}
	return false
}

// catchUp brings a child aggregator's metadata up to the master's: it
// asks the master for its raft index and waits until it has applied it.
// It reports whether it did. wait lets it wait for a master to be known
// (a restarted child has not heard from it yet).
func (a *Aggregator) catchUp(ctx context.Context, wait bool) bool {
	if wait && a.raft.Leader() == "" {
		a.raft.WaitLeader(cutoverWait)
	}
	master := a.raft.Leader()
	if master == "" {
		return false
	}
	mp, err := a.aggregatorPool(master)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, cutoverWait)
	defer cancel()
	info, err := nodeStatus(ctx, mp)
	if err != nil {
		a.log.Warn("metadata may be behind the master aggregator's; could not ask it", "master", master, "err", err)
		return false
	}
	a.waitApplied(info.RaftIndex)
	return true
}

// A failover in progress: failure detection marks a leaf offline, then
// moves each database's masters on it to their replicas (or leaves those
// partitions without master), one database after the other. A statement
// planned in between would be sent to the offline leaf and fail.

// offlineMemo caches mastersOffline for one metadata version.
type offlineMemo struct {
	st      *meta.State
	offline bool
}

// mastersOffline reports whether the metadata names an offline leaf as
// master of some partition.
func (a *Aggregator) mastersOffline(st *meta.State) bool {
	if m := a.offlineMemo.Load(); m != nil && m.st == st {
		return m.offline
	}
	offline := false
	for _, l := range st.Leaves {
		if l.State == meta.LeafOffline {
			offline = offline || mastersOn(st, l.Addr())
		}
	}
	a.offlineMemo.Store(&offlineMemo{st: st, offline: offline})
	return offline
}

func mastersOn(st *meta.State, leaf string) bool {
	for _, name := range st.DatabaseNames() {
		for _, p := range st.Database(name).Partitions {
			if p.Master == leaf {
				return true
			}
		}
	}
	return false
}

// waitFailover holds an autocommit statement until the metadata names no
// offline leaf as a master, for up to cutoverWait. A metadata version
// that stayed that way for the whole wait (a failover that could not
// finish) is not waited on again.
func (a *Aggregator) waitFailover(ctx context.Context, st *meta.State) *meta.State {
	deadline := time.Now().Add(cutoverWait)
	for a.mastersOffline(st) && a.stuckFailover.Load() != st {
		if time.Now().After(deadline) {
			a.stuckFailover.Store(st)
			break
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return st
		}
		st = a.State()
	}
	return st
}
