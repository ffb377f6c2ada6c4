// Package aggregator is the aggregator tier of a node: it holds the cluster
// metadata (a raft member), plans every client statement (package planner)
// and runs it on the right partitions, merges results, runs DDL on every
// node, copies databases to every node, and measures the other nodes with
// heartbeats. The master aggregator is the raft leader.
package aggregator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/aggregator/pool"
	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/replication"
	"github.com/canopydb/canopy/storage"
)

// Host is the node an aggregator runs in.
type Host interface {
	Store() *storage.Store
	Engine() *sqle.Engine
	Log() *slog.Logger
	// Self is the MySQL address other nodes reach this node at.
	Self() (host string, port int)
	// InternalAddr is the internal port's address, as others dial it.
	InternalAddr() string
	RaftListener() net.Listener
	DataDir() string
	// RunLocal runs one statement in this node's SQL engine for a client.
	RunLocal(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) error
	// RunInternal runs one statement in this node's SQL engine as the
	// node itself, in a session of its own.
	RunInternal(ctx context.Context, query string) ([]sql.Row, error)
	// Session is the storage session of a client connection.
	Session(id uint32) *storage.Session
	// ClusterSecret authenticates the links between the cluster's nodes.
	ClusterSecret() []byte
	// Dialer reaches other nodes' internal ports.
	Dialer() mux.Dialer
	// NodeTLS says whether links to other nodes use TLS.
	NodeTLS() bool
	// UsersChanged tells the node that the cluster's accounts changed.
	UsersChanged()
	// SQLContext is a context with a client's session, made if the
	// connection has none yet.
	SQLContext(ctx context.Context, c *mysql.Conn) (*sql.Context, error)
}

// Aggregator is a running aggregator.
type Aggregator struct {
	offlineMemo atomic.Pointer[offlineMemo] // see mastersOffline
	lagging     atomic.Pointer[laggingMemo] // see waitSchemas
	inCreate    sync.Map                    // "db.table" of CREATE TABLEs in flight (markCreating)
	caughtUp    atomic.Int64                // unix ns of the last catch-up with the master (settleMetadata)

	host      Host
	log       *slog.Logger
	store     *storage.Store
	raft      *cluster.Raft
	pools     *pool.Pools
	hub       *replication.Hub
	self      string
	clusterID string
	stop      chan struct{}
	wg        sync.WaitGroup
	beats     *heartbeats
	autoMu    sync.Mutex
	autos     map[string]*autoRange
	sessions  sync.Map // connection id → *session
	spread    atomic.Uint64
	changed   chan struct{} // signalled on metadata changes
	schemasAt atomic.Uint64 // metadata index whose schema changes this node's copies have
	templates templates     // planned routed statements with bind variables
	gathered  struct{ rows, bytes atomic.Uint64 }
	started   time.Time     // makes this run's transaction ids unique
	xidSeq    atomic.Uint64 // distributed transactions coordinated
	inflight  sync.Map      // xid → struct{}: commits between prepare and decision
	rowCounts sync.Map      // "db.table" → rowCount, for choosing join strategies
	shuffled  struct{ broadcast, repartition atomic.Uint64 }
	ha        *haState
	// the master's reign (reign.go)
	forcing    atomic.Bool // AGGREGATOR SET AS MASTER is forcing a takeover
	reignMu    sync.Mutex
	reign      map[string]uint64 // leaf → the master epoch it has on record from this aggregator
	reignTicks int               // reignLoop's
	ddlJobs    ddlLocks          // schema changes running on this master (ddljob.go)
}

// Gathered counts the rows and value bytes partitions sent this
// aggregator for gathers (what a pushed-down plan saves).
func (a *Aggregator) Gathered() (rows, bytes uint64) {
	return a.gathered.rows.Load(), a.gathered.bytes.Load()
}

// ShuffledJoins counts the joins this aggregator ran by copying a side to
// every leaf and by repartitioning both sides.
func (a *Aggregator) ShuffledJoins() (broadcast, repartition uint64) {
	return a.shuffled.broadcast.Load(), a.shuffled.repartition.Load()
}

