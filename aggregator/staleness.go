package aggregator

import (
	"context"
	"strings"
	"time"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
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
	// names nothing here knows (often typos) ask the master at most every
	// catchUpSpacing; a copied table, strong sign of lag, always does
	recent := time.Since(time.Unix(0, a.caughtUp.Load())) < catchUpSpacing
	if !a.IsMaster() && (copied != nil || !recent) && a.catchUp(ctx, copied != nil) {
		a.caughtUp.Store(time.Now().UnixNano())
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
					"a CREATE TABLE is still running (retry once it has returned), or one was interrupted (DROP TABLE it and create it again)", copied.DB, copied.Name)
		}
		time.Sleep(20 * time.Millisecond)
		st = a.State()
		in.Catalog = catalog{a, st}
		copied, _ = a.unplaced(planner.Unlisted(*in))
	}
	return st, nil
}

const catchUpSpacing = 500 * time.Millisecond

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
	mp, err := a.AggregatorPool(master)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, cutoverWait)
	defer cancel()
	info, err := member.NodeStatus(ctx, mp)
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

// offlineMemo caches mastersOffline for one metadata version; since is
// when the metadata started naming an offline leaf master (carried over
// while later versions still do).
type offlineMemo struct {
	st      *meta.State
	offline bool
	since   time.Time
}

// mastersOffline reports whether the metadata names an offline leaf as
// master of some partition.
func (a *Aggregator) mastersOffline(st *meta.State) bool {
	m := a.offlineMemo.Load()
	if m != nil && m.st == st {
		return m.offline
	}
	offline := false
	for _, name := range st.DatabaseNames() {
		for _, p := range st.Database(name).Partitions {
			if l, ok := st.Leaf(p.Master); ok && l.State == meta.LeafOffline {
				offline = true
			}
		}
	}
	since := time.Now()
	if m != nil && m.offline {
		since = m.since
	}
	a.offlineMemo.Store(&offlineMemo{st: st, offline: offline, since: since})
	return offline
}

// planOnOffline reports whether a plan needs a partition whose master is
// an offline leaf: one of its routes, or any partition of its database
// for plans that read through the aggregator's engine.
func planOnOffline(st *meta.State, p *planner.Plan) bool {
	d := st.Database(p.Database)
	if d == nil || p.Kind == planner.Local || p.Kind == planner.DDL || p.Kind == planner.ReferenceWrite {
		return false
	}
	offline := func(ordinal int) bool {
		if ordinal < 0 || ordinal >= len(d.Partitions) {
			return false
		}
		l, ok := st.Leaf(d.Partitions[ordinal].Master)
		return ok && l.State == meta.LeafOffline
	}
	if len(p.Routes) > 0 {
		for _, r := range p.Routes {
			if offline(r.Partition) {
				return true
			}
		}
		return false
	}
	for _, part := range d.Partitions {
		if offline(part.Ordinal) {
			return true
		}
	}
	return false
}

// waitFailover holds an autocommit statement until the metadata names no
// offline leaf as a master, for up to cutoverWait since that began: a
// failover that could not finish holds statements up once, not on every
// later metadata version.
func (a *Aggregator) waitFailover(ctx context.Context, st *meta.State) *meta.State {
	for a.mastersOffline(st) {
		if m := a.offlineMemo.Load(); m != nil && time.Since(m.since) > cutoverWait {
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

// markCreating records a CREATE TABLE in flight on this master until the
// returned function is called: DROP TABLE refuses to clear such a table,
// which the CREATE would list afterwards.
func (a *Aggregator) markCreating(db, table string) func() {
	k := strings.ToLower(db + "." + table)
	a.inCreate.Store(k, true)
	return func() { a.inCreate.Delete(k) }
}

func (a *Aggregator) creating(db, table string) bool {
	_, ok := a.inCreate.Load(strings.ToLower(db + "." + table))
	return ok
}
