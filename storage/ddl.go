package storage

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
)

// DDL runs one change at a time per node (ddlMu) and commits through the
// same pipeline as DML, so every schema change of a database is a record
// in its partition log. In-memory catalog changes are installed under
// commitMu once the batch is applied (Txn.onApplied).

// CreateDatabase creates an empty database.
func (s *Store) CreateDatabase(name string, collation sql.CollationID) error {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	if s.database(name) != nil {
		return sql.ErrDatabaseExists.New(name)
	}
	s.mu.RLock()
	id := s.nextDBID + 1
	s.mu.RUnlock()
	m := dbMeta{ID: id, Name: name, Collation: collation}
	desc, err := json.Marshal(m)
	if err != nil {
		return err
	}
	t := s.Begin(false)
	t.set(dbDescKey(strings.ToLower(name)), desc)
	t.set(keyNextDBID, binary.BigEndian.AppendUint32(nil, id))
	d := newDBState(s, m)
	t.onApplied = append(t.onApplied, func() {
		s.mu.Lock()
		s.dbs[strings.ToLower(name)] = d
		s.byID[id] = d
		s.nextDBID = id
		s.mu.Unlock()
	})
	return t.Commit()
}

// DropDatabase removes a database and everything in it.
func (s *Store) DropDatabase(name string) error {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	d := s.database(name)
	if d == nil {
		return sql.ErrDatabaseNotFound.New(name)
	}
	t := s.Begin(false)
	t.deleteRange(d.prefix, prefixEnd(d.prefix))
	t.del(dbDescKey(strings.ToLower(d.meta.Name)))
	t.dropping = map[uint32]bool{d.meta.ID: true}
	t.onApplied = append(t.onApplied, func() {
		d.dropped = true
		s.mu.Lock()
		delete(s.dbs, strings.ToLower(d.meta.Name))
		delete(s.byID, d.meta.ID)
		s.mu.Unlock()
	})
	return t.Commit()
}

// setDatabaseCollation changes the default collation of a database.
func (s *Store) setDatabaseCollation(d *dbState, c sql.CollationID) error {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	m := d.meta
	m.Collation = c
	desc, err := json.Marshal(m)
	if err != nil {
		return err
	}
	t := s.Begin(false)
	t.set(dbDescKey(strings.ToLower(m.Name)), desc)
	t.onApplied = append(t.onApplied, func() { d.meta.Collation = c })
	return t.Commit()
}

func (s *Store) createTable(ctx *sql.Context, d *dbState, name string, schema sql.PrimaryKeySchema, pk []sql.IndexColumn, collation sql.CollationID, comment string) error {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	if d.table(name) != nil {
		return sql.ErrTableAlreadyExists.New(name)
	}
	if err := checkRowSize(schema.Schema); err != nil {
		return err
	}
	d.mu.RLock()
	id := d.nextTableID + 1
	d.mu.RUnlock()
	m := &tableMeta{
		ID:        id,
		Name:      name,
		Columns:   columnsFromSchema(schema.Schema),
		Collation: collation,
		Comment:   comment,
		NextIndex: 1,
		Version:   1,
	}
	if len(schema.PkOrdinals) > 0 {
		if len(pk) == 0 {
			for _, ord := range schema.PkOrdinals {
				pk = append(pk, sql.IndexColumn{Name: schema.Schema[ord].Name})
			}
		}
		m.Indexes = append(m.Indexes, indexMeta{ID: pkIndexID, Name: "PRIMARY", Columns: pk, Unique: true})
	}
	ts, err := newTableState(d, m, nil)
	if err != nil {
		return err
	}
	desc, err := json.Marshal(m)
	if err != nil {
		return err
	}
	t := s.Begin(false)
	t.set(join(d.prefix, tableDescSuffix(id)), desc)
	t.set(join(d.prefix, stateNextTableID), binary.BigEndian.AppendUint32(nil, id))
	t.onApplied = append(t.onApplied, func() {
		d.mu.Lock()
		d.tables[strings.ToLower(name)] = ts
		d.nextTableID = id
		d.mu.Unlock()
	})
	return t.Commit()
}

