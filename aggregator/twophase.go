package aggregator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// Two-phase commit (DESIGN.md §"Distributed transactions"). The
// aggregator that ran a transaction coordinates its commit:
//
//  1. CANOPY PREPARE 'xid' on every leaf it wrote through; each leaf makes
//     the write set durable and keeps its locks.
//  2. If all prepared, the decision (xid → leaves) is written durably to
//     the aggregator's own store: from here on the transaction commits.
//  3. CANOPY COMMIT PREPARED 'xid' on every leaf; once all acknowledged,
//     the decision is forgotten.
//
// Any failure before 2 rolls every leaf back. A resolver (resolveLoop)
// finishes what a crash interrupted: it re-sends COMMIT PREPARED for
// recorded decisions, and rolls back the in-doubt transactions it
// coordinated that have no decision and are not in flight (presumed
// abort). xids start with the coordinator's address, so each aggregator
// resolves only its own.

// commitLeaves commits one transaction's parts on the given leaves: a
// single leaf of a redundancy-1 cluster commits directly, anything else
// through two-phase commit. A part may be the master aggregator's (a
// child's reference-table writes, run on the master in the client's
// transaction): it is a participant like a leaf. local, when not nil, is
// this aggregator's own part (the master's reference-table writes in the
// client's session), a participant named a.self: prepared, decided and
// committed with the others, so the reference and the sharded writes of
// one transaction are all or nothing. It does not release the
// connections.
func (a *Aggregator) commitLeaves(conns map[string]*pool.Conn, local *storage.Session) error {
	leaves := make([]string, 0, len(conns)+1)
	for l := range conns {
		leaves = append(leaves, l)
	}
	sort.Strings(leaves)
	// One leaf commits its partitions in one batch, but their replicas get
	// one record per partition, independently: a leaf dying in between
	// would leave a promoted replica with half the transaction. With
	// replicas, even one leaf goes through two-phase commit, whose
	// replicated prepare records let the survivors finish it. The master
	// aggregator's part alone commits directly (it waits for its copies).
	if len(leaves) == 1 && local == nil {
		if _, isAgg := a.State().Aggregator(leaves[0]); isAgg || a.State().Redundancy() < 2 {
			if _, err := conns[leaves[0]].Exec("COMMIT", 0); err != nil {
				return leafError(leaves[0], err)
			}
			return nil
		}
	}
	if local != nil {
		leaves = append(leaves, a.self)
	}
	xid := fmt.Sprintf("%s/%x-%d", a.self, a.started.UnixNano(), a.xidSeq.Add(1))
	a.inflight.Store(xid, struct{}{})
	defer a.inflight.Delete(xid)

	// A part that wrote nothing ends at its prepare (sqlcmd.PrepareTxn)
	// and takes no part in what follows; when none wrote, the commit is
	// over (a read-only transaction pays one round, no decision).
	wrote := make([]bool, len(leaves))
	errs := parallel(leaves, func(l string) error {
		i := indexOf(leaves, l)
		if l == a.self && local != nil {
			var err error
			wrote[i], err = local.PrepareSession(sql.NewEmptyContext(), xid)
			return err
		}
		res, err := conns[l].Exec("CANOPY PREPARE '"+xid+"'", 0)
		wrote[i] = err == nil && res.RowsAffected != sqlcmd.PreparedNothing
		return err
	})
	for i, err := range errs {
		if err == nil {
			continue
		}
		// roll back what prepared, and what did not (an unprepared local
		// part is rolled back by the caller, in the client's session)
		parallel(leaves, func(l string) error {
			j := indexOf(leaves, l)
			prepared := errs[j] == nil
			if prepared && !wrote[j] {
				return nil // over already
			}
			switch {
			case l == a.self && local != nil:
				if prepared {
					return a.store.RollbackPrepared(xid)
				}
				return nil
			case prepared:
				_, err := conns[l].Exec("CANOPY ROLLBACK PREPARED '"+xid+"'", 0)
				return err
			}
			_, err := conns[l].Exec("ROLLBACK", 0)
			return err
		})
		return mysql.NewSQLError(1180, "HY000",
			"Distributed transaction rolled back on all leaves: %s could not prepare it: %v", a.partName(leaves[i]), leafError(leaves[i], err))
	}
	var writers []string
	for i, l := range leaves {
		if wrote[i] {
			writers = append(writers, l)
		}
	}
	if len(writers) == 0 {
		return nil
	}
	leaves = writers
	failpoint.Hit("coordinator-after-prepare")
	// from the decision to the last delivery, no backup takes its cut
	a.commitGate.RLock()
	defer a.commitGate.RUnlock()
	if err := a.store.SaveDecision(xid, leaves); err != nil {
		parallel(leaves, func(l string) error {
			if l == a.self && local != nil {
				return a.store.RollbackPrepared(xid)
			}
			_, err := conns[l].Exec("CANOPY ROLLBACK PREPARED '"+xid+"'", 0)
			return err
		})
		return mysql.NewSQLError(1180, "HY000", "Distributed transaction rolled back: recording the commit decision failed: %v", err)
	}
	failpoint.Hit("coordinator-after-decision")
	stagger := failpoint.Enabled("commit-delivery-stagger")
	errs = parallel(leaves, func(l string) error {
		if stagger && l != leaves[0] {
			// a fault test's long window in which the transaction is
			// committed on one participant and not yet on the others
			time.Sleep(200 * time.Millisecond)
		}
		if l == a.self && local != nil {
			return a.CommitPrepared(xid)
		}
		_, err := conns[l].Exec("CANOPY COMMIT PREPARED '"+xid+"'", 0)
		return err
	})
	var unacked []string
	for i, err := range errs {
		if err != nil {
			a.log.Warn("commit prepared not acknowledged", "xid", xid, "participant", leaves[i], "err", err)
			unacked = append(unacked, leaves[i])
		}
	}
	if len(unacked) > 0 {
		// Committed all the same. Before the client hears so, the parts
		// that failed over are applied where they went, so that it reads
		// its own write; the resolver finishes what takes longer.
		if !a.finishCommit(xid, leaves) {
			a.log.Warn("commit decision not yet applied everywhere; the resolver retries", "xid", xid, "participants", unacked)
			return nil
		}
	}
	if err := a.store.ForgetDecision(xid); err != nil {
		a.log.Warn("forget commit decision", "xid", xid, "err", err)
	}
	return nil
}