// Start runs the aggregator; bootstrap founds a new cluster with this
// node as master.
func Start(h Host, clusterID string, bootstrap bool) (*Aggregator, error) {
	host, port := h.Self()
	a := &Aggregator{
		host:      h,
		log:       h.Log().With("component", "aggregator"),
		store:     h.Store(),
		pools:     pool.New(64, defaultSettings.client),
		self:      meta.Addr(host, port),
		clusterID: clusterID,
		stop:      make(chan struct{}),
		autos:     make(map[string]*autoRange),
		changed:   make(chan struct{}, 1),
		started:   time.Now(),
		ha:        newHAState(),
		reign:     map[string]uint64{},
	}
	a.hub = replication.NewHub(a.store, a.self, h.Dialer(), a.log)
	a.beats = newHeartbeats(a)
	rf, err := cluster.Start(cluster.Config{
		ID: a.self, RaftAddr: h.InternalAddr(), Dir: h.DataDir(), DB: a.store.DB(),
		Listen: h.RaftListener, Dialer: h.Dialer(), Log: a.log, Check: a.checkCluster,
		OnApply: func(old, new *meta.State) {
			if err := publishVariables(new); err != nil {
				a.log.Warn("cluster variables", "err", err)
			}
			if !bytes.Equal(old.Users, new.Users) {
				h.UsersChanged()
			}
			a.signal()
		},
	}, bootstrap)
	if err != nil {
		return nil, err
	}
	a.raft = rf
	publishVariables(rf.State())
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
			return nil, err
		}
		if rf.State().ClusterID == "" {
			err := rf.Propose(meta.Bootstrap{ClusterID: clusterID, Aggregator: meta.Aggregator{
				Host: host, Port: port, InternalPort: portOf(h.InternalAddr()), User: "root"}})
			if err != nil {
				rf.Shutdown()
				return nil, fmt.Errorf("bootstrap cluster metadata: %w", err)
			}
		}
	}
	a.wg.Add(7)
	go a.reignLoop()
	go a.ddlJobLoop()
	go a.haLoop()
	go a.replicaWatchLoop()
	go a.reconcileLoop()
	go a.beats.run()
	go a.resolveLoop()
	return a, nil
}

// Close stops the aggregator (the node goes on as a plain node).
func (a *Aggregator) Close() error {
	if a.IsMaster() {
		// another voter takes over at once rather than after an election
		// timeout; with none (one or two aggregators) this fails at once
		done := make(chan error, 1)
		go func() { done <- a.raft.HandOff() }()
		select {
		case err := <-done:
			if err == nil {
				a.log.Info("master aggregator shutting down: leadership handed over")
			}
		case <-time.After(3 * time.Second):
		}
	}
	close(a.stop)
	a.wg.Wait()
	a.hub.Close()
	a.pools.Close()
	a.beats.close()
	return a.raft.Shutdown()
}

// State is this aggregator's copy of the cluster metadata.
func (a *Aggregator) State() *meta.State { return a.raft.State() }

// IsMaster reports whether this aggregator is the master aggregator.
func (a *Aggregator) IsMaster() bool { return a.raft.IsLeader() }

// ClusterID names the cluster.
func (a *Aggregator) ClusterID() string { return a.clusterID }

// LogFloor is the lowest position of db that this aggregator's copies of
// it (on other nodes) are known to have; see replication.Hub.LogFloor.
func (a *Aggregator) LogFloor(db string) (uint64, bool) { return a.hub.LogFloor(db) }

// ReplicationStatuses are the streams of this aggregator's copies.
func (a *Aggregator) ReplicationStatuses() []replication.Status { return a.hub.Statuses() }

// SetUsers records the cluster's accounts and grants in the metadata (on
// the master aggregator; every aggregator then enforces them).
func (a *Aggregator) SetUsers(data []byte) error {
	if !a.IsMaster() {
		return mysql.NewSQLError(1105, "HY000", "Accounts change on the master aggregator; this aggregator is a child")
	}
	return a.raft.Propose(meta.SetUsers{Data: data})
}

// SyncChildren waits (a bounded time) until every child aggregator that
// is up has applied the metadata this one has.
func (a *Aggregator) SyncChildren() {
	if a.IsMaster() {
		a.syncChildren(a.RaftIndex())
	}
}

