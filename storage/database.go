package storage

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
)

// Database is the GMS handle on one database of the store.
type Database struct {
	s *Store
	d *dbState
	// guarded: the session may not change this database (Session.Guard)
	guarded bool
}

// IsReadOnly makes GMS refuse a guarded session's writes and schema
// changes in the database (sql.ReadOnlyDatabase).
func (db *Database) IsReadOnly() bool { return db.guarded }

var (
	_ sql.Database                = (*Database)(nil)
	_ sql.TableCreator            = (*Database)(nil)
	_ sql.IndexedTableCreator     = (*Database)(nil)
	_ sql.TableDropper            = (*Database)(nil)
	_ sql.TableRenamer            = (*Database)(nil)
	_ sql.CollatedDatabase        = (*Database)(nil)
	_ sql.ViewDatabase            = (*Database)(nil)
	_ sql.TriggerDatabase         = (*Database)(nil)
	_ sql.StoredProcedureDatabase = (*Database)(nil)
)

func (db *Database) Name() string { return db.d.meta.Name }

func (db *Database) GetTableInsensitive(ctx *sql.Context, name string) (sql.Table, bool, error) {
	ts := db.d.table(name)
	if ts == nil {
		return nil, false, nil
	}
	return &Table{db: db, ts: ts}, true, nil
}

func (db *Database) GetTableNames(*sql.Context) ([]string, error) {
	db.d.mu.RLock()
	names := make([]string, 0, len(db.d.tables))
	for _, t := range db.d.tables {
		names = append(names, t.meta.Name)
	}
	db.d.mu.RUnlock()
	sort.Strings(names)
	return names, nil
}

func (db *Database) CreateTable(ctx *sql.Context, name string, schema sql.PrimaryKeySchema, collation sql.CollationID, comment string) error {
	if err := implicitCommit(ctx); err != nil {
		return err
	}
	return db.s.createTable(ctx, db.d, name, schema, nil, collation, comment)
}

func (db *Database) CreateIndexedTable(ctx *sql.Context, name string, schema sql.PrimaryKeySchema, idx sql.IndexDef, collation sql.CollationID) error {
	if err := implicitCommit(ctx); err != nil {
		return err
	}
	return db.s.createTable(ctx, db.d, name, schema, idx.Columns, collation, "")
}

func (db *Database) DropTable(ctx *sql.Context, name string) error {
	if err := implicitCommit(ctx); err != nil {
		return err
	}
	return db.s.dropTable(db.d, name)
}

func (db *Database) RenameTable(ctx *sql.Context, oldName, newName string) error {
	if err := implicitCommit(ctx); err != nil {
		return err
	}
	return db.s.renameTable(ctx, db.d, oldName, newName)
}

func (db *Database) GetCollation(*sql.Context) sql.CollationID {
	db.s.commitMu.Lock()
	defer db.s.commitMu.Unlock()
	if db.d.meta.Collation == 0 {
		return sql.Collation_Default
	}
	return db.d.meta.Collation
}

func (db *Database) SetCollation(ctx *sql.Context, c sql.CollationID) error {
	return db.s.setDatabaseCollation(db.d, c)
}

// Views, triggers and procedures are stored under the database prefix, so
// they travel with the database like its tables.

func (db *Database) putObject(kind byte, name string, v interface{}, apply func()) error {
	db.s.ddlMu.Lock()
	defer db.s.ddlMu.Unlock()
	t := db.s.Begin(false)
	key := join(db.d.prefix, objSuffix(kind, strings.ToLower(name)))
	if v == nil {
		t.del(key)
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		t.set(key, b)
	}
	t.onApplied = append(t.onApplied, func() {
		db.d.mu.Lock()
		apply()
		db.d.mu.Unlock()
	})
	return t.Commit()
}

func (d *dbState) loadObject(kind byte, v []byte) error {
	switch kind {
	case objView:
		var vd sql.ViewDefinition
		if err := json.Unmarshal(v, &vd); err != nil {
			return fmt.Errorf("view: %w", err)
		}
		d.views[strings.ToLower(vd.Name)] = vd
	case objTrigger:
		var st storedTrigger
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("trigger: %w", err)
		}
		d.triggers[strings.ToLower(st.Def.Name)] = st
	case objProcedure:
		var pd sql.StoredProcedureDetails
		if err := json.Unmarshal(v, &pd); err != nil {
			return fmt.Errorf("procedure: %w", err)
		}
		d.procs[strings.ToLower(pd.Name)] = pd
	case objForeignKey:
		var fk sql.ForeignKeyConstraint
		if err := json.Unmarshal(v, &fk); err != nil {
			return fmt.Errorf("foreign key: %w", err)
		}
		d.fks[strings.ToLower(fk.Name)] = fk
	}
	return nil
}

