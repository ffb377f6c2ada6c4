// Package cluster runs the cluster metadata on aggregators: a hashicorp/raft
// node whose log (in the node's pebble DB) carries meta commands, applied
// to a meta.State that every aggregator reads locally.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/raftstore"
	"github.com/canopydb/canopy/internal/mux"
)

// Config of a node's raft member.
type Config struct {
	ID       string // the aggregator's address host:port
	RaftAddr string // its internal address host:port
	Dir      string // for raft snapshots
	DB       *pebble.DB
	// Listen returns the internal port's raft listener; called again when
	// the member restarts (a forced reconfiguration closes the first).
	Listen func() net.Listener
	// Dialer reaches the other aggregators' internal ports.
	Dialer mux.Dialer
	Log    *slog.Logger
	// OnApply is called after each applied command with the old and new
	// state (on the raft goroutine; keep it short).
	OnApply func(old, new *meta.State)
	// Check asks the rest of the cluster (the other aggregators, the
	// leaves) about a restarting voter before it stands for election: a
	// master replaced while it was down (AGGREGATOR SET AS MASTER on a
	// child) must not campaign with its old configuration. See Verdict.
	Check func(st *meta.State) Verdict
	// HoldInterval is how often a held member asks again (0: a second).
	HoldInterval time.Duration
}

// Verdict is what a voter learns from the rest of the cluster before it
// stands for election (Config.Check).
type Verdict struct {
	// Replaced: another aggregator, By, became master without this one
	// (at master epoch Epoch, when a leaf tells).
	Replaced bool
	By       string
	Epoch    uint64
	// Rejoin: By answers as master and does not count this one as a
	// voter; this one starts blank and gets the metadata from it.
	Rejoin bool
	// Witnessed: a leaf or another aggregator answered.
	Witnessed bool
}

// next is what a voter whose configuration names other aggregators does
// with a verdict: run raft with its state, start blank as a follower of
// the new master, or hold (run no raft, serve its metadata as a child
// whose master is down, ask again). Sole: it is the only voter, so it
// would elect itself; with others voting, raft's majority protects.
func (v Verdict) next(sole bool) step {
	switch {
	case v.Replaced && v.Rejoin:
		return stepRejoin
	case v.Replaced:
		return stepHold
	case sole && !v.Witnessed:
		return stepHold
	}
	return stepRun
}

type step int

const (
	stepRun step = iota
	stepRejoin
	stepHold
)

// Member is one aggregator of the raft configuration.
type Member struct {
	ID, Addr string
	Voter    bool
}

// Raft is this aggregator's member of the metadata raft group.
type Raft struct {
	cfg   Config
	rc    *raft.Config
	snaps raft.SnapshotStore
	store *raftstore.Store
	// r and trans are replaced by a forced reconfiguration.
	r     atomic.Pointer[raft.Raft]
	trans atomic.Pointer[raft.NetworkTransport]
	state atomic.Pointer[meta.State]
	mu    sync.Mutex // serializes Apply with OnApply
	// restart serializes ForceSoleVoter, StepDown, the hold loop and
	// Shutdown; it guards holdStop and closed.
	restart  sync.Mutex
	holdStop chan struct{} // closed to end the hold loop; nil when not held
	holdSole bool          // the held member is the only voter (Verdict.next)
	closed   bool
	// held is the verdict that holds this member (nil: raft runs; r and
	// trans are nil while held).
	held atomic.Pointer[Verdict]
	// applied is the raft index State reflects; entries up to it were
	// applied before a restart and are skipped when raft replays them.
	// (raft's own AppliedIndex runs ahead of the state machine.)
	applied atomic.Uint64
}

