package manager

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/controller"
	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/internal/nodeapi"
	"github.com/canopydb/canopy/sqlcmd"
)

// High availability on the master aggregator (DESIGN.md §3, seed 003):
// failure detection from heartbeats, failover of an offline leaf's master
// partitions to their replicas, attaching a returning leaf, and telling
// every leaf which replicas to ship its master partitions to. The
// decisions are the pure functions of cluster/meta (Failover, PlanAttach);
// this file runs them. One cluster operation (rebalance, attach, partition
// command) runs at a time (ha.mu); failover does not wait for it (leafDown).

// replicaConfig is what one leaf is told to ship (node.ReplicaTarget).
type replicaConfig struct {
	DB     string `json:"db"`
	Target string `json:"target"`
	Sync   bool   `json:"sync,omitempty"`
	Limit  int64  `json:"limit,omitempty"` // bytes/s of a copy being provisioned; 0: no cap
}

// copyKey names a replica being provisioned: shipped asynchronously until
// it has caught up, then entered in the partition map.
type copyKey struct {
	db      string
	ordinal int
	target  string
}

// haState is the master aggregator's HA bookkeeping.
//
// Lock order. A goroutine that holds one of these locks takes only locks
// further down this list (each pair that nests, nests this way):
//
//  1. mu (one cluster operation: attach, rebalance, partition command,
//     REMOVE LEAF's drain, CLEAR ORPHAN DATABASES, a replica given back)
//     and downMu (one leaf-down: failover) are never held together:
//     failover must not wait for an operation that may be waiting on the
//     very leaf (leafDown). Either is held across reconcile, proposals and
//     RPCs to leaves.
//  2. partMu: one partition map change, held across its proposal (and the
//     wait for the child aggregators) and the step's check (leafGone).
//  3. cfgMu, then copyMu inside it (pushReplication); copyMu alone in
//     setCopying and setCopySync.
//  4. promoteMu, then incMu inside it (a promotion's result is kept only
//     if the leaf's incarnation did not change meanwhile); noteIncarnation
//     releases incMu before it takes promoteMu.
//  5. incMu, statesMu, jobsMu, attachMu, and Manager.reignMu: nothing of
//     the manager's is taken under them.
//
// Below all of them come the member's locks (the heartbeats' mutex, then
// the connection pools': severFailed, pushReplication, proposals and the
// steps' checks take them) and the query tier's (its copies and their
// streams, ReconcileCopies, which reconcile runs under mu or downMu).
// Nothing below calls back up into the manager.
type haState struct {
	mu           sync.Mutex                     // one cluster operation at a time
	downMu       sync.Mutex                     // one leaf taken out of service at a time
	partMu       sync.Mutex                     // one partition map change at a time
	cfgMu        sync.Mutex                     // guards sent
	sent         map[string]string              // leaf → the replica list it last accepted
	promoteMu    sync.Mutex                     // guards promoted and promoting
	promoted     map[controller.PromoteKey]bool // masters known promoted at their epoch
	promoting    map[controller.PromoteKey]bool // promotions in flight
	incMu        sync.Mutex
	incarnations map[string]incarnationSeen // leaf → its incarnation as last read (fencing.go)
	copyMu       sync.Mutex                 // guards copying
	copying      map[copyKey]bool           // a copy being provisioned → shipped synchronously
	jobsMu       sync.Mutex
	jobs         map[string]bool // journal jobs this aggregator runs (by token)

	statesMu sync.Mutex
	states   map[string]string // leaf → the state this aggregator last saw

	attachMu     sync.Mutex           // guards attaching and attachFailed
	attaching    map[string]bool      // leaves being auto-attached
	attachFailed map[string]time.Time // when a leaf's last auto-attach failed
}

// attachRetry spaces the auto-attaches of a leaf whose last one failed.
const attachRetry = 5 * time.Second

// mayAttach says whether an auto-attach of leaf may start: none is
// running, and the last one did not fail less than attachRetry ago.
func (h *haState) mayAttach(leaf string) bool {
	h.attachMu.Lock()
	defer h.attachMu.Unlock()
	return !h.attaching[leaf] && time.Since(h.attachFailed[leaf]) >= attachRetry
}

// startAttach claims the auto-attach of leaf; false if one is running,
// or the last one failed less than attachRetry ago.
func (h *haState) startAttach(leaf string) bool {
	h.attachMu.Lock()
	defer h.attachMu.Unlock()
	if h.attaching[leaf] || time.Since(h.attachFailed[leaf]) < attachRetry {
		return false
	}
	h.attaching[leaf] = true
	return true
}

func (h *haState) endAttach(leaf string, failed bool) {
	h.attachMu.Lock()
	delete(h.attaching, leaf)
	if failed {
		h.attachFailed[leaf] = time.Now()
	} else {
		delete(h.attachFailed, leaf)
	}
	h.attachMu.Unlock()
}

func newHAState() *haState {
	return &haState{promoted: map[controller.PromoteKey]bool{}, promoting: map[controller.PromoteKey]bool{}, incarnations: map[string]incarnationSeen{}, sent: map[string]string{}, copying: map[copyKey]bool{}, jobs: map[string]bool{}, states: map[string]string{}, attaching: map[string]bool{}, attachFailed: map[string]time.Time{}}
}

// severFailed closes, on every aggregator, the connections to a leaf that
// just left the online state: statements waiting on a hung leaf end now.
// It keeps doing so while the leaf is offline and not answering
// heartbeats: a statement that routed with the metadata of a moment
// before may still reach it.
func (a *Manager) severFailed() {
	a.ha.statesMu.Lock()
	defer a.ha.statesMu.Unlock()
	for _, l := range a.State().Leaves {
		addr := l.Addr()
		prev, ok := a.ha.states[addr]
		left := ok && prev == meta.LeafOnline && l.State != meta.LeafOnline
		if left || (l.State == meta.LeafOffline && a.beats.Down(addr)) {
			a.pools.Sever(addr)
		}
		a.ha.states[addr] = l.State
	}
}

