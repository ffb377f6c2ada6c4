package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/dolthub/go-mysql-server/sql"
)

// ErrNotReplica: a database takes its own writes, so it cannot follow
// another master's log.
var ErrNotReplica = errors.New("it takes its own writes and is not a replica")

// stateReplica marks a database that follows a master's log.
var stateReplica = []byte{secState, 'R'}

// Position returns a database's log position; for a replica, the last
// record whose changes (catalog included) readers see.
func (s *Store) Position(name string) (Position, bool) {
	d := s.database(name)
	if d == nil {
		return Position{}, false
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if d.replica {
		return d.visible, true
	}
	return d.pos, true
}

// IsReplica reports whether a database follows a master's log.
func (s *Store) IsReplica(name string) bool {
	d := s.database(name)
	if d == nil {
		return false
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return d.replica
}

// EnsureReplica makes name a replica database, creating it empty if it does
// not exist, and returns its position. A database that exists and takes
// its own writes is not turned into a replica.
func (s *Store) EnsureReplica(name string) (Position, error) {
	d := s.database(name)
	if d == nil {
		if err := s.CreateDatabase(name, sql.Collation_Default); err != nil && !sql.ErrDatabaseExists.Is(err) {
			return Position{}, err
		}
		d = s.database(name)
		if d == nil {
			return Position{}, fmt.Errorf("database %s vanished", name)
		}
		if err := s.db.Set(join(d.prefix, stateReplica), []byte{1}, pebble.Sync); err != nil {
			return Position{}, err
		}
		s.commitMu.Lock()
		d.replica = true
		d.syncReadFence()
		s.commitMu.Unlock()
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if !d.replica && d.pos == (Position{}) && d.tableCount() == 0 {
		// never written, no tables: a copy whose creation was cut short
		// before it was marked a replica (the two are separate writes);
		// making it one loses nothing
		if err := s.db.Set(join(d.prefix, stateReplica), []byte{1}, pebble.Sync); err != nil {
			return Position{}, err
		}
		d.replica, d.visible, d.suspect = true, d.pos, false
		d.syncReadFence()
	}
	if !d.replica {
		return Position{}, fmt.Errorf("database %s exists here: %w", name, ErrNotReplica)
	}
	return d.pos, nil
}

func (d *dbState) tableCount() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.tables)
}

// ApplyRecord applies a log record shipped from the database's master:
// the mutations, the record itself and the new position, in one synced
// batch. Records already applied are skipped; a gap is an error.
func (s *Store) ApplyRecord(name string, rec *LogRecord) error {
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	b := s.db.NewBatch()
	defer b.Close()
	s.commitMu.Lock()
	catalogChanged, err := s.applyRecordLocked(d, rec, b)
	s.commitMu.Unlock()
	if err != nil || b.Empty() {
		return err
	}
	if err := s.syncWait(b); err != nil {
		return err
	}
	if catalogChanged {
		if err := s.reloadCatalog(d); err != nil {
			return err
		}
	}
	s.commitMu.Lock()
	d.visible = rec.Pos
	s.commitMu.Unlock()
	return nil
}

func (s *Store) applyRecordLocked(d *dbState, rec *LogRecord, b *pebble.Batch) (bool, error) {
	if !d.replica {
		return false, fmt.Errorf("database %s is not a replica", d.meta.Name)
	}
	if rec.Pos.LSN <= d.pos.LSN {
		return false, nil // already applied
	}
	if rec.Pos.LSN != d.pos.LSN+1 {
		return false, fmt.Errorf("replica %s at %s cannot apply record %s: records are missing", d.meta.Name, d.pos, rec.Pos)
	}
	catalog := false
	var counters [][2][]byte
	for _, m := range rec.Mutations {
		key := join(d.prefix, m.Key)
		var err error
		switch m.Op {
		case OpSet:
			err = b.Set(key, m.Value, nil)
		case OpDelete:
			err = b.Delete(key, nil)
		case OpDeleteRange:
			err = b.DeleteRange(key, join(d.prefix, m.Value), nil)
		default:
			err = fmt.Errorf("unknown log op %d", m.Op)
		}
		if err != nil {
			return false, err
		}
		if len(m.Key) > 0 {
			switch m.Key[0] {
			case secTable, secObj:
				catalog = true
			case secState:
				if len(m.Key) > 1 && m.Key[1] == 'c' && m.Op == OpSet {
					counters = append(counters, [2][]byte{m.Key, m.Value})
				} else if len(m.Key) < 2 || m.Key[1] != 'x' { // prepared records wait for a promotion
					catalog = true
				}
			}
		}
		if m.Op == OpDeleteRange {
			catalog = true
		}
	}
	commits := d.commits + 1
	if err := b.Set(join(d.prefix, logSuffix(rec.Pos.LSN)), rec.Encode(), nil); err != nil {
		return false, err
	}
	if err := b.Set(join(d.prefix, statePosition), encodePosition(rec.Pos, commits), nil); err != nil {
		return false, err
	}
	if err := s.apply(b); err != nil {
		return false, err
	}
	d.pos, d.commits = rec.Pos, commits
	// counters of tables we already know, without a catalog reload
	for _, c := range counters {
		id := tableIDOfCounterKey(c[0])
		d.mu.RLock()
		for _, t := range d.tables {
			if t.meta.ID == id {
				t.counters.decode(c[1])
			}
		}
		d.mu.RUnlock()
	}
	d.notifyCommit()
	return catalog, nil
}

func tableIDOfCounterKey(k []byte) uint32 {
	if len(k) < 6 {
		return 0
	}
	return uint32(k[2])<<24 | uint32(k[3])<<16 | uint32(k[4])<<8 | uint32(k[5])
}

// reloadCatalog rereads a database's tables and objects after replication
// changed them. Table versions that did not change keep their state.
func (s *Store) reloadCatalog(d *dbState) error {
	tables := make(map[string]*tableState)
	d.mu.RLock()
	old := make(map[uint32]*tableState, len(d.tables))
	for _, t := range d.tables {
		old[t.meta.ID] = t
	}
	d.mu.RUnlock()
	err := s.scan(join(d.prefix, []byte{secTable}), func(k, v []byte) error {
		var tm tableMeta
		if err := json.Unmarshal(v, &tm); err != nil {
			return fmt.Errorf("table descriptor: %w", err)
		}
		prev := old[tm.ID]
		if prev != nil && prev.meta.Version == tm.Version && prev.meta.Name == tm.Name {
			tables[strings.ToLower(tm.Name)] = prev
			return nil
		}
		var counters *tableCounters
		if prev != nil {
			counters = prev.counters
		}
		t, err := newTableState(d, &tm, counters)
		if err != nil {
			return err
		}
		if cv, ok, err := s.getRaw(join(d.prefix, tableCounterSuffix(tm.ID))); err != nil {
			return err
		} else if ok {
			t.counters.decode(cv)
		}
		tables[strings.ToLower(tm.Name)] = t
		return nil
	})
	if err != nil {
		return err
	}
	objs := newDBState(s, d.meta)
	if err := s.scan(join(d.prefix, []byte{secObj}), func(k, v []byte) error {
		return objs.loadObject(k[dbPrefixLen+1], v)
	}); err != nil {
		return err
	}
	var next uint32
	if v, ok, err := s.getRaw(join(d.prefix, stateNextTableID)); err != nil {
		return err
	} else if ok && len(v) == 4 {
		next = uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	}
	d.mu.Lock()
	d.tables = tables
	d.views, d.triggers, d.procs, d.fks = objs.views, objs.triggers, objs.procs, objs.fks
	d.nextTableID = next
	d.mu.Unlock()
	return nil
}

// Promote makes a replica database take its own writes: the master that
// shipped to it is gone (failover) or handed over. Its term goes up, so
// records of the old master's term are told apart, and the in-doubt
// transactions replicated to it are loaded with their locks, to be
// resolved by their coordinators. Promoting a master is a no-op.
func (s *Store) Promote(name string) (Position, error) { return s.promote(name, 0, false, nil) }

// ErrStaleEpoch: a promotion at an epoch older than the copy's term (a
// master aggregator acting on old metadata).
var ErrStaleEpoch = errors.New("the copy has a newer term than the epoch it is promoted at")

// PromoteAt promotes at the partition's epoch in the cluster metadata:
// the copy's term becomes epoch, so every term of a partition's log was
// written by the one master raft named at that epoch, and two promotions
// never share a term. A master whose term is below epoch moves its term
// up to it; a copy whose term is above it refuses (ErrStaleEpoch).
func (s *Store) PromoteAt(name string, epoch uint64) (Position, error) {
	return s.promote(name, epoch, true, nil)
}

// promote makes name master (at epoch when atEpoch, else at its term + 1
// if it is a replica). With an incarnation (the master aggregator's
// confirmation, PromoteConfirmed) it also clears the copy's suspicion,
// unless the incarnation is stale: then nothing changes. A promotion to a
// term newer than the one that deposed the copy clears that.
//
// It loads the copy's in-doubt parts in the same critical section
// (commitMu) as it stops being a replica: no commit and no replication
// record comes in between, and the parts hold their row locks before the
// copy takes its first write. A lock they need can only be held by a
// transaction that wrote the copy as a replica, which cannot commit here
// (writesAfter); the part takes it over instead of waiting for it
// (DESIGN.md, "in doubt across a failover": loading after, and waiting
// for such a lock under promoteMu, left parts never loaded).
func (s *Store) promote(name string, epoch uint64, atEpoch bool, incarnation *uint64) (Position, error) {
	d := s.database(name)
	if d == nil {
		return Position{}, sql.ErrDatabaseNotFound.New(name)
	}
	s.notice() // a pause that just ended counts before the confirmation
	s.promoteMu.Lock()
	defer s.promoteMu.Unlock()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if incarnation != nil && *incarnation != s.fence.incarnation.Load() {
		return Position{}, fmt.Errorf("promote %s at epoch %d: incarnation %d, now %d: %w", name, epoch, *incarnation, s.fence.incarnation.Load(), ErrStaleIncarnation)
	}
	if s.SnapshotPending(name) { // under commitMu: no snapshot begins or ends meanwhile
		return Position{}, fmt.Errorf("promote %s: %w", name, ErrProvisioning)
	}
	if atEpoch && d.pos.Term > epoch {
		return Position{}, fmt.Errorf("promote %s at epoch %d: term %d: %w", name, epoch, d.pos.Term, ErrStaleEpoch)
	}
	wasReplica := d.replica
	pos := d.pos
	switch {
	case atEpoch:
		pos.Term = epoch
	case d.replica:
		pos.Term++
	}
	confirm := func() {
		if incarnation != nil {
			d.suspect = false
			d.syncReadFence()
		}
		if d.deposedBy != 0 && pos.Term > d.deposedBy {
			d.deposedBy = 0
			d.syncReadFence()
		}
	}
	if !wasReplica && pos == d.pos {
		confirm()
		return pos, nil
	}
	var parts []preparedPart
	if wasReplica {
		// read (and checked) before anything changes: a record that
		// cannot be loaded leaves the copy a replica
		var err error
		if parts, err = s.readPrepared([]*dbState{d}); err != nil {
			return Position{}, fmt.Errorf("promote %s: %w", name, err)
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(join(d.prefix, stateReplica), nil)
	b.Set(join(d.prefix, statePosition), encodePosition(pos, d.commits), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return Position{}, fmt.Errorf("promote %s: %w", name, err)
	}
	d.replica, d.pos, d.visible = false, pos, pos
	confirm()
	d.syncReadFence()
	if wasReplica {
		s.installPrepared(parts)
		// after the parts took their locks: every transaction that could
		// hold one of them began before this
		d.writesAfter = s.txnSeq.Load()
	}
	return pos, nil
}

// ErrInDoubt: a master cannot hand over while transactions are in doubt
// in it (their outcome is this copy's to apply).
var ErrInDoubt = errors.New("transactions are in doubt in it")

// Demote makes a master database a replica so that its replica can take
// over without losing a write (a planned hand-over; Promote on the other
// side). New writes are refused at once; the in-doubt transactions are
// given until ctx ends to be resolved by their coordinators, then the
// database becomes a replica at its final position, which is returned.
// If they are not resolved in time the database stays master
// (ErrInDoubt). Demoting a replica returns its position.
func (s *Store) Demote(ctx context.Context, name string) (Position, error) {
	d := s.database(name)
	if d == nil {
		return Position{}, sql.ErrDatabaseNotFound.New(name)
	}
	s.commitMu.Lock()
	if d.replica {
		pos := d.pos
		s.commitMu.Unlock()
		return pos, nil
	}
	d.handingOver = true
	s.commitMu.Unlock()
	undo := func() {
		s.commitMu.Lock()
		d.handingOver = false
		s.commitMu.Unlock()
	}
	span := join(d.prefix, []byte{secState, 'x'})
	for {
		// no new prepared record can appear; wait for the last to go
		inDoubt := false
		if err := s.scan(span, func(k, v []byte) error { inDoubt = true; return nil }); err != nil {
			undo()
			return Position{}, fmt.Errorf("demote %s: %w", name, err)
		}
		if !inDoubt {
			break
		}
		select {
		case <-ctx.Done():
			undo()
			return Position{}, fmt.Errorf("demote %s: %w", name, ErrInDoubt)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if err := s.db.Set(join(d.prefix, stateReplica), []byte{1}, pebble.Sync); err != nil {
		d.handingOver = false
		return Position{}, fmt.Errorf("demote %s: %w", name, err)
	}
	d.replica, d.handingOver, d.visible, d.suspect = true, false, d.pos, false
	d.syncReadFence()
	return d.pos, nil
}

// MarkReplica makes a master database a replica as it is, at its
// position: a copy seeded from another node's snapshot is never a master
// by itself; the cluster's replication takes it from there (catching up
// from its position when the master's log still has it). Its in-doubt
// parts stay, as a replica's replicated prepare records do.
func (s *Store) MarkReplica(name string) error {
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if d.replica {
		return nil
	}
	if err := s.db.Set(join(d.prefix, stateReplica), []byte{1}, pebble.Sync); err != nil {
		return fmt.Errorf("mark %s a replica: %w", name, err)
	}
	d.replica, d.visible, d.suspect, d.deposedBy = true, d.pos, false, 0
	d.syncReadFence()
	return nil
}