// Start starts the raft member; with bootstrap, it founds a new one-member
// group (the first master aggregator).
func Start(cfg Config, bootstrap bool) (*Raft, error) {
	rf := &Raft{cfg: cfg, store: raftstore.New(cfg.DB)}
	rf.state.Store(meta.New())
	if err := rf.loadApplied(); err != nil {
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = 400 * time.Millisecond
	rc.ElectionTimeout = 400 * time.Millisecond
	rc.LeaderLeaseTimeout = 300 * time.Millisecond
	rc.CommitTimeout = 20 * time.Millisecond
	rc.SnapshotThreshold = 4096
	rc.NoSnapshotRestoreOnStart = true // the applied record is at least as new
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	rf.rc = rc

	snapDir := rf.snapDir()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(snapDir, 2, rc.Logger)
	if err != nil {
		return nil, fmt.Errorf("raft snapshots in %s: %w", snapDir, err)
	}
	rf.snaps = snaps
	store := rf.store
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, err
	}
	if has && cfg.Check != nil {
		hold, sole, err := rf.checkBeforeCampaign()
		if err != nil {
			return nil, err
		}
		if hold != nil {
			rf.restart.Lock()
			rf.hold(*hold, sole)
			rf.restart.Unlock()
			return rf, nil
		}
	}
	trans := rf.newTransport()
	if bootstrap && !has {
		err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: []raft.Server{
			{ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAddr), Suffrage: raft.Voter},
		}})
		if err != nil {
			trans.Close()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	if err := rf.open(trans); err != nil {
		return nil, err
	}
	return rf, nil
}

// snapDir holds raft's snapshots (in its "snapshots" directory).
func (rf *Raft) snapDir() string { return filepath.Join(rf.cfg.Dir, "raft-snapshots") }

func (rf *Raft) newTransport() *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: rf.cfg.Listen(), addr: rf.cfg.RaftAddr, dialer: rf.cfg.Dialer},
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  rf.rc.Logger,
	})
}

func (rf *Raft) open(trans *raft.NetworkTransport) error {
	r, err := raft.NewRaft(rf.rc, (*fsm)(rf), rf.store, rf.store, rf.snaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	rf.trans.Store(trans)
	rf.r.Store(r)
	return nil
}

// checkBeforeCampaign runs on the start of a member with raft state: a
// voter whose configuration names other aggregators asks the cluster
// (Config.Check) whether it was replaced while it was away, and rejoins
// blank or holds instead of campaigning (see Verdict.next). It returns
// the verdict to hold with, or nil to run raft, and whether this member
// is the only voter.
func (rf *Raft) checkBeforeCampaign() (*Verdict, bool, error) {
	voter, sole, others, err := rf.suffrage()
	if err != nil || !voter || !others {
		return nil, sole, err
	}
	v := rf.cfg.Check(rf.State())
	switch v.next(sole) {
	case stepRejoin:
		return nil, sole, rf.rejoinBlank(v)
	case stepHold:
		rf.logHold(v)
		return &v, sole, nil
	}
	return nil, sole, nil
}

// suffrage reads this member's raft configuration: whether it votes,
// whether it is the only voter, whether it names other members.
func (rf *Raft) suffrage() (voter, sole, others bool, err error) {
	rc := *rf.rc
	_, trans := raft.NewInmemTransport(raft.ServerAddress(rf.cfg.RaftAddr))
	conf, err := raft.GetConfiguration(&rc, (*fsm)(rf), rf.store, rf.store, rf.snaps, trans)
	if err != nil {
		return false, false, false, fmt.Errorf("read raft configuration: %w", err)
	}
	voters := 0
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == rf.cfg.ID {
			voter = s.Suffrage == raft.Voter
		} else {
			others = true
		}
	}
	return voter, voter && voters == 1, others, nil
}

func (rf *Raft) logHold(v Verdict) {
	if v.Replaced {
		rf.cfg.Log.Warn("this aggregator was replaced as master while it was away; it does not stand for election, and rejoins as a child once the new master answers",
			"new_master", v.By, "master_epoch", v.Epoch)
		return
	}
	rf.cfg.Log.Warn("this aggregator, the only voter, hears from no leaf and no other aggregator: it waits for one before it stands for election (another may have become master meanwhile); AGGREGATOR SET AS MASTER here takes over by force")
}

