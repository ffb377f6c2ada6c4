package storage

import (
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/mysql"
)

// alter installs a changed definition of the table behind t and points t
// at it: GMS keeps using the same handle after ADD COLUMN, for example.
func (t *Table) alter(ctx *sql.Context, mutate func(m *tableMeta) (rewrite, error)) error {
	if err := implicitCommit(ctx); err != nil {
		return err
	}
	ts := t.ts
	if cur := ts.db.table(ts.meta.Name); cur != nil {
		ts = cur
	}
	m := ts.meta.clone()
	rw, err := mutate(m)
	if err != nil {
		return err
	}
	nts, err := ts.db.s.alterTable(ctx, ts, m, rw)
	if err != nil {
		return err
	}
	t.ts = nts
	t.projNames, t.proj, t.projSorted, t.projSchema = nil, nil, nil, nil
	return nil
}

func columnPosition(cols []columnMeta, order *sql.ColumnOrder, fallback int) int {
	if order == nil {
		return fallback
	}
	if order.First {
		return 0
	}
	for i, c := range cols {
		if strings.EqualFold(c.Name, order.AfterColumn) {
			return i + 1
		}
	}
	return fallback
}

func (t *Table) AddColumn(ctx *sql.Context, column *sql.Column, order *sql.ColumnOrder) error {
	var pos int
	var newSchema sql.Schema
	if column.PrimaryKey {
		column.Nullable = false
	}
	counters := t.ts.counters
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		pos = columnPosition(m.Columns, order, len(m.Columns))
		cm := columnsFromSchema(sql.Schema{column})[0]
		m.Columns = append(m.Columns[:pos], append([]columnMeta{cm}, m.Columns[pos:]...)...)
		newSchema = make(sql.Schema, 0, len(t.ts.schema.Schema)+1)
		newSchema = append(newSchema, t.ts.schema.Schema[:pos]...)
		newSchema = append(newSchema, column)
		newSchema = append(newSchema, t.ts.schema.Schema[pos:]...)
		// GMS bound the default's column references to the old schema;
		// the rows it is evaluated on, here and in GMS's own pass over the
		// rows after AddColumn (it evaluates the same expression), have
		// the new one
		if err := rebindDefault(column, newSchema); err != nil {
			return rewrite{}, err
		}
		return rewrite{rows: func(old sql.Row) (sql.Row, error) {
			row := make(sql.Row, 0, len(old)+1)
			row = append(row, old[:pos]...)
			row = append(row, nil)
			row = append(row, old[pos:]...)
			v, err := newColumnValue(ctx, newSchema, pos, row, counters)
			if err != nil {
				return nil, err
			}
			row[pos] = v
			return row, nil
		}}, nil
	})
}

// rebindDefault points the column references of column's default at
// their positions in schema.
func rebindDefault(column *sql.Column, schema sql.Schema) error {
	if column.Default == nil {
		return nil
	}
	e, _, err := transform.Expr(column.Default, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
		gf, ok := e.(*expression.GetField)
		if !ok {
			return e, transform.SameTree, nil
		}
		idx := schema.IndexOfColName(gf.Name())
		if idx < 0 {
			return nil, transform.SameTree, sql.ErrTableColumnNotFound.New(column.Source, gf.Name())
		}
		return gf.WithIndex(idx), transform.NewTree, nil
	})
	if err != nil {
		return err
	}
	if d, ok := e.(*sql.ColumnDefaultValue); ok {
		column.Default = d
	}
	return nil
}

// newColumnValue is the value an existing row gets in an added column, as
// GMS's applyDefaults computes it.
func newColumnValue(ctx *sql.Context, schema sql.Schema, pos int, row sql.Row, counters *tableCounters) (interface{}, error) {
	col := schema[pos]
	var v interface{}
	switch {
	case col.AutoIncrement:
		v = counters.nextAutoInc(0, false)
	case col.Default != nil:
		var err error
		if v, err = col.Default.Eval(ctx, row); err != nil {
			return nil, err
		}
	case !col.Nullable:
		v = col.Type.Zero()
	default:
		return nil, nil
	}
	out, _, err := col.Type.Convert(ctx, v)
	return out, err
}

