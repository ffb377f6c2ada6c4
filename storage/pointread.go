package storage

import (
	"context"
	"fmt"

	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/storage/codec"
)

// PointTable reads single rows of a table by primary key, outside any
// transaction: the fast path for autocommit point selects, which would
// otherwise pay for the SQL engine's planning on every query.
type PointTable struct {
	ts *tableState
}

// PointTable returns the point reader of a table, or false when the table
// does not exist, has no full-column primary key, or lives in a replica
// database (whose readers must not see records ahead of its visible
// position).
func (s *Store) PointTable(db, table string) (*PointTable, bool) {
	d := s.database(db)
	s.notice()
	if d == nil || d.replica || d.readFenced.Load() != readOpen {
		return nil, false // a fenced copy: the engine's path says why
	}
	ts := d.table(table)
	if ts == nil || ts.keyless {
		return nil, false
	}
	for _, c := range ts.pk {
		if c.prefix != 0 {
			return nil, false
		}
	}
	return &PointTable{ts: ts}, true
}

// Schema is the table's schema (primary key ordinals included).
func (t *PointTable) Schema() sql.PrimaryKeySchema { return t.ts.schema }

// Database is the table's database as it was created (its letter case).
func (t *PointTable) Database() string { return t.ts.db.meta.Name }

// Get reads the committed row whose primary key columns (in key order)
// equal pk; each value is converted to its column's type first.
func (t *PointTable) Get(pk []interface{}) (sql.Row, bool, error) {
	if len(pk) != len(t.ts.pk) {
		return nil, false, fmt.Errorf("point read of %s: %d values for a %d-column primary key", t.ts.meta.Name, len(pk), len(t.ts.pk))
	}
	key := append([]byte(nil), t.ts.pkPrefix...)
	for i, c := range t.ts.pk {
		v, _, err := t.ts.schema.Schema[c.ord].Type.Convert(context.Background(), pk[i])
		if err != nil {
			return nil, false, err
		}
		if key, err = codec.AppendKey(key, c.col, v, 0); err != nil {
			return nil, false, err
		}
	}
	val, ok, err := t.ts.db.s.getRaw(key)
	if err != nil || !ok {
		return nil, false, err
	}
	row := make(sql.Row, len(t.ts.rows.Cols))
	return row, true, decodeErr(t.ts.rows.DecodeInto(val, row, nil))
}

// Idle reports whether the session has no transaction open and runs in
// autocommit mode: its next read sees the latest committed data.
func (s *Session) Idle(ctx *sql.Context) bool {
	if s.txn != nil || s.GetIgnoreAutoCommit() {
		return false
	}
	v, err := s.GetSessionVariable(ctx, sql.AutoCommitSessionVar)
	if err != nil {
		return false
	}
	on, _ := sql.ConvertToBool(ctx, v)
	return on
}
