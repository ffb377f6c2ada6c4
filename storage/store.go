// Package storage is the leaf's storage engine: one pebble DB per node,
// partition databases as key prefixes, transactions as in-memory write sets
// over READ COMMITTED reads, row locks, and a per-database partition log
// written in the same batch as the data. The GMS adapter (provider,
// database, table, index, session) sits on top in this package.
package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/storage/lock"
)

// Options configure a Store.
type Options struct {
	// CacheBytes is the block cache size; 0 means 128 MiB.
	CacheBytes int64
	// LockWait is the default row lock wait (innodb_lock_wait_timeout).
	LockWait time.Duration
	// NoSync skips fsync on commit. Only for tests of things other than
	// durability; a node never sets it.
	NoSync bool
	Logger *slog.Logger
}

// Store is the storage of one node.
type Store struct {
	db    *pebble.DB
	cache *pebble.Cache
	locks *lock.Table
	log   *slog.Logger
	sync  *pebble.WriteOptions

	mu       sync.RWMutex // guards dbs, byID and nextDBID
	dbs      map[string]*dbState
	byID     map[uint32]*dbState
	nextDBID uint32

	// commitMu orders commits: LSN assignment, version checks and catalog
	// swaps happen under it, the fsync outside it (group commit).
	commitMu sync.Mutex
	ddlMu    sync.Mutex // one schema change at a time
	txnSeq   atomic.Uint64
	lockWait time.Duration

	preparedMu sync.Mutex
	prepared   map[string]*preparedTxn // in-doubt transactions by xid
	promoteMu  sync.RWMutex            // a promotion makes its replicated in-doubt parts prepared
	// outcomes: where recent COMMIT PREPAREDs were applied, for their
	// retries (CommitPrepared)
	outcomesMu   sync.Mutex
	outcomes     map[string][]dbCommit
	outcomeOrder []string

	replicaWait atomic.Pointer[ReplicaWaiter]

	fence  fence         // pause fencing (fence.go)
	closed chan struct{} // closed by Close
}

// dbState is the in-memory state of one database.
type dbState struct {
	s      *Store
	meta   dbMeta
	prefix []byte

	mu          sync.RWMutex // guards the maps below
	tables      map[string]*tableState
	views       map[string]sql.ViewDefinition
	triggers    map[string]storedTrigger
	procs       map[string]sql.StoredProcedureDetails
	fks         map[string]sql.ForeignKeyConstraint
	nextTableID uint32

	// guarded by Store.commitMu
	pos     Position
	commits uint64
	// visible is a replica's position whose changes readers see: the
	// record durable and the catalog reloaded (pos moves earlier).
	visible Position
	dropped bool
	// replica databases take writes only from replication.
	replica bool
	// handingOver: the master is being demoted (Demote); only the outcomes
	// of its in-doubt transactions commit.
	handingOver bool
	// writesAfter: set when a replica is promoted, the last transaction
	// begun before it took its own writes. Such a transaction wrote the
	// copy as a replica (statements take row locks; only the commit is
	// refused) and may hold locks its in-doubt parts need: it cannot
	// commit here (only outcomes of in-doubt transactions can).
	writesAfter uint64
	// suspect: a master partition since a pause of this process, until
	// the master aggregator confirms it (fence.go)
	suspect bool
	// deposedBy: the newer term a replica of this master follows (0: not
	// deposed); the copy takes no writes (fence.go)
	deposedBy uint64
	// readFenced mirrors suspect and deposedBy for readers, who do not
	// take commitMu (readOpen, readSuspect, readDeposed): a stale
	// master's reads wait or are refused as its writes are (a restarted
	// aggregator with old metadata would read values the cluster has
	// since overwritten)
	readFenced atomic.Uint32
	// replicaNow mirrors replica for readers (readFence)
	replicaNow atomic.Bool
	// committed is closed and replaced at every commit of this database
	// (CommitSignal)
	committed chan struct{}
}