func (t *Table) DropColumn(ctx *sql.Context, name string) error {
	idx := t.ts.schema.Schema.IndexOfColName(name)
	if idx < 0 {
		return sql.ErrTableColumnNotFound.New(t.Name(), name)
	}
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		m.Columns = append(m.Columns[:idx], m.Columns[idx+1:]...)
		var kept []indexMeta
		for _, im := range m.Indexes {
			var cols []sql.IndexColumn
			for _, c := range im.Columns {
				if !strings.EqualFold(c.Name, name) {
					cols = append(cols, c)
				}
			}
			if len(cols) > 0 {
				im.Columns = cols
				kept = append(kept, im)
			}
		}
		m.Indexes = kept
		return rewrite{rows: func(old sql.Row) (sql.Row, error) {
			row := make(sql.Row, 0, len(old)-1)
			row = append(row, old[:idx]...)
			return append(row, old[idx+1:]...), nil
		}}, nil
	})
}

func (t *Table) ModifyColumn(ctx *sql.Context, name string, column *sql.Column, order *sql.ColumnOrder) error {
	oldIdx := t.ts.schema.Schema.IndexOfColName(name)
	if oldIdx < 0 {
		return sql.ErrTableColumnNotFound.New(t.Name(), name)
	}
	old := t.ts.schema.Schema[oldIdx]
	column.PrimaryKey = old.PrimaryKey
	if column.PrimaryKey {
		column.Nullable = false
	}
	var newIdx int
	counters := t.ts.counters
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		cm := columnsFromSchema(sql.Schema{column})[0]
		rest := append(append([]columnMeta(nil), m.Columns[:oldIdx]...), m.Columns[oldIdx+1:]...)
		newIdx = columnPosition(rest, order, oldIdx)
		m.Columns = append(rest[:newIdx], append([]columnMeta{cm}, rest[newIdx:]...)...)
		for i := range m.Indexes {
			for j := range m.Indexes[i].Columns {
				if strings.EqualFold(m.Indexes[i].Columns[j].Name, name) {
					m.Indexes[i].Columns[j].Name = column.Name
				}
			}
		}
		return rewrite{rows: func(oldRow sql.Row) (sql.Row, error) {
			v, inRange, err := convertColumnValue(ctx, old, column, oldRow[oldIdx])
			if err != nil {
				return nil, err
			}
			if !inRange {
				return nil, sql.ErrValueOutOfRange.New(oldRow[oldIdx], column.Type)
			}
			if v == nil && !column.Nullable {
				return nil, sql.ErrInsertIntoNonNullableProvidedNull.New(column.Name)
			}
			rest := append(append(sql.Row(nil), oldRow[:oldIdx]...), oldRow[oldIdx+1:]...)
			row := append(append(append(sql.Row(nil), rest[:newIdx]...), v), rest[newIdx:]...)
			if column.AutoIncrement && v != nil {
				if u, ok := toInt(v); ok && u > 0 {
					counters.nextAutoInc(uint64(u), true)
				}
			}
			return row, nil
		}}, nil
	})
}

// convertColumnValue converts a stored value to a modified column's type.
// ENUM and SET values are stored as positions, so they convert by name.
func convertColumnValue(ctx *sql.Context, old, col *sql.Column, v interface{}) (interface{}, sql.ConvertInRange, error) {
	if v != nil {
		switch old.Type.(type) {
		case sql.EnumType:
			if v == uint16(0) {
				return v, sql.InRange, nil // the empty "error" value stays
			}
		}
		switch old.Type.(type) {
		case sql.EnumType, sql.SetType:
			sv, err := old.Type.SQL(ctx, nil, v)
			if err != nil {
				return nil, sql.OutOfRange, err
			}
			v = sv.ToString()
		}
	}
	out, inRange, err := col.Type.Convert(ctx, v)
	if err != nil {
		switch col.Type.(type) {
		case sql.EnumType, sql.SetType:
			return nil, inRange, types.ErrDataTruncatedForColumn.New(col.Name)
		}
	}
	return out, inRange, err
}