// pushReplication tells every reachable leaf which replicas to ship its
// master partitions to, when that changed.
func (a *Manager) pushReplication() {
	a.ha.cfgMu.Lock()
	defer a.ha.cfgMu.Unlock()
	// the state as of now, under cfgMu: of two reconciles at once, the
	// later state is the one the leaves keep
	st := a.State()
	want := map[string][]replicaConfig{}
	internal := func(addr string) string {
		l, ok := st.Leaf(addr)
		if !ok || l.InternalPort == 0 {
			return ""
		}
		return meta.Addr(l.Host, l.InternalPort)
	}
	for _, name := range st.DatabaseNames() {
		d := st.Database(name)
		for _, p := range d.Partitions {
			if p.Master == "" {
				continue
			}
			for _, r := range p.Replicas {
				if t := internal(r); t != "" {
					want[p.Master] = append(want[p.Master], replicaConfig{DB: meta.PartitionName(d.Name, p.Ordinal), Target: t, Sync: d.Sync})
				}
			}
		}
	}
	limit, _ := strconv.ParseInt(st.Variable("copy_bandwidth_mb_per_sec"), 10, 64)
	a.ha.copyMu.Lock()
	for k, synced := range a.ha.copying {
		d := st.Database(k.db)
		if d == nil || k.ordinal >= len(d.Partitions) || d.Partitions[k.ordinal].Master == "" {
			continue
		}
		if t := internal(k.target); t != "" {
			m := d.Partitions[k.ordinal].Master
			if slices.ContainsFunc(want[m], func(c replicaConfig) bool { return c.DB == meta.PartitionName(d.Name, k.ordinal) && c.Target == t }) {
				continue // entered in the map already
			}
			rc := replicaConfig{DB: meta.PartitionName(d.Name, k.ordinal), Target: t, Limit: limit << 20}
			if synced {
				rc.Sync, rc.Limit = true, 0
			}
			want[m] = append(want[m], rc)
		}
	}
	a.ha.copyMu.Unlock()
	for _, l := range st.Leaves {
		addr := l.Addr()
		// an offline leaf that answers heartbeats is told too: a copy may
		// stream from its masters (sourceGone), and none would flow if it
		// were not (an attach of its pair then waited for it for ever)
		if l.State == meta.LeafDetached || (l.State == meta.LeafOffline && len(want[addr]) == 0) || a.beats.Down(addr) {
			delete(a.ha.sent, addr)
			continue
		}
		cfg := want[addr]
		sort.Slice(cfg, func(i, j int) bool {
			if cfg[i].DB != cfg[j].DB {
				return cfg[i].DB < cfg[j].DB
			}
			return cfg[i].Target < cfg[j].Target
		})
		if cfg == nil {
			cfg = []replicaConfig{}
		}
		b, _ := json.Marshal(cfg)
		if a.ha.sent[addr] == string(b) {
			continue
		}
		lp, err := a.LeafPool(addr)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = lp.Exec(ctx, a.Fenced("CANOPY REPLICATE "+sqlString(string(b))), 0)
			cancel()
		}
		if err != nil {
			a.log.Warn("telling a leaf its replicas", "leaf", addr, "err", err)
			delete(a.ha.sent, addr)
			continue
		}
		a.ha.sent[addr] = string(b)
	}
}

// setCopying starts (on) or ends shipping a copy being provisioned;
// setCopySync makes its stream synchronous, uncapped.
func (a *Manager) setCopying(k copyKey, on bool) {
	a.ha.copyMu.Lock()
	if on {
		a.ha.copying[k] = false
	} else {
		delete(a.ha.copying, k)
	}
	a.ha.copyMu.Unlock()
}

// haLoop runs failure detection and auto-attach on the master.
func (a *Manager) haLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(member.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		if a.IsMaster() {
			a.detect()
		}
	}
}

// detect runs the cluster controller (package controller: a pure
// function of the metadata and what heartbeats observed) and performs
// what it decides: leaves that stopped answering go down (failing their
// partitions over), leaves that came back are attached or detached, and
// masters not yet promoted at their epoch are promoted.
func (a *Manager) detect() {
	st := a.State()
	obs := controller.Observed{Health: map[string]controller.Health{}, Attaching: map[string]bool{}, Promoted: a.promotedKeys()}
	for _, l := range st.Leaves {
		h := a.beats.Health(l.Addr())
		ch := controller.Health{Known: h.Known, Refused: h.Refused, OKStreak: h.OKStreak}
		if h.Failures > 0 {
			ch.Failing = time.Since(h.FailingSince)
		}
		obs.Health[l.Addr()] = ch
		obs.Attaching[l.Addr()] = !a.ha.mayAttach(l.Addr())
	}
	for _, act := range controller.Decide(st, obs) {
		a.perform(act)
	}
}

// perform carries out one of the controller's actions.
func (a *Manager) perform(act controller.Action) {
	switch act := act.(type) {
	case controller.LeafDown:
		for _, f := range act.Leaves {
			a.log.Warn("leaf is not answering heartbeats; failing it over", "leaf", f.Leaf, "for", f.Failing.Round(time.Millisecond), "refused", f.Refused)
		}
		if err := a.leafDown(act.Addrs(), meta.LeafOffline); err != nil {
			a.log.Error("failing over leaves", "leaves", act.Addrs(), "err", err)
		}
	case controller.Detach:
		a.log.Info("leaf is reachable again; auto_attach is off, so it waits detached", "leaf", act.Leaf)
		a.Propose(meta.SetLeafState{Addr: act.Leaf, State: meta.LeafDetached})
	case controller.Attach:
		// in the background: failure detection goes on meanwhile
		if !a.ha.startAttach(act.Leaf) {
			return
		}
		a.log.Info("leaf is reachable again; attaching it", "leaf", act.Leaf)
		a.wg.Add(1)
		go func(addr string) {
			defer a.wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-a.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := a.attachLeaf(ctx, addr, true)
			if err != nil {
				a.log.Error("attaching leaf", "leaf", addr, "err", err)
			}
			a.ha.endAttach(addr, err != nil)
		}(act.Leaf)
	case controller.Promote:
		a.startPromote(act.PromoteKey)
	}
}