func (s *Store) dropTable(d *dbState, name string) error {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	ts := d.table(name)
	if ts == nil {
		return sql.ErrTableNotFound.New(name)
	}
	t := s.Begin(false)
	t.del(join(d.prefix, tableDescSuffix(ts.meta.ID)))
	t.del(join(d.prefix, tableCounterSuffix(ts.meta.ID)))
	t.deleteRange(ts.data, prefixEnd(ts.data))
	var dropFKs []string
	d.mu.RLock()
	for key, fk := range d.fks {
		if strings.EqualFold(fk.Table, ts.meta.Name) {
			dropFKs = append(dropFKs, key)
			t.del(join(d.prefix, objSuffix(objForeignKey, key)))
		}
	}
	d.mu.RUnlock()
	t.onApplied = append(t.onApplied, func() {
		d.mu.Lock()
		delete(d.tables, strings.ToLower(ts.meta.Name))
		for _, key := range dropFKs {
			delete(d.fks, key)
		}
		d.mu.Unlock()
	})
	return t.Commit()
}

func (s *Store) renameTable(ctx *sql.Context, d *dbState, oldName, newName string) error {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	ts := d.table(oldName)
	if ts == nil {
		return sql.ErrTableNotFound.New(oldName)
	}
	if !strings.EqualFold(oldName, newName) && d.table(newName) != nil {
		return sql.ErrTableAlreadyExists.New(newName)
	}
	m := ts.meta.clone()
	m.Name = newName
	m.Version++
	nts, err := newTableState(d, m, ts.counters)
	if err != nil {
		return err
	}
	desc, err := json.Marshal(m)
	if err != nil {
		return err
	}
	t := s.Begin(false)
	t.set(join(d.prefix, tableDescSuffix(m.ID)), desc)
	t.onApplied = append(t.onApplied, func() {
		d.mu.Lock()
		delete(d.tables, strings.ToLower(oldName))
		d.tables[strings.ToLower(newName)] = nts
		d.mu.Unlock()
	})
	return t.Commit()
}

// rewrite says what an ALTER does to stored data.
type rewrite struct {
	// rows maps an old row to the new one; with it every row and index
	// entry is rewritten under a new row format.
	rows func(sql.Row) (sql.Row, error)
	// addIndexes are backfilled from the existing rows.
	addIndexes []uint16
	// dropIndexes lose their entries.
	dropIndexes []uint16
}

// alterTable installs a new definition of ts, rewriting data as rw says,
// and returns the new version.
func (s *Store) alterTable(ctx *sql.Context, ts *tableState, m *tableMeta, rw rewrite) (*tableState, error) {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	d := ts.db
	if cur := d.table(ts.meta.Name); cur != nil {
		ts = cur // build on the latest version
	}
	m.Version = ts.meta.Version + 1
	if rw.rows != nil {
		m.RowFormat = ts.meta.RowFormat + 1
	}
	nts, err := newTableState(d, m, ts.counters)
	if err != nil {
		return nil, err
	}
	if err := checkRowSize(nts.schema.Schema); err != nil {
		return nil, err
	}
	desc, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	t := s.Begin(false)
	t.set(join(d.prefix, tableDescSuffix(m.ID)), desc)
	for _, id := range rw.dropIndexes {
		p := indexPrefix(ts.data, id)
		t.deleteRange(p, prefixEnd(p))
	}
	if rw.rows != nil || len(rw.addIndexes) > 0 {
		// Writers of this table fail to commit until the new version is in
		// place; anything they committed before is in the scan below.
		s.commitMu.Lock()
		ts.counters.altering = true
		s.commitMu.Unlock()
		defer func() {
			s.commitMu.Lock()
			ts.counters.altering = false
			s.commitMu.Unlock()
		}()
		if err := s.backfill(ctx, t, ts, nts, rw); err != nil {
			return nil, err
		}
	}
	t.onApplied = append(t.onApplied, func() {
		d.mu.Lock()
		d.tables[strings.ToLower(m.Name)] = nts
		d.mu.Unlock()
	})
	if err := t.Commit(); err != nil {
		return nil, err
	}
	return nts, nil
}