// RaftIndex is the last metadata change applied here.
func (a *Aggregator) RaftIndex() uint64 { return a.raft.AppliedIndex() }

func (a *Aggregator) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// reconcileLoop keeps, on the master, a replication stream of every
// distributed database to every other node (their copy holds reference
// tables and the definitions of sharded tables).
func (a *Aggregator) reconcileLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		a.reconcile()
		select {
		case <-a.stop:
			return
		case <-a.changed:
		case <-tick.C:
		}
	}
}

func (a *Aggregator) reconcile() {
	a.severFailed()
	st := a.State()
	if !a.IsMaster() {
		a.hub.Close()
		if leader := a.raft.Leader(); leader != "" {
			a.ownCopies(st, false)
		}
		return
	}
	a.ownCopies(st, true)
	a.enforceVoters(st)
	want := map[[2]string]bool{}
	for _, name := range st.DatabaseNames() {
		for _, t := range a.replicaTargets(st) {
			want[[2]string{name, t}] = true
			a.hub.Ensure(name, t)
		}
	}
	a.hub.Retain(func(db, target string) bool { return want[[2]string{db, target}] })
	a.promoteMasters(st)
	a.resumeJobs(st)
	a.pushReplication()
}

// replicaTargets are the internal addresses of every node but this one.
func (a *Aggregator) replicaTargets(st *meta.State) []string {
	var out []string
	for _, l := range st.Leaves {
		if l.InternalPort != 0 && l.State != meta.LeafDetached {
			out = append(out, meta.Addr(l.Host, l.InternalPort))
		}
	}
	for _, ag := range st.Aggregators {
		if ag.Addr() != a.self && ag.InternalPort != 0 {
			out = append(out, meta.Addr(ag.Host, ag.InternalPort))
		}
	}
	return out
}

// waitReplicated waits until every connected node has db's latest change,
// as writes to reference tables and schema changes must be everywhere
// before they are acknowledged. A node that does not confirm within the
// timeout catches up later; it is logged.
func (a *Aggregator) waitReplicated(db string) {
	pos, ok := a.store.Position(db)
	if !ok {
		return
	}
	a.reconcile()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if pending := a.hub.WaitAcked(ctx, db, pos.LSN); len(pending) > 0 {
		a.log.Warn("nodes did not confirm a change in time; they will catch up", "database", db, "position", pos, "nodes", pending)
	}
}

// propose commits a metadata change and waits until every child
// aggregator that is up has applied it: a change made on the master is
// visible on every aggregator when the statement returns.
func (a *Aggregator) propose(payload interface{}) error {
	if err := a.raft.Propose(payload); err != nil {
		return err
	}
	a.syncChildren(a.RaftIndex())
	return nil
}

func (a *Aggregator) syncChildren(idx uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, ag := range a.State().Aggregators {
		if ag.Addr() == a.self || a.beats.down(ag.Addr()) {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			if err := a.waitChild(ctx, addr, idx); err != nil {
				a.log.Warn("child aggregator did not confirm a metadata change; it catches up later", "aggregator", addr, "index", idx, "err", err)
			}
		}(ag.Addr())
	}
	wg.Wait()
}

