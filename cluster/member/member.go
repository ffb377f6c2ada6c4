// Package member is an aggregator node's membership in the cluster: what
// both tiers that run on an aggregator need, below both of them. The
// query tier (package aggregator) and the cluster manager (package
// cluster/manager) each embed a *Member; neither imports the other, and
// this package imports neither (the node wires the three together).
//
// A Member holds the raft member and the metadata it applies (State,
// IsMaster, Propose, which waits until every child aggregator has the
// change), the connection pools to the other nodes and how to reach them
// as cluster links (links.go), the heartbeats that measure them
// (heartbeat.go: what SHOW LEAVES shows and what failure detection
// reads), the signal of metadata changes, and the master epoch that ends
// every control command for a leaf (Fenced).
package member

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/eventlog"
	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/storage"
)

// Host is the node a member runs in.
type Host interface {
	Store() *storage.Store
	Log() *slog.Logger
	// Self is the MySQL address other nodes reach this node at.
	Self() (host string, port int)
	// InternalAddr is the internal port's address, as others dial it.
	InternalAddr() string
	RaftListener() net.Listener
	DataDir() string
	// ClusterSecret authenticates the links between the cluster's nodes.
	ClusterSecret() []byte
	// Dialer reaches other nodes' internal ports.
	Dialer() mux.Dialer
	// NodeTLS says whether links to other nodes use TLS.
	NodeTLS() bool
	// UsersChanged tells the node that the cluster's accounts changed.
	UsersChanged()
}

// Member is this node's membership in the cluster as an aggregator.
type Member struct {
	host      Host
	log       *slog.Logger
	store     *storage.Store
	raft      *cluster.Raft
	pools     *pool.Pools
	self      string
	clusterID string
	stop      chan struct{}
	wg        sync.WaitGroup
	beats     *Heartbeats
	changed   chan struct{} // signalled on metadata changes
	events    *eventlog.Log // the cluster manager's events (information_schema.MV_EVENTS)
}

// Hooks are what the tiers above give a member as it starts.
type Hooks struct {
	// Check is what a voter learns before it stands for election
	// (cluster.Config.Check: the cluster manager's). It runs before
	// Start returns, with the pools usable and no raft.
	Check func(st *meta.State) cluster.Verdict
	// Applied is called with the metadata once it is loaded and after
	// every change applied (the query tier publishes the cluster
	// variables).
	Applied func(st *meta.State)
}

// New makes a member of cluster clusterID: its pools (a new connection
// holds the session settings defaults) and heartbeats, not yet running.
func New(h Host, clusterID string, defaults *pool.Settings) *Member {
	host, port := h.Self()
	m := &Member{
		host:      h,
		log:       h.Log().With("component", "aggregator"),
		store:     h.Store(),
		pools:     pool.New(64, defaults),
		self:      meta.Addr(host, port),
		clusterID: clusterID,
		stop:      make(chan struct{}),
		changed:   make(chan struct{}, 1),
		events:    eventlog.New(maxEvents),
	}
	m.beats = newHeartbeats(m)
	return m
}

// Start runs the raft member and the heartbeats; bootstrap founds a new
// cluster with this node as master.
func (m *Member) Start(bootstrap bool, hooks Hooks) error {
	h := m.host
	host, port := h.Self()
	rf, err := cluster.Start(cluster.Config{
		ID: m.self, RaftAddr: h.InternalAddr(), Dir: h.DataDir(), DB: m.store.DB(),
		Listen: h.RaftListener, Dialer: h.Dialer(), Log: m.log, Check: hooks.Check,
		OnApply: func(old, new *meta.State) {
			hooks.Applied(new)
			if !bytes.Equal(old.Users, new.Users) {
				h.UsersChanged()
			}
			m.Signal()
		},
	}, bootstrap)
	if err != nil {
		return err
	}
	m.raft = rf
	hooks.Applied(rf.State())
	if !bootstrap && rf.State().ClusterID != "" && rf.Held() == nil {
		// A restarted master wins its election in about a second; give it
		// that before serving, so its first statements need not forward.
		// A child whose master is down goes on without one. A node joining
		// for the first time hears from the master only once it is added.
		rf.WaitLeader(3 * time.Second)
	}
	if bootstrap {
		if err := rf.WaitLeader(10 * time.Second); err != nil {
			rf.Shutdown()
			return err
		}
		if rf.State().ClusterID == "" {
			err := rf.Propose(meta.Bootstrap{ClusterID: m.clusterID, Aggregator: meta.Aggregator{
				Host: host, Port: port, InternalPort: portOf(h.InternalAddr()), User: "root"}})
			if err != nil {
				rf.Shutdown()
				return fmt.Errorf("bootstrap cluster metadata: %w", err)
			}
		}
	}
	m.wg.Add(1)
	go m.beats.run()
	return nil
}

// HandOff hands the master role to another voter when this member is the
// master, so that it takes over at once rather than after an election
// timeout (with none, one or two aggregators, this fails at once); it
// waits at most 3 s.
func (m *Member) HandOff() {
	if m.IsMaster() {
		done := make(chan error, 1)
		go func() { done <- m.raft.HandOff() }()
		select {
		case err := <-done:
			if err == nil {
				m.log.Info("master aggregator shutting down: leadership handed over")
			}
		case <-time.After(3 * time.Second):
		}
	}
}

// Close stops the heartbeats, closes the connections and stops the raft
// member, once the tiers above have stopped.
func (m *Member) Close() error {
	close(m.stop)
	m.wg.Wait()
	m.pools.Close()
	m.beats.close()
	return m.raft.Shutdown()
}