// leafDown takes a leaf out of service (offline on failure, detached on
// DETACH LEAF): its master partitions fail over to their replicas where
// there are any, else have no master; it stops being anyone's replica.
// The state change and the failover of every database are one raft
// command (meta.LeafDown): a master aggregator that dies midway leaves
// either both or neither. The new masters are then promoted at their
// partitions' epochs (promoteMasters), by this master or, should it die
// first, by the next one.
//
// It does not wait for a running cluster operation (ha.mu): a rebalance or
// an attach may be waiting on this very leaf, and failover must not wait
// for them. The steps of such operations change the map by compare-and-set
// on the epochs (changePartition), so one that assumed the old master
// fails instead of undoing the failover.
func (a *Manager) leafDown(addrs []string, state string) error {
	a.ha.downMu.Lock()
	defer a.ha.downMu.Unlock()
	var cmd any = meta.LeafDown{Addrs: addrs, State: state}
	if failpoint.Enabled("failover-stalls") && len(addrs) == 1 {
		// a test's failover that never finishes: the partitions keep naming the leaf
		cmd = meta.SetLeafState{Addr: addrs[0], State: state}
	}
	before := a.State()
	a.ha.partMu.Lock()
	err := a.Propose(cmd)
	a.ha.partMu.Unlock()
	if err != nil {
		return err
	}
	failpoint.Hit("master-after-leaf-down") // named, not yet promoted
	a.logFailovers(before, a.State(), addrs)
	a.reconcile() // promotes the new masters, severs the leaf's connections
	return nil
}

// logFailovers logs what a leaf-down changed.
func (a *Manager) logFailovers(before, after *meta.State, dead []string) {
	for _, name := range after.DatabaseNames() {
		d, old := after.Database(name), before.Database(name)
		if old == nil {
			continue
		}
		for i, p := range d.Partitions {
			if i >= len(old.Partitions) || !slices.Contains(dead, old.Partitions[i].Master) {
				continue
			}
			if p.Master != "" {
				a.log.Info("partition failed over", "database", d.Name, "ordinal", p.Ordinal, "from", old.Partitions[i].Master, "to", p.Master, "epoch", p.Epoch)
			} else {
				a.log.Warn("partition has no master until one of its candidate copies returns", "database", d.Name, "ordinal", p.Ordinal, "from", old.Partitions[i].Master, "candidates", p.Candidates)
			}
		}
	}
}

// promoteMasters promotes every partition master not yet confirmed at
// its epoch (controller.Promotions): after a failover (meta.LeafDown
// names the new masters), after a master aggregator changes (the new one
// does not know what the old one had done), and again while a leaf that
// should be promoted does not answer. PROMOTE at an epoch is idempotent
// on the leaf.
func (a *Manager) promoteMasters(st *meta.State) {
	for _, act := range controller.Promotions(st, a.promotedKeys()) {
		a.startPromote(act.(controller.Promote).PromoteKey)
	}
}

// promotedKeys are the masters confirmed or being promoted.
func (a *Manager) promotedKeys() map[controller.PromoteKey]bool {
	a.ha.promoteMu.Lock()
	defer a.ha.promoteMu.Unlock()
	out := make(map[controller.PromoteKey]bool, len(a.ha.promoted)+len(a.ha.promoting))
	for k := range a.ha.promoted {
		out[k] = true
	}
	for k := range a.ha.promoting {
		out[k] = true
	}
	return out
}

// startPromote promotes a master in the background: a leaf that hangs
// must not hold up reconcile (the replica lists of every other leaf); a
// failed promotion is tried again on the next reconcile or detection.
func (a *Manager) startPromote(k controller.PromoteKey) {
	a.ha.promoteMu.Lock()
	if a.ha.promoted[k] || a.ha.promoting[k] {
		a.ha.promoteMu.Unlock()
		return
	}
	a.ha.promoting[k] = true
	a.ha.promoteMu.Unlock()
	go func() {
		inc, err := a.confirmOn(k.Master, quoteIdent(meta.PartitionName(k.DB, k.Ordinal)), k.Epoch)
		a.ha.promoteMu.Lock()
		delete(a.ha.promoting, k)
		if err == nil && a.incarnation(k.Master) == inc { // else: paused since; confirmed again
			a.ha.promoted[k] = true
		}
		a.ha.promoteMu.Unlock()
		if err != nil {
			a.log.Error("promoting a partition's master; retried", "database", k.DB, "ordinal", k.Ordinal, "leaf", k.Master, "epoch", k.Epoch, "err", err)
			return
		}
		a.Signal() // its replicas may now be told to follow it
	}()
}

func (a *Manager) onLeaf(leaf, stmt string) (*sqltypes.Result, error) {
	lp, err := a.LeafPool(leaf)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := lp.Exec(ctx, stmt, 1000)
	if err != nil {
		return nil, leafError(leaf, err)
	}
	return res, nil
}

// promoteOn runs PROMOTE PARTITION … EPOCH on a leaf (confirmOn) and
// returns the leaf's own error (a *mysql.SQLError when the leaf refused
// it).
func (a *Manager) promoteOn(leaf, quotedName string, epoch uint64) error {
	_, err := a.confirmOn(leaf, quotedName, epoch)
	return err
}

// promoteNamed promotes the master the metadata names for a partition at
// its epoch, once a step has named it (changePartition).
func (a *Manager) promoteNamed(db string, ordinal int, leaf string) error {
	d := a.State().Database(db)
	if d == nil || ordinal >= len(d.Partitions) || d.Partitions[ordinal].Master != leaf {
		return fmt.Errorf("partition %s:%d is no longer mastered by %s", db, ordinal, leaf)
	}
	p := d.Partitions[ordinal]
	err := a.promoteOn(leaf, quoteIdent(meta.PartitionName(d.Name, ordinal)), p.Epoch)
	if err == nil {
		a.ha.promoteMu.Lock()
		a.ha.promoted[controller.PromoteKey{DB: d.Name, Ordinal: ordinal, Master: leaf, Epoch: p.Epoch}] = true
		a.ha.promoteMu.Unlock()
	}
	return err
}

func samePartitions(a, b []meta.Partition) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// leafDatabase is one row of a leaf's SHOW DATABASES EXTENDED.
type leafDatabase struct {
	name, role, state, position string
}

// leafDatabases lists the databases a leaf holds (information_schema
// aside), as its SHOW DATABASES EXTENDED reports them.
func (a *Manager) leafDatabases(leaf string) ([]leafDatabase, error) {
	res, err := a.onLeaf(leaf, "SHOW DATABASES EXTENDED")
	if err != nil {
		return nil, err
	}
	var out []leafDatabase
	for _, row := range res.Rows {
		if len(row) < 5 || row[2].IsNull() {
			continue
		}
		out = append(out, leafDatabase{name: row[0].ToString(), role: row[2].ToString(), state: row[3].ToString(), position: row[4].ToString()})
	}
	return out, nil
}

