// Package aggregator is the query tier of an aggregator: it plans every
// client statement (package planner) and runs it on the right partitions,
// merges results, runs DDL on every node, coordinates distributed
// transactions, and keeps this aggregator's copies of the distributed
// databases (the master's are shipped to every other node).
//
// It sits on this node's membership in the cluster (package
// cluster/member: the raft member and metadata, the connections to the
// other nodes, the heartbeats), which it embeds. The cluster manager
// (package cluster/manager: failure detection, failover, rebalance, the
// master's reign, the cluster commands) sits on the same member; the
// query tier never imports it, and reaches it only through Cluster. The
// node wires the three. The master aggregator is the raft leader.
package aggregator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/replication"
	"github.com/canopydb/canopy/storage"
)

// Host is the node an aggregator runs in (what the query tier needs of
// it; package cluster/member has its own).
type Host interface {
	Store() *storage.Store
	Engine() *sqle.Engine
	// RunLocal runs one statement in this node's SQL engine for a client.
	RunLocal(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) error
	// RunInternal runs one statement in this node's SQL engine as the
	// node itself, in a session of its own.
	RunInternal(ctx context.Context, query string) ([]sql.Row, error)
	// Session is the storage session of a client connection.
	Session(id uint32) *storage.Session
	// Dialer reaches other nodes' internal ports.
	Dialer() mux.Dialer
	// SQLContext is a context with a client's session, made if the
	// connection has none yet.
	SQLContext(ctx context.Context, c *mysql.Conn) (*sql.Context, error)
}

// Cluster is what the query tier needs of the cluster manager (package
// cluster/manager; the node passes it to New).
type Cluster interface {
	// Reconcile brings what runs to what the metadata says now: this
	// aggregator's copies and their streams (ReconcileCopies), the
	// leaves' replicas, the promotions of new masters.
	Reconcile()
	// WaitPartitionsReplicated waits (briefly) until every replica of a
	// new database exists.
	WaitPartitionsReplicated(ctx context.Context, d *meta.Database)
}

