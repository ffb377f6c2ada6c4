package manager

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/meta"
)

// The master aggregator is the raft leader of the aggregators. Who may
// become leader is a trade: a voter set of one (the master) lets the master
// commit metadata while every child is down, but its death needs a person
// (AGGREGATOR SET AS MASTER); three or more voters elect a new master by
// themselves but need a majority up. With fewer than three aggregators
// only the master votes; with three or more, up to maxVoters vote.
const maxVoters = 5

// votersFor chooses the voting aggregators: none but the master below
// three aggregators, else the master and the longest-standing others
// (lowest numbers) up to maxVoters.
func votersFor(aggs []meta.Aggregator, master string) map[string]bool {
	out := map[string]bool{master: true}
	if len(aggs) < 3 {
		return out
	}
	sorted := append([]meta.Aggregator(nil), aggs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Number < sorted[j].Number })
	for _, ag := range sorted {
		if len(out) >= maxVoters {
			break
		}
		out[ag.Addr()] = true
	}
	return out
}

// enforceVoters brings the raft configuration to votersFor, on the master.
func (a *Manager) enforceVoters(st *meta.State) {
	members, err := a.raft.Members()
	if err != nil {
		return
	}
	want := votersFor(st.Aggregators, a.self)
	for _, m := range members {
		if m.ID == a.self {
			continue
		}
		if _, ok := st.Aggregator(m.ID); !ok || m.Voter == want[m.ID] {
			continue
		}
		if err := a.raft.SetVoter(m.ID, m.Addr, want[m.ID]); err != nil {
			a.log.Warn("changing an aggregator's vote", "aggregator", m.ID, "voter", want[m.ID], "err", err)
			continue
		}
		a.log.Info("metadata group membership", "aggregator", m.ID, "voter", want[m.ID])
	}
}

var raftMemberFields = []*querypb.Field{
	field("Aggregator", querypb.Type_VARCHAR), field("Raft_Address", querypb.Type_VARCHAR),
	field("Suffrage", querypb.Type_VARCHAR), field("Master_Aggregator", querypb.Type_INT64),
}

// raftMembers answers CANOPY RAFT MEMBERS.
func (a *Manager) raftMembers() (*sqltypes.Result, error) {
	members, err := a.raft.Members()
	if err != nil {
		return nil, err
	}
	leader := a.raft.Leader()
	res := &sqltypes.Result{Fields: raftMemberFields}
	for _, m := range members {
		suffrage, isLeader := "nonvoter", int64(0)
		if m.Voter {
			suffrage = "voter"
		}
		if m.ID == leader {
			isLeader = 1
		}
		res.Rows = append(res.Rows, []sqltypes.Value{str(m.ID), str(m.Addr), str(suffrage), num(isLeader)})
	}
	return res, nil
}

// setAsMaster runs AGGREGATOR SET AS MASTER on a child: a graceful swap
// when the master answers, else a forced reconfiguration that makes this
// aggregator the only voter.
func (a *Manager) setAsMaster(ctx context.Context) error {
	if a.IsMaster() {
		return mysql.NewSQLError(1105, "HY000", "This aggregator is already the master aggregator")
	}
	if a.raft.Leader() == "" && a.raft.Held() == nil {
		a.raft.WaitLeader(2 * time.Second) // an election may be under way
	}
	if master := a.raft.Leader(); master != "" && master != a.self && a.answers(ctx, master) {
		host, port := a.host.Self()
		if _, err := a.copies.Forward(ctx, nil, fmt.Sprintf("PROMOTE AGGREGATOR '%s':%d TO MASTER", host, port)); err != nil {
			return err
		}
		if err := a.waitMaster(a.self, 10*time.Second); err != nil {
			return err
		}
		a.reconcile()
		return nil
	}
	if a.IsMaster() {
		return nil
	}
	a.log.Warn("AGGREGATOR SET AS MASTER: no master aggregator answers; this aggregator takes over as the only voter")
	// the reign loop keeps out until the takeover has its epoch: the
	// epoch this aggregator's log has may be older than the leaves'
	a.forcing.Store(true)
	defer a.forcing.Store(false)
	st := a.State()
	seen := a.newestSeen(st)
	var others []cluster.Member
	for _, ag := range st.Aggregators {
		if ag.Addr() != a.self && ag.InternalPort != 0 {
			others = append(others, cluster.Member{ID: ag.Addr(), Addr: meta.Addr(ag.Host, ag.InternalPort)})
		}
	}
	if err := a.raft.ForceSoleVoter(others); err != nil {
		return fmt.Errorf("aggregator set as master: %w", err)
	}
	if err := a.waitMaster(a.self, 10*time.Second); err != nil {
		return err
	}
	if err := a.forceReign(seen); err != nil {
		return err
	}
	a.reconcile()
	return nil
}

// answers reports whether an aggregator runs a statement within 2 s.
func (a *Manager) answers(ctx context.Context, addr string) bool {
	p, err := a.AggregatorPool(addr)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = p.Exec(ctx, "SELECT 1", 1)
	return err == nil
}

// promoteAggregator runs PROMOTE AGGREGATOR 'host':port TO MASTER on the
// master: the target catches up with every database copy, gets a vote,
// and raft hands it the leadership. This aggregator goes on as a child.
func (a *Manager) promoteAggregator(ctx context.Context, addr string) error {
	if addr == a.self {
		return nil
	}
	ag, ok := a.State().Aggregator(addr)
	if !ok {
		return mysql.NewSQLError(1105, "HY000", "Aggregator %s is not part of the cluster", addr)
	}
	target := meta.Addr(ag.Host, ag.InternalPort)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, name := range a.State().DatabaseNames() {
		if err := a.copies.WaitTarget(wctx, name, target); err != nil {
			return fmt.Errorf("promote aggregator %s: its copy of %s is not caught up: %w", addr, name, err)
		}
	}
	if err := a.raft.SetVoter(addr, target, true); err != nil {
		return fmt.Errorf("promote aggregator %s: give it a vote: %w", addr, err)
	}
	if err := a.raft.TransferLeadership(addr, target); err != nil {
		return fmt.Errorf("promote aggregator %s: leadership transfer: %w", addr, err)
	}
	if err := a.waitMaster(addr, 10*time.Second); err != nil {
		return err
	}
	a.reconcile()
	return nil
}

// waitMaster waits until this aggregator sees addr as master.
func (a *Manager) waitMaster(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for a.raft.Leader() != addr {
		if time.Now().After(deadline) {
			return fmt.Errorf("aggregator %s did not become master within %s (master now: %q)", addr, timeout, a.raft.Leader())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