// leafStatus asks a leaf for its partition copies and replication
// streams (CANOPY PARTITION STATUS: one typed document).
func (a *Manager) leafStatus(leaf string) (*nodeapi.Status, error) {
	res, err := a.onLeaf(leaf, "CANOPY PARTITION STATUS")
	if err != nil {
		return nil, err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return nil, fmt.Errorf("leaf %s: CANOPY PARTITION STATUS returned %d rows", leaf, len(res.Rows))
	}
	var st nodeapi.Status
	if err := json.Unmarshal([]byte(res.Rows[0][0].ToString()), &st); err != nil {
		return nil, fmt.Errorf("leaf %s: partition status: %w", leaf, err)
	}
	a.noteIncarnation(leaf, &st)
	return &st, nil
}

// leafCopies lists the partition databases a leaf holds, with their
// positions.
func (a *Manager) leafCopies(leaf string) (map[string]meta.CopyInfo, map[string]uint64, error) {
	st, err := a.leafStatus(leaf)
	if err != nil {
		return nil, nil, err
	}
	copies := map[string]meta.CopyInfo{}
	lsns := map[string]uint64{}
	for _, c := range st.Copies {
		copies[c.Database] = meta.CopyInfo{Replica: c.Replica, Pending: c.Pending}
		lsns[c.Database] = c.LSN
	}
	return copies, lsns, nil
}

// attachLeaf brings a detached or offline leaf back (ATTACH LEAF, or
// auto-attach with force): its copies are kept, replaced or promoted as
// meta.PlanAttach says, each step recorded for SHOW REBALANCE STATUS.
func (a *Manager) attachLeaf(ctx context.Context, addr string, force bool) error {
	a.ha.mu.Lock()
	defer a.ha.mu.Unlock()
	st := a.State()
	l, ok := st.Leaf(addr)
	if !ok {
		return mysql.NewSQLError(1105, "HY000", "Leaf %s is not part of the cluster", meta.QuotedAddr(addr))
	}
	if l.State == meta.LeafOnline {
		return nil
	}
	copies, _, err := a.leafCopies(addr)
	if err != nil {
		return mysql.NewSQLError(2003, "HY000", "Unable to attach leaf %s: it does not answer (%v). Start it, then run ATTACH LEAF again", meta.QuotedAddr(addr), err)
	}
	plans := map[string][]meta.Step{}
	for _, name := range st.DatabaseNames() {
		steps, err := meta.PlanAttach(st, st.Database(name), addr, copies, force)
		if err != nil {
			var c *meta.ConflictError
			if errors.As(err, &c) {
				return mysql.NewSQLError(1811, "HY000", "%s", c.Error())
			}
			return err
		}
		plans[name] = steps
	}
	prev := l.State
	if err := a.Propose(meta.SetLeafState{Addr: addr, State: meta.LeafAttaching}); err != nil {
		return err
	}
	a.reconcile()
	var failed error
	for _, name := range st.DatabaseNames() {
		if err := a.runSteps(ctx, meta.JobAttach, addr, name, plans[name]); err != nil && failed == nil {
			failed = err
		}
	}
	// DETACH LEAF or failure detection may have taken the leaf out
	// meanwhile (they do not wait for an attach): that stands
	if l, ok := a.State().Leaf(addr); !ok || l.State != meta.LeafAttaching {
		return fmt.Errorf("attach leaf %s: it was taken out of service while attaching (now %s)", addr, cmp.Or(l.State, "removed"))
	}
	if failed != nil {
		// the leaf goes back to where it was; what was done stays done
		a.Propose(meta.SetLeafState{Addr: addr, State: prev})
		return fmt.Errorf("attach leaf %s: %w", addr, failed)
	}
	if err := a.Propose(meta.SetLeafState{Addr: addr, State: meta.LeafOnline}); err != nil {
		return err
	}
	a.reconcile()
	a.log.Info("leaf attached", "leaf", addr)
	return nil
}

// runSteps runs a database's steps phase by phase, the steps of a phase
// in parallel (at most stepParallelism at once). A failed step stops the
// run once its phase has finished; what was done stays done, and every
// step leaves the partition with its master, so the plan can be made and
// run again. The run is a job of the metadata's operation journal
// (meta.Job): every aggregator shows its steps (SHOW REBALANCE STATUS),
// and a new master aggregator finds it if this one dies (resumeJobs).
func (a *Manager) runSteps(ctx context.Context, kind, leaf, db string, steps []meta.Step) error {
	job := meta.Job{Kind: kind, DB: db, Leaf: leaf, By: a.self, Token: newToken(), StartedUnixMs: time.Now().UnixMilli()}
	for _, s := range steps {
		job.Steps = append(job.Steps, meta.JobStep{Step: s, Status: "scheduled"})
	}
	id := a.journalStart(job)
	defer a.ha.endJob(job.Token)
	record := func(cmd any) {
		if id == 0 {
			return
		}
		if err := a.Propose(cmd); err != nil {
			a.log.Warn("recording a step in the operation journal", "job", id, "err", err)
		}
	}
	var mu sync.Mutex // guards failed
	var failed error
	for lo := 0; lo < len(steps) && failed == nil; {
		hi := lo
		for hi < len(steps) && steps[hi].Phase == steps[lo].Phase {
			hi++
		}
		sem := make(chan struct{}, stepParallelism)
		var wg sync.WaitGroup
		for i := lo; i < hi; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				s := steps[i]
				started := time.Now()
				record(meta.SetJobStep{ID: id, Index: i, Status: "running", StartedUnixMs: started.UnixMilli(), NowUnixMs: started.UnixMilli()})
				err := a.runStep(ctx, s)
				status := "success"
				if err != nil {
					status = "error"
					mu.Lock()
					if failed == nil {
						failed = fmt.Errorf("%s %s:%d on %s: %w", s.Action, s.DB, s.Ordinal, s.Target, err)
					}
					mu.Unlock()
				}
				record(meta.SetJobStep{ID: id, Index: i, Status: status, StartedUnixMs: started.UnixMilli(), TookMs: time.Since(started).Milliseconds(), NowUnixMs: time.Now().UnixMilli()})
				if kind == meta.JobRebalance {
					failpoint.Hit("master-mid-rebalance")
				}
			}(i)
		}
		wg.Wait()
		lo = hi
	}
	end := meta.EndJob{ID: id, State: meta.JobDone, NowUnixMs: time.Now().UnixMilli()}
	if failed != nil {
		end.State, end.Error = meta.JobFailed, failed.Error()
	}
	record(end)
	return failed
}

