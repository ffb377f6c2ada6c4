package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/dolthub/go-mysql-server/sql"
)

// Prepared transactions are the participant half of Canopy's two-phase
// commit (DESIGN.md): PREPARE makes a transaction's write set durable and
// keeps its row locks; the transaction is then in doubt until COMMIT
// PREPARED applies it (as an ordinary commit) or ROLLBACK PREPARED drops
// it. The record of each database the transaction wrote lives in that
// database's key span and is written by a logged commit, so it reaches the
// partition's replicas: a replica promoted after its master died reloads
// the in-doubt part and the coordinator's decision still applies. A node
// that restarts reloads its in-doubt transactions and takes their locks
// again before serving.
//
//	<db prefix> 0x04 'x' <xid>   prepared part of a transaction (JSON preparedRecord)
//	0x00 'X' <xid>               a coordinator's commit decision (JSON: the leaves)

func preparedSuffix(xid string) []byte { return append([]byte{secState, 'x'}, xid...) }
func decisionKey(xid string) []byte    { return append([]byte{spaceGlobal, 'X'}, xid...) }

// preparedRecord is one database's part of a prepared transaction; keys
// are relative to the database prefix.
type preparedRecord struct {
	Entries   []preparedKV `json:"entries"`
	RangeDels [][2][]byte  `json:"range_dels,omitempty"`
	Locked    [][]byte     `json:"locked"`
	Rows      []rowDelta   `json:"rows,omitempty"`
	UnixNanos int64        `json:"unix_nanos"`
}

type preparedKV struct {
	Key   []byte `json:"k"`
	Value []byte `json:"v,omitempty"`
	Del   bool   `json:"d,omitempty"`
}

type rowDelta struct {
	Table uint32 `json:"table"`
	Delta int64  `json:"delta"`
}

type preparedTxn struct {
	t     *Txn
	since time.Time
	keys  [][]byte // the prepared records, deleted by the outcome
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
	now := time.Now().UnixNano()
	recs := map[uint32]*preparedRecord{}
	rec := func(key []byte) (*preparedRecord, bool) {
		if len(key) < dbPrefixLen || key[0] != spaceDB {
			return nil, false
		}
		id := binary.BigEndian.Uint32(key[1:dbPrefixLen])
		r := recs[id]
		if r == nil {
			r = &preparedRecord{UnixNanos: now}
			recs[id] = r
		}
		return r, true
	}
	ok := true
	if t.ws != nil {
		t.ws.Scan(func(e *kv) bool {
			r, good := rec(e.key)
			if good {
				r.Entries = append(r.Entries, preparedKV{Key: e.key[dbPrefixLen:], Value: e.val, Del: e.del})
			}
			ok = good
			return good
		})
	}
	for _, rd := range t.rangeDels {
		r, good := rec(rd.lo)
		if !good {
			return ErrNotPreparable
		}
		r.RangeDels = append(r.RangeDels, [2][]byte{rd.lo[dbPrefixLen:], rd.hi[dbPrefixLen:]})
	}
	if !ok {
		return ErrNotPreparable
	}
	for ts, d := range t.rows {
		r, _ := rec(ts.db.prefix)
		r.Rows = append(r.Rows, rowDelta{Table: ts.meta.ID, Delta: d})
	}
	for _, k := range t.locked {
		if r, good := rec([]byte(k)); good {
			r.Locked = append(r.Locked, []byte(k)[dbPrefixLen:])
		}
	}
	s.commitMu.Lock()
	err := t.checkVersions()
	for id := range recs {
		// the records' own commit checks the databases for a fresh
		// transaction; t itself must not predate a promotion
		if d := s.databaseByID(id); err == nil && d != nil && uint64(t.id) <= d.writesAfter {
			err = errPromoted(d.meta.Name)
		}
	}
	s.commitMu.Unlock()
	if err != nil {
		return err
	}
	// one logged commit writes every database's record (and waits for the
	// synchronous replicas, like any commit)
	w := s.Begin(false)
	var keys [][]byte
	for id, r := range recs {
		d := s.databaseByID(id)
		if d == nil {
			return errTableDefChanged
		}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		k := join(d.prefix, preparedSuffix(xid))
		w.set(k, v)
		keys = append(keys, k)
	}
	if err := s.commit(w); err != nil {
		w.finish()
		return fmt.Errorf("prepare %s: %w", xid, err)
	}
	w.finish()
	s.preparedMu.Lock()
	s.prepared[xid] = &preparedTxn{t: t, since: time.Now(), keys: keys}
	s.preparedMu.Unlock()
	return nil
}

func (s *Store) takePrepared(xid string) *preparedTxn {
	s.preparedMu.Lock()
	defer s.preparedMu.Unlock()
	p := s.prepared[xid]
	delete(s.prepared, xid)
	return p
}

// IsPrepared reports whether xid is in doubt here.
func (s *Store) IsPrepared(xid string) bool {
	s.preparedMu.Lock()
	defer s.preparedMu.Unlock()
	return s.prepared[xid] != nil
}