// State is this aggregator's copy of the cluster metadata.
func (m *Member) State() *meta.State { return m.raft.State() }

// IsMaster reports whether this aggregator is the master aggregator.
func (m *Member) IsMaster() bool { return m.raft.IsLeader() }

// ClusterID names the cluster.
func (m *Member) ClusterID() string { return m.clusterID }

// Addr is this aggregator's address (its raft id), host:port.
func (m *Member) Addr() string { return m.self }

// Raft is the raft member.
func (m *Member) Raft() *cluster.Raft { return m.raft }

// Pools are the connections to the other nodes.
func (m *Member) Pools() *pool.Pools { return m.pools }

// Beats are the heartbeats' measurements of the other nodes.
func (m *Member) Beats() *Heartbeats { return m.beats }

// RaftIndex is the last metadata change applied here.
func (m *Member) RaftIndex() uint64 { return m.raft.AppliedIndex() }

// SyncChildren waits (a bounded time) until every child aggregator that
// is up has applied the metadata this one has.
func (m *Member) SyncChildren() {
	if m.IsMaster() {
		m.syncChildren(m.RaftIndex())
	}
}

// Signal says that the metadata, or what follows from it, changed: the
// cluster manager's reconcile loop runs (Changed).
func (m *Member) Signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Changed receives a Signal (at most one pending).
func (m *Member) Changed() <-chan struct{} { return m.changed }

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// Propose commits a metadata change and waits until every child
// aggregator that is up has applied it: a change made on the master is
// visible on every aggregator when the statement returns.
func (m *Member) Propose(payload interface{}) error {
	if err := m.raft.Propose(payload); err != nil {
		return err
	}
	m.syncChildren(m.RaftIndex())
	return nil
}

func (m *Member) syncChildren(idx uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, ag := range m.State().Aggregators {
		if ag.Addr() == m.self || m.beats.Down(ag.Addr()) {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			if err := m.waitChild(ctx, addr, idx); err != nil {
				m.log.Warn("child aggregator did not confirm a metadata change; it catches up later", "aggregator", addr, "index", idx, "err", err)
			}
		}(ag.Addr())
	}
	wg.Wait()
}

// waitChild polls a child aggregator until it has applied index idx.
func (m *Member) waitChild(ctx context.Context, addr string, idx uint64) error {
	p, err := m.AggregatorPool(addr)
	if err != nil {
		return err
	}
	for {
		info, err := NodeStatus(ctx, p)
		if err == nil && info.RaftIndex >= idx {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("at index %d", info.RaftIndex)
			}
			return err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Leaf and aggregator connections.

// LeafPool is the pool of connections to a leaf of the cluster.
func (m *Member) LeafPool(addr string) (*pool.Pool, error) {
	l, ok := m.State().Leaf(addr)
	if !ok {
		return nil, fmt.Errorf("leaf %s is not part of the cluster", addr)
	}
	if l.State == meta.LeafOffline && m.beats.Down(addr) {
		// a statement routed with the metadata of a moment before the
		// failover: fail now rather than dial a hung node
		return nil, fmt.Errorf("%w: leaf %s is offline", pool.ErrUnreachable, addr)
	}
	return m.pools.Get(m.LeafNode(l)), nil
}

// AggregatorPool is the pool of connections to an aggregator of the
// cluster.
func (m *Member) AggregatorPool(addr string) (*pool.Pool, error) {
	ag, ok := m.State().Aggregator(addr)
	if !ok {
		return nil, fmt.Errorf("aggregator %s is not part of the cluster", addr)
	}
	return m.pools.Get(m.AggregatorNode(ag)), nil
}

// NodeInfo is what CANOPY NODE STATUS reports of a node.
type NodeInfo struct {
	Role         string
	ClusterID    string
	InternalPort int
	RaftIndex    uint64 // metadata applied (aggregators)
}

// NodeStatus asks a node for its CANOPY NODE STATUS.
func NodeStatus(ctx context.Context, p *pool.Pool) (NodeInfo, error) {
	res, err := p.Exec(ctx, "CANOPY NODE STATUS", 10)
	if err != nil {
		return NodeInfo{}, err
	}
	if len(res.Rows) != 1 {
		return NodeInfo{}, fmt.Errorf("no status")
	}
	var ni NodeInfo
	for i, f := range res.Fields {
		v := res.Rows[0][i].ToString()
		switch f.Name {
		case "Role":
			ni.Role = v
		case "Cluster_ID":
			ni.ClusterID = v
		case "Internal_Port":
			ni.InternalPort, _ = strconv.Atoi(v)
		case "Raft_Index":
			ni.RaftIndex, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return ni, nil
}

// Fenced ends a control command for a leaf with this aggregator's master
// epoch: a leaf that has seen a newer master refuses it (package
// cluster/manager, reign.go).
func (m *Member) Fenced(stmt string) string {
	if e := m.State().MasterEpoch; e > 0 {
		return stmt + " MASTER EPOCH " + strconv.FormatUint(e, 10)
	}
	return stmt
}

// VariableMillis is a cluster variable counting milliseconds (its default
// if the metadata's value does not parse).
func VariableMillis(st *meta.State, name string) time.Duration {
	n, err := strconv.Atoi(st.Variable(name))
	if err != nil {
		n, _ = strconv.Atoi(meta.DefaultVariables[name])
	}
	return time.Duration(n) * time.Millisecond
}

// Log is the aggregator's log.
func (m *Member) Log() *slog.Logger { return m.log }

// maxEvents is how many cluster events a member keeps.
const maxEvents = 2000

// Events is the member's cluster event log: what the cluster manager
// logs at level Info and above.
func (m *Member) Events() *eventlog.Log { return m.events }