func (db *Database) CreateView(ctx *sql.Context, name, selectStatement, createViewStmt string) error {
	db.d.mu.RLock()
	_, exists := db.d.views[strings.ToLower(name)]
	db.d.mu.RUnlock()
	if exists {
		return sql.ErrExistingView.New(db.Name(), name)
	}
	vd := sql.ViewDefinition{Name: name, TextDefinition: selectStatement, CreateViewStatement: createViewStmt,
		SqlMode: sql.LoadSqlMode(ctx).String()}
	return db.putObject(objView, name, vd, func() { db.d.views[strings.ToLower(name)] = vd })
}

func (db *Database) DropView(ctx *sql.Context, name string) error {
	db.d.mu.RLock()
	_, exists := db.d.views[strings.ToLower(name)]
	db.d.mu.RUnlock()
	if !exists {
		return sql.ErrViewDoesNotExist.New(db.Name(), name)
	}
	return db.putObject(objView, name, nil, func() { delete(db.d.views, strings.ToLower(name)) })
}

func (db *Database) GetViewDefinition(ctx *sql.Context, name string) (sql.ViewDefinition, bool, error) {
	db.d.mu.RLock()
	defer db.d.mu.RUnlock()
	vd, ok := db.d.views[strings.ToLower(name)]
	return vd, ok, nil
}

func (db *Database) AllViews(*sql.Context) ([]sql.ViewDefinition, error) {
	db.d.mu.RLock()
	defer db.d.mu.RUnlock()
	out := make([]sql.ViewDefinition, 0, len(db.d.views))
	for _, v := range db.d.views {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// storedTrigger keeps creation order, which decides firing order.
type storedTrigger struct {
	Seq uint64                `json:"seq"`
	Def sql.TriggerDefinition `json:"def"`
}

func (db *Database) GetTriggers(*sql.Context) ([]sql.TriggerDefinition, error) {
	db.d.mu.RLock()
	all := make([]storedTrigger, 0, len(db.d.triggers))
	for _, t := range db.d.triggers {
		all = append(all, t)
	}
	db.d.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	out := make([]sql.TriggerDefinition, len(all))
	for i, t := range all {
		out[i] = t.Def
	}
	return out, nil
}

func (db *Database) CreateTrigger(ctx *sql.Context, td sql.TriggerDefinition) error {
	db.d.mu.RLock()
	_, exists := db.d.triggers[strings.ToLower(td.Name)]
	seq := uint64(0)
	for _, t := range db.d.triggers {
		seq = max(seq, t.Seq)
	}
	db.d.mu.RUnlock()
	if exists {
		return mysql.NewSQLError(1359, "HY000", "Trigger already exists")
	}
	st := storedTrigger{Seq: seq + 1, Def: td}
	return db.putObject(objTrigger, td.Name, st, func() { db.d.triggers[strings.ToLower(td.Name)] = st })
}

func (db *Database) DropTrigger(ctx *sql.Context, name string) error {
	db.d.mu.RLock()
	_, exists := db.d.triggers[strings.ToLower(name)]
	db.d.mu.RUnlock()
	if !exists {
		return sql.ErrTriggerDoesNotExist.New(name)
	}
	return db.putObject(objTrigger, name, nil, func() { delete(db.d.triggers, strings.ToLower(name)) })
}

func (db *Database) GetStoredProcedure(ctx *sql.Context, name string) (sql.StoredProcedureDetails, bool, error) {
	db.d.mu.RLock()
	defer db.d.mu.RUnlock()
	p, ok := db.d.procs[strings.ToLower(name)]
	return p, ok, nil
}

func (db *Database) GetStoredProcedures(*sql.Context) ([]sql.StoredProcedureDetails, error) {
	db.d.mu.RLock()
	defer db.d.mu.RUnlock()
	out := make([]sql.StoredProcedureDetails, 0, len(db.d.procs))
	for _, p := range db.d.procs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (db *Database) SaveStoredProcedure(ctx *sql.Context, pd sql.StoredProcedureDetails) error {
	db.d.mu.RLock()
	_, exists := db.d.procs[strings.ToLower(pd.Name)]
	db.d.mu.RUnlock()
	if exists {
		return sql.ErrStoredProcedureAlreadyExists.New(pd.Name)
	}
	return db.putObject(objProcedure, pd.Name, pd, func() { db.d.procs[strings.ToLower(pd.Name)] = pd })
}

func (db *Database) DropStoredProcedure(ctx *sql.Context, name string) error {
	db.d.mu.RLock()
	_, exists := db.d.procs[strings.ToLower(name)]
	db.d.mu.RUnlock()
	if !exists {
		return sql.ErrStoredProcedureDoesNotExist.New(name)
	}
	return db.putObject(objProcedure, name, nil, func() { delete(db.d.procs, strings.ToLower(name)) })
}