// Open opens (creating if needed) the store in dir and loads its catalog.
func Open(dir string, o Options) (*Store, error) {
	if o.CacheBytes == 0 {
		o.CacheBytes = 128 << 20
	}
	if o.LockWait == 0 {
		o.LockWait = 50 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cache := pebble.NewCache(o.CacheBytes)
	popts := &pebble.Options{
		Cache: cache,
		// Every update of a row adds a version to the memtable, and a
		// scan steps over every version of every key it passes: with 64
		// MiB memtables, sysbench oltp_read_write on 10,000 rows lost a
		// third of its throughput in four minutes, as versions piled up
		// until a flush (which keeps only the newest). 8 MiB bounds the
		// versions a scan meets.
		MemTableSize:                8 << 20,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{o.Logger},
	}
	// Bloom filters on every level: an INSERT checks that its key is free,
	// and without filters each such Get of an absent key reads a data block
	// of every overlapping table (bulk loads became disk-bound).
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		cache.Unref()
		return nil, fmt.Errorf("open storage in %s: %w", dir, err)
	}
	s := &Store{
		db:       db,
		cache:    cache,
		locks:    lock.New(),
		log:      o.Logger,
		sync:     pebble.Sync,
		dbs:      make(map[string]*dbState),
		byID:     make(map[uint32]*dbState),
		lockWait: o.LockWait,
		prepared: make(map[string]*preparedTxn),
		closed:   make(chan struct{}),
	}
	s.fence.base = time.Now()
	s.fence.incarnation.Store(newIncarnation())
	if o.NoSync {
		s.sync = pebble.NoSync
	}
	if err := s.load(); err != nil {
		db.Close()
		cache.Unref()
		return nil, fmt.Errorf("load catalog from %s: %w", dir, err)
	}
	// a replica's records wait for its promotion
	var masters []*dbState
	for _, d := range s.databases() {
		if !d.replica {
			masters = append(masters, d)
		}
	}
	parts, err := s.readPrepared(masters)
	if err != nil {
		db.Close()
		cache.Unref()
		return nil, fmt.Errorf("load prepared transactions from %s: %w", dir, err)
	}
	s.installPrepared(parts)
	return s, nil
}

// Close flushes and closes the store.
func (s *Store) Close() error {
	close(s.closed)
	err := s.db.Close()
	s.cache.Unref()
	return err
}

// DB exposes pebble to the replication and copy code of this node.
func (s *Store) DB() *pebble.DB { return s.db }

