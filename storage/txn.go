package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/tidwall/btree"

	"github.com/canopydb/canopy/storage/lock"
)

// kv is one entry of a write set: a new value or a deletion.
type kv struct {
	key []byte
	val []byte
	del bool
}

func kvLess(a, b *kv) bool { return bytes.Compare(a.key, b.key) < 0 }

type span struct{ lo, hi []byte }

// mark is a point a transaction can roll back to: the start of the current
// statement, or a savepoint. Write sets are copy-on-write B-trees, so a
// mark costs O(1).
type mark struct {
	name      string
	ws        *btree.BTreeG[*kv]
	rows      map[*tableState]int64
	rangeDels int
}

// Txn is a transaction of a session, or a DDL change of the node. Reads
// see the latest committed data merged with the transaction's own writes
// (READ COMMITTED); writes collect in the write set and take row locks that
// are held until commit or rollback.
type Txn struct {
	s        *Store
	id       lock.TxnID
	readOnly bool

	ws        *btree.BTreeG[*kv] // nil until the first write
	rangeDels []span
	locked    []string
	rows      map[*tableState]int64 // tables written, with their row count change
	dropping  map[uint32]bool       // databases this (DDL) transaction drops

	stmtSeq uint64
	stmt    *mark // the start of the current statement
	// checkpoints nest like GMS's editor statements: one per StatementBegin
	// (per row for INSERT IGNORE, per trigger body), popped on completion
	// or rollback.
	checkpoints []*mark
	// visible is what queries of the current statement read: the write set
	// as of the last completed editor statement. An UPDATE … JOIN rescanning
	// its target does not see its own updates; a trigger body sees what
	// earlier trigger bodies wrote (as in GMS's reference engine).
	visible    *btree.BTreeG[*kv]
	savepoints []*mark

	onApplied []func() // catalog changes, run under commitMu once applied
	lockWait  time.Duration
	// autocommit: the engine commits at the end of the statement, so a
	// statement that ends without committing failed.
	autocommit bool
	// replicated: a change that arrived by replication, allowed on a
	// replica database.
	replicated bool
	guard      Guard // the session's: databases it may not change
	// outcome: the commit or rollback of a prepared transaction, allowed
	// on a database that is handing over (it drains in-doubt parts).
	outcome bool
}

var _ sql.Transaction = (*Txn)(nil)

// Begin starts a transaction.
func (s *Store) Begin(readOnly bool) *Txn {
	return &Txn{s: s, id: lock.TxnID(s.txnSeq.Add(1)), readOnly: readOnly, lockWait: s.lockWait}
}

func (t *Txn) String() string   { return fmt.Sprintf("txn %d", t.id) }
func (t *Txn) IsReadOnly() bool { return t.readOnly }

func (t *Txn) empty() bool {
	return (t.ws == nil || t.ws.Len() == 0) && len(t.rangeDels) == 0 && len(t.rows) == 0
}

// changedInStatement reports whether the current statement itself wrote key.
func (t *Txn) changedInStatement(key []byte) bool {
	if t.ws == nil {
		return false
	}
	e, ok := t.ws.Get(&kv{key: key})
	if !ok {
		return false
	}
	if t.stmt == nil || t.stmt.ws == nil {
		return true
	}
	prev, ok := t.stmt.ws.Get(&kv{key: key})
	return !ok || prev != e
}

func (t *Txn) writeSet() *btree.BTreeG[*kv] {
	if t.ws == nil {
		t.ws = btree.NewBTreeG(kvLess)
	}
	return t.ws
}

func (t *Txn) set(key, val []byte) { t.writeSet().Set(&kv{key: key, val: val}) }
func (t *Txn) del(key []byte)      { t.writeSet().Set(&kv{key: key, del: true}) }

func (t *Txn) deleteRange(lo, hi []byte) {
	t.rangeDels = append(t.rangeDels, span{lo, hi})
}

func (t *Txn) touch(ts *tableState, delta int64) {
	if t.rows == nil {
		t.rows = make(map[*tableState]int64)
	}
	t.rows[ts] += delta
}

func (t *Txn) rowDelta(ts *tableState) int64 { return t.rows[ts] }

// get reads a key through a write set (nil: committed data only).
func (s *Store) get(ws *btree.BTreeG[*kv], key []byte) ([]byte, bool, error) {
	if ws != nil {
		if e, ok := ws.Get(&kv{key: key}); ok {
			if e.del {
				return nil, false, nil
			}
			return e.val, true, nil
		}
	}
	return s.getRaw(key)
}