// CommitPrepared applies the in-doubt transaction xid on this node. On
// the master aggregator, whose part of a transaction is its writes to
// reference tables, it returns once every live node has them, as an
// autocommit reference write does.
func (a *Aggregator) CommitPrepared(xid string) error {
	dbs := a.store.PreparedDatabases(xid)
	if err := a.store.CommitPrepared(xid); err != nil {
		return err
	}
	if a.IsMaster() {
		for _, db := range dbs {
			a.waitReplicated(db)
		}
	}
	return nil
}

// partName names a participant of a distributed commit in an error.
func (a *Aggregator) partName(addr string) string {
	if _, ok := a.State().Aggregator(addr); ok || addr == a.self {
		return "aggregator " + addr
	}
	return "leaf " + addr
}

// finishCommit delivers the decision to commit xid until every part that
// can be reached is applied (deliverCommit) or a bound passes: the leaf
// failure timeout, so that a failover in progress gets its time.
func (a *Aggregator) finishCommit(xid string, leaves []string) bool {
	deadline := time.Now().Add(member.VariableMillis(a.State(), "leaf_failure_timeout_ms") + 2*time.Second)
	for {
		participants, reachable := a.deliverCommit(xid, leaves)
		if participants || reachable {
			return participants
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-a.stop:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deliverCommit sends COMMIT PREPARED for xid to its participants still in
// the cluster and to every other leaf: a participant's partitions may
// have failed over, their in-doubt parts replicated to the leaves that
// took them over (unknown xids are no-ops; a replica still holding a part
// answers with an error until it is promoted or its master ships the
// outcome). That leaf may be online, or being attached (failover promotes
// replicas there too), or even offline by now: a copy of a partition
// left without master keeps its loaded part and may become the master
// again when its leaf returns. A transaction with a master aggregator's
// part (reference writes) also goes to the master aggregator of now,
// which holds that part if the master changed. participants: every
// participant in the cluster and every leaf acknowledged, so the decision
// can be forgotten (forgotten earlier, presumed abort would roll back a
// part a leaf applies later). reachable: every leaf in service (online or
// attaching) acknowledged and the participants that did not are out of
// service, so every part that can be applied now is. A leaf out of
// service whose heartbeats fail is not asked (it would only time out).
func (a *Aggregator) deliverCommit(xid string, leaves []string) (participants, reachable bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := a.State()
	var targets []string
	aggPart := false
	for _, l := range leaves {
		_, isLeaf := st.Leaf(l)
		_, isAgg := st.Aggregator(l)
		if isLeaf || isAgg || l == a.self { // a removed node has nothing left to commit
			targets = append(targets, l)
		}
		aggPart = aggPart || isAgg || l == a.self
	}
	for _, l := range st.Leaves {
		if !slices.Contains(targets, l.Addr()) {
			targets = append(targets, l.Addr())
		}
	}
	if master := a.raft.Leader(); aggPart && master != "" && !slices.Contains(targets, master) {
		targets = append(targets, master)
	}
	inService := func(addr string) bool {
		l, isLeaf := st.Leaf(addr)
		if !isLeaf {
			return addr == a.self || !a.beats.Down(addr)
		}
		return l.State == meta.LeafOnline || l.State == meta.LeafAttaching
	}
	errs := parallel(targets, func(l string) error {
		if !inService(l) && a.beats.Down(l) {
			return errNotAsked
		}
		return a.commitPreparedOn(ctx, l, xid)
	})
	participants, reachable = true, true
	for i, err := range errs {
		if err == nil {
			continue
		}
		participants = false
		if inService(targets[i]) {
			reachable = false
		}
	}
	return participants, reachable
}

// errNotAsked: a node out of service that does not answer heartbeats.
var errNotAsked = errors.New("not asked: out of service and not answering heartbeats")

// parallel runs f for every leaf at once and returns the errors in order.
func parallel(leaves []string, f func(string) error) []error {
	errs := make([]error, len(leaves))
	var wg sync.WaitGroup
	for i, l := range leaves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(l)
		}()
	}
	wg.Wait()
	return errs
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// resolveLoop finishes interrupted distributed commits: at start (after
// a crash) and then every second.
func (a *Aggregator) resolveLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a.resolveInDoubt()
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
	}
}