// PreparedDatabases names the databases the in-doubt transaction xid
// wrote here (none when it is not in doubt here).
func (s *Store) PreparedDatabases(xid string) []string {
	s.preparedMu.Lock()
	p := s.prepared[xid]
	var keys [][]byte
	if p != nil {
		keys = p.keys
	}
	s.preparedMu.Unlock()
	var out []string
	for _, k := range keys {
		if d := s.databaseByID(binary.BigEndian.Uint32(k[1:dbPrefixLen])); d != nil {
			out = append(out, d.meta.Name)
		}
	}
	return out
}

// ErrPreparedOnReplica: a replica database holds a part of the in-doubt
// transaction. Its master applies the outcome and ships it; if the master
// failed, the part is applied after the replica's promotion. Either way
// the coordinator must ask again.
var ErrPreparedOnReplica = errors.New("a replica partition here holds part of it; retry once its master has shipped the outcome or it has been promoted")

// CommitPrepared applies the in-doubt transaction xid. An unknown xid was
// already resolved (or never wrote anything here): nothing to do, unless a
// replica here holds a part of it (ErrPreparedOnReplica).
func (s *Store) CommitPrepared(xid string) error {
	// a promotion loads its parts while holding promoteMu: the xid is
	// either loaded already or still held by a replica
	s.promoteMu.RLock()
	p := s.takePrepared(xid)
	var holder string
	var err error
	if p == nil {
		holder, err = s.replicaHoldingPrepared(xid)
	}
	s.promoteMu.RUnlock()
	if err != nil {
		return fmt.Errorf("commit prepared %s: %w", xid, err)
	}
	if holder != "" {
		return fmt.Errorf("commit prepared %s: database %s: %w", xid, holder, ErrPreparedOnReplica)
	}
	if p == nil {
		// applied already (or never here): a retry whose first answer was
		// lost, or refused because a replica did not confirm it. It is
		// acknowledged only once the replicas have it, as the first was
		// to be: answered at once, the coordinator would forget its
		// decision, and a replica promoted without the outcome would
		// roll its part back (presumed abort) while the others committed.
		if applied := s.recentOutcome(xid); applied != nil {
			if err := s.waitReplicas(applied); err != nil {
				return fmt.Errorf("commit prepared %s: %w", xid, err)
			}
		}
		return nil
	}
	t := p.t
	t.outcome = true
	for _, k := range p.keys {
		t.del(k)
	}
	b := s.db.NewBatch()
	defer b.Close()
	s.commitMu.Lock()
	applied, err := s.commitLocked(t, b)
	s.commitMu.Unlock()
	if err != nil {
		// keep it in doubt, locks held: the coordinator retries
		s.preparedMu.Lock()
		s.prepared[xid] = p
		s.preparedMu.Unlock()
		return fmt.Errorf("commit prepared %s: %w", xid, err)
	}
	defer t.finish()
	s.rememberOutcome(xid, applied)
	if err := s.syncWait(b); err != nil {
		return err
	}
	return s.waitReplicas(applied)
}

// maxOutcomes bounds the outcomes remembered for retried COMMIT PREPAREDs
// (a coordinator retries within seconds).
const maxOutcomes = 10000

// rememberOutcome notes where the outcome of xid was applied.
func (s *Store) rememberOutcome(xid string, applied []dbCommit) {
	s.outcomesMu.Lock()
	defer s.outcomesMu.Unlock()
	if s.outcomes == nil {
		s.outcomes = map[string][]dbCommit{}
	}
	if _, ok := s.outcomes[xid]; !ok {
		s.outcomeOrder = append(s.outcomeOrder, xid)
	}
	s.outcomes[xid] = applied
	for len(s.outcomeOrder) > maxOutcomes {
		delete(s.outcomes, s.outcomeOrder[0])
		s.outcomeOrder = s.outcomeOrder[1:]
	}
}

func (s *Store) recentOutcome(xid string) []dbCommit {
	s.outcomesMu.Lock()
	defer s.outcomesMu.Unlock()
	return s.outcomes[xid]
}

// replicaHoldingPrepared names a replica database that holds a prepared
// record of xid, or "".
func (s *Store) replicaHoldingPrepared(xid string) (string, error) {
	for _, d := range s.databases() {
		s.commitMu.Lock()
		replica := d.replica && !d.dropped
		s.commitMu.Unlock()
		if !replica {
			continue
		}
		if _, ok, err := s.getRaw(join(d.prefix, preparedSuffix(xid))); err != nil {
			return "", err
		} else if ok {
			return d.meta.Name, nil
		}
	}
	return "", nil
}

