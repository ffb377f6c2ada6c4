package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/dolthub/go-mysql-server/sql"
)

// Snapshots and log truncation. A database's log is not kept forever:
// records every replica has (and a retention margin) are deleted. A copy
// too far behind for the log, or a new one, is provisioned from a
// snapshot instead: every key of the database as of one position, then
// the log from there.
//
// Installing a snapshot is not atomic (a large one spans many batches):
// the copy is marked while it happens, and a marked copy is wiped and
// provisioned again, so a crash mid-way never leaves half a database
// that claims a position.

// stateSnapshot marks a replica whose snapshot is being installed;
// stateLogBase is the position the last snapshot installed (the log
// starts after it), so a source can still check a copy at that position.
var (
	stateSnapshot = []byte{secState, 'S'}
	stateLogBase  = []byte{secState, 'b'}
)

// ErrProvisioning: a copy whose snapshot is not complete holds nothing
// usable and must not become a master.
var ErrProvisioning = errors.New("its snapshot is not complete")

// snapshotSkips reports whether a key (relative to its database prefix)
// stays out of a snapshot: the log, and the state that says what the copy
// is rather than what it holds.
func snapshotSkips(k []byte) bool {
	return len(k) > 0 && k[0] == secLog ||
		bytes.Equal(k, statePosition) || bytes.Equal(k, stateReplica) || bytes.Equal(k, stateSnapshot) ||
		bytes.Equal(k, stateLogBase)
}

// FirstLogLSN is the LSN of the oldest log record name still holds; its
// position's LSN + 1 when it holds none.
func (s *Store) FirstLogLSN(name string) (uint64, error) {
	d := s.database(name)
	if d == nil {
		return 0, sql.ErrDatabaseNotFound.New(name)
	}
	s.commitMu.Lock()
	next := d.pos.LSN + 1
	s.commitMu.Unlock()
	lo := join(d.prefix, []byte{secLog})
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.First() {
		return next, it.Error()
	}
	k := it.Key()
	if len(k) != len(lo)+8 {
		return 0, fmt.Errorf("log of %s: bad key %x", name, k)
	}
	return binary.BigEndian.Uint64(k[len(lo):]), nil
}

// LogBase is the position the last snapshot installed in name, if any.
func (s *Store) LogBase(name string) (Position, bool) {
	d := s.database(name)
	if d == nil {
		return Position{}, false
	}
	v, ok, err := s.getRaw(join(d.prefix, stateLogBase))
	if err != nil || !ok {
		return Position{}, false
	}
	p, _, err := decodePosition(v)
	return p, err == nil
}

// TruncateLog deletes name's log records with LSN from from up to and
// including upTo (from: where the last truncation ended, 0 for all).
// Deleting is idempotent and the records are redundant with the data, so
// it need not be synced.
func (s *Store) TruncateLog(name string, from, upTo uint64) error {
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	return s.db.DeleteRange(join(d.prefix, logSuffix(from)), join(d.prefix, logSuffix(upTo+1)), pebble.NoSync)
}

// Snapshot reads a database as of one position, in chunks.
type Snapshot struct {
	Pos     Position
	Commits uint64
	snap    *pebble.Snapshot
	it      *pebble.Iterator
	prefix  []byte
	// noPrepared: a backup's snapshot leaves out the in-doubt parts of
	// distributed transactions (their decision had not been taken at the
	// cut, so they are rolled back by it)
	noPrepared bool
}

// OpenBackupSnapshots snapshots master databases for a backup, all at the
// same instant (one commit touching several of them is in all or none):
// what each holds committed, without its in-doubt transactions. Each
// snapshot is closed on its own.
func (s *Store) OpenBackupSnapshots(names []string) ([]*Snapshot, error) {
	dbs := make([]*dbState, len(names))
	for i, name := range names {
		if dbs[i] = s.database(name); dbs[i] == nil {
			return nil, sql.ErrDatabaseNotFound.New(name)
		}
	}
	out := make([]*Snapshot, len(names))
	s.commitMu.Lock()
	for i, d := range dbs {
		if d.replica {
			s.commitMu.Unlock()
			return nil, fmt.Errorf("backup of %s: %w", names[i], ErrNotMaster)
		}
	}
	for i, d := range dbs {
		// one pebble snapshot each (they close one by one), taken while
		// no commit can come between them
		out[i] = &Snapshot{Pos: d.pos, Commits: d.commits, snap: s.db.NewSnapshot(), prefix: d.prefix, noPrepared: true}
	}
	s.commitMu.Unlock()
	for i, sn := range out {
		it, err := sn.snap.NewIter(&pebble.IterOptions{LowerBound: sn.prefix, UpperBound: prefixEnd(sn.prefix)})
		if err != nil {
			for _, o := range out {
				if o.it != nil {
					o.it.Close()
				}
				o.snap.Close()
			}
			return nil, fmt.Errorf("backup of %s: %w", names[i], err)
		}
		sn.it = it
		it.First()
	}
	return out, nil
}

// ErrNotMaster: a backup is taken of master copies only.
var ErrNotMaster = errors.New("this copy is a replica, not the partition's master")

// OpenSnapshot takes a snapshot of name at its current position.
func (s *Store) OpenSnapshot(name string) (*Snapshot, error) {
	d := s.database(name)
	if d == nil {
		return nil, sql.ErrDatabaseNotFound.New(name)
	}
	if s.SnapshotPending(name) {
		return nil, fmt.Errorf("snapshot of %s: %w", name, ErrProvisioning)
	}
	// commitMu orders commits, so the position and the keys agree
	s.commitMu.Lock()
	sn := &Snapshot{Pos: d.pos, Commits: d.commits, snap: s.db.NewSnapshot(), prefix: d.prefix}
	s.commitMu.Unlock()
	it, err := sn.snap.NewIter(&pebble.IterOptions{LowerBound: d.prefix, UpperBound: prefixEnd(d.prefix)})
	if err != nil {
		sn.snap.Close()
		return nil, err
	}
	sn.it = it
	it.First()
	return sn, nil
}

