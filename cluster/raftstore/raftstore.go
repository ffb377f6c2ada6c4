// Package raftstore keeps hashicorp/raft's log and stable state in the
// node's pebble DB (one storage engine per node, one fsync policy), under
// the node-global key prefix 0x00 'R'.
package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

var (
	logPrefix    = []byte{0x00, 'R', 'l'}
	stablePrefix = []byte{0x00, 'R', 's'}
)

// Store implements raft.LogStore and raft.StableStore.
type Store struct {
	db *pebble.DB
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// New returns raft storage on db.
func New(db *pebble.DB) *Store { return &Store{db: db} }

func logKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), logPrefix...), index)
}

func (s *Store) edge(last bool) (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logPrefix, UpperBound: []byte{0x00, 'R', 'm'}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	ok := it.First()
	if last {
		ok = it.Last()
	}
	if !ok {
		return 0, it.Error()
	}
	return binary.BigEndian.Uint64(it.Key()[len(logPrefix):]), nil
}

func (s *Store) FirstIndex() (uint64, error) { return s.edge(false) }
func (s *Store) LastIndex() (uint64, error)  { return s.edge(true) }

func (s *Store) GetLog(index uint64, l *raft.Log) error {
	v, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return decodeLog(v, l)
}

func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *Store) StoreLogs(logs []*raft.Log) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, l := range logs {
		if err := b.Set(logKey(l.Index), encodeLog(l), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

func (s *Store) DeleteRange(min, max uint64) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(logKey(min), logKey(max+1), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

func (s *Store) Set(key, val []byte) error {
	return s.db.Set(append(append([]byte(nil), stablePrefix...), key...), val, pebble.Sync)
}

func (s *Store) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(append(append([]byte(nil), stablePrefix...), key...))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil || len(v) == 0 {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: bad uint64 of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// log encoding: index, term, type, appended-at (varints), then data and
// extensions (length-prefixed).
func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, 32+len(l.Data)+len(l.Extensions))
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = binary.AppendUvarint(b, uint64(l.Type))
	b = binary.AppendVarint(b, l.AppendedAt.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

func decodeLog(b []byte, l *raft.Log) error {
	var n int
	u := func() (uint64, error) {
		v, m := binary.Uvarint(b[n:])
		if m <= 0 {
			return 0, errors.New("raftstore: truncated log entry")
		}
		n += m
		return v, nil
	}
	var err error
	if l.Index, err = u(); err != nil {
		return err
	}
	if l.Term, err = u(); err != nil {
		return err
	}
	t, err := u()
	if err != nil {
		return err
	}
	l.Type = raft.LogType(t)
	at, m := binary.Varint(b[n:])
	if m <= 0 {
		return errors.New("raftstore: truncated log entry")
	}
	n += m
	l.AppendedAt = time.Unix(0, at)
	for _, dst := range []*[]byte{&l.Data, &l.Extensions} {
		ln, err := u()
		if err != nil {
			return err
		}
		if uint64(len(b)-n) < ln {
			return errors.New("raftstore: truncated log entry")
		}
		*dst = append([]byte(nil), b[n:n+int(ln)]...)
		n += int(ln)
	}
	return nil
}

// appliedKey holds the state machine's last applied index and its encoded
// state, so a restarted member serves its metadata before it hears from
// the leader (raft only learns what is committed from the leader).
var appliedKey = []byte{0x00, 'R', 'a'}

// SaveApplied records the state machine after applying index. It is
// synced: raft does not restore its snapshots on start (the record is newer),
// so the record must never fall behind the latest snapshot.
func (s *Store) SaveApplied(index uint64, state []byte) error {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(state)), index)
	return s.db.Set(appliedKey, append(v, state...), pebble.Sync)
}

// LoadApplied returns the last SaveApplied record; ok false if none.
func (s *Store) LoadApplied() (index uint64, state []byte, ok bool, err error) {
	v, closer, err := s.db.Get(appliedKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	defer closer.Close()
	if len(v) < 8 {
		return 0, nil, false, fmt.Errorf("raft applied record: %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), append([]byte(nil), v[8:]...), true, nil
}

// Reset forgets every raft record (log, stable state, applied state): a
// member that was replaced while it was away rejoins as a blank follower
// and gets the leader's snapshot.
func (s *Store) Reset() error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range [][]byte{logPrefix, stablePrefix} {
		end := append([]byte(nil), p...)
		end[len(end)-1]++ // the prefix's successor
		if err := b.DeleteRange(p, end, nil); err != nil {
			return err
		}
	}
	if err := b.Delete(appliedKey, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}
