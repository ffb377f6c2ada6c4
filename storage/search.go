package storage

import (
	"sort"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/types"
)

var _ sql.IndexSearchableTable = (*Table)(nil)

// SkipIndexCosting: shapes LookupForExpressions does not recognize go
// through GMS's costed index selection as usual.
func (t *Table) SkipIndexCosting() bool { return false }

// max1Row tells the planner a lookup returns at most one row (its
// single-row result path).
var max1Row = sql.NewTablescanFDs(sql.ColSet{}, []sql.ColSet{{}}, nil, sql.ColSet{})

// LookupForExpressions answers the commonest planner questions without
// costing every index: equality with a constant on every primary key
// column is a single-row lookup (costing is about half of GMS's analysis
// time for a point select); long IN lists on an index's leading column
// and lone bounds on the primary key's are their ranges.
func (t *Table) LookupForExpressions(ctx *sql.Context, exprs ...sql.Expression) (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
	if t.ts.keyless {
		return t.rangeLookup(ctx, exprs)
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
			return t.rangeLookup(ctx, exprs)
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

// rangeLookup is the lookup of a long IN list or of a primary key's lone
// bounds, when the conditions hold one; ok false leaves them to GMS.
func (t *Table) rangeLookup(ctx *sql.Context, exprs []sql.Expression) (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
	if lookup, fds, filter, ok, err := t.inListLookup(ctx, exprs); ok || err != nil {
		return lookup, fds, filter, ok, err
	}
	return t.boundsLookup(ctx, exprs)
}

// minInListLookup is the shortest IN list inListLookup takes over; GMS
// costs shorter ones against the other conditions as usual.
const minInListLookup = 16

// noKeyFDs: a lookup that may return many rows.
var noKeyFDs = sql.NewTablescanFDs(sql.ColSet{}, nil, nil, sql.ColSet{})

// inListLookup answers column IN (constants) on the leading column of an
// index with one point range per distinct value, in index order. GMS's
// costing builds the same ranges but then checks every pair of them for
// overlap (sql.RemoveOverlappingRanges): quadratic, 20 ms for the
// 1000-value lists the aggregator's lookup joins send. Only integer
// constants on an integer column and strings on a string column: other
// mixes compare by rules (numbers against strings as floats) a point
// range of the column's type would not follow. The conditions stay as the
// filter above the lookup, but for integers the column holds exactly.
func (t *Table) inListLookup(ctx *sql.Context, exprs []sql.Expression) (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
	for _, e := range exprs {
		col, vals, ok := inList(e)
		if !ok || len(vals) < minInListLookup {
			continue
		}
		idx := t.leadingIndex(col)
		if idx == nil {
			continue
		}
		colType := t.ts.schema.Schema[idx.cols()[0].ord].Type
		if !literalsFit(colType, vals) {
			continue
		}
		lookup, err := sql.NewMySQLIndexBuilder(idx).Equals(ctx, strings.ToLower(idx.Expressions()[0]), vals...).Build(ctx)
		if err != nil || lookup.IsEmpty() {
			continue
		}
		ranges, ok := lookup.Ranges.(sql.MySQLRangeCollection)
		if !ok {
			continue
		}
		if lookup.Ranges, err = distinctRanges(ranges); err != nil {
			continue
		}
		rest := exprs
		if exactInts(ctx, colType, vals) {
			rest = without(exprs, e)
		}
		return lookup, noKeyFDs, expression.JoinAnd(rest...), true, nil
	}
	return sql.IndexLookup{}, nil, nil, false, nil
}

// boundsLookup answers a column's lone bounds (col >= constant AND col <=
// constant: GMS's form of BETWEEN) on the primary key's leading column
// with that one range, without costing every index: the range reads of a
// fan-out (sysbench's id BETWEEN), where costing took a tenth of a leaf's
// CPU. A range of the primary key never reads more than a scan of the
// table; on a secondary index it may (a row fetched per entry), so with a
// secondary index, or other conditions, GMS costs as usual.
func (t *Table) boundsLookup(ctx *sql.Context, exprs []sql.Expression) (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
	no := func() (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
		return sql.IndexLookup{}, nil, nil, false, nil
	}
	if len(exprs) > 2 {
		return no()
	}
	var col *expression.GetField
	var vals []interface{}
	for _, e := range exprs {
		cmp, ok := e.(expression.Comparer)
		if !ok {
			return no()
		}
		switch e.(type) {
		case *expression.GreaterThan, *expression.GreaterThanOrEqual, *expression.LessThan, *expression.LessThanOrEqual:
		default:
			return no()
		}
		gf, ok := cmp.Left().(*expression.GetField)
		lit, ok2 := cmp.Right().(*expression.Literal)
		if !ok || !ok2 || lit.Value() == nil || col != nil && !strings.EqualFold(col.Name(), gf.Name()) {
			return no()
		}
		col = gf
		vals = append(vals, lit.Value())
	}
	if col == nil {
		return no()
	}
	idx := t.leadingIndex(col)
	if idx == nil || !idx.primary() || !literalsFit(t.ts.schema.Schema[idx.cols()[0].ord].Type, vals) {
		return no()
	}
	name := strings.ToLower(idx.Expressions()[0])
	b := sql.NewMySQLIndexBuilder(idx)
	for i, e := range exprs {
		switch e.(type) {
		case *expression.GreaterThan:
			b = b.GreaterThan(ctx, name, vals[i])
		case *expression.GreaterThanOrEqual:
			b = b.GreaterOrEqual(ctx, name, vals[i])
		case *expression.LessThan:
			b = b.LessThan(ctx, name, vals[i])
		case *expression.LessThanOrEqual:
			b = b.LessOrEqual(ctx, name, vals[i])
		}
	}
	lookup, err := b.Build(ctx)
	if err != nil || lookup.IsEmpty() {
		return no()
	}
	if exactInts(ctx, t.ts.schema.Schema[idx.cols()[0].ord].Type, vals) {
		return lookup, noKeyFDs, nil, true, nil
	}
	return lookup, noKeyFDs, expression.JoinAnd(exprs...), true, nil
}

// exactInts reports whether every value is an integer the integer column
// type holds as it is: the point ranges or bounds built from them then
// select exactly the rows the conditions do, and the conditions need not
// be evaluated again on every row (a tenth of a leaf's CPU under range
// reads). Anything else keeps its conditions as the filter.
func exactInts(ctx *sql.Context, colType sql.Type, vals []interface{}) bool {
	if !types.IsInteger(colType) {
		return false
	}
	for _, v := range vals {
		switch v.(type) {
		case int8, int16, int32, int64, uint8, uint16, uint32, uint64, int, uint:
		default:
			return false
		}
		if _, in, err := colType.Convert(ctx, v); err != nil || in != sql.InRange {
			return false
		}
	}
	return true
}

// without is exprs less e.
func without(exprs []sql.Expression, e sql.Expression) []sql.Expression {
	out := make([]sql.Expression, 0, len(exprs))
	for _, x := range exprs {
		if x != e {
			out = append(out, x)
		}
	}
	return out
}

// inList recognizes column IN (constants, none NULL).
func inList(e sql.Expression) (*expression.GetField, []interface{}, bool) {
	var left, right sql.Expression
	switch in := e.(type) {
	case *expression.HashInTuple:
		left, right = in.Left(), in.Right()
	case *expression.InTuple:
		left, right = in.Left(), in.Right()
	default:
		return nil, nil, false
	}
	gf, ok := left.(*expression.GetField)
	tuple, ok2 := right.(expression.Tuple)
	if !ok || !ok2 {
		return nil, nil, false
	}
	vals := make([]interface{}, len(tuple))
	for i, x := range tuple {
		lit, ok := x.(*expression.Literal)
		if !ok || lit.Value() == nil {
			return nil, nil, false
		}
		vals[i] = lit.Value()
	}
	return gf, vals, true
}

// leadingIndex is an index whose first column is col (whole, not a
// prefix), the primary key first.
func (t *Table) leadingIndex(col *expression.GetField) *Index {
	for _, si := range t.indexes() {
		idx := si.(*Index)
		first := idx.cols()[0]
		if first.prefix == 0 && strings.EqualFold(t.ts.schema.Schema[first.ord].Name, col.Name()) {
			return idx
		}
	}
	return nil
}

// literalsFit reports whether every value is of the column's kind:
// integers for an integer column, strings for a string column.
func literalsFit(colType sql.Type, vals []interface{}) bool {
	for _, v := range vals {
		switch v.(type) {
		case int8, int16, int32, int64, uint8, uint16, uint32, uint64, int, uint:
			if !types.IsInteger(colType) {
				return false
			}
		case string:
			if !types.IsText(colType) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// distinctRanges sorts point ranges and drops repeated ones (equal values,
// or values equal under the column's collation): overlapping ranges would
// return their rows twice.
func distinctRanges(ranges sql.MySQLRangeCollection) (sql.MySQLRangeCollection, error) {
	var cmpErr error
	sort.SliceStable(ranges, func(i, j int) bool {
		c, err := ranges[i].Compare(ranges[j])
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		return c < 0
	})
	if cmpErr != nil {
		return nil, cmpErr
	}
	out := ranges[:1]
	for _, r := range ranges[1:] {
		c, err := out[len(out)-1].Compare(r)
		if err != nil {
			return nil, err
		}
		if c != 0 {
			out = append(out, r)
		}
	}
	return out, nil
}
