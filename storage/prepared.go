package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/dolthub/go-mysql-server/sql"
)

// Prepared transactions are the participant half of Canopy's two-phase
// commit (DESIGN.md): PREPARE makes a transaction's write set durable
// under a node-global key and keeps its row locks; the transaction is then
// in doubt until COMMIT PREPARED applies it (as an ordinary commit, with
// its partition log records) or ROLLBACK PREPARED drops it. A node that
// restarts reloads its in-doubt transactions and takes their locks again
// before serving, so nothing can slip between a prepare and its outcome.
//
//	0x00 'x' <xid>   prepared transaction (JSON preparedRecord)
//	0x00 'X' <xid>   a coordinator's commit decision (JSON: the leaves)

func preparedKey(xid string) []byte { return append([]byte{spaceGlobal, 'x'}, xid...) }
func decisionKey(xid string) []byte { return append([]byte{spaceGlobal, 'X'}, xid...) }

type preparedRecord struct {
	Entries   []preparedKV `json:"entries"`
	RangeDels [][2][]byte  `json:"range_dels,omitempty"`
	Locked    []string     `json:"locked"`
	Rows      []rowDelta   `json:"rows,omitempty"`
	UnixNanos int64        `json:"unix_nanos"`
}

type preparedKV struct {
	Key   []byte `json:"k"`
	Value []byte `json:"v,omitempty"`
	Del   bool   `json:"d,omitempty"`
}

type rowDelta struct {
	DB    uint32 `json:"db"`
	Table uint32 `json:"table"`
	Delta int64  `json:"delta"`
}

type preparedTxn struct {
	t     *Txn
	since time.Time
}

// ErrNotPreparable is returned for a transaction that changed schemas:
// DDL commits on its own and never takes part in a distributed commit.
var ErrNotPreparable = errors.New("a transaction with schema changes cannot be prepared")