// stepParallelism bounds the steps of one phase that run at once.
const stepParallelism = 4

// journalStart records a job in the journal and returns its id (0 when it
// could not be recorded: the operation runs all the same). The job is
// this aggregator's (not to be resumed) from before it is proposed.
func (a *Manager) journalStart(job meta.Job) uint64 {
	a.ha.jobsMu.Lock()
	a.ha.jobs[job.Token] = true
	a.ha.jobsMu.Unlock()
	if err := a.Propose(meta.StartJob{Job: job}); err != nil {
		a.log.Warn("recording an operation in the journal", "kind", job.Kind, "database", job.DB, "err", err)
		return 0
	}
	st := a.State()
	for i := len(st.Jobs) - 1; i >= 0; i-- {
		if st.Jobs[i].Token == job.Token {
			return st.Jobs[i].ID
		}
	}
	return 0
}

func (h *haState) endJob(token string) {
	h.jobsMu.Lock()
	delete(h.jobs, token)
	h.jobsMu.Unlock()
}

// newToken names a job until the journal has numbered it.
func newToken() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// resumeJobs takes up, on the master aggregator, the jobs the journal
// shows running that no operation of this aggregator runs: a master
// aggregator died in the middle of them. Each is marked interrupted; a
// rebalance is planned again from the current map and run (every step
// left the map consistent); an attach is taken up by the controller (its
// leaf is still attaching); any other is the operator's to run again.
func (a *Manager) resumeJobs(st *meta.State) {
	for _, j := range st.Jobs {
		if j.State != meta.JobRunning {
			continue
		}
		a.ha.jobsMu.Lock()
		mine := a.ha.jobs[j.Token]
		a.ha.jobsMu.Unlock()
		if mine {
			continue
		}
		err := a.Propose(meta.EndJob{ID: j.ID, State: meta.JobInterrupted, Error: fmt.Sprintf("the master aggregator %s that ran it stopped", j.By), NowUnixMs: time.Now().UnixMilli()})
		if err != nil {
			return
		}
		a.log.Warn("an operation of the previous master aggregator was interrupted", "job", j.ID, "kind", j.Kind, "database", j.DB, "by", j.By)
		if j.Kind != meta.JobRebalance {
			continue
		}
		a.wg.Add(1)
		go func(db string) {
			defer a.wg.Done()
			_, err := a.rebalanceCommand(context.Background(), nil, sqlcmd.Rebalance{Database: db})
			if err != nil {
				a.log.Error("resuming an interrupted rebalance", "database", db, "err", err)
			} else {
				a.log.Info("interrupted rebalance resumed and finished", "database", db)
			}
		}(j.DB)
	}
}

// updatePartition changes one partition of a database in the metadata
// (steps running in parallel, and failover, update the same partition
// list: partMu makes each read-modify-write whole). change sees the
// partition as it is now and may refuse (an error) when what its step
// assumed no longer holds, e.g. failover moved the master meanwhile.
func (a *Manager) updatePartition(db string, ordinal int, change func(p *meta.Partition) error) error {
	changed, err := a.changePartition(db, ordinal, change)
	if changed {
		// the leaves learn their replicas after partMu is released: that
		// takes a round trip to each, which failover should not wait for
		a.reconcile()
	}
	return err
}

func (a *Manager) changePartition(db string, ordinal int, change func(p *meta.Partition) error) (bool, error) {
	a.ha.partMu.Lock()
	defer a.ha.partMu.Unlock()
	d := a.State().Database(db)
	if d == nil || ordinal >= len(d.Partitions) {
		return false, fmt.Errorf("database %s has no partition %d", db, ordinal)
	}
	parts := append([]meta.Partition(nil), d.Partitions...)
	p := parts[ordinal]
	p.Replicas = append([]string(nil), p.Replicas...)
	if err := change(&p); err != nil {
		return false, err
	}
	parts[ordinal] = p
	if samePartitions(d.Partitions, parts) {
		return false, nil
	}
	epochs := make([]uint64, len(d.Partitions))
	for i, p := range d.Partitions {
		epochs[i] = p.Epoch
	}
	if err := a.Propose(meta.SetPartitions{Database: d.Name, Partitions: parts, Epochs: epochs}); err != nil {
		return false, err
	}
	return true, nil
}

func (a *Manager) runStep(ctx context.Context, s meta.Step) error {
	name := quoteIdent(meta.PartitionName(s.DB, s.Ordinal))
	switch s.Action {
	case meta.ActionAttach:
		if s.AsMaster {
			// checked before the promotion too (failover never adds a
			// master, and ha.mu keeps other operations out)
			if err := a.mayTakeMaster(s); err != nil {
				return err
			}
			// named in the metadata first (a new epoch), then promoted at it
			err := a.updatePartition(s.DB, s.Ordinal, func(p *meta.Partition) error {
				if p.Master != s.Target && a.leafGone(p.Master) == "" {
					return fmt.Errorf("partition %s:%d has a master again, on %s", s.DB, s.Ordinal, p.Master)
				}
				if why := a.leafGone(s.Target); why != "" {
					return fmt.Errorf("leaf %s %s", meta.QuotedAddr(s.Target), why)
				}
				p.Master = s.Target
				p.Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return r == s.Target })
				return nil
			})
			if err != nil {
				return err
			}
			return a.promoteNamed(s.DB, s.Ordinal, s.Target)
		}
		return a.copyPartition(ctx, s)
	case meta.ActionDrop:
		// out of the map first (its master stops shipping to it), then gone
		err := a.updatePartition(s.DB, s.Ordinal, func(p *meta.Partition) error {
			p.Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return r == s.Target })
			return nil
		})
		if err != nil {
			return err
		}
		if d := a.State().Database(s.DB); d != nil && s.Ordinal < len(d.Partitions) && d.Partitions[s.Ordinal].Master == s.Target {
			return fmt.Errorf("refusing to drop the master copy of %s:%d", s.DB, s.Ordinal)
		}
		_, err = a.onLeaf(s.Target, a.Fenced("CANOPY DROP PARTITION "+name))
		return err
	case meta.ActionCopy:
		return a.copyPartition(ctx, s)
	case meta.ActionPromote:
		return a.handOver(ctx, s.DB, s.Ordinal, s.Target)
	case meta.ActionCreate:
		return a.createEmptyPartition(s)
	}
	return fmt.Errorf("unknown step %s", s.Action)
}

