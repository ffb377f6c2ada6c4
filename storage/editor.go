package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
)

// editor applies INSERT, UPDATE, DELETE and REPLACE rows of one statement
// to the session's transaction.
type editor struct {
	t *Table
}

var _ sql.TableEditor = (*editor)(nil)

func (t *Table) Inserter(*sql.Context) sql.RowInserter { return &editor{t: t} }
func (t *Table) Updater(*sql.Context) sql.RowUpdater   { return &editor{t: t} }
func (t *Table) Deleter(*sql.Context) sql.RowDeleter   { return &editor{t: t} }
func (t *Table) Replacer(*sql.Context) sql.RowReplacer { return &editor{t: t} }

func (e *editor) StatementBegin(ctx *sql.Context) {
	if txn := txnFrom(ctx); txn != nil {
		txn.pushCheckpoint(stmtSeq(ctx))
	}
}

func (e *editor) DiscardChanges(ctx *sql.Context, _ error) error {
	if txn := txnFrom(ctx); txn != nil {
		txn.rollbackCheckpoint()
	}
	return nil
}

func (e *editor) StatementComplete(ctx *sql.Context) error {
	if txn := txnFrom(ctx); txn != nil {
		txn.completeEditorStatement()
	}
	return nil
}
func (e *editor) Close(*sql.Context) error { return nil }

func stmtSeq(ctx *sql.Context) uint64 {
	if s := sessionFrom(ctx); s != nil {
		return s.stmtSeq
	}
	return 0
}

// writeTxn returns the statement's transaction, ready to write.
func writeTxn(ctx *sql.Context) (*Txn, error) {
	txn := txnFrom(ctx)
	if txn == nil {
		return nil, errors.New("storage: write outside a transaction")
	}
	if txn.readOnly {
		return nil, errReadOnlyTxn
	}
	txn.beginStatement(stmtSeq(ctx))
	return txn, nil
}

func (e *editor) Insert(ctx *sql.Context, row sql.Row) error {
	txn, err := writeTxn(ctx)
	if err != nil {
		return err
	}
	ts := e.t.ts
	enc, err := ts.rows.Encode(nil, row)
	if err != nil {
		return err
	}
	var pk []byte
	if ts.keyless {
		pk = rowidSuffix(ts.counters.nextRowID())
	} else {
		if pk, err = ts.pkSuffix(row); err != nil {
			return err
		}
		key := ts.rowKey(pk)
		if err := txn.lock(ctx, key); err != nil {
			return err
		}
		if cur, ok, err := ts.db.s.getFree(txn.current(), key); err != nil {
			return err
		} else if ok {
			existing, err := ts.rows.Decode(cur)
			if err != nil {
				return decodeErr(err)
			}
			return dupErr(ctx, ts, row, ts.pk, "PRIMARY", existing)
		}
	}
	entries, err := e.indexEntries(ctx, txn, row, pk, nil)
	if err != nil {
		return err
	}
	txn.set(ts.rowKey(pk), enc)
	if ts.keyless {
		txn.set(ts.hashEntry(enc, pk), nil)
	}
	for _, k := range entries {
		txn.set(k, pk)
	}
	txn.touch(ts, 1)
	return nil
}

// indexEntries computes row's secondary index keys and checks and locks its
// unique values. oldRow, on update, is the row being replaced: unique values
// it already had need no check.
func (e *editor) indexEntries(ctx *sql.Context, txn *Txn, row sql.Row, pk []byte, oldRow sql.Row) ([][]byte, error) {
	ts := e.t.ts
	s := ts.db.s
	out := make([][]byte, 0, len(ts.indexes))
	for _, is := range ts.indexes {
		key, uniq, hasNull, err := ts.indexEntry(is, row, pk)
		if err != nil {
			return nil, err
		}
		out = append(out, key)
		if !is.meta.Unique || hasNull {
			continue
		}
		if oldRow != nil {
			_, oldUniq, _, err := ts.indexEntry(is, oldRow, nil)
			if err == nil && bytes.Equal(oldUniq, uniq) {
				continue
			}
		}
		if err := txn.lock(ctx, uniq); err != nil {
			return nil, err
		}
		it, err := s.newKVIter(txn.current())
		if err != nil {
			return nil, err
		}
		it.seek(uniq, prefixEnd(uniq), false)
		found := it.next()
		var otherPK []byte
		if found {
			otherPK = append([]byte(nil), it.val...)
		}
		err = it.err()
		it.close()
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		var existing sql.Row
		if v, ok, err := s.get(txn.current(), ts.rowKey(otherPK)); err != nil {
			return nil, err
		} else if ok {
			if existing, err = ts.rows.Decode(v); err != nil {
				return nil, decodeErr(err)
			}
		}
		return nil, dupErr(ctx, ts, row, is.cols, is.meta.Name, existing)
	}
	return out, nil
}