// rejoinBlank wipes this member's raft state (it was a voter of a
// configuration the cluster has left behind: campaigning with it could
// elect a second master); the master's snapshot brings the metadata back.
// Raft is not running.
func (rf *Raft) rejoinBlank(v Verdict) error {
	rf.cfg.Log.Warn("another aggregator became master while this one was away; rejoining as a child with the master's metadata",
		"new_master", v.By)
	if err := rf.store.Reset(); err != nil {
		return fmt.Errorf("reset raft state: %w", err)
	}
	// the snapshots too: a forced takeover (RecoverCluster) leaves one
	// holding its configuration, which raft would start from, and with
	// the state machine blank the entries after it would be all it has
	snaps, err := rf.snaps.List()
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if err := os.RemoveAll(filepath.Join(rf.snapDir(), "snapshots", s.ID)); err != nil {
			return err
		}
	}
	rf.state.Store(meta.New())
	rf.applied.Store(0)
	return nil
}

// hold stops short of running raft: the member keeps its metadata and
// asks again every Config.HoldInterval. rf.restart is held; raft is not running.
func (rf *Raft) hold(v Verdict, sole bool) {
	rf.held.Store(&v)
	rf.holdSole = sole
	stop := make(chan struct{})
	rf.holdStop = stop
	go rf.holdLoop(stop)
}

// unhold ends the hold loop. rf.restart is held.
func (rf *Raft) unhold() {
	if rf.holdStop != nil {
		close(rf.holdStop)
		rf.holdStop = nil
	}
	rf.held.Store(nil)
}

func (rf *Raft) holdLoop(stop chan struct{}) {
	wiped := false // rejoined blank, but raft did not start: only start it
	for {
		select {
		case <-stop:
			return
		case <-time.After(rf.holdInterval()):
		}
		var v Verdict
		if !wiped {
			v = rf.cfg.Check(rf.State())
		}
		rf.restart.Lock()
		select {
		case <-stop: // forced, stepped down again or shut down meanwhile
			rf.restart.Unlock()
			return
		default:
		}
		var err error
		switch {
		case wiped:
		case v.next(rf.holdSole) == stepHold:
			if old := rf.held.Load(); old == nil || *old != v {
				rf.logHold(v)
			}
			rf.held.Store(&v)
			rf.restart.Unlock()
			continue
		case v.next(rf.holdSole) == stepRejoin:
			err = rf.rejoinBlank(v)
			wiped = err == nil
		default:
			rf.cfg.Log.Info("heard from the cluster: this aggregator stands for election as master again")
		}
		if err == nil {
			err = rf.open(rf.newTransport())
		}
		if err != nil {
			rf.cfg.Log.Error("leaving the hold", "err", err)
			rf.restart.Unlock()
			continue
		}
		rf.unhold()
		rf.restart.Unlock()
		return
	}
}

func (rf *Raft) holdInterval() time.Duration {
	if rf.cfg.HoldInterval > 0 {
		return rf.cfg.HoldInterval
	}
	return time.Second
}

// Held is the verdict that keeps this member from running raft, or nil.
func (rf *Raft) Held() *Verdict { return rf.held.Load() }

// StepDown stops a master that learns (from a leaf) that another
// aggregator replaced it: it rejoins blank when the new master answers,
// else holds.
func (rf *Raft) StepDown(v Verdict) error {
	rf.restart.Lock()
	defer rf.restart.Unlock()
	if rf.closed || rf.held.Load() != nil {
		return nil
	}
	rf.cfg.Log.Error("another aggregator replaced this one as master: stepping down", "new_master", v.By, "master_epoch", v.Epoch)
	rf.stop()
	if v.Rejoin {
		err := rf.rejoinBlank(v)
		if err == nil {
			err = rf.open(rf.newTransport())
		}
		if err == nil {
			return nil
		}
		rf.cfg.Log.Error("rejoining as a child", "err", err)
	}
	_, sole, _, err := rf.suffrage()
	if err != nil {
		sole = true // hold until someone answers
	}
	rf.logHold(v)
	rf.hold(v, sole)
	return nil
}