// createEmptyPartition replaces a lost partition with an empty master on
// s.Target (REBALANCE … FORCE). Its tables are made LIKE those of the
// target's copy of the database, which holds every table's definition.
// A copy of the partition already on the target is used only if it is
// empty (an earlier attempt); one with rows is the operator's to judge.
func (a *Manager) createEmptyPartition(s meta.Step) error {
	st := a.State()
	d := st.Database(s.DB)
	if d == nil || !slices.Contains(meta.LostPartitions(st, d), s.Ordinal) {
		return fmt.Errorf("partition %s:%d has a copy on an online leaf again; run REBALANCE PARTITIONS without FORCE", s.DB, s.Ordinal)
	}
	name := meta.PartitionName(s.DB, s.Ordinal)
	if _, err := a.onLeaf(s.Target, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(name)); err != nil {
		return err
	}
	for _, t := range d.Tables {
		if t.Reference {
			continue
		}
		stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s LIKE %s.%s", quoteIdent(name), quoteIdent(t.Name), quoteIdent(d.Name), quoteIdent(t.Name))
		if _, err := a.onLeaf(s.Target, stmt); err != nil {
			return err
		}
	}
	if table, err := a.copyRows(s.Target, d, s.Ordinal); err != nil || table != "" {
		if err == nil {
			err = fmt.Errorf("leaf %s already holds a copy of %s:%d with rows (table %s): ATTACH PARTITION %s:%d ON %s keeps them; to give them up, drop that database on the leaf and run REBALANCE PARTITIONS ON %s FORCE again",
				meta.QuotedAddr(s.Target), s.DB, s.Ordinal, table, s.DB, s.Ordinal, meta.QuotedAddr(s.Target), s.DB)
		}
		return err
	}
	if err := a.mayTakeMaster(s); err != nil {
		return err
	}
	err := a.updatePartition(s.DB, s.Ordinal, func(p *meta.Partition) error {
		if a.leafGone(p.Master) == "" {
			return fmt.Errorf("partition %s:%d has a master again, on %s", s.DB, s.Ordinal, p.Master)
		}
		p.Master, p.Replicas = s.Target, nil
		return nil
	})
	if err != nil {
		return err
	}
	return a.promoteNamed(s.DB, s.Ordinal, s.Target)
}

// mayTakeMaster says why s.Target may not become the master of its
// partition now: the partition has a live master, or the target is gone.
func (a *Manager) mayTakeMaster(s meta.Step) error {
	d := a.State().Database(s.DB)
	if d == nil || s.Ordinal >= len(d.Partitions) {
		return fmt.Errorf("database %s has no partition %d", s.DB, s.Ordinal)
	}
	if m := d.Partitions[s.Ordinal].Master; m != s.Target && a.leafGone(m) == "" {
		return fmt.Errorf("partition %s:%d has a master, on %s", s.DB, s.Ordinal, m)
	}
	if why := a.leafGone(s.Target); why != "" {
		return fmt.Errorf("leaf %s %s", meta.QuotedAddr(s.Target), why)
	}
	return nil
}

// copyRows names a table in which leaf's copy of partition ordinal of d
// holds rows, or "" if it holds none (tables it lacks count as empty).
func (a *Manager) copyRows(leaf string, d *meta.Database, ordinal int) (string, error) {
	name := meta.PartitionName(d.Name, ordinal)
	for _, t := range d.Tables {
		if t.Reference {
			continue
		}
		res, err := a.onLeaf(leaf, fmt.Sprintf("SELECT 1 FROM %s.%s LIMIT 1", quoteIdent(name), quoteIdent(t.Name)))
		if me := (*mysql.SQLError)(nil); errors.As(err, &me) && me.Num == mysql.ERNoSuchTable {
			continue
		}
		if err != nil {
			return "", err
		}
		if len(res.Rows) > 0 {
			return t.Name, nil
		}
	}
	return "", nil
}

// handOver moves a partition's master role to its replica on to without
// losing a write: the master is demoted (new writes refused, in-doubt
// transactions drained), the replica catches up with its final position,
// the metadata names the new master (which from then on ships to the old
// one), and the replica is promoted. Writes to the partition fail for the
// time between demotion and promotion. If a step fails before the new
// master may have been promoted, the old master takes its role back.
func (a *Manager) handOver(ctx context.Context, db string, ordinal int, to string) error {
	d := a.State().Database(db)
	if d == nil || ordinal >= len(d.Partitions) {
		return fmt.Errorf("database %s has no partition %d", db, ordinal)
	}
	from := d.Partitions[ordinal].Master
	if from == to {
		return nil
	}
	if from == "" || !slices.Contains(d.Partitions[ordinal].Replicas, to) {
		return fmt.Errorf("partition %s:%d has no replica on %s to promote", db, ordinal, to)
	}
	name := meta.PartitionName(db, ordinal)
	quoted := quoteIdent(name)
	start := time.Now()
	restore := func(cause error) error {
		if d := a.State().Database(db); d == nil || ordinal >= len(d.Partitions) || d.Partitions[ordinal].Master != from {
			return cause // failover moved the role meanwhile: from stays demoted
		}
		// at the epoch the metadata names it with (the same as before the
		// demotion, or a new one if the swap was undone)
		if err := a.promoteNamed(db, ordinal, from); err != nil {
			a.log.Error("hand-over failed and the old master could not take its role back", "partition", name, "leaf", from, "err", err)
		}
		return cause
	}
	res, err := a.onLeaf(from, a.Fenced("CANOPY DEMOTE PARTITION "+quoted))
	if err != nil {
		// it may have been demoted all the same (a timeout): promoting a
		// master is a no-op, so take the role back either way
		return restore(fmt.Errorf("demote the master on %s: %w", from, err))
	}
	var lsn uint64
	if len(res.Rows) == 1 && len(res.Rows[0]) == 2 {
		lsn, _ = strconv.ParseUint(res.Rows[0][1].ToString(), 10, 64)
	}
	if err := a.waitPosition(ctx, to, name, lsn, 10*time.Second); err != nil {
		return restore(err)
	}
	// swap hands the role from replica to master in the map, provided the
	// map still says what the hand-over started from and the new master
	// is still up (failover may have run meanwhile)
	swap := func(master, replica string) func(p *meta.Partition) error {
		return func(p *meta.Partition) error {
			if p.Master != replica || !slices.Contains(p.Replicas, master) {
				return fmt.Errorf("partition %s:%d changed during the hand-over (master %q, replicas %v)", db, ordinal, p.Master, p.Replicas)
			}
			if why := a.leafGone(master); why != "" {
				return fmt.Errorf("leaf %s %s", meta.QuotedAddr(master), why)
			}
			p.Master = master
			p.Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return r == master || r == replica })
			p.Replicas = append(p.Replicas, replica)
			return nil
		}
	}
	if err := a.updatePartition(db, ordinal, swap(to, from)); err != nil {
		return restore(err)
	}
	if err := a.promoteNamed(db, ordinal, to); err != nil {
		// Only a refusal by the leaf itself means the promotion did not
		// happen; after a timeout or a broken connection it may still
		// finish, and giving the old master its role back could make two
		// masters. Then the metadata keeps naming the new one (the old is
		// its replica), and failure detection fails it over as usual
		// should it be dead.
		var se *mysql.SQLError
		if errors.As(err, &se) && se.Num < 2000 {
			a.updatePartition(db, ordinal, swap(from, to))
			return restore(fmt.Errorf("promote the replica on %s: %w", to, err))
		}
		a.log.Error("hand-over: the new master's promotion has an unknown outcome; it stays named master", "partition", name, "leaf", to, "err", err)
		return fmt.Errorf("promote the replica on %s (outcome unknown; it stays the master in the metadata): %w", to, err)
	}
	a.log.Info("partition master handed over", "partition", name, "from", from, "to", to, "writes_paused", time.Since(start))
	return nil
}

