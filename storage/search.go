package storage

import (
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
)

var _ sql.IndexSearchableTable = (*Table)(nil)

// SkipIndexCosting: shapes LookupForExpressions does not recognize go
// through GMS's costed index selection as usual.
func (t *Table) SkipIndexCosting() bool { return false }

// max1Row tells the planner a lookup returns at most one row (its
// single-row result path).
var max1Row = sql.NewTablescanFDs(sql.ColSet{}, []sql.ColSet{{}}, nil, sql.ColSet{})

// LookupForExpressions answers the commonest planner question without
// costing every index: equality with a constant on every primary key
// column is a single-row lookup. Costing is about half of GMS's analysis
// time for a point select.
func (t *Table) LookupForExpressions(ctx *sql.Context, exprs ...sql.Expression) (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
	if t.ts.keyless {
		return sql.IndexLookup{}, nil, nil, false, nil
	}
	pk := t.ts.pk
	vals := make([]interface{}, len(pk))
	found := make([]bool, len(pk))
	var rest []sql.Expression
	for _, e := range exprs {
		if i, v, ok := t.pkEquality(e); ok && !found[i] {
			vals[i], found[i] = v, true
			continue
		}
		rest = append(rest, e)
	}
	for i := range found {
		if !found[i] || vals[i] == nil || pk[i].prefix > 0 {
			return sql.IndexLookup{}, nil, nil, false, nil
		}
	}
	idx := &Index{ts: t.ts}
	b := sql.NewMySQLIndexBuilder(idx)
	for i, e := range idx.Expressions() {
		b = b.Equals(ctx, strings.ToLower(e), vals[i])
	}
	lookup, err := b.Build(ctx)
	if err != nil || lookup.IsEmpty() {
		return sql.IndexLookup{}, nil, nil, false, err
	}
	lookup.IsPointLookup = true
	var filter sql.Expression
	if len(rest) > 0 {
		filter = expression.JoinAnd(rest...)
	}
	return lookup, max1Row, filter, true, nil
}

// pkEquality recognizes column = constant on a primary key column.
func (t *Table) pkEquality(e sql.Expression) (int, interface{}, bool) {
	eq, ok := e.(*expression.Equals)
	if !ok {
		return 0, nil, false
	}
	gf, ok := eq.Left().(*expression.GetField)
	lit, ok2 := eq.Right().(*expression.Literal)
	if !ok || !ok2 {
		gf, ok = eq.Right().(*expression.GetField)
		lit, ok2 = eq.Left().(*expression.Literal)
		if !ok || !ok2 {
			return 0, nil, false
		}
	}
	for i, c := range t.ts.pk {
		if strings.EqualFold(t.ts.schema.Schema[c.ord].Name, gf.Name()) {
			return i, lit.Value(), true
		}
	}
	return 0, nil, false
}