// backfill writes the rows of ts under nts into t: every row and index
// entry when rows are rewritten, else only the entries of new indexes.
func (s *Store) backfill(ctx *sql.Context, t *Txn, ts, nts *tableState, rw rewrite) error {
	full := rw.rows != nil
	if full {
		t.deleteRange(ts.data, prefixEnd(ts.data))
	}
	var build []*indexState
	for _, is := range nts.indexes {
		if full || containsID(rw.addIndexes, is.meta.ID) {
			build = append(build, is)
		}
	}
	seen := make(map[string]bool) // unique prefixes, and primary keys on a full rewrite
	return s.scan(ts.pkPrefix, func(k, v []byte) error {
		row, err := ts.rows.Decode(v)
		if err != nil {
			return err
		}
		pkSuffix := k[len(ts.pkPrefix):]
		if full {
			if row, err = rw.rows(row); err != nil {
				return err
			}
			enc, err := nts.rows.Encode(nil, row)
			if err != nil {
				return err
			}
			if nts.keyless {
				if ts.keyless {
					pkSuffix = append([]byte(nil), pkSuffix...)
				} else {
					pkSuffix = rowidSuffix(nts.counters.nextRowID())
				}
				t.set(nts.hashEntry(enc, pkSuffix), nil)
			} else {
				if pkSuffix, err = nts.pkSuffix(row); err != nil {
					return err
				}
				if seen[string(pkSuffix)] {
					return dupErr(ctx, nts, row, nts.pk, "PRIMARY", nil)
				}
				seen[string(pkSuffix)] = true
			}
			t.set(nts.rowKey(pkSuffix), enc)
		} else {
			pkSuffix = append([]byte(nil), pkSuffix...)
		}
		for _, is := range build {
			key, uniq, hasNull, err := nts.indexEntry(is, row, pkSuffix)
			if err != nil {
				return err
			}
			if is.meta.Unique && !hasNull {
				if seen[string(uniq)] {
					return dupErr(ctx, nts, row, is.cols, is.meta.Name, nil)
				}
				seen[string(uniq)] = true
			}
			t.set(key, pkSuffix)
		}
		return nil
	})
}

func containsID(ids []uint16, id uint16) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// truncate empties a table and resets its AUTO_INCREMENT, as MySQL does.
func (s *Store) truncate(ctx *sql.Context, ts *tableState) (int, error) {
	s.ddlMu.Lock()
	defer s.ddlMu.Unlock()
	d := ts.db
	if cur := d.table(ts.meta.Name); cur != nil {
		ts = cur
	}
	m := ts.meta.clone()
	m.Version++
	counters := &tableCounters{rowid: ts.counters.rowid}
	nts, err := newTableState(d, m, counters)
	if err != nil {
		return 0, err
	}
	desc, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	n := int(ts.counters.rowCount())
	t := s.Begin(false)
	t.set(join(d.prefix, tableDescSuffix(m.ID)), desc)
	t.deleteRange(ts.data, prefixEnd(ts.data))
	t.set(join(d.prefix, tableCounterSuffix(m.ID)), counters.encodeWith(0))
	t.onApplied = append(t.onApplied, func() {
		d.mu.Lock()
		d.tables[strings.ToLower(m.Name)] = nts
		d.mu.Unlock()
	})
	return n, t.Commit()
}

// dupErr builds GMS's duplicate key error (whose text GMS's tests know:
// "[v1,v2]") and leaves MySQL's wording, "Duplicate entry 'v1-v2' for key
// 'table.key'", on the session for the server to send to the client.
func dupErr(ctx *sql.Context, t *tableState, row sql.Row, cols []keyCol, keyName string, existing sql.Row) error {
	vals := make([]string, len(cols))
	gms := make([]string, len(cols))
	for i, c := range cols {
		gms[i] = fmt.Sprintf("%v", row[c.ord])
		switch x := row[c.ord].(type) {
		case nil:
			vals[i] = "NULL"
		case []byte:
			vals[i] = string(x)
		case string:
			vals[i] = x
		default:
			v, err := c.col.Type.SQL(ctx, nil, x)
			if err == nil {
				vals[i] = v.ToString()
			} else {
				vals[i] = gms[i]
			}
		}
	}
	if s := sessionFrom(ctx); s != nil {
		s.dupEntry = fmt.Sprintf("Duplicate entry '%s' for key '%s.%s'", strings.Join(vals, "-"), t.meta.Name, keyName)
	}
	return sql.NewUniqueKeyErr("["+strings.Join(gms, ",")+"]", keyName == "PRIMARY", existing)
}