// locate finds the stored row equal to row, locks it and checks that it is
// still what the statement read. It returns the row's key suffix and its
// stored bytes.
func (e *editor) locate(ctx *sql.Context, txn *Txn, row sql.Row) ([]byte, []byte, error) {
	ts := e.t.ts
	s := ts.db.s
	enc, err := ts.rows.Encode(nil, row)
	if err != nil {
		return nil, nil, err
	}
	var pk []byte
	if ts.keyless {
		if pk, err = e.findKeyless(txn, row, enc); err != nil {
			return nil, nil, err
		}
	} else if pk, err = ts.pkSuffix(row); err != nil {
		return nil, nil, err
	}
	key := ts.rowKey(pk)
	if err := txn.lock(ctx, key); err != nil {
		return nil, nil, err
	}
	cur, ok, err := s.get(txn.current(), key)
	if err != nil {
		return nil, nil, err
	}
	if !ok || !bytes.Equal(cur, enc) {
		same := false
		if ok {
			if same, err = e.sameRow(cur, row); err != nil {
				return nil, nil, err
			}
		}
		if !same && !txn.changedInStatement(key) {
			// Another transaction changed or deleted the row after this
			// statement read it: run the statement again.
			return nil, nil, errRowChanged
		}
		if !ok {
			return nil, nil, errRowChanged
		}
	}
	return pk, cur, nil
}

// sameRow compares a stored row with a row value by value (strings
// exactly), for encodings that are equal in value but not in bytes.
func (e *editor) sameRow(stored []byte, row sql.Row) (bool, error) {
	ts := e.t.ts
	cur, err := ts.rows.Decode(stored)
	if err != nil {
		return false, decodeErr(err)
	}
	for i, col := range ts.schema.Schema {
		a, b := cur[i], row[i]
		if a == nil || b == nil {
			if a != b {
				return false, nil
			}
			continue
		}
		if as, ok := a.(string); ok {
			if bs, ok := b.(string); ok {
				if as != bs {
					return false, nil
				}
				continue
			}
		}
		c, err := col.Type.Compare(context.Background(), a, b)
		if err != nil || c != 0 {
			return false, nil
		}
	}
	return true, nil
}

// findKeyless finds the row id of a row of a table without primary key, by
// its hash entry (and, failing that, by a scan).
func (e *editor) findKeyless(txn *Txn, row sql.Row, enc []byte) ([]byte, error) {
	ts := e.t.ts
	s := ts.db.s
	probe := ts.hashEntry(enc, nil)
	it, err := s.newKVIter(txn.current())
	if err != nil {
		return nil, err
	}
	defer it.close()
	it.seek(probe, prefixEnd(probe), false)
	for it.next() {
		pk := append([]byte(nil), it.key[len(probe):]...)
		v, ok, err := s.get(txn.current(), ts.rowKey(pk))
		if err != nil {
			return nil, err
		}
		if ok && bytes.Equal(v, enc) {
			return pk, nil
		}
	}
	it.seek(ts.pkPrefix, prefixEnd(ts.pkPrefix), false)
	for it.next() {
		same, err := e.sameRow(it.val, row)
		if err != nil {
			return nil, err
		}
		if same {
			return append([]byte(nil), it.key[len(ts.pkPrefix):]...), nil
		}
	}
	if err := it.err(); err != nil {
		return nil, err
	}
	return nil, errRowChanged
}