func (t *Table) CreatePrimaryKey(ctx *sql.Context, cols []sql.IndexColumn) error {
	if !t.ts.keyless {
		return sql.ErrMultiplePrimaryKeysDefined.New()
	}
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		for _, c := range cols {
			i := m.columnIndex(c.Name)
			if i < 0 {
				return rewrite{}, sql.ErrKeyColumnDoesNotExist.New(c.Name)
			}
			m.Columns[i].PrimaryKey = true
			m.Columns[i].Nullable = false
		}
		m.Indexes = append([]indexMeta{{ID: pkIndexID, Name: "PRIMARY", Columns: cols, Unique: true}}, m.Indexes...)
		return rewrite{rows: func(r sql.Row) (sql.Row, error) {
			for _, c := range cols {
				if r[t.ts.schema.Schema.IndexOfColName(c.Name)] == nil {
					return nil, sql.ErrInsertIntoNonNullableProvidedNull.New(c.Name)
				}
			}
			return r, nil
		}}, nil
	})
}

func (t *Table) DropPrimaryKey(ctx *sql.Context) error {
	if t.ts.keyless {
		return sql.ErrCantDropFieldOrKey.New("PRIMARY")
	}
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		for i := range m.Columns {
			m.Columns[i].PrimaryKey = false
		}
		var kept []indexMeta
		for _, im := range m.Indexes {
			if im.ID != pkIndexID {
				kept = append(kept, im)
			}
		}
		m.Indexes = kept
		return rewrite{rows: func(r sql.Row) (sql.Row, error) { return r, nil }}, nil
	})
}

func (t *Table) CreateIndex(ctx *sql.Context, def sql.IndexDef) error {
	if def.IsPrimary() {
		return t.CreatePrimaryKey(ctx, def.Columns)
	}
	if def.IsFullText() || def.IsSpatial() || def.IsVector() {
		return sql.ErrUnsupportedFeature.New("FULLTEXT, SPATIAL and VECTOR indexes")
	}
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		for _, im := range m.Indexes {
			if strings.EqualFold(im.Name, def.Name) {
				return rewrite{}, sql.ErrDuplicateKey.New(def.Name)
			}
		}
		for _, c := range def.Columns {
			if m.columnIndex(c.Name) < 0 {
				return rewrite{}, sql.ErrKeyColumnDoesNotExist.New(c.Name)
			}
		}
		id := m.NextIndex
		m.NextIndex++
		m.Indexes = append(m.Indexes, indexMeta{ID: id, Name: def.Name, Columns: def.Columns, Unique: def.IsUnique(), Comment: def.Comment})
		return rewrite{addIndexes: []uint16{id}}, nil
	})
}

func (t *Table) DropIndex(ctx *sql.Context, name string) error {
	if strings.EqualFold(name, "PRIMARY") {
		return t.DropPrimaryKey(ctx)
	}
	for _, is := range t.ts.indexes {
		if strings.EqualFold(is.meta.Name, name) {
			id := is.meta.ID
			return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
				for i, im := range m.Indexes {
					if im.ID == id {
						m.Indexes = append(m.Indexes[:i], m.Indexes[i+1:]...)
						return rewrite{dropIndexes: []uint16{id}}, nil
					}
				}
				return rewrite{}, sql.ErrIndexNotFound.New(name)
			})
		}
	}
	return sql.ErrIndexNotFound.New(name)
}

func (t *Table) RenameIndex(ctx *sql.Context, from, to string) error {
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		for i, im := range m.Indexes {
			if strings.EqualFold(im.Name, from) {
				m.Indexes[i].Name = to
				return rewrite{}, nil
			}
		}
		return rewrite{}, sql.ErrIndexNotFound.New(from)
	})
}

