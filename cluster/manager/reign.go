package manager

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/meta"
)

// One master aggregator at a time (DESIGN.md, Metadata). A master's
// reign has a number, the master epoch, that the metadata log raises at
// every takeover (meta.TakeOver). The master records it on every leaf
// (CANOPY MASTER AGGREGATOR 'self' EPOCH n); leaves keep the newest and
// refuse control commands of older epochs (every one ends with EPOCH n,
// see member.Fenced). The leaves are the witnesses every aggregator
// reaches: a master replaced while it was away (AGGREGATOR SET AS MASTER
// on a child) asks them before it stands for election again
// (CheckCluster), and a master that a leaf tells of a newer one steps
// down (keepReign).

// masterRecord is a leaf's answer to CANOPY MASTER AGGREGATOR.
type masterRecord struct {
	Addr  string
	Epoch uint64
}

// newerThan reports whether a leaf's record names a master that replaced
// this aggregator: another aggregator than self, of a later epoch than the
// metadata's latest reign, or of the same epoch but another master (two
// takeovers that did not know of each other).
func (r masterRecord) newerThan(st *meta.State, self string) bool {
	if r.Addr == "" || r.Addr == self {
		return false
	}
	return r.Epoch > st.MasterEpoch || r.Epoch == st.MasterEpoch && r.Addr != st.MasterAddr
}

// askLeaf reads a leaf's master record.
func (a *Manager) askLeaf(ctx context.Context, l meta.Leaf) (masterRecord, error) {
	res, err := a.pools.Get(a.LeafNode(l)).Exec(ctx, "CANOPY MASTER AGGREGATOR", 1)
	if err != nil {
		return masterRecord{}, err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 2 {
		return masterRecord{}, fmt.Errorf("leaf %s: unexpected answer to CANOPY MASTER AGGREGATOR", l.Addr())
	}
	e, _ := strconv.ParseUint(res.Rows[0][1].ToString(), 10, 64)
	return masterRecord{Addr: res.Rows[0][0].ToString(), Epoch: e}, nil
}

// askLeaves reads the master record of every leaf of st that answers
// within the context.
func (a *Manager) askLeaves(ctx context.Context, st *meta.State) []masterRecord {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var out []masterRecord
	for _, l := range st.Leaves {
		wg.Add(1)
		go func(l meta.Leaf) {
			defer wg.Done()
			if r, err := a.askLeaf(ctx, l); err == nil {
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		}(l)
	}
	wg.Wait()
	return out
}

// askAggregator asks another aggregator for its raft configuration
// (CANOPY RAFT MEMBERS): whether it answers, the master it knows ("":
// none), and whether its configuration counts this aggregator as a
// voter.
func (a *Manager) askAggregator(ctx context.Context, ag meta.Aggregator) (answered bool, master string, voter bool) {
	p := a.pools.Get(a.AggregatorNode(ag))
	defer a.pools.Forget(ag.Addr()) // a hung node's connection is of no further use
	res, err := p.Exec(ctx, "CANOPY RAFT MEMBERS", 100)
	if err != nil {
		return false, "", false
	}
	for _, row := range res.Rows { // Aggregator, Raft_Address, Suffrage, Master_Aggregator
		id := row[0].ToString()
		if row[3].ToString() == "1" {
			master = id
		}
		voter = voter || id == a.self && row[2].ToString() == "voter"
	}
	return true, master, voter
}

// CheckCluster is what a voter learns before it stands for election
// (cluster.Config.Check; asked again while it holds): whether another
// aggregator became master without it. The other aggregators say so when
// they answer; the leaves say so by the master epoch recorded on them.
// It runs before a.raft is set: it uses st only.
func (a *Manager) CheckCluster(st *meta.State) cluster.Verdict {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var v cluster.Verdict
	var mu sync.Mutex
	var wg sync.WaitGroup
	deposers := map[string]bool{} // masters that answer and do not count this one as a voter
	member := false               // a master answers and counts this one as a voter
	for _, ag := range st.Aggregators {
		if ag.Addr() == a.self {
			continue
		}
		wg.Add(1)
		go func(ag meta.Aggregator) {
			defer wg.Done()
			answered, master, voter := a.askAggregator(ctx, ag)
			mu.Lock()
			defer mu.Unlock()
			v.Witnessed = v.Witnessed || answered
			switch {
			case master == "" || master == a.self:
			case voter:
				member = true
			default:
				deposers[master] = true
			}
		}(ag)
	}
	var newest masterRecord
	records := a.askLeaves(ctx, st)
	wg.Wait()
	for _, r := range records {
		v.Witnessed = true
		if r.newerThan(st, a.self) && (r.Epoch > newest.Epoch || newest.Addr == "") {
			newest = r
		}
	}
	switch {
	case deposers[newest.Addr]:
		v.Replaced, v.By, v.Epoch, v.Rejoin = true, newest.Addr, newest.Epoch, true
	case len(deposers) > 0:
		// a master that answers and counts this one as a follower: the
		// leaves may not have its record yet
		for by := range deposers {
			v.Replaced, v.By, v.Rejoin = true, by, true
		}
	case member:
		// the master's group counts this one as a voter: it joins it,
		// and raft's majority decides (the leaves' newer record is that
		// master's, or one the group has seen)
	case newest.Addr != "":
		v.Replaced, v.By, v.Epoch = true, newest.Addr, newest.Epoch
	}
	return v
}

// reignLoop keeps, on the master, its reign on record (keepReign).
func (a *Manager) reignLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(reignInterval)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		if a.IsMaster() && !a.forcing.Load() {
			a.keepReign()
		}
	}
}