// Aggregator is a running aggregator's query tier.
type Aggregator struct {
	*member.Member
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
	cluster   Cluster
	stop      chan struct{}
	wg        sync.WaitGroup
	beats     *member.Heartbeats
	autoMu    sync.Mutex
	autos     map[string]*autoRange
	sessions  sync.Map // connection id → *session
	spread    atomic.Uint64
	schemasAt atomic.Uint64 // metadata index whose schema changes this node's copies have
	templates templates     // planned routed statements with bind variables
	gathered  struct{ rows, bytes atomic.Uint64 }
	started   time.Time     // makes this run's transaction ids unique
	xidSeq    atomic.Uint64 // distributed transactions coordinated
	inflight  sync.Map      // xid → struct{}: commits between prepare and decision
	// commitGate: a distributed commit holds it for reading from its
	// decision to its last COMMIT PREPARED; a backup's cut holds it for
	// writing (backup.go)
	commitGate commitGate
	backups    backupRuns
	rowCounts  sync.Map // "db.table" → rowCount, for choosing join strategies
	shuffled   struct{ broadcast, repartition, lookup atomic.Uint64 }
	ddlJobs    ddlLocks // schema changes running on this master (ddljob.go)
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

// LookupJoins counts the joins this aggregator ran by looking a small
// side's keys up in the other side's partitions.
func (a *Aggregator) LookupJoins() uint64 { return a.shuffled.lookup.Load() }

// New makes the query tier of member m, which has started; c is the
// cluster manager. Nothing runs before Start.
func New(h Host, m *member.Member, c Cluster) *Aggregator {
	a := &Aggregator{
		Member:  m,
		host:    h,
		log:     m.Log(),
		store:   h.Store(),
		raft:    m.Raft(),
		pools:   m.Pools(),
		beats:   m.Beats(),
		self:    m.Addr(),
		cluster: c,
		stop:    make(chan struct{}),
		autos:   make(map[string]*autoRange),
		started: time.Now(),
	}
	a.hub = replication.NewHub(a.store, a.self, h.Dialer(), a.log)
	return a
}

// Start runs the aggregator's loops.
func (a *Aggregator) Start() {
	a.wg.Add(2)
	go a.ddlJobLoop()
	go a.resolveLoop()
}

// Close stops the aggregator's loops and the streams of its copies (the
// node goes on as a plain node once it has closed the cluster manager
// and the member too).
func (a *Aggregator) Close() {
	close(a.stop)
	a.wg.Wait()
	a.hub.Close()
}

// PoolDefaults are the session settings a new connection to another node
// holds (the node's defaults; member.New).
func PoolDefaults() *pool.Settings { return defaultSettings.client }

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

// ReconcileCopies makes this aggregator's copies of the distributed
// databases follow its role (ownCopies) and keeps, on the master, a
// replication stream of every distributed database to every other node
// (their copy holds reference tables and the definitions of sharded
// tables). The cluster manager runs it as part of every reconcile.
func (a *Aggregator) ReconcileCopies(st *meta.State, master bool) {
	if !master {
		a.hub.Close()
		if leader := a.raft.Leader(); leader != "" {
			a.ownCopies(st, false)
		}
		return
	}
	a.ownCopies(st, true)
	want := map[[2]string]bool{}
	for _, name := range st.DatabaseNames() {
		for _, t := range a.replicaTargets(st) {
			want[[2]string{name, t}] = true
			a.hub.Ensure(name, t)
		}
	}
	a.hub.Retain(func(db, target string) bool { return want[[2]string{db, target}] })
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
	a.cluster.Reconcile()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if pending := a.hub.WaitAcked(ctx, db, pos.LSN); len(pending) > 0 {
		a.log.Warn("nodes did not confirm a change in time; they will catch up", "database", db, "position", pos, "nodes", pending)
	}
}

// WaitAllReplicated waits until every node has every database's latest
// change: a node just added can serve queries when ADD returns.
func (a *Aggregator) WaitAllReplicated() {
	for _, db := range a.State().DatabaseNames() {
		a.waitReplicated(db)
	}
	a.cluster.Reconcile()
}

// WaitTarget waits until the copy of db on target (an internal address)
// has this aggregator's latest change of it: PROMOTE AGGREGATOR's target
// catches up first.
func (a *Aggregator) WaitTarget(ctx context.Context, db, target string) error {
	pos, ok := a.store.Position(db)
	if !ok {
		return nil
	}
	for {
		err := a.hub.WaitTargets(ctx, db, []string{target}, pos.LSN)
		if !errors.Is(err, replication.ErrFenced) {
			return err
		}
		// the target is an aggregator whose copy was the master's a
		// moment ago: it refused the stream once, before it followed; the
		// sender connects again (and is fenced no more) within the wait
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ownCopies makes this aggregator's copies of the distributed databases
// follow its role: the master's take writes (DDL and reference tables)
// and ship them; a child's follow the master's. A child's copy that was a
// master's is demoted at its position; if the new master's log disagrees
// there, the master's sender gives it a snapshot (replication: diverged).
func (a *Aggregator) ownCopies(st *meta.State, master bool) {
	for _, name := range st.DatabaseNames() {
		if !a.store.HasDatabase(name) || a.store.IsReplica(name) != master {
			continue
		}
		if master {
			pos, err := a.store.Promote(name)
			if err != nil {
				a.log.Error("taking over a database as master aggregator", "database", name, "err", err)
				continue
			}
			a.log.Info("this aggregator's copy of the database is now the cluster's", "database", name, "position", pos)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pos, err := a.store.Demote(ctx, name)
		cancel()
		if err != nil {
			a.log.Error("following the new master aggregator", "database", name, "err", err)
			continue
		}
		a.log.Info("this aggregator's copy of the database follows the master aggregator now", "database", name, "position", pos)
	}
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