func (t *Table) GetChecks(*sql.Context) ([]sql.CheckDefinition, error) {
	out := make([]sql.CheckDefinition, 0, len(t.ts.meta.Checks))
	for _, c := range t.ts.meta.Checks {
		out = append(out, sql.CheckDefinition{Name: c.Name, CheckExpression: c.Expression, Enforced: c.Enforced})
	}
	return out, nil
}

func (t *Table) CreateCheck(ctx *sql.Context, c *sql.CheckDefinition) error {
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		if c.Name == "" {
			c.Name = checkName(m)
		}
		for _, x := range m.Checks {
			if c.Name != "" && strings.EqualFold(x.Name, c.Name) {
				return rewrite{}, mysql.NewSQLError(3822, "HY000", "Duplicate check constraint name '%s'.", c.Name)
			}
		}
		m.Checks = append(m.Checks, checkMeta{Name: c.Name, Expression: c.CheckExpression, Enforced: c.Enforced})
		return rewrite{}, nil
	})
}

// checkName names an unnamed CHECK constraint as MySQL does: t_chk_N.
func checkName(m *tableMeta) string {
	for n := 1; ; n++ {
		name := fmt.Sprintf("%s_chk_%d", m.Name, n)
		taken := false
		for _, c := range m.Checks {
			taken = taken || strings.EqualFold(c.Name, name)
		}
		if !taken {
			return name
		}
	}
}

func (t *Table) DropCheck(ctx *sql.Context, name string) error {
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		for i, x := range m.Checks {
			if strings.EqualFold(x.Name, name) {
				m.Checks = append(m.Checks[:i], m.Checks[i+1:]...)
				return rewrite{}, nil
			}
		}
		return rewrite{}, sql.ErrUnknownConstraint.New(name)
	})
}

// Truncate serves TRUNCATE TABLE (a schema change: implicit commit,
// AUTO_INCREMENT reset) and also DELETE without WHERE, which GMS turns into
// a Truncate call; that one must stay inside the transaction.
func (t *Table) Truncate(ctx *sql.Context) (int, error) {
	if !isTruncateStatement(ctx.Query()) {
		return t.deleteAll(ctx)
	}
	if err := implicitCommit(ctx); err != nil {
		return 0, err
	}
	n, err := t.ts.db.s.truncate(ctx, t.ts)
	if err != nil {
		return 0, err
	}
	if cur := t.ts.db.table(t.ts.meta.Name); cur != nil {
		t.ts = cur
	}
	return n, nil
}

func isTruncateStatement(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n(")
	return len(q) >= 8 && strings.EqualFold(q[:8], "TRUNCATE")
}

// deleteAll deletes every row in the transaction.
func (t *Table) deleteAll(ctx *sql.Context) (int, error) {
	txn, err := writeTxn(ctx)
	if err != nil {
		return 0, err
	}
	ts := t.ts
	it, err := ts.db.s.newKVIter(txn.current())
	if err != nil {
		return 0, err
	}
	defer it.close()
	it.seek(ts.pkPrefix, prefixEnd(ts.pkPrefix), false)
	n := 0
	for it.next() {
		key := append([]byte(nil), it.key...)
		pk := key[len(ts.pkPrefix):]
		if err := txn.lock(ctx, key); err != nil {
			return n, err
		}
		// the row as it is now that it is locked
		cur, ok, err := ts.db.s.get(txn.current(), key)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		row, err := ts.rows.Decode(cur)
		if err != nil {
			return n, decodeErr(err)
		}
		for _, is := range ts.indexes {
			k, _, _, err := ts.indexEntry(is, row, pk)
			if err != nil {
				return n, err
			}
			txn.del(k)
		}
		if ts.keyless {
			txn.del(ts.hashEntry(cur, pk))
		}
		txn.del(key)
		n++
	}
	if err := it.err(); err != nil {
		return n, err
	}
	txn.touch(ts, int64(-n))
	return n, nil
}
