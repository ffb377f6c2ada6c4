// Package manager is the cluster manager of an aggregator: what the
// master aggregator runs to keep the cluster in the shape the metadata
// says. Heartbeats feed failure detection, failover, auto-attach and the
// promotion of masters (ha.go, which performs what the pure controller
// of package cluster/controller decides); it watches the replica links
// (replicawatch.go), runs rebalances, partition commands and their
// journal (rebalance.go, partitioncmd.go), finds orphans (orphans.go),
// keeps one master at a time by the master epoch on the leaves
// (reign.go), confirms masters after a pause (fencing.go), and runs the
// commands that change the aggregators and leaves of the cluster
// (master.go, commands.go). It runs on every aggregator; most of it acts
// only on the master.
//
// The dependency runs one way: the manager imports package cluster/member
// (the raft member and metadata, the connections and heartbeats, below
// both tiers) and cluster/controller, never the query tier (package
// aggregator), which it reaches through Copies; the query tier reaches
// the manager through an interface of its own. The node wires the three
// and routes the cluster statements to the manager (Command) or the
// query tier.
package manager

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"

	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/storage"
)

// Host is the node the manager runs in.
type Host interface {
	// Self is the MySQL address other nodes reach this node at.
	Self() (host string, port int)
	// NodeTLS says whether links to other nodes use TLS.
	NodeTLS() bool
	// Session is the storage session of a client connection.
	Session(id uint32) *storage.Session
}

// Copies is what the manager drives of the query tier (package
// aggregator): this aggregator's copies of the distributed databases,
// which hold reference tables and the definitions of sharded tables, and
// the statements it forwards to the master aggregator.
type Copies interface {
	// ReconcileCopies makes the copies follow this aggregator's role
	// (master: it takes writes and ships them to every other node; a
	// child: it follows the master's). It is part of every reconcile.
	ReconcileCopies(st *meta.State, master bool)
	// WaitAllReplicated waits until every node has every database's
	// latest change (a node just added can serve queries).
	WaitAllReplicated()
	// WaitTarget waits until the copy of db on target (an internal
	// address) has this aggregator's latest change of it.
	WaitTarget(ctx context.Context, db, target string) error
	// Forward runs a statement on the master aggregator (client nil:
	// as this aggregator) and waits until this aggregator has the
	// metadata changes it made.
	Forward(ctx context.Context, client *mysql.Conn, query string) (*sqltypes.Result, error)
}

// Manager is a running cluster manager.
type Manager struct {
	*member.Member
	host      Host
	log       *slog.Logger
	raft      *cluster.Raft // set by Start (CheckCluster runs before)
	pools     *pool.Pools
	beats     *member.Heartbeats
	self      string
	clusterID string
	copies    Copies
	stop      chan struct{}
	wg        sync.WaitGroup
	ha        *haState
	// the master's reign (reign.go)
	forcing    atomic.Bool // AGGREGATOR SET AS MASTER is forcing a takeover
	reignMu    sync.Mutex
	reign      map[string]uint64 // leaf → the master epoch it has on record from this aggregator
	reignTicks int               // reignLoop's
}

// New makes the cluster manager of member m, which has not started yet:
// m's raft asks CheckCluster as it starts.
func New(m *member.Member, h Host) *Manager {
	return &Manager{
		Member:    m,
		host:      h,
		log:       slog.New(m.Events().Handler(m.Log().Handler())), // what it logs is a cluster event
		pools:     m.Pools(),
		beats:     m.Beats(),
		self:      m.Addr(),
		clusterID: m.ClusterID(),
		stop:      make(chan struct{}),
		ha:        newHAState(),
		reign:     map[string]uint64{},
	}
}

// Start runs the manager once its member has started; copies is the
// query tier's part of this aggregator.
func (a *Manager) Start(copies Copies) {
	a.raft = a.Raft()
	a.copies = copies
	a.wg.Add(4)
	go a.reignLoop()
	go a.haLoop()
	go a.replicaWatchLoop()
	go a.reconcileLoop()
}

// Close stops the manager: its loops, and the operations they run.
func (a *Manager) Close() {
	close(a.stop)
	a.wg.Wait()
}

// reconcileLoop brings, on every metadata change and every half second,
// what runs to what the metadata says (reconcile).
func (a *Manager) reconcileLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		a.reconcile()
		select {
		case <-a.stop:
			return
		case <-a.Changed():
		case <-tick.C:
		}
	}
}

// Reconcile brings what runs to what the metadata says now (reconcile).
func (a *Manager) Reconcile() { a.reconcile() }

// reconcile severs the connections to leaves that left the online state
// and has the query tier's copies follow this aggregator's role; on the
// master, it also brings the voters to votersFor, promotes the masters
// not yet confirmed at their epoch, takes up the jobs of a master that
// died, and tells every leaf which replicas to ship to.
func (a *Manager) reconcile() {
	a.severFailed()
	st := a.State()
	if !a.IsMaster() {
		a.copies.ReconcileCopies(st, false)
		return
	}
	a.copies.ReconcileCopies(st, true)
	a.enforceVoters(st)
	a.promoteMasters(st)
	a.resumeJobs(st)
	a.pushReplication()
}