func (a *Manager) setCopySync(k copyKey) {
	a.ha.copyMu.Lock()
	if _, ok := a.ha.copying[k]; ok {
		a.ha.copying[k] = true
	}
	a.ha.copyMu.Unlock()
}

// copyPartition provisions (or catches up) a replica on s.Target from the
// partition's master: shipped asynchronously until it has what the master
// had when the copy began, then entered in the partition map. A replica
// in the map of a synchronous database is a failover candidate, so it
// must hold every acknowledged commit before it is entered: its stream
// turns synchronous first (the master confirms the change), and the copy
// then catches up with the master's position as of that moment.
func (a *Manager) copyPartition(ctx context.Context, s meta.Step) error {
	d := a.State().Database(s.DB)
	if d == nil || s.Ordinal >= len(d.Partitions) || d.Partitions[s.Ordinal].Master == "" {
		return fmt.Errorf("partition %s:%d has no master to copy from", s.DB, s.Ordinal)
	}
	master := d.Partitions[s.Ordinal].Master
	k := copyKey{s.DB, s.Ordinal, s.Target}
	a.setCopying(k, true)
	defer a.setCopying(k, false)
	a.reconcile()
	name := meta.PartitionName(s.DB, s.Ordinal)
	_, mpos, err := a.leafCopies(master)
	if err != nil {
		return err
	}
	if err := a.waitPosition(ctx, s.Target, name, mpos[name], 10*time.Minute, master); err != nil {
		return err
	}
	if d.Sync {
		a.setCopySync(k)
		a.reconcile()
		if !a.syncConfigured(master, name, s.Target) {
			return fmt.Errorf("copy of %s on %s: the master %s did not take the synchronous stream; retry", name, s.Target, meta.QuotedAddr(master))
		}
		// every commit acknowledged without the copy is at or below the
		// master's position now
		_, mpos, err := a.leafCopies(master)
		if err != nil {
			return err
		}
		if err := a.waitPosition(ctx, s.Target, name, mpos[name], time.Minute, master); err != nil {
			return err
		}
	}
	return a.updatePartition(s.DB, s.Ordinal, func(p *meta.Partition) error {
		if p.Master != master {
			// the copy followed a master that is no longer the master
			return fmt.Errorf("partition %s:%d changed master during the copy (from %s to %s)", s.DB, s.Ordinal, master, p.Master)
		}
		if why := a.leafGone(s.Target); why != "" {
			return fmt.Errorf("leaf %s %s", meta.QuotedAddr(s.Target), why)
		}
		if !slices.Contains(p.Replicas, s.Target) && p.Master != s.Target {
			p.Replicas = append(p.Replicas, s.Target)
		}
		return nil
	})
}

// syncConfigured says whether leaf master has accepted a replica list
// that ships db to target synchronously.
func (a *Manager) syncConfigured(master, db, target string) bool {
	t, ok := a.State().Leaf(target)
	if !ok {
		return false
	}
	a.ha.cfgMu.Lock()
	sent := a.ha.sent[master]
	a.ha.cfgMu.Unlock()
	var cfg []replicaConfig
	json.Unmarshal([]byte(sent), &cfg)
	return slices.ContainsFunc(cfg, func(c replicaConfig) bool {
		return c.DB == db && c.Target == meta.Addr(t.Host, t.InternalPort) && c.Sync
	})
}