// Next returns the next chunk of about maxBytes of keys and values (keys
// relative to the database prefix), or nil at the end.
func (sn *Snapshot) Next(maxBytes int) ([]byte, error) {
	var out []byte
	for ; sn.it.Valid() && len(out) < maxBytes; sn.it.Next() {
		k := sn.it.Key()[len(sn.prefix):]
		if snapshotSkips(k) || sn.noPrepared && len(k) > 1 && k[0] == secState && k[1] == 'x' {
			continue
		}
		v := sn.it.Value()
		out = binary.AppendUvarint(out, uint64(len(k)))
		out = append(out, k...)
		out = binary.AppendUvarint(out, uint64(len(v)))
		out = append(out, v...)
	}
	return out, sn.it.Error()
}

// Close releases the snapshot.
func (sn *Snapshot) Close() {
	sn.it.Close()
	sn.snap.Close()
}

// checkInstalling refuses to write a snapshot into a copy that is not a
// replica being provisioned (it was promoted meanwhile, say).
func (s *Store) checkInstalling(d *dbState) error {
	s.commitMu.Lock()
	replica := d.replica
	s.commitMu.Unlock()
	if _, marked, err := s.getRaw(join(d.prefix, stateSnapshot)); err != nil || !marked || !replica {
		return fmt.Errorf("snapshot into %s: it is not a copy being provisioned (err %v)", d.meta.Name, err)
	}
	return nil
}

// SnapshotPending reports whether name is a replica whose snapshot was
// begun and not finished: it holds nothing usable.
func (s *Store) SnapshotPending(name string) bool {
	d := s.database(name)
	if d == nil {
		return false
	}
	_, ok, err := s.getRaw(join(d.prefix, stateSnapshot))
	return ok || err != nil
}

// BeginSnapshot empties replica name to receive a snapshot: everything it
// held goes, and it is marked until FinishSnapshot.
func (s *Store) BeginSnapshot(name string) error {
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.DeleteRange(d.prefix, prefixEnd(d.prefix), nil)
	b.Set(join(d.prefix, stateReplica), []byte{1}, nil)
	b.Set(join(d.prefix, stateSnapshot), []byte{1}, nil)
	b.Set(join(d.prefix, statePosition), encodePosition(Position{}, 0), nil)
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if !d.replica {
		return fmt.Errorf("snapshot into %s: %w", name, ErrNotReplica)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("snapshot into %s: %w", name, err)
	}
	d.pos, d.visible, d.commits = Position{}, Position{}, 0
	return nil
}

// ApplySnapshotChunk writes one chunk of a snapshot into name.
func (s *Store) ApplySnapshotChunk(name string, chunk []byte) error {
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	if err := s.checkInstalling(d); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for n := 0; n < len(chunk); {
		var kv [2][]byte
		for i := range kv {
			l, m := binary.Uvarint(chunk[n:])
			if m <= 0 || uint64(len(chunk)-n-m) < l {
				return fmt.Errorf("snapshot of %s: bad chunk at byte %d", name, n)
			}
			n += m
			kv[i] = chunk[n : n+int(l)]
			n += int(l)
		}
		if snapshotSkips(kv[0]) {
			return fmt.Errorf("snapshot of %s: unexpected key %x", name, kv[0])
		}
		if err := b.Set(join(d.prefix, kv[0]), kv[1], nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

// FinishSnapshot makes an installed snapshot name's content as of pos:
// its position and the end of the mark are synced together (and with
// every chunk before them), then its catalog is loaded afresh.
func (s *Store) FinishSnapshot(name string, pos Position, commits uint64) error {
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	if err := s.checkInstalling(d); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(join(d.prefix, stateSnapshot), nil)
	b.Set(join(d.prefix, statePosition), encodePosition(pos, commits), nil)
	b.Set(join(d.prefix, stateLogBase), encodePosition(pos, commits), nil)
	// the end of the mark and the position in memory change together: a
	// promotion sees either a pending copy or one at pos
	s.commitMu.Lock()
	if !d.replica {
		s.commitMu.Unlock()
		return fmt.Errorf("finish snapshot of %s: %w", name, ErrNotReplica)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		s.commitMu.Unlock()
		return fmt.Errorf("finish snapshot of %s: %w", name, err)
	}
	d.pos, d.commits = pos, commits
	s.commitMu.Unlock()
	// every table state is rebuilt: counters and versions come from the snapshot
	d.mu.Lock()
	d.tables = map[string]*tableState{}
	d.mu.Unlock()
	if err := s.reloadCatalog(d); err != nil {
		return fmt.Errorf("finish snapshot of %s: %w", name, err)
	}
	s.commitMu.Lock()
	d.visible = pos
	d.notifyCommit()
	s.commitMu.Unlock()
	return nil
}

// Checkpoint writes a consistent copy of the whole store to dir (which
// must not exist): pebble hard-links its files where it can, so it takes
// about the same time whatever the size. Commits wait while it is made,
// so the positions it returns are exactly those of the copy: every commit
// acknowledged before it began is in it, and none of the later ones.
func (s *Store) Checkpoint(dir string) ([]DatabaseInfo, error) {
	dbs := s.databases() // before commitMu, as everywhere
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	infos := databaseInfosLocked(dbs)
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return nil, fmt.Errorf("checkpoint to %s: %w", dir, err)
	}
	return infos, nil
}