// reignInterval: how often the master checks its reign; every
// reignRecheck-th time it asks leaves that have its record again, so a
// master replaced while it runs (cut off from the aggregator that took
// over, not from the leaves) steps down.
const (
	reignInterval = 500 * time.Millisecond
	reignRecheck  = 6
)

// keepReign starts this master's reign in the metadata if it has not
// (an elected master: the next epoch), records it on the leaves that do
// not have it, and steps down when a leaf has seen a newer master.
func (a *Manager) keepReign() {
	st := a.State()
	if st.ClusterID == "" {
		return
	}
	if st.MasterAddr != a.self {
		if err := a.raft.Propose(meta.TakeOver{Master: a.self}); err != nil {
			a.log.Warn("recording this master aggregator's reign", "err", err)
			return
		}
		st = a.State()
		a.log.Info("master aggregator", "master_epoch", st.MasterEpoch)
	}
	a.reignTicks++
	recheck := a.reignTicks%reignRecheck == 0
	if v := a.recordReign(st, recheck); v != nil {
		a.stepDown(*v)
	}
}

// recordReign records st's reign on the leaves (all of them with all,
// else those not known to have it); it returns a verdict when one has
// seen a newer master.
func (a *Manager) recordReign(st *meta.State, all bool) *cluster.Verdict {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q := fmt.Sprintf("CANOPY MASTER AGGREGATOR '%s' EPOCH %d", a.self, st.MasterEpoch)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var deposed *cluster.Verdict
	for _, l := range st.Leaves {
		if !all && a.reignOn(l.Addr()) == st.MasterEpoch {
			continue
		}
		wg.Add(1)
		go func(l meta.Leaf) {
			defer wg.Done()
			_, err := a.pools.Get(a.LeafNode(l)).Exec(ctx, q, 1)
			if err == nil {
				a.setReignOn(l.Addr(), st.MasterEpoch)
				return
			}
			if !isFenced(err) {
				return // down: asked again next time
			}
			r, rerr := a.askLeaf(ctx, l)
			if rerr != nil || !r.newerThan(st, a.self) {
				return
			}
			a.log.Error("a leaf has seen a newer master aggregator", "leaf", l.Addr(), "master", r.Addr, "master_epoch", r.Epoch, "this_epoch", st.MasterEpoch)
			mu.Lock()
			if deposed == nil || r.Epoch > deposed.Epoch {
				deposed = &cluster.Verdict{Replaced: true, By: r.Addr, Epoch: r.Epoch}
			}
			mu.Unlock()
		}(l)
	}
	wg.Wait()
	return deposed
}

func (a *Manager) reignOn(leaf string) uint64 {
	a.reignMu.Lock()
	defer a.reignMu.Unlock()
	return a.reign[leaf]
}

func (a *Manager) setReignOn(leaf string, epoch uint64) {
	a.reignMu.Lock()
	defer a.reignMu.Unlock()
	a.reign[leaf] = epoch
}

// reignedOn counts st's leaves that have st's reign on record.
func (a *Manager) reignedOn(st *meta.State) int {
	n := 0
	for _, l := range st.Leaves {
		if a.reignOn(l.Addr()) == st.MasterEpoch {
			n++
		}
	}
	return n
}

// isFenced: a node refused a command because it has seen a newer master.
func isFenced(err error) bool {
	return err != nil && strings.Contains(err.Error(), "the sender was replaced as master")
}

// stepDown stops this master: another aggregator replaced it.
func (a *Manager) stepDown(v cluster.Verdict) {
	if err := a.raft.StepDown(v); err != nil {
		a.log.Error("stepping down as master aggregator", "err", err)
	}
	a.Signal()
}

// forceReign starts a forced master's reign (AGGREGATOR SET AS MASTER
// with no master answering): an epoch above every one the reachable
// leaves have seen (this aggregator's log may lack the lost master's
// last takeover), recorded on every leaf that answers before the
// statement returns, so the lost master, should it come back unable to
// reach this one, learns from the leaves that it was replaced.
func (a *Manager) forceReign(seen uint64) error {
	st := a.State()
	if err := a.raft.Propose(meta.TakeOver{Master: a.self, MinEpoch: max(seen, st.MasterEpoch) + 1}); err != nil {
		return fmt.Errorf("aggregator set as master: record the takeover: %w", err)
	}
	st = a.State()
	if v := a.recordReign(st, true); v != nil {
		return fmt.Errorf("aggregator set as master: leaf has seen master aggregator %s of master epoch %d, newer than this takeover's %d",
			v.By, v.Epoch, st.MasterEpoch)
	}
	if n := a.reignedOn(st); n < len(st.Leaves) {
		a.log.Warn("the takeover is recorded on only some leaves; the others get it when they answer", "recorded", n, "leaves", len(st.Leaves))
	}
	a.log.Warn("this aggregator took over as master by force", "master_epoch", st.MasterEpoch)
	return nil
}

// newestSeen is the highest master epoch the reachable leaves of st have
// seen.
func (a *Manager) newestSeen(st *meta.State) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var e uint64
	for _, r := range a.askLeaves(ctx, st) {
		e = max(e, r.Epoch)
	}
	return e
}
