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
	Listener net.Listener // the internal port's raft listener
	Log      *slog.Logger
	// OnApply is called after each applied command with the old and new
	// state (on the raft goroutine; keep it short).
	OnApply func(old, new *meta.State)
}

// Raft is this aggregator's member of the metadata raft group.
type Raft struct {
	cfg   Config
	r     *raft.Raft
	trans *raft.NetworkTransport
	store *raftstore.Store
	state atomic.Pointer[meta.State]
	mu    sync.Mutex // serializes Apply with OnApply
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

	snapDir := filepath.Join(cfg.Dir, "raft-snapshots")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(snapDir, 2, rc.Logger)
	if err != nil {
		return nil, fmt.Errorf("raft snapshots in %s: %w", snapDir, err)
	}
	store := rf.store
	rf.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: cfg.Listener, addr: cfg.RaftAddr},
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  rc.Logger,
	})
	if bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			return nil, err
		}
		if !has {
			err := raft.BootstrapCluster(rc, store, store, snaps, rf.trans, raft.Configuration{Servers: []raft.Server{
				{ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAddr), Suffrage: raft.Voter},
			}})
			if err != nil {
				return nil, fmt.Errorf("bootstrap raft: %w", err)
			}
		}
	}
	rf.r, err = raft.NewRaft(rc, (*fsm)(rf), store, store, snaps, rf.trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return rf, nil
}

// State is the latest applied metadata on this aggregator.
func (rf *Raft) State() *meta.State { return rf.state.Load() }

// IsLeader reports whether this aggregator is the master.
func (rf *Raft) IsLeader() bool { return rf.r.State() == raft.Leader }

// Leader returns the master aggregator's id (host:port), or "".
func (rf *Raft) Leader() string {
	_, id := rf.r.LeaderWithID()
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
	f := rf.r.Apply(data, 10*time.Second)
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
	return rf.r.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 10*time.Second).Error()
}

// RemoveMember removes an aggregator from the group.
func (rf *Raft) RemoveMember(id string) error {
	return rf.r.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}

// Barrier waits until everything committed before is applied here.
func (rf *Raft) Barrier(timeout time.Duration) error { return rf.r.Barrier(timeout).Error() }

// AppliedIndex is the last raft index State reflects.
func (rf *Raft) AppliedIndex() uint64 { return rf.applied.Load() }

// Shutdown stops the member.
func (rf *Raft) Shutdown() error {
	err := rf.r.Shutdown().Error()
	rf.trans.Close()
	return err
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
	f.applied.Store(index)
	if f.cfg.OnApply != nil {
		f.cfg.OnApply(old, n)
	}
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
	addr string
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return mux.Dial(string(addr), mux.TagRaft, timeout)
}

func (s *streamLayer) Addr() net.Addr { return fakeAddr(s.addr) }

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