// waitChild polls a child aggregator until it has applied index idx.
func (a *Aggregator) waitChild(ctx context.Context, addr string, idx uint64) error {
	p, err := a.aggregatorPool(addr)
	if err != nil {
		return err
	}
	for {
		info, err := nodeStatus(ctx, p)
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

// waitAllReplicated waits until every node has every database's latest
// change: a node just added can serve queries when ADD returns.
func (a *Aggregator) waitAllReplicated() {
	for _, db := range a.State().DatabaseNames() {
		a.waitReplicated(db)
	}
	a.reconcile()
}

// Leaf and aggregator connections.

func (a *Aggregator) leafPool(addr string) (*pool.Pool, error) {
	l, ok := a.State().Leaf(addr)
	if !ok {
		return nil, fmt.Errorf("leaf %s is not part of the cluster", addr)
	}
	if l.State == meta.LeafOffline && a.beats.down(addr) {
		// a statement routed with the metadata of a moment before the
		// failover: fail now rather than dial a hung node
		return nil, fmt.Errorf("%w: leaf %s is offline", pool.ErrUnreachable, addr)
	}
	return a.pools.Get(a.leafNode(l)), nil
}

func (a *Aggregator) aggregatorPool(addr string) (*pool.Pool, error) {
	ag, ok := a.State().Aggregator(addr)
	if !ok {
		return nil, fmt.Errorf("aggregator %s is not part of the cluster", addr)
	}
	return a.pools.Get(a.aggregatorNode(ag)), nil
}

// AUTO_INCREMENT of sharded tables: aggregator number N hands out
// N<<50 + 1, 2, …; ranges of a million are reserved durably, so a restart
// skips what was reserved and never repeats a value. A value is handed
// out only from a range whose reservation is durable: a reservation that
// cannot be written (or read back after a restart) fails the statement
// with 1467, and the next statement tries again.
const autoBits = 50
const autoReserve = 1_000_000

type autoRange struct {
	next, limit uint64 // next: the last value handed out; limit: reserved up to
}

// errAutoIncrement is MySQL's error for a counter that cannot be read or
// advanced (ER_AUTOINC_READ_FAILED).
func errAutoIncrement(db, table string, err error) error {
	return mysql.NewSQLError(1467, "HY000", "Failed to read auto-increment value from storage engine: "+
		"reserving AUTO_INCREMENT values of %s.%s on this aggregator failed: %v", db, table, err)
}

func (a *Aggregator) nextAutoIncrement(db, table string) (uint64, error) {
	name := table
	var start uint64
	if d := a.State().Database(db); d != nil {
		if t := d.Table(table); t != nil {
			table = t.CounterName() // a renamed table goes on counting where it was
			start = t.AutoIncrementStart
		}
	}
	num := 0
	if ag, ok := a.State().Aggregator(a.self); ok {
		num = ag.Number
	}
	a.autoMu.Lock()
	defer a.autoMu.Unlock()
	key := "autoinc/" + db + "." + table
	r := a.autos[key]
	if r == nil {
		v, ok, err := a.store.GetLocal(key)
		if err == nil && ok && len(v) != 8 {
			err = fmt.Errorf("the stored reservation is %d bytes", len(v))
		}
		if err != nil {
			a.log.Error("reading the AUTO_INCREMENT reservation", "table", db+"."+table, "err", err)
			return 0, errAutoIncrement(db, name, err)
		}
		r = &autoRange{}
		if ok {
			r.next = binary.BigEndian.Uint64(v)
			r.limit = r.next
		}
		a.autos[key] = r
	}
	next := r.next
	if start > 0 && (start-1)>>autoBits == uint64(num) && next < (start-1)&(1<<autoBits-1) {
		// the values below AUTO_INCREMENT=start in this aggregator's
		// range are taken (a dump loaded them)
		next = (start - 1) & (1<<autoBits - 1)
	}
	if next+1 >= 1<<autoBits {
		return 0, errAutoIncrement(db, name, fmt.Errorf("this aggregator's range of values is used up"))
	}
	if next >= r.limit {
		limit := min(next+autoReserve, 1<<autoBits-1)
		if err := a.reserveAuto(key, limit); err != nil {
			// nothing handed out: the range is not ours until it is durable
			a.log.Error("reserving AUTO_INCREMENT values", "table", db+"."+table, "err", err)
			return 0, errAutoIncrement(db, name, err)
		}
		r.limit = limit
	}
	r.next = next + 1
	return uint64(num)<<autoBits | r.next, nil
}

// reserveAuto durably records that values up to limit of an AUTO_INCREMENT
// counter are taken.
func (a *Aggregator) reserveAuto(key string, limit uint64) error {
	if failpoint.Fail("autoinc-reserve-error") {
		return errors.New("failpoint autoinc-reserve-error: the write failed")
	}
	return a.store.SetLocal(key, binary.BigEndian.AppendUint64(nil, limit))
}

// spreadPartition picks a partition for a row of a table without shard key.
func (a *Aggregator) spreadPartition(n int) int {
	return int(a.spread.Add(1) % uint64(n))
}
