package storage

import (
	"sort"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
)

// Foreign keys are stored per database and enforced by GMS on a single
// node. (A sharded table cannot enforce them across partitions; the
// aggregator refuses them, as SingleStore does.)

var _ sql.ForeignKeyTable = (*Table)(nil)

func (t *Table) CreateIndexForForeignKey(ctx *sql.Context, def sql.IndexDef) error {
	return t.CreateIndex(ctx, def)
}

func (t *Table) foreignKeys(match func(fk sql.ForeignKeyConstraint) bool) []sql.ForeignKeyConstraint {
	d := t.ts.db
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []sql.ForeignKeyConstraint
	for _, fk := range d.fks {
		if match(fk) {
			out = append(out, fk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (t *Table) GetDeclaredForeignKeys(*sql.Context) ([]sql.ForeignKeyConstraint, error) {
	return t.foreignKeys(func(fk sql.ForeignKeyConstraint) bool {
		return strings.EqualFold(fk.Table, t.Name())
	}), nil
}

func (t *Table) GetReferencedForeignKeys(*sql.Context) ([]sql.ForeignKeyConstraint, error) {
	db := t.ts.db.meta.Name
	return t.foreignKeys(func(fk sql.ForeignKeyConstraint) bool {
		return strings.EqualFold(fk.ParentTable, t.Name()) && (fk.ParentDatabase == "" || strings.EqualFold(fk.ParentDatabase, db))
	}), nil
}

func (t *Table) AddForeignKey(ctx *sql.Context, fk sql.ForeignKeyConstraint) error {
	d := t.ts.db
	d.mu.RLock()
	_, exists := d.fks[strings.ToLower(fk.Name)]
	d.mu.RUnlock()
	if exists {
		return sql.ErrForeignKeyDuplicateName.New(fk.Name)
	}
	return t.db.putObject(objForeignKey, fk.Name, fk, func() { d.fks[strings.ToLower(fk.Name)] = fk })
}

func (t *Table) DropForeignKey(ctx *sql.Context, name string) error {
	d := t.ts.db
	d.mu.RLock()
	_, exists := d.fks[strings.ToLower(name)]
	d.mu.RUnlock()
	if !exists {
		return sql.ErrForeignKeyNotFound.New(name, t.Name())
	}
	return t.db.putObject(objForeignKey, name, nil, func() { delete(d.fks, strings.ToLower(name)) })
}

func (t *Table) UpdateForeignKey(ctx *sql.Context, name string, fk sql.ForeignKeyConstraint) error {
	d := t.ts.db
	return t.db.putObject(objForeignKey, fk.Name, fk, func() {
		delete(d.fks, strings.ToLower(name))
		d.fks[strings.ToLower(fk.Name)] = fk
	})
}

func (t *Table) GetForeignKeyEditor(*sql.Context) sql.ForeignKeyEditor {
	return &fkEditor{editor: editor{t: t}}
}

// fkEditor is the editor GMS uses for cascades; it also looks rows up by
// index.
type fkEditor struct{ editor }

func (e *fkEditor) IndexedAccess(ctx *sql.Context, lookup sql.IndexLookup) sql.IndexedTable {
	t := *e.t
	t.currentView = true
	return t.IndexedAccess(ctx, lookup)
}

func (e *fkEditor) GetIndexes(ctx *sql.Context) ([]sql.Index, error) { return e.t.GetIndexes(ctx) }
func (e *fkEditor) PreciseMatch() bool                               { return true }