// RollbackPrepared drops the in-doubt transaction xid.
func (s *Store) RollbackPrepared(xid string) error {
	p := s.takePrepared(xid)
	if p == nil {
		return nil
	}
	w := s.Begin(false)
	w.outcome = true
	defer w.finish()
	for _, k := range p.keys {
		if d := s.databaseByID(binary.BigEndian.Uint32(k[1:dbPrefixLen])); d != nil && !d.dropped {
			w.del(k)
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	s.commitMu.Lock()
	applied, err := s.commitLocked(w, b)
	s.commitMu.Unlock()
	if err != nil {
		// nothing applied: still in doubt, locks held
		s.preparedMu.Lock()
		s.prepared[xid] = p
		s.preparedMu.Unlock()
		return fmt.Errorf("rollback prepared %s: %w", xid, err)
	}
	// applied: the part is gone whatever the waits say (it used to be put
	// back in doubt when a replica did not confirm, its records deleted,
	// and could stay so for good once one of its copies became a replica)
	defer p.t.finish()
	if err := s.syncWait(b); err != nil {
		return fmt.Errorf("rollback prepared %s: %w", xid, err)
	}
	if err := s.waitReplicas(applied); err != nil {
		return fmt.Errorf("rollback prepared %s: %w", xid, err)
	}
	return nil
}

// preparedPart is one database's record of an in-doubt transaction, read
// and checked (installPrepared cannot fail).
type preparedPart struct {
	xid    string
	key    []byte // the record's key
	d      *dbState
	rec    preparedRecord
	tables []*tableState // of rec.Rows, in order
}

// readPrepared reads the in-doubt parts recorded in the given databases.
func (s *Store) readPrepared(dbs []*dbState) ([]preparedPart, error) {
	var parts []preparedPart
	for _, d := range dbs {
		err := s.scan(join(d.prefix, []byte{secState, 'x'}), func(k, v []byte) error {
			part := preparedPart{xid: string(k[dbPrefixLen+2:]), key: append([]byte(nil), k...), d: d}
			if err := json.Unmarshal(v, &part.rec); err != nil {
				return fmt.Errorf("prepared transaction %s in %s: %w", part.xid, d.meta.Name, err)
			}
			for _, r := range part.rec.Rows {
				var ts *tableState
				d.mu.RLock()
				for _, c := range d.tables {
					if c.meta.ID == r.Table {
						ts = c
					}
				}
				d.mu.RUnlock()
				if ts == nil {
					return fmt.Errorf("prepared transaction %s: table %d of %s is gone", part.xid, r.Table, d.meta.Name)
				}
				part.tables = append(part.tables, ts)
			}
			parts = append(parts, part)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// installPrepared makes the parts in doubt here, with their row locks;
// parts of one transaction in several databases become one. It waits for
// no lock: at start nothing holds one, and at a promotion (under commitMu,
// before the copy takes a write) a lock on the copy's rows can only be
// held by a transaction begun before, one that wrote the copy as a
// replica, which can never commit there (dbState.writesAfter): the part
// takes the lock over.
func (s *Store) installPrepared(parts []preparedPart) {
	for _, part := range parts {
		d, rec := part.d, part.rec
		s.preparedMu.Lock()
		p := s.prepared[part.xid]
		if p == nil {
			p = &preparedTxn{t: s.Begin(false), since: time.Unix(0, rec.UnixNanos)}
			s.prepared[part.xid] = p
		}
		p.keys = append(p.keys, part.key)
		t := p.t
		for _, e := range rec.Entries {
			if e.Del {
				t.del(join(d.prefix, e.Key))
			} else {
				t.set(join(d.prefix, e.Key), e.Value)
			}
		}
		for _, rd := range rec.RangeDels {
			t.deleteRange(join(d.prefix, rd[0]), join(d.prefix, rd[1]))
		}
		for i, r := range rec.Rows {
			t.touch(part.tables[i], r.Delta)
		}
		for _, k := range rec.Locked {
			key := string(join(d.prefix, k))
			if s.locks.Take(t.id, key) {
				t.locked = append(t.locked, key)
			}
		}
		s.preparedMu.Unlock()
		if s.log != nil {
			s.log.Warn("in-doubt transaction loaded; waiting for its coordinator", "xid", part.xid, "database", d.meta.Name, "keys", len(rec.Entries))
		}
	}
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
		if p.t.ws != nil { // write set and the prepared records' deletions
			n = p.t.ws.Len()
		}
		out = append(out, PreparedInfo{XID: xid, Since: p.since, Keys: n})
	}
	s.preparedMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
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
// prepared is false when the transaction wrote nothing: it is simply
// over, and nothing is in doubt.
func (s *Session) PrepareSession(ctx *sql.Context, xid string) (prepared bool, _ error) {
	t := s.txn
	if t == nil {
		if tx, ok := s.GetTransaction().(*Txn); ok {
			t = tx
		}
	}
	if t == nil {
		return false, nil
	}
	prepared = !t.empty()
	if err := s.store.Prepare(t, xid); err != nil {
		return false, err
	}
	s.txn = nil
	s.SetTransaction(nil)
	s.SetIgnoreAutoCommit(false)
	return prepared, nil
}