// waitPosition waits until leaf's copy of a partition database has lsn.
// It gives up as soon as leaf, or one of the leaves in source, is offline
// or detached: a copy whose target or source died never gets there, and a
// rebalance should say so at once, not after the limit.
func (a *Manager) waitPosition(ctx context.Context, leaf, name string, lsn uint64, limit time.Duration, source ...string) error {
	deadline := time.Now().Add(limit)
	var streamChecked, notMasterSince time.Time
	for {
		if why := a.leafGone(leaf); why != "" {
			return fmt.Errorf("copy of %s on %s stopped: leaf %s %s", name, leaf, meta.QuotedAddr(leaf), why)
		}
		for _, l := range source {
			if why := a.sourceGone(l); why != "" {
				return fmt.Errorf("copy of %s on %s stopped: leaf %s %s", name, leaf, meta.QuotedAddr(l), why)
			}
		}
		if len(source) > 0 && time.Since(streamChecked) >= time.Second {
			// both leaves up, but the link between them may be cut
			streamChecked = time.Now()
			if why := a.streamDown(source[0], name, leaf); why != "" {
				return fmt.Errorf("copy of %s on %s stopped: %s", name, leaf, why)
			}
			// a source whose copy is no master ships nothing: a failover
			// named it while it was paused, and it is not promoted until
			// its own attach, which waits for this one to end (the attach
			// lock); waiting on would hold both leaves out for the limit
			if copies, _, err := a.leafCopies(source[0]); err == nil && copies[name].Replica {
				if notMasterSince.IsZero() {
					notMasterSince = time.Now()
				} else if d := time.Since(notMasterSince); d >= member.VariableMillis(a.State(), "leaf_failure_timeout_ms") {
					return fmt.Errorf("copy of %s on %s stopped: its copy on %s is not the master (not promoted yet) after %s", name, leaf,
						meta.QuotedAddr(source[0]), d.Round(time.Millisecond))
				}
			} else {
				notMasterSince = time.Time{}
			}
		}
		_, pos, err := a.leafCopies(leaf)
		if err == nil {
			if p, ok := pos[name]; ok && p >= lsn {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("at %d", pos[name])
			}
			return fmt.Errorf("copy of %s on %s did not reach position %d in %s: %v", name, leaf, lsn, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.stop:
			return errors.New("aggregator stopping")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// streamDown says why the stream of partition name from leaf source to
// leaf target has been down for the failure timeout, or "".
func (a *Manager) streamDown(source, name, target string) string {
	st := a.State()
	t, ok := st.Leaf(target)
	if !ok {
		return ""
	}
	internal := meta.Addr(t.Host, t.InternalPort)
	status, err := a.leafStatus(source)
	if err != nil {
		return ""
	}
	for _, s := range status.Streams {
		if s.Database != name || s.Target != internal || s.Connected {
			continue
		}
		if d := time.Duration(s.DownMs) * time.Millisecond; d >= member.VariableMillis(st, "leaf_failure_timeout_ms") {
			return fmt.Sprintf("%s cannot reach %s for %s (%s)", meta.QuotedAddr(source), meta.QuotedAddr(target), d.Round(time.Millisecond), s.Error)
		}
	}
	return ""
}

// leafGone says why a leaf will not take part in an operation any more
// ("is offline", …), or "" while it may. An attaching leaf is never
// failed over by detection, so its failing heartbeats count here as they
// would for an online one.
func (a *Manager) leafGone(addr string) string {
	st := a.State()
	l, ok := st.Leaf(addr)
	switch {
	case !ok:
		return "is no longer in the cluster"
	case l.State == meta.LeafOffline || l.State == meta.LeafDetached:
		return "is " + l.State
	}
	h := a.beats.Health(addr)
	if h.Failures == 0 {
		return ""
	}
	failing := time.Since(h.FailingSince)
	if (h.Refused && failing >= member.VariableMillis(st, "leaf_refused_timeout_ms")) || failing >= member.VariableMillis(st, "leaf_failure_timeout_ms") {
		return fmt.Sprintf("has not answered heartbeats for %s", failing.Round(time.Millisecond))
	}
	return ""
}

// sourceGone is leafGone for the leaf a copy streams from, the master of
// the partition. The metadata may name a leaf master while the leaf is
// still offline (a partition left without master takes the first copy
// that comes back, before its leaf is attached): while it answers
// heartbeats it is a source like any other. Refusing it left the two
// leaves of a pair, each offline and master of the partitions the other
// lacked, each attach waiting for the other, for good (nemesis seed
// 420283188: six minutes, until the run ended).
func (a *Manager) sourceGone(addr string) string {
	why := a.leafGone(addr)
	if why == "" {
		return ""
	}
	if l, ok := a.State().Leaf(addr); ok && l.State == meta.LeafOffline {
		if h := a.beats.Health(addr); h.Known && h.Failures == 0 {
			return ""
		}
	}
	return why
}

// WaitPartitionsReplicated waits (briefly) until every replica of a new
// database exists.
func (a *Manager) WaitPartitionsReplicated(ctx context.Context, d *meta.Database) {
	if d == nil {
		return
	}
	for _, p := range d.Partitions {
		for _, r := range p.Replicas {
			a.waitPosition(ctx, r, meta.PartitionName(d.Name, p.Ordinal), 0, 5*time.Second)
		}
	}
}

// Cluster commands of HA.

func (a *Manager) attachCommand(ctx context.Context, cmd sqlcmd.AttachLeaf) error {
	if !cmd.All {
		addr := meta.Addr(cmd.Host, defaultPort(cmd.Port))
		l, ok := a.State().Leaf(addr)
		if !ok {
			return mysql.NewSQLError(1105, "HY000", "Leaf %s is not part of the cluster; add it with ADD LEAF", meta.QuotedAddr(addr))
		}
		if l.State == meta.LeafOnline {
			return mysql.NewSQLError(1105, "HY000", "Leaf %s is already online", meta.QuotedAddr(addr))
		}
		return a.attachLeaf(ctx, addr, cmd.Force)
	}
	for _, l := range a.State().Leaves {
		if l.State != meta.LeafOnline {
			if err := a.attachLeaf(ctx, l.Addr(), cmd.Force); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Manager) detachCommand(cmd sqlcmd.DetachLeaf) error {
	addr := meta.Addr(cmd.Host, defaultPort(cmd.Port))
	l, ok := a.State().Leaf(addr)
	if !ok {
		return mysql.NewSQLError(1105, "HY000", "Leaf %s is not part of the cluster", meta.QuotedAddr(addr))
	}
	if l.State == meta.LeafDetached {
		return nil
	}
	return a.leafDown([]string{addr}, meta.LeafDetached)
}

var rebalanceFields = []*querypb.Field{
	field("Action", querypb.Type_VARCHAR), field("Ordinal", querypb.Type_INT64), field("Target_Host", querypb.Type_VARCHAR),
	field("Target_Port", querypb.Type_INT64), field("Phase", querypb.Type_INT64), field("Status", querypb.Type_VARCHAR),
	field("Running_Time", querypb.Type_INT64),
}

func (a *Manager) showRebalanceStatus(db string) (*sqltypes.Result, error) {
	if db == "" {
		return nil, mysql.NewSQLError(1046, "3D000", "No database selected")
	}
	if a.State().Database(db) == nil {
		return nil, mysql.NewSQLError(1049, "42000", "Unknown database '%s'", db)
	}
	res := &sqltypes.Result{Fields: rebalanceFields}
	j := a.State().LatestJob(db)
	if j == nil {
		return res, nil
	}
	for _, s := range j.Steps {
		h, p := splitAddr(s.Target)
		took := s.TookMs
		if s.Status == "running" {
			took = time.Now().UnixMilli() - s.StartedUnixMs
		}
		res.Rows = append(res.Rows, []sqltypes.Value{str(s.Action), num(int64(s.Ordinal)), str(h), num(int64(p)),
			num(int64(s.Phase)), str(s.Status), num(took)})
	}
	return res, nil
}