// stop shuts raft down. rf.restart is held.
func (rf *Raft) stop() error {
	r := rf.r.Swap(nil)
	if r == nil {
		return nil
	}
	err := r.Shutdown().Error()
	if t := rf.trans.Swap(nil); t != nil {
		t.Close()
	}
	return err
}

// errHeld is the error of a raft operation on a held member.
func (rf *Raft) errHeld() error {
	if v := rf.held.Load(); v != nil && v.Replaced {
		return fmt.Errorf("this aggregator was replaced as master by %s", v.By)
	}
	return errors.New("this aggregator waits to hear from the cluster before it stands for election")
}

// cur is the running raft, or nil while held.
func (rf *Raft) cur() *raft.Raft { return rf.r.Load() }

// State is the latest applied metadata on this aggregator.
func (rf *Raft) State() *meta.State { return rf.state.Load() }

// IsLeader reports whether this aggregator is the master.
func (rf *Raft) IsLeader() bool {
	r := rf.cur()
	return r != nil && r.State() == raft.Leader
}

// Leader returns the master aggregator's id (host:port), or "".
func (rf *Raft) Leader() string {
	r := rf.cur()
	if r == nil {
		return ""
	}
	_, id := r.LeaderWithID()
	return string(id)
}

// WaitLeader waits until this member knows a leader.
func (rf *Raft) WaitLeader(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for rf.Leader() == "" {
		if time.Now().After(deadline) {
			return errors.New("no master aggregator elected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Propose applies a meta command through the log; only the master may.
func (rf *Raft) Propose(payload interface{}) error {
	data, err := meta.Encode(payload)
	if err != nil {
		return err
	}
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	f := r.Apply(data, 10*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("this aggregator is not the master aggregator")
		}
		return fmt.Errorf("metadata commit: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return err
	}
	return nil
}

// AddFollower adds an aggregator that replicates the metadata without
// voting: the master stays able to commit when children are down.
func (rf *Raft) AddFollower(id, raftAddr string) error {
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	return r.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 10*time.Second).Error()
}

// RemoveMember removes an aggregator from the group.
func (rf *Raft) RemoveMember(id string) error {
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	return r.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}

// Barrier waits until everything committed before is applied here.
func (rf *Raft) Barrier(timeout time.Duration) error {
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	return r.Barrier(timeout).Error()
}

// AppliedIndex is the last raft index State reflects.
func (rf *Raft) AppliedIndex() uint64 { return rf.applied.Load() }

// Shutdown stops the member.
func (rf *Raft) Shutdown() error {
	rf.restart.Lock()
	defer rf.restart.Unlock()
	rf.closed = true
	rf.unhold()
	return rf.stop()
}

// Members is the latest raft configuration.
func (rf *Raft) Members() ([]Member, error) {
	r := rf.cur()
	if r == nil {
		return nil, rf.errHeld()
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// SetVoter makes a member vote (and stand for master) or only follow.
func (rf *Raft) SetVoter(id, addr string, voter bool) error {
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	if voter {
		return r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
	}
	return r.DemoteVoter(raft.ServerID(id), 0, 10*time.Second).Error()
}

// TransferLeadership hands the master role to a voting member.
func (rf *Raft) TransferLeadership(id, addr string) error {
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	return r.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error()
}

// HandOff hands leadership to another voter, if there is one (a master
// shutting down: the next one is elected now, not after a timeout).
func (rf *Raft) HandOff() error {
	r := rf.cur()
	if r == nil {
		return rf.errHeld()
	}
	return r.LeadershipTransfer().Error()
}

// ForceSoleVoter makes this member the only voter of a new configuration
// (the others follow), for when the master is gone and no quorum is left,
// or for a held member whose operator says so. Raft entries the master
// had not replicated here are lost; that is the price of going on
// without it.
func (rf *Raft) ForceSoleVoter(others []Member) error {
	rf.restart.Lock()
	defer rf.restart.Unlock()
	if rf.closed {
		return errors.New("raft is shut down")
	}
	conf := raft.Configuration{Servers: []raft.Server{
		{ID: raft.ServerID(rf.cfg.ID), Address: raft.ServerAddress(rf.cfg.RaftAddr), Suffrage: raft.Voter},
	}}
	for _, m := range others {
		if m.ID != rf.cfg.ID {
			conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Addr), Suffrage: raft.Nonvoter})
		}
	}
	held := rf.held.Load()
	if err := rf.stop(); err != nil {
		return fmt.Errorf("stop raft: %w", err)
	}
	trans := rf.newTransport()
	if err := raft.RecoverCluster(rf.rc, (*fsm)(rf), rf.store, rf.store, rf.snaps, trans, conf); err != nil {
		// go on as we were, so the node keeps serving
		if held != nil {
			trans.Close()
		} else if oerr := rf.open(trans); oerr != nil {
			rf.cfg.Log.Error("restart raft after a failed recovery", "err", oerr)
		}
		return fmt.Errorf("recover raft configuration: %w", err)
	}
	if err := rf.open(trans); err != nil {
		return err
	}
	rf.unhold()
	return nil
}

// loadApplied starts from the state this member last applied.
func (rf *Raft) loadApplied() error {
	idx, b, ok, err := rf.store.LoadApplied()
	if err != nil || !ok {
		return err
	}
	s := meta.New()
	if err := json.Unmarshal(b, s); err != nil {
		return fmt.Errorf("load applied metadata: %w", err)
	}
	rf.state.Store(s)
	rf.applied.Store(idx)
	return nil
}

// fsm applies meta commands.
type fsm Raft

// snapshotData is a metadata snapshot: the state and the index it is at.
type snapshotData struct {
	Index uint64      `json:"index"`
	State *meta.State `json:"state"`
}

func (f *fsm) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Index <= f.applied.Load() {
		return nil // applied before this member restarted
	}
	if l.Type != raft.LogCommand {
		f.applied.Store(l.Index)
		return nil
	}
	old := f.state.Load()
	n, err := old.Apply(l.Data)
	if err != nil {
		// Deterministic refusal: every member refuses it the same way.
		f.applied.Store(l.Index)
		return err
	}
	f.install(l.Index, old, n)
	return nil
}

// install makes n the state at index, durably, and tells the aggregator.
func (f *fsm) install(index uint64, old, n *meta.State) {
	b, err := json.Marshal(n)
	if err == nil {
		err = f.store.SaveApplied(index, b)
	}
	if err != nil {
		// The log still holds the entry; a restart replays it.
		f.cfg.Log.Error("save applied metadata", "index", index, "err", err)
	}
	f.state.Store(n)
	if f.cfg.OnApply != nil {
		f.cfg.OnApply(old, n)
	}
	// the index advances once the change is in force here (accounts
	// loaded, say): a master waiting for a child to reach it must not
	// hear back before
	f.applied.Store(index)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(snapshotData{Index: f.applied.Load(), State: f.state.Load()})
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	d := snapshotData{State: meta.New()}
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return fmt.Errorf("restore metadata snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied.Store(0) // a snapshot from the leader replaces whatever we had
	f.install(d.Index, f.state.Load(), d.State)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}

// streamLayer carries raft over the internal port's raft tag.
type streamLayer struct {
	net.Listener
	addr   string
	dialer mux.Dialer
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dialer.Dial(string(addr), mux.TagRaft, timeout)
}

func (s *streamLayer) Addr() net.Addr { return fakeAddr(s.addr) }

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