func (s *Store) load() error {
	if v, closer, err := s.db.Get(keyNextDBID); err == nil {
		s.nextDBID = binary.BigEndian.Uint32(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	lo := []byte{spaceGlobal, 'd'}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var m dbMeta
		if err := json.Unmarshal(it.Value(), &m); err != nil {
			return fmt.Errorf("database descriptor %q: %w", it.Key()[2:], err)
		}
		d, err := s.loadDB(m)
		if err != nil {
			return fmt.Errorf("database %s: %w", m.Name, err)
		}
		s.dbs[strings.ToLower(m.Name)] = d
		s.byID[m.ID] = d
	}
	return it.Error()
}

func newDBState(s *Store, m dbMeta) *dbState {
	return &dbState{
		s:         s,
		meta:      m,
		prefix:    dbPrefix(m.ID),
		tables:    make(map[string]*tableState),
		views:     make(map[string]sql.ViewDefinition),
		triggers:  make(map[string]storedTrigger),
		procs:     make(map[string]sql.StoredProcedureDetails),
		fks:       make(map[string]sql.ForeignKeyConstraint),
		committed: make(chan struct{}),
	}
}

func (s *Store) loadDB(m dbMeta) (*dbState, error) {
	d := newDBState(s, m)
	if v, ok, err := s.getRaw(join(d.prefix, statePosition)); err != nil {
		return nil, err
	} else if ok {
		if d.pos, d.commits, err = decodePosition(v); err != nil {
			return nil, err
		}
		d.visible = d.pos
	}
	if v, ok, err := s.getRaw(join(d.prefix, stateNextTableID)); err != nil {
		return nil, err
	} else if ok {
		d.nextTableID = binary.BigEndian.Uint32(v)
	}
	if _, ok, err := s.getRaw(join(d.prefix, stateReplica)); err != nil {
		return nil, err
	} else if ok {
		d.replica = true
		d.syncReadFence()
	}
	if err := s.scan(join(d.prefix, []byte{secTable}), func(k, v []byte) error {
		var tm tableMeta
		if err := json.Unmarshal(v, &tm); err != nil {
			return fmt.Errorf("table descriptor: %w", err)
		}
		t, err := newTableState(d, &tm, nil)
		if err != nil {
			return err
		}
		if cv, ok, err := s.getRaw(join(d.prefix, tableCounterSuffix(tm.ID))); err != nil {
			return err
		} else if ok {
			t.counters.decode(cv)
		}
		d.tables[strings.ToLower(tm.Name)] = t
		return nil
	}); err != nil {
		return nil, err
	}
	if err := s.scan(join(d.prefix, []byte{secObj}), func(k, v []byte) error {
		return d.loadObject(k[dbPrefixLen+1], v)
	}); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Store) getRaw(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

func (s *Store) scan(prefix []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// database returns the state of a database, or nil.
func (s *Store) database(name string) *dbState {
	s.mu.RLock()
	d := s.dbs[strings.ToLower(name)]
	s.mu.RUnlock()
	return d
}

func (s *Store) databases() []*dbState {
	s.mu.RLock()
	out := make([]*dbState, 0, len(s.dbs))
	for _, d := range s.dbs {
		out = append(out, d)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].meta.Name < out[j].meta.Name })
	return out
}

func (d *dbState) store() *Store { return d.s }

func (d *dbState) table(name string) *tableState {
	d.mu.RLock()
	t := d.tables[strings.ToLower(name)]
	d.mu.RUnlock()
	return t
}

// DatabaseInfo is what SHOW DATABASES EXTENDED reports for a database.
type DatabaseInfo struct {
	Name    string
	Commits uint64
	Pos     Position
	Replica bool
	// Suspect: a master partition since a pause, not yet confirmed;
	// Deposed: a master whose replica follows a newer master (fence.go)
	Suspect, Deposed bool
}

// DatabaseInfos lists every database with its log position.
func (s *Store) DatabaseInfos() []DatabaseInfo {
	dbs := s.databases() // before commitMu, as everywhere
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return databaseInfosLocked(dbs)
}

// databaseInfosLocked: called under commitMu.
func databaseInfosLocked(dbs []*dbState) []DatabaseInfo {
	out := make([]DatabaseInfo, 0, len(dbs))
	for _, d := range dbs {
		out = append(out, DatabaseInfo{Name: d.meta.Name, Commits: d.commits, Pos: d.pos, Replica: d.replica,
			Suspect: d.suspect && !d.replica, Deposed: d.deposedBy != 0 && !d.replica})
	}
	return out
}

// ReadLog returns the log records of a database from position lsn on, at
// most max of them.
func (s *Store) ReadLog(dbName string, fromLSN uint64, max int) ([]*LogRecord, error) {
	d := s.database(dbName)
	if d == nil {
		return nil, sql.ErrDatabaseNotFound.New(dbName)
	}
	lo := join(d.prefix, logSuffix(fromLSN))
	hi := prefixEnd(join(d.prefix, []byte{secLog}))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*LogRecord
	for it.First(); it.Valid() && len(out) < max; it.Next() {
		r, err := DecodeLogRecord(append([]byte(nil), it.Value()...))
		if err != nil {
			return nil, fmt.Errorf("log of %s at %x: %w", dbName, it.Key(), err)
		}
		out = append(out, r)
	}
	return out, it.Error()
}

// commit makes a transaction durable: its write set, one log record per
// database it wrote, the position and counters of those databases, in one
// synced pebble batch. Commits are ordered by commitMu; the fsync happens
// outside it so that concurrent commits share it.
func (s *Store) commit(t *Txn) error {
	if t.empty() {
		return nil
	}
	if t.guard != nil && t.guard.Active() {
		// before commitMu: a guard asks the store about databases
		for _, g := range t.groupByDatabase() {
			if d := s.databaseByID(g.dbID); !g.global && d != nil {
				if err := t.guard.Check(d.meta.Name); err != nil {
					return err
				}
			}
		}
	}
	var deadline time.Time
	for {
		b := s.db.NewBatch()
		s.commitMu.Lock()
		applied, err := s.commitLocked(t, b)
		s.commitMu.Unlock()
		if err != nil {
			b.Close()
			if deadline.IsZero() {
				deadline = time.Now().Add(time.Duration(s.fence.confirmWait.Load()))
			}
			if s.awaitConfirmation(t, err, deadline) {
				continue // every partition it writes is confirmed now
			}
			return err
		}
		err = s.syncWait(b)
		b.Close()
		if err != nil {
			return err
		}
		return s.waitReplicas(applied)
	}
}

// dbCommit is what a commit wrote in one database.
type dbCommit struct {
	d       *dbState
	pos     Position
	commits uint64
	inc     uint64 // the store's incarnation when it committed (fence.go)
}

// ReplicaWaiter waits until the synchronous replicas of a database have
// its log up to lsn durable. An error means the commit is durable here but
// not confirmed by a replica: the client must not take it as acknowledged.
type ReplicaWaiter func(db string, lsn uint64) error

// SetReplicaWaiter installs the wait every commit makes after its own sync
// (partition replication, DESIGN.md §3). Row locks are held until it returns.
func (s *Store) SetReplicaWaiter(w ReplicaWaiter) { s.replicaWait.Store(&w) }

// waitReplicas is the end of a commit, after its own sync: the
// synchronous replicas confirm it, and a commit that a pause of this
// process interrupted waits for its partitions to be confirmed
// (confirmPaused).
func (s *Store) waitReplicas(applied []dbCommit) error {
	if w := s.replicaWait.Load(); w != nil {
		for _, a := range applied {
			if err := (*w)(a.d.meta.Name, a.pos.LSN); err != nil {
				return err
			}
		}
	}
	return s.confirmPaused(applied)
}

// commitLocked builds the batch and applies it; called under commitMu.
func (s *Store) commitLocked(t *Txn, b *pebble.Batch) ([]dbCommit, error) {
	if err := t.checkVersions(); err != nil {
		return nil, err
	}
	var applied []dbCommit
	counterVals := make(map[*tableState][]byte)
	clock := time.Now()
	now := clock.UnixNano()
	if s.fence.pausedAt(clock) { // the process resumed just now: the watchdog may not have run yet
		s.noticeLocked()
	}
	inc := s.fence.incarnation.Load()
	for _, g := range t.groupByDatabase() {
		if g.global || t.dropping[g.dbID] {
			// catalog entries and dropped databases have no log
			if err := applyGroup(b, g); err != nil {
				return nil, err
			}
			continue
		}
		d := s.databaseByID(g.dbID)
		if d == nil || d.dropped {
			if t.outcome {
				// an in-doubt part of a copy dropped since (a stale copy
				// replaced on attach): its partition resolves it where
				// it lives now
				continue
			}
			return nil, errTableDefChanged
		}
		if t.outcome && (d.deposedBy != 0 || d.replica) {
			// an in-doubt part of a copy that failed over since: its new
			// master loaded the part from the replicated prepare record
			// and applies the outcome there. Refusing the whole outcome
			// would leave the parts of the partitions still mastered here
			// in doubt, locks held, while the moved part commits.
			continue
		}
		if d.replica && !t.replicated {
			return nil, errReplicaReadOnly(d.meta.Name)
		}
		if d.suspect || d.deposedBy != 0 {
			return nil, d.fencedLocked()
		}
		if d.handingOver && !t.outcome {
			return nil, errHandingOver(d.meta.Name)
		}
		if uint64(t.id) <= d.writesAfter && !t.outcome {
			return nil, errPromoted(d.meta.Name)
		}
		rec := &LogRecord{Pos: Position{Term: d.pos.Term, LSN: d.pos.LSN + 1}, UnixNanos: now}
		for _, rd := range g.rangeDels {
			if err := b.DeleteRange(rd.lo, rd.hi, nil); err != nil {
				return nil, err
			}
			rec.Mutations = append(rec.Mutations, Mutation{Op: OpDeleteRange, Key: rd.lo[dbPrefixLen:], Value: rd.hi[dbPrefixLen:]})
		}
		for _, e := range g.entries {
			var err error
			if e.del {
				err = b.Delete(e.key, nil)
				rec.Mutations = append(rec.Mutations, Mutation{Op: OpDelete, Key: e.key[dbPrefixLen:]})
			} else {
				err = b.Set(e.key, e.val, nil)
				rec.Mutations = append(rec.Mutations, Mutation{Op: OpSet, Key: e.key[dbPrefixLen:], Value: e.val})
			}
			if err != nil {
				return nil, err
			}
		}
		for _, ts := range t.tablesIn(d) {
			v := ts.counters.encodeWith(t.rowDelta(ts))
			counterVals[ts] = v
			k := join(d.prefix, tableCounterSuffix(ts.meta.ID))
			if err := b.Set(k, v, nil); err != nil {
				return nil, err
			}
			rec.Mutations = append(rec.Mutations, Mutation{Op: OpSet, Key: k[dbPrefixLen:], Value: v})
		}
		commits := d.commits + 1
		if err := b.Set(join(d.prefix, logSuffix(rec.Pos.LSN)), rec.Encode(), nil); err != nil {
			return nil, err
		}
		if err := b.Set(join(d.prefix, statePosition), encodePosition(rec.Pos, commits), nil); err != nil {
			return nil, err
		}
		applied = append(applied, dbCommit{d, rec.Pos, commits, inc})
	}
	if err := s.apply(b); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	for _, a := range applied {
		a.d.pos, a.d.commits = a.pos, a.commits
	}
	for ts, v := range counterVals {
		ts.counters.decode(v)
	}
	for _, fn := range t.onApplied {
		fn()
	}
	for _, a := range applied {
		a.d.notifyCommit()
	}
	return applied, nil
}

// apply enters a batch into pebble's commit pipeline; with syncing on, the
// caller then waits for durability outside commitMu.
func (s *Store) apply(b *pebble.Batch) error {
	if s.sync.Sync {
		return s.db.ApplyNoSyncWait(b, s.sync)
	}
	return s.db.Apply(b, s.sync)
}

func (s *Store) syncWait(b *pebble.Batch) error {
	if !s.sync.Sync {
		return nil
	}
	if err := b.SyncWait(); err != nil {
		return fmt.Errorf("commit sync: %w", err)
	}
	return nil
}

// notifyCommit wakes everyone waiting for a commit of d (its replication
// senders). Called under commitMu.
func (d *dbState) notifyCommit() {
	close(d.committed)
	d.committed = make(chan struct{})
}

// CommitSignal returns a channel closed at the next commit of database
// name: a sender wakes for its own database's commits only. For a
// database that does not exist it is closed already.
func (s *Store) CommitSignal(name string) <-chan struct{} {
	d := s.database(name)
	if d == nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return d.committed
}

func applyGroup(b *pebble.Batch, g *writeGroup) error {
	for _, rd := range g.rangeDels {
		if err := b.DeleteRange(rd.lo, rd.hi, nil); err != nil {
			return err
		}
	}
	for _, e := range g.entries {
		var err error
		if e.del {
			err = b.Delete(e.key, nil)
		} else {
			err = b.Set(e.key, e.val, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) databaseByID(id uint32) *dbState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byID[id]
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

// LocksHeld counts the row locks held by open transactions.
func (s *Store) LocksHeld() int { return s.locks.Held() }

// Node-local settings (cluster membership, …) under 0x00 'L'. They are not
// part of any database and never replicated.
func localKey(name string) []byte { return append([]byte{spaceGlobal, 'L'}, name...) }

// GetLocal reads a node-local setting.
func (s *Store) GetLocal(name string) ([]byte, bool, error) { return s.getRaw(localKey(name)) }

// SetLocal writes a node-local setting durably; nil deletes it.
func (s *Store) SetLocal(name string, v []byte) error {
	if v == nil {
		return s.db.Delete(localKey(name), pebble.Sync)
	}
	return s.db.Set(localKey(name), v, pebble.Sync)
}

// HasDatabase reports whether the node has a database.
func (s *Store) HasDatabase(name string) bool { return s.database(name) != nil }

// HasTable reports whether a database of the node has a table.
func (s *Store) HasTable(db, table string) bool {
	d := s.database(db)
	return d != nil && d.table(table) != nil
}

// HasView reports whether a database of this node has the named view.
func (s *Store) HasView(db, view string) bool {
	d := s.database(db)
	if d == nil {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.views[strings.ToLower(view)]
	return ok
}

// TableSchema returns a table's columns.
func (s *Store) TableSchema(db, table string) (sql.Schema, bool) {
	d := s.database(db)
	if d == nil {
		return nil, false
	}
	t := d.table(table)
	if t == nil {
		return nil, false
	}
	return t.schema.Schema, true
}