// getFree is get for a key that is usually absent (a new row's primary
// key). pebble's Get skips the bloom filters of the last level and reads
// the data block around the key; sstables span row, log and metadata
// keys, so an absent key lies inside every table and each check read and
// decompressed a block (a 1M-row load spent 85% of its time there). A
// prefix seek with L6 filters reads only filter blocks when the key is
// absent.
func (s *Store) getFree(ws *btree.BTreeG[*kv], key []byte) ([]byte, bool, error) {
	if ws != nil {
		if e, ok := ws.Get(&kv{key: key}); ok {
			if e.del {
				return nil, false, nil
			}
			return e.val, true, nil
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	if !it.SeekPrefixGE(key) || !bytes.Equal(it.Key(), key) {
		return nil, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), v...), true, nil
}

// lock takes the row lock on key for this transaction.
func (t *Txn) lock(ctx context.Context, key []byte) error {
	fresh, err := t.s.locks.Acquire(ctx, t.id, string(key), t.lockWait)
	switch {
	case errors.Is(err, lock.ErrDeadlock):
		return ErrDeadlock
	case errors.Is(err, lock.ErrTimeout):
		return ErrLockWaitTimeout
	case err != nil:
		return err
	}
	if fresh {
		t.locked = append(t.locked, string(key))
	}
	return nil
}

// finish releases the transaction's locks and empties it; it can be used
// again.
func (t *Txn) finish() {
	t.s.locks.Release(t.id, t.locked)
	t.locked = nil
	t.ws = nil
	t.rows = nil
	t.rangeDels = nil
	t.stmt = nil
	t.checkpoints = nil
	t.visible = nil
	t.savepoints = nil
}

// Commit makes the transaction durable and releases its locks.
func (t *Txn) Commit() error {
	defer t.finish()
	return t.s.commit(t)
}

// Rollback discards the transaction and releases its locks.
func (t *Txn) Rollback() { t.finish() }

func (t *Txn) snapshot(name string) *mark {
	m := &mark{name: name, rangeDels: len(t.rangeDels)}
	if t.ws != nil {
		m.ws = t.ws.Copy()
	}
	if len(t.rows) > 0 {
		m.rows = make(map[*tableState]int64, len(t.rows))
		for k, v := range t.rows {
			m.rows[k] = v
		}
	}
	return m
}

func (t *Txn) restore(m *mark) {
	t.ws = nil
	t.visible = m.ws
	if m.ws != nil {
		t.ws = m.ws.Copy()
	}
	t.rows = nil
	for k, v := range m.rows {
		t.touch(k, v)
	}
	t.rangeDels = t.rangeDels[:m.rangeDels]
}

// beginStatement records the statement start, once per statement.
func (t *Txn) beginStatement(seq uint64) {
	if t.stmt != nil && t.stmtSeq == seq {
		return
	}
	t.stmtSeq = seq
	t.stmt = t.snapshot("")
	t.checkpoints = nil
	t.visible = t.stmt.ws
}

// completeEditorStatement ends the innermost editor statement and makes
// the writes so far visible to queries.
func (t *Txn) completeEditorStatement() {
	if n := len(t.checkpoints); n > 0 {
		t.checkpoints = t.checkpoints[:n-1]
	}
	if t.ws != nil {
		t.visible = t.ws.Copy()
	}
}

// pushCheckpoint marks the point DiscardChanges returns to.
func (t *Txn) pushCheckpoint(seq uint64) {
	t.beginStatement(seq)
	t.checkpoints = append(t.checkpoints, t.snapshot(""))
}

// rollbackCheckpoint undoes the writes of the innermost editor statement.
func (t *Txn) rollbackCheckpoint() {
	n := len(t.checkpoints)
	if n == 0 {
		t.rollbackStatement()
		return
	}
	t.restore(t.checkpoints[n-1])
	t.checkpoints = t.checkpoints[:n-1]
}

// rollbackStatement undoes the writes of the current statement. Locks stay:
// the transaction may retry the statement.
func (t *Txn) rollbackStatement() {
	if t.stmt != nil {
		t.restore(t.stmt)
		t.checkpoints = nil
	}
}

// current is the write set as it is now (nil-safe).
func (t *Txn) current() *btree.BTreeG[*kv] {
	if t == nil {
		return nil
	}
	return t.ws
}

// readView is the write set a query read started now must see (see
// visible).
func (t *Txn) readView(seq uint64) *btree.BTreeG[*kv] {
	if t == nil {
		return nil
	}
	if t.stmt != nil && t.stmtSeq == seq {
		return t.visible
	}
	return t.ws
}

// savepoint sets a savepoint; one of the same name is replaced.
func (t *Txn) savepoint(name string) {
	t.releaseSavepoint(name)
	t.savepoints = append(t.savepoints, t.snapshot(name))
}

func (t *Txn) rollbackToSavepoint(name string) error {
	for i := len(t.savepoints) - 1; i >= 0; i-- {
		if equalFold(t.savepoints[i].name, name) {
			t.restore(t.savepoints[i])
			t.savepoints = t.savepoints[:i+1]
			return nil
		}
	}
	return sql.ErrSavepointDoesNotExist.New(name)
}

// releaseSavepoint forgets one savepoint.
func (t *Txn) releaseSavepoint(name string) bool {
	for i := len(t.savepoints) - 1; i >= 0; i-- {
		if equalFold(t.savepoints[i].name, name) {
			t.savepoints = append(t.savepoints[:i], t.savepoints[i+1:]...)
			return true
		}
	}
	return false
}

// checkVersions refuses the commit if a table it wrote changed definition
// since (ALTER, TRUNCATE, DROP ran concurrently). Called under commitMu.
func (t *Txn) checkVersions() error {
	for ts := range t.rows {
		if t.outcome && ts.db.dropped {
			continue // an in-doubt part of a dropped copy: not applied (commitLocked)
		}
		cur := ts.db.table(ts.meta.Name)
		if cur == nil || cur.meta.ID != ts.meta.ID || cur.meta.Version != ts.meta.Version || ts.db.dropped || ts.counters.altering {
			return errTableDefChanged
		}
	}
	return nil
}

// writeGroup is the part of a write set that belongs to one database, or
// to the node-global catalog (global).
type writeGroup struct {
	dbID      uint32
	global    bool
	entries   []*kv
	rangeDels []span
}

func (t *Txn) groupByDatabase() []*writeGroup {
	var groups []*writeGroup
	byID := map[uint32]*writeGroup{}
	var global *writeGroup
	group := func(key []byte) *writeGroup {
		if key[0] != spaceDB {
			if global == nil {
				global = &writeGroup{global: true}
			}
			return global
		}
		id := binary.BigEndian.Uint32(key[1:5])
		g := byID[id]
		if g == nil {
			g = &writeGroup{dbID: id}
			byID[id] = g
			groups = append(groups, g)
		}
		return g
	}
	for _, rd := range t.rangeDels {
		g := group(rd.lo)
		g.rangeDels = append(g.rangeDels, rd)
	}
	if t.ws != nil {
		t.ws.Scan(func(e *kv) bool {
			g := group(e.key)
			g.entries = append(g.entries, e)
			return true
		})
	}
	if global != nil {
		groups = append(groups, global)
	}
	return groups
}

// tablesIn lists the tables of d written by t (their counters are saved).
func (t *Txn) tablesIn(d *dbState) []*tableState {
	var out []*tableState
	for ts := range t.rows {
		if ts.db == d {
			out = append(out, ts)
		}
	}
	return out
}

// Errors of the transaction layer, in MySQL's terms.
var (
	ErrDeadlock = mysql.NewSQLError(mysql.ERLockDeadlock, mysql.SSLockDeadlock,
		"Deadlock found when trying to get lock; try restarting transaction")
	ErrLockWaitTimeout = mysql.NewSQLError(mysql.ERLockWaitTimeout, "HY000",
		"Lock wait timeout exceeded; try restarting transaction")
	errTableDefChanged = mysql.NewSQLError(1412, "HY000",
		"Table definition has changed, please retry transaction")
	errReadOnlyTxn = mysql.NewSQLError(1792, "25006",
		"Cannot execute statement in a READ ONLY transaction.")
)

func errHandingOver(db string) error {
	return mysql.NewSQLError(1290, "HY000",
		"The partition database '%s' is handing its master role to another leaf; retry the transaction", db)
}

func errPromoted(db string) error {
	return mysql.NewSQLError(1290, "HY000",
		"The database '%s' was a replica when the transaction began and has taken over as master since; retry the transaction", db)
}

func errReplicaReadOnly(db string) error {
	return mysql.NewSQLError(1290, "HY000",
		"The database '%s' is a replica and takes writes only by replication; write through the master aggregator", db)
}

// errRowChanged is returned by a write that found its row changed by
// another transaction after it was read. The statement is rolled back and
// run again by the server, now holding the row lock (like InnoDB's
// semi-consistent read), so no update is lost.
var errRowChanged = errors.New(restartMessage)

const restartMessage = "storage: row changed since it was read; restart statement"

// IsRestartable reports whether err asks for the statement to be run again.
// GMS flattens errors into MySQL errors on the way out, so the message is
// what survives.
func IsRestartable(err error) bool {
	return err != nil && strings.Contains(err.Error(), restartMessage)
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// pebble iterator over [lo, hi) merged with a frozen copy of a write set.
type kvIter struct {
	pi      *pebble.Iterator
	ws      *btree.BTreeG[*kv]
	wi      btree.IterG[*kv]
	hasWI   bool
	lo, hi  []byte
	reverse bool

	pOK, wOK bool
	started  bool
	// checkHi: the pebble iterator's bounds are wider than [lo, hi)
	// (seekIn), so its keys are checked against hi here
	checkHi      bool
	fromP, fromW bool
	key, val     []byte
}

// newKVIter iterates committed data merged with a frozen copy of ws.
func (s *Store) newKVIter(ws *btree.BTreeG[*kv]) (*kvIter, error) {
	pi, err := s.db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	it := &kvIter{pi: pi}
	if ws != nil && ws.Len() > 0 {
		it.ws = ws.Copy()
	}
	return it, nil
}

// seek positions the iterator on the span [lo, hi), walking forward or in
// reverse. Call next to get the first entry.
func (it *kvIter) seek(lo, hi []byte, reverse bool) {
	it.lo, it.hi, it.reverse, it.checkHi = lo, hi, reverse, false
	it.pi.SetBounds(lo, hi)
	if reverse {
		it.pOK = it.pi.Last()
	} else {
		it.pOK = it.pi.First()
	}
	it.seekWriteSet()
}

// setOuterBounds bounds the pebble iterator once for a series of seekIn
// calls, all of whose spans lie within [lo, hi).
func (it *kvIter) setOuterBounds(lo, hi []byte) { it.pi.SetBounds(lo, hi) }

// seekIn is seek forward within the outer bounds, without changing the
// pebble iterator's: SetBounds makes every seek start from scratch at
// every level, while a SeekGE to a later key after a seek that found
// nothing continues from where the last one stopped (pebble's
// TrySeekUsingNext). A lookup of many values, most absent (an IN list
// sent to every partition), is mostly such seeks.
func (it *kvIter) seekIn(lo, hi []byte) {
	it.lo, it.hi, it.reverse, it.checkHi = lo, hi, false, true
	it.pOK = it.pi.SeekGE(lo) && it.belowHi()
	it.seekWriteSet()
}

func (it *kvIter) belowHi() bool {
	return it.hi == nil || bytes.Compare(it.pi.Key(), it.hi) < 0
}

// seekWriteSet positions the write set's side of a seek.
func (it *kvIter) seekWriteSet() {
	lo, hi, reverse := it.lo, it.hi, it.reverse
	it.started = false
	if it.ws == nil {
		it.wOK = false
		return
	}
	if it.hasWI {
		it.wi.Release()
	}
	it.wi = it.ws.Iter()
	it.hasWI = true
	if !reverse {
		it.wOK = it.wi.Seek(&kv{key: lo}) && it.inBounds()
		return
	}
	if hi == nil {
		it.wOK = it.wi.Last()
	} else if it.wi.Seek(&kv{key: hi}) {
		it.wOK = it.wi.Prev()
	} else {
		it.wOK = it.wi.Last()
	}
	it.wOK = it.wOK && it.inBounds()
}

func (it *kvIter) inBounds() bool {
	k := it.wi.Item().key
	return bytes.Compare(k, it.lo) >= 0 && (it.hi == nil || bytes.Compare(k, it.hi) < 0)
}

func (it *kvIter) advance() {
	if it.fromP {
		if it.reverse {
			it.pOK = it.pi.Prev()
		} else {
			it.pOK = it.pi.Next() && (!it.checkHi || it.belowHi())
		}
	}
	if it.fromW {
		if it.reverse {
			it.wOK = it.wi.Prev()
		} else {
			it.wOK = it.wi.Next()
		}
		it.wOK = it.wOK && it.inBounds()
	}
}

// next moves to the next visible entry; key and val stay valid until the
// following call.
func (it *kvIter) next() bool {
	for {
		if it.started {
			it.advance()
		}
		it.started = true
		if !it.pOK && !it.wOK {
			return false
		}
		c := 1
		switch {
		case it.pOK && it.wOK:
			c = bytes.Compare(it.pi.Key(), it.wi.Item().key)
			if it.reverse {
				c = -c
			}
		case it.pOK:
			c = -1
		}
		if c < 0 {
			it.fromP, it.fromW = true, false
			it.key = it.pi.Key()
			it.val = it.pi.Value()
			return true
		}
		it.fromP, it.fromW = c == 0, true
		e := it.wi.Item()
		if e.del {
			continue
		}
		it.key, it.val = e.key, e.val
		return true
	}
}

func (it *kvIter) err() error { return it.pi.Error() }

func (it *kvIter) close() error {
	if it.hasWI {
		it.wi.Release()
		it.hasWI = false
	}
	return it.pi.Close()
}