func (e *editor) Delete(ctx *sql.Context, row sql.Row) error {
	txn, err := writeTxn(ctx)
	if err != nil {
		return err
	}
	ts := e.t.ts
	pk, cur, err := e.locate(ctx, txn, row)
	if err != nil {
		return err
	}
	stored, err := ts.rows.Decode(cur)
	if err != nil {
		return decodeErr(err)
	}
	for _, is := range ts.indexes {
		key, _, _, err := ts.indexEntry(is, stored, pk)
		if err != nil {
			return err
		}
		txn.del(key)
	}
	if ts.keyless {
		txn.del(ts.hashEntry(cur, pk))
	}
	txn.del(ts.rowKey(pk))
	txn.touch(ts, -1)
	return nil
}

func (e *editor) Update(ctx *sql.Context, old, new sql.Row) error {
	txn, err := writeTxn(ctx)
	if err != nil {
		return err
	}
	ts := e.t.ts
	s := ts.db.s
	oldPK, cur, err := e.locate(ctx, txn, old)
	if err != nil {
		return err
	}
	stored, err := ts.rows.Decode(cur)
	if err != nil {
		return decodeErr(err)
	}
	enc, err := ts.rows.Encode(nil, new)
	if err != nil {
		return err
	}
	newPK := oldPK
	if !ts.keyless {
		if newPK, err = ts.pkSuffix(new); err != nil {
			return err
		}
	}
	pkChanged := !bytes.Equal(oldPK, newPK)
	if !pkChanged && bytes.Equal(enc, cur) {
		return nil // nothing changes
	}
	if pkChanged {
		key := ts.rowKey(newPK)
		if err := txn.lock(ctx, key); err != nil {
			return err
		}
		if v, ok, err := s.getFree(txn.current(), key); err != nil {
			return err
		} else if ok {
			existing, err := ts.rows.Decode(v)
			if err != nil {
				return decodeErr(err)
			}
			return dupErr(ctx, ts, new, ts.pk, "PRIMARY", existing)
		}
	}
	newEntries, err := e.indexEntries(ctx, txn, new, newPK, stored)
	if err != nil {
		return err
	}
	for i, is := range ts.indexes {
		oldKey, _, _, err := ts.indexEntry(is, stored, oldPK)
		if err != nil {
			return err
		}
		if !bytes.Equal(oldKey, newEntries[i]) {
			txn.del(oldKey)
			txn.set(newEntries[i], newPK)
		} else if pkChanged {
			txn.set(newEntries[i], newPK)
		}
	}
	if ts.keyless {
		txn.del(ts.hashEntry(cur, oldPK))
		txn.set(ts.hashEntry(enc, newPK), nil)
	}
	if pkChanged {
		txn.del(ts.rowKey(oldPK))
	}
	txn.set(ts.rowKey(newPK), enc)
	txn.touch(ts, 0)
	return nil
}

// AUTO_INCREMENT.

func (t *Table) PeekNextAutoIncrementValue(*sql.Context) (uint64, error) {
	return t.ts.counters.peekAutoInc(), nil
}

func (t *Table) GetNextAutoIncrementValue(ctx *sql.Context, insertVal interface{}) (uint64, error) {
	if insertVal == nil {
		return t.ts.counters.nextAutoInc(0, false), nil
	}
	v, _, err := types.Uint64.Convert(ctx, insertVal)
	if err != nil {
		return 0, err
	}
	u, ok := v.(uint64)
	if !ok {
		return 0, fmt.Errorf("storage: auto_increment value %v", insertVal)
	}
	return t.ts.counters.nextAutoInc(u, true), nil
}

func (t *Table) AutoIncrementSetter(*sql.Context) sql.AutoIncrementSetter {
	return &autoIncSetter{t: t}
}

type autoIncSetter struct{ t *Table }

// SetAutoIncrementValue implements ALTER TABLE … AUTO_INCREMENT = n. The
// value is persisted with the table's counters at the statement's commit.
func (a *autoIncSetter) SetAutoIncrementValue(ctx *sql.Context, v uint64) error {
	a.t.ts.counters.setAutoInc(v)
	if txn := txnFrom(ctx); txn != nil {
		txn.touch(a.t.ts, 0)
	}
	return nil
}

func (a *autoIncSetter) AcquireAutoIncrementLock(*sql.Context) (func(), error) {
	return func() {}, nil
}

func (a *autoIncSetter) Close(*sql.Context) error { return nil }