func (a *Aggregator) resolveInDoubt() {
	decisions, err := a.store.Decisions()
	if err != nil {
		a.log.Warn("read commit decisions", "err", err)
		return
	}
	for xid, leaves := range decisions {
		if _, busy := a.inflight.Load(xid); busy {
			continue
		}
		a.commitGate.RLock()
		if done, _ := a.deliverCommit(xid, leaves); done {
			a.log.Info("distributed commit completed after an interruption", "xid", xid)
			a.store.ForgetDecision(xid)
		}
		a.commitGate.RUnlock()
	}
	mine := a.self + "/"
	// every node that can hold a part: the leaves, and the aggregators
	// (the master's part of a transaction is its reference-table writes);
	// one that does not answer heartbeats answers later
	st := a.State()
	var nodes []string
	for _, l := range st.Leaves {
		if !a.beats.Down(l.Addr()) {
			nodes = append(nodes, l.Addr())
		}
	}
	for _, ag := range st.Aggregators {
		if ag.Addr() == a.self || !a.beats.Down(ag.Addr()) {
			nodes = append(nodes, ag.Addr())
		}
	}
	// each on its own, so that one that hangs does not keep the others'
	// in-doubt transactions (and their locks) waiting
	parallel(nodes, func(node string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var xids []string
		if node == a.self {
			for _, p := range a.store.Prepared() {
				xids = append(xids, p.XID)
			}
		} else {
			p, err := a.participantPool(node)
			if err != nil {
				return err
			}
			res, err := p.Exec(ctx, "CANOPY PREPARED TRANSACTIONS", 100000)
			if err != nil {
				return err
			}
			for _, row := range res.Rows {
				xids = append(xids, row[0].ToString())
			}
		}
		for _, xid := range xids {
			if !strings.HasPrefix(xid, mine) {
				continue
			}
			// in flight first, then a fresh look for a decision: a
			// coordinator records its decision before it leaves the
			// in-flight set
			if _, busy := a.inflight.Load(xid); busy {
				continue
			}
			if has, err := a.store.HasDecision(xid); err != nil || has {
				continue
			}
			if err := a.rollbackPreparedOn(ctx, node, xid); err == nil {
				a.log.Info("in-doubt transaction without commit decision rolled back", "xid", xid, "node", node)
			}
		}
		return nil
	})
}

// participantPool is the pool of a node that takes part in distributed
// commits: a leaf, or an aggregator (the master's reference writes).
func (a *Aggregator) participantPool(addr string) (*pool.Pool, error) {
	if _, ok := a.State().Aggregator(addr); ok {
		return a.AggregatorPool(addr)
	}
	return a.LeafPool(addr)
}

func (a *Aggregator) rollbackPreparedOn(ctx context.Context, node, xid string) error {
	if node == a.self {
		return a.store.RollbackPrepared(xid)
	}
	p, err := a.participantPool(node)
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, "CANOPY ROLLBACK PREPARED '"+xid+"'", 0)
	return err
}

func (a *Aggregator) commitPreparedOn(ctx context.Context, leaf, xid string) error {
	if leaf == a.self {
		return a.CommitPrepared(xid)
	}
	lp, err := a.participantPool(leaf)
	if err != nil {
		return err
	}
	_, err = lp.Exec(ctx, "CANOPY COMMIT PREPARED '"+xid+"'", 0)
	return err
}