// Prepare makes t durable as the in-doubt transaction xid. An empty
// (read-only) transaction simply ends: its outcome does not matter.
func (s *Store) Prepare(t *Txn, xid string) error {
	if t.empty() {
		t.finish()
		return nil
	}
	if len(t.onApplied) > 0 || len(t.dropping) > 0 {
		return ErrNotPreparable
	}
	rec := preparedRecord{Locked: t.locked, UnixNanos: time.Now().UnixNano()}
	if t.ws != nil {
		t.ws.Scan(func(e *kv) bool {
			rec.Entries = append(rec.Entries, preparedKV{Key: e.key, Value: e.val, Del: e.del})
			return true
		})
	}
	for _, rd := range t.rangeDels {
		rec.RangeDels = append(rec.RangeDels, [2][]byte{rd.lo, rd.hi})
	}
	for ts, d := range t.rows {
		rec.Rows = append(rec.Rows, rowDelta{DB: ts.db.meta.ID, Table: ts.meta.ID, Delta: d})
	}
	for _, e := range rec.Entries {
		if len(e.Key) == 0 || e.Key[0] != spaceDB {
			return ErrNotPreparable
		}
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	s.commitMu.Lock()
	err = t.checkVersions()
	s.commitMu.Unlock()
	if err != nil {
		return err
	}
	if err := s.db.Set(preparedKey(xid), v, pebble.Sync); err != nil {
		return fmt.Errorf("prepare %s: %w", xid, err)
	}
	s.preparedMu.Lock()
	s.prepared[xid] = &preparedTxn{t: t, since: time.Now()}
	s.preparedMu.Unlock()
	return nil
}

func (s *Store) takePrepared(xid string) *Txn {
	s.preparedMu.Lock()
	defer s.preparedMu.Unlock()
	p := s.prepared[xid]
	delete(s.prepared, xid)
	if p == nil {
		return nil
	}
	return p.t
}

// IsPrepared reports whether xid is in doubt here.
func (s *Store) IsPrepared(xid string) bool {
	s.preparedMu.Lock()
	defer s.preparedMu.Unlock()
	return s.prepared[xid] != nil
}

// CommitPrepared applies the in-doubt transaction xid. An unknown xid was
// already resolved (or never wrote anything): nothing to do.
func (s *Store) CommitPrepared(xid string) error {
	t := s.takePrepared(xid)
	if t == nil {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(preparedKey(xid), nil); err != nil {
		return err
	}
	s.commitMu.Lock()
	err := s.commitLocked(t, b)
	s.commitMu.Unlock()
	if err != nil {
		// keep it in doubt, locks held: the coordinator retries
		s.preparedMu.Lock()
		s.prepared[xid] = &preparedTxn{t: t, since: time.Now()}
		s.preparedMu.Unlock()
		return fmt.Errorf("commit prepared %s: %w", xid, err)
	}
	t.finish()
	return s.syncWait(b)
}

// RollbackPrepared drops the in-doubt transaction xid.
func (s *Store) RollbackPrepared(xid string) error {
	t := s.takePrepared(xid)
	if err := s.db.Delete(preparedKey(xid), pebble.Sync); err != nil {
		return fmt.Errorf("rollback prepared %s: %w", xid, err)
	}
	if t != nil {
		t.finish()
	}
	return nil
}

// PreparedInfo describes one in-doubt transaction.
type PreparedInfo struct {
	XID   string
	Since time.Time
	Keys  int
}

// Prepared lists the in-doubt transactions, oldest first.
func (s *Store) Prepared() []PreparedInfo {
	s.preparedMu.Lock()
	out := make([]PreparedInfo, 0, len(s.prepared))
	for xid, p := range s.prepared {
		n := 0
		if p.t.ws != nil {
			n = p.t.ws.Len()
		}
		out = append(out, PreparedInfo{XID: xid, Since: p.since, Keys: n})
	}
	s.preparedMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// loadPrepared rebuilds the in-doubt transactions after a restart, with
// their locks.
func (s *Store) loadPrepared() error {
	lo := []byte{spaceGlobal, 'x'}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		xid := string(it.Key()[2:])
		var rec preparedRecord
		if err := json.Unmarshal(it.Value(), &rec); err != nil {
			return fmt.Errorf("prepared transaction %s: %w", xid, err)
		}
		t := s.Begin(false)
		for _, e := range rec.Entries {
			if e.Del {
				t.del(e.Key)
			} else {
				t.set(e.Key, e.Value)
			}
		}
		for _, rd := range rec.RangeDels {
			t.deleteRange(rd[0], rd[1])
		}
		for _, r := range rec.Rows {
			d := s.byID[r.DB]
			if d == nil {
				return fmt.Errorf("prepared transaction %s: database %d is gone", xid, r.DB)
			}
			var ts *tableState
			for _, c := range d.tables {
				if c.meta.ID == r.Table {
					ts = c
				}
			}
			if ts == nil {
				return fmt.Errorf("prepared transaction %s: table %d of %s is gone", xid, r.Table, d.meta.Name)
			}
			t.touch(ts, r.Delta)
		}
		for _, k := range rec.Locked {
			if err := t.lock(context.Background(), []byte(k)); err != nil {
				return fmt.Errorf("prepared transaction %s: lock: %w", xid, err)
			}
		}
		s.prepared[xid] = &preparedTxn{t: t, since: time.Unix(0, rec.UnixNanos)}
		if s.log != nil {
			s.log.Warn("in-doubt transaction reloaded; waiting for its coordinator", "xid", xid, "keys", len(rec.Entries))
		}
	}
	return it.Error()
}

// SaveDecision durably records a coordinator's decision to commit xid on
// the given nodes.
func (s *Store) SaveDecision(xid string, nodes []string) error {
	v, err := json.Marshal(nodes)
	if err != nil {
		return err
	}
	return s.db.Set(decisionKey(xid), v, pebble.Sync)
}

// ForgetDecision drops a decision every participant has applied.
func (s *Store) ForgetDecision(xid string) error {
	return s.db.Delete(decisionKey(xid), pebble.NoSync)
}

// HasDecision reports whether a commit decision for xid is recorded.
func (s *Store) HasDecision(xid string) (bool, error) {
	_, closer, err := s.db.Get(decisionKey(xid))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// Decisions lists the recorded commit decisions (xid → nodes).
func (s *Store) Decisions() (map[string][]string, error) {
	lo := []byte{spaceGlobal, 'X'}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string][]string{}
	for it.First(); it.Valid(); it.Next() {
		var nodes []string
		if err := json.Unmarshal(it.Value(), &nodes); err != nil {
			return nil, fmt.Errorf("decision %s: %w", it.Key()[2:], err)
		}
		out[string(it.Key()[2:])] = nodes
	}
	return out, it.Error()
}

// PrepareSession prepares the session's open transaction as xid and ends
// it for the session: the connection is free, the transaction in doubt.
func (s *Session) PrepareSession(ctx *sql.Context, xid string) error {
	t := s.txn
	if t == nil {
		if tx, ok := s.GetTransaction().(*Txn); ok {
			t = tx
		}
	}
	if t == nil {
		return nil
	}
	if err := s.store.Prepare(t, xid); err != nil {
		return err
	}
	s.txn = nil
	s.SetTransaction(nil)
	s.SetIgnoreAutoCommit(false)
	return nil
}
