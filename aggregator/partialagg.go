package aggregator

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/expression/function/aggregation"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/gmsfix"
)

// AggregateRuleID names PushAggregates among the analyzer's rules; it runs
// after PushFilters.
const AggregateRuleID analyzer.RuleId = 10_001

// PushAggregates is an analyzer rule that splits a GROUP BY over one
// sharded table into partial aggregates computed by every partition
// (GROUP BY on the leaf) and a merge on the aggregator: COUNT and SUM are
// summed, MIN and MAX taken again, AVG carried as a sum and a count.
// Partitions then send one row per group instead of every row. HAVING,
// ORDER BY and LIMIT stay above the merge, where GMS already put them.
func PushAggregates(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		gb, ok := n.(*plan.GroupBy)
		if !ok {
			return n, transform.SameTree, nil
		}
		if nn, ok := partialGroupBy(ctx, gb); ok {
			return nn, transform.NewTree, nil
		}
		if nn, ok := distinctGroupBy(gb); ok {
			return nn, transform.NewTree, nil
		}
		return n, transform.SameTree, nil
	})
}

// partialGroupBy rewrites a GroupBy whose input is a (filtered) scan of a
// sharded table, when every grouping expression, aggregate argument and
// filter can be written as SQL for the leaves.
func partialGroupBy(ctx *sql.Context, gb *plan.GroupBy) (sql.Node, bool) {
	_, name, dt, cond := scanBelow(gb.Child)
	if dt == nil {
		return nil, false
	}
	ps := &partialScan{a: dt.a, db: dt.db, table: dt.Name()}
	if cond != nil {
		var ok bool
		if ps.where, ok = planner.FilterSQL(ctx, cond, name); !ok {
			return nil, false
		}
	}
	exprSQL := func(e sql.Expression) (string, bool) {
		if _, ok := e.(*expression.Star); ok {
			return "*", true
		}
		return planner.FilterSQL(ctx, e, name)
	}
	// add appends a column the partitions compute.
	add := func(text string, typ sql.Type) int {
		ps.cols = append(ps.cols, text)
		ps.schema = append(ps.schema, &sql.Column{Name: fmt.Sprintf("p%d", len(ps.schema)), Type: typ, Nullable: true})
		return len(ps.schema) - 1
	}
	field := func(i int) *expression.GetField {
		c := ps.schema[i]
		return expression.NewGetField(i, c.Type, c.Name, true)
	}

	var groupBy []sql.Expression
	for _, g := range gb.GroupByExprs {
		if al, ok := g.(*expression.Alias); ok {
			g = al.Child // GROUP BY a select alias: the expression itself
		}
		text, ok := exprSQL(g)
		if !ok {
			return nil, false
		}
		ps.groupBy = append(ps.groupBy, text)
		groupBy = append(groupBy, field(add(text, g.Type())))
	}
	var selected []sql.Expression
	for _, e := range gb.SelectedExprs {
		agg, isAgg := e.(sql.Aggregation)
		if !isAgg {
			if containsAggregate(e) {
				return nil, false
			}
			text, ok := exprSQL(e)
			if !ok {
				return nil, false
			}
			i := slices.Index(ps.groupBy, text)
			if i < 0 {
				// Not a grouping expression: the aggregator's GroupBy
				// takes some row's value, so each partition sends one,
				// with ANY_VALUE. Sent bare, the partition's query could
				// be refused by GMS's ONLY_FULL_GROUP_BY check where the
				// client's query passed it: GMS checks a GroupBy only
				// when no Project, Having or Sort sits right above it,
				// so the verdict depends on the plan's shape, and
				// `SELECT COALESCE(95, c) … GROUP BY k` becomes
				// `SELECT k, c … GROUP BY k`, whose Project GMS erases.
				i = add("ANY_VALUE("+text+")", e.Type())
			}
			switch e.(type) {
			case *expression.GetField, sql.Nameable:
				selected = append(selected, &pickedValue{orig: e, field: field(i)})
			default:
				return nil, false
			}
			continue
		}
		var arg sql.Expression
		var kind mergeKind
		switch x := agg.(type) {
		case *aggregation.Count:
			arg, kind = x.Child, mergeCount
		case *aggregation.Sum:
			arg, kind = x.Child, mergeSum
		case *aggregation.Min:
			arg, kind = x.Child, mergeMin
		case *aggregation.Max:
			arg, kind = x.Child, mergeMax
		case *aggregation.Avg:
			arg, kind = x.Child, mergeAvg
		case *gmsfix.ExactAggregate: // SUM or AVG of an exact value
			arg, kind = x.Arg(), mergeSum
			if x.Avg() {
				kind = mergeAvg
			}
		default:
			return nil, false // COUNT(DISTINCT), GROUP_CONCAT, …: the rows travel
		}
		if agg.Window() != nil {
			return nil, false
		}
		text, ok := exprSQL(arg)
		if !ok {
			return nil, false
		}
		m := &mergeAgg{orig: agg, kind: kind}
		switch kind {
		case mergeCount:
			m.cols = []int{add("COUNT("+text+")", types.Int64)}
		case mergeSum:
			m.cols = []int{add("SUM("+text+")", partialSumType(arg.Type()))}
		case mergeMin:
			m.cols = []int{add("MIN("+text+")", arg.Type())}
		case mergeMax:
			m.cols = []int{add("MAX("+text+")", arg.Type())}
		case mergeAvg:
			m.cols = []int{add("SUM("+text+")", partialSumType(arg.Type())), add("COUNT("+text+")", types.Int64)}
		}
		for _, c := range m.cols {
			m.fields = append(m.fields, field(c))
		}
		selected = append(selected, m)
	}
	return plan.NewGroupBy(selected, groupBy, ps), true
}

// distinctGroupBy handles a GroupBy whose aggregates ignore duplicate
// rows (COUNT(DISTINCT), SUM/AVG(DISTINCT), MIN, MAX): each partition
// sends the distinct rows of the columns the grouping reads, and the
// aggregator groups those. The rows that travel are the distinct
// (group, value) pairs, not the table.
func distinctGroupBy(gb *plan.GroupBy) (sql.Node, bool) {
	rt, _, dt, _ := scanBelow(gb.Child)
	if dt == nil || dt.distinct || dt.suffix != "" || dt.proj == nil {
		return nil, false
	}
	distinctOnly, hasAggregate := true, false
	for _, e := range gb.SelectedExprs {
		transform.InspectExpr(e, func(e sql.Expression) bool {
			agg, ok := e.(sql.Aggregation)
			if !ok {
				return false
			}
			hasAggregate = true
			switch x := agg.(type) {
			case *aggregation.CountDistinct, *aggregation.Min, *aggregation.Max:
			case *aggregation.Sum:
				_, ok = x.Child.(*expression.DistinctExpression)
			case *aggregation.Avg:
				_, ok = x.Child.(*expression.DistinctExpression)
			case *gmsfix.ExactAggregate:
				_, ok = x.Arg().(*expression.DistinctExpression)
			default:
				ok = false
			}
			distinctOnly = distinctOnly && ok
			return false // look at every aggregate
		})
	}
	if !distinctOnly || !hasAggregate {
		return nil, false
	}
	nt := *dt
	nt.distinct = true
	child, err := replaceScan(gb.Child, rt, &nt)
	if err != nil {
		return nil, false
	}
	out, err := gb.WithChildren(child)
	return out, err == nil
}

func containsAggregate(e sql.Expression) bool {
	return transform.InspectExpr(e, func(e sql.Expression) bool {
		_, ok := e.(sql.Aggregation)
		return ok
	})
}

// partialSumType is the type a partition's SUM arrives as: a decimal at
// the argument's scale for exact values (integers and decimals, see
// gmsfix.ExactSums), so partial sums merge exactly, and float64 for
// everything else, as GMS sums them.
func partialSumType(arg sql.Type) sql.Type {
	if dt, ok := gmsfix.ExactResultType(arg, false); ok {
		return types.MustCreateDecimalType(types.DecimalTypeMaxPrecision, dt.Scale())
	}
	return types.Float64
}

// partialScan is the leaf half of a split aggregate: every partition runs
// the grouped query; its rows are partial aggregates.
type partialScan struct {
	a            *Aggregator
	db           *meta.Database
	table, where string
	cols         []string
	groupBy      []string
	schema       sql.Schema
}

var _ sql.ExecSourceRel = (*partialScan)(nil)

// leafSQL is what a leaf runs over its partitions, database.
func (p *partialScan) leafSQL(database string) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(strings.Join(p.cols, ", "))
	fmt.Fprintf(&b, " FROM %s.%s", quoteIdent(database), quoteIdent(p.table))
	if p.where != "" {
		b.WriteString(" WHERE " + p.where)
	}
	if len(p.groupBy) > 0 {
		b.WriteString(" GROUP BY " + strings.Join(p.groupBy, ", "))
	}
	return b.String()
}

func (p *partialScan) RowIter(ctx *sql.Context, _ sql.Row) (sql.RowIter, error) {
	return p.a.gather(ctx, p.db.Name, p.leafSQL, p.schema)
}

func (p *partialScan) Resolved() bool       { return true }
func (p *partialScan) IsReadOnly() bool     { return true }
func (p *partialScan) Schema() sql.Schema   { return p.schema }
func (p *partialScan) Children() []sql.Node { return nil }
func (p *partialScan) WithChildren(children ...sql.Node) (sql.Node, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(p, len(children), 0)
	}
	return p, nil
}

func (p *partialScan) String() string {
	return "PartialAggregate(every leaf: " + p.leafSQL(leafPartitions(p.db.Name)) + ")"
}

func (p *partialScan) explain() []string {
	return []string{"Leaf SQL (partial aggregate): " + p.leafSQL(leafPartitions(p.db.Name))}
}

type mergeKind int

const (
	mergeCount mergeKind = iota
	mergeSum
	mergeMin
	mergeMax
	mergeAvg
)

// mergeAgg finishes an aggregate from the partitions' partial values. It
// keeps the original aggregate's name, type and id, so the plan above it
// reads its output unchanged.
type mergeAgg struct {
	orig   sql.Aggregation
	kind   mergeKind
	cols   []int
	fields []*expression.GetField
}

var _ sql.Aggregation = (*mergeAgg)(nil)

func (m *mergeAgg) NewBuffer() (sql.AggregationBuffer, error) {
	switch m.kind {
	case mergeCount:
		return &countMerge{field: m.fields[0]}, nil
	case mergeSum:
		return aggregation.NewSumBuffer(m.fields[0]), nil
	case mergeMin:
		return aggregation.NewMinBuffer(m.fields[0]), nil
	case mergeMax:
		return aggregation.NewMaxBuffer(m.fields[0]), nil
	default:
		scale := int32(-1)
		if dt, ok := m.orig.Type().(sql.DecimalType); ok {
			scale = int32(dt.Scale())
		}
		return &avgMerge{sum: aggregation.NewSumBuffer(m.fields[0]), count: countMerge{field: m.fields[1]}, scale: scale}, nil
	}
}

func (m *mergeAgg) Resolved() bool                { return true }
func (m *mergeAgg) String() string                { return m.orig.String() }
func (m *mergeAgg) Type() sql.Type                { return m.orig.Type() }
func (m *mergeAgg) IsNullable() bool              { return m.orig.IsNullable() }
func (m *mergeAgg) Children() []sql.Expression    { return nil }
func (m *mergeAgg) Id() sql.ColumnId              { return m.orig.Id() }
func (m *mergeAgg) Window() *sql.WindowDefinition { return nil }
func (m *mergeAgg) NewWindowFunction() (sql.WindowFunction, error) {
	return nil, fmt.Errorf("%s: a merged aggregate has no window form", m.orig)
}
func (m *mergeAgg) Eval(*sql.Context, sql.Row) (interface{}, error) {
	return nil, aggregation.ErrEvalUnsupportedOnAggregation.New(m.orig.String())
}

func (m *mergeAgg) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(m, len(children), 0)
	}
	return m, nil
}

func (m *mergeAgg) WithId(id sql.ColumnId) sql.IdExpression {
	n := *m
	n.orig = m.orig.WithId(id).(sql.Aggregation)
	return &n
}

func (m *mergeAgg) WithWindow(*sql.WindowDefinition) sql.WindowAdaptableExpression { return m }

// pickedValue is a selected expression of a split GroupBy that is no
// aggregate (a grouping column, or a column some row of the group gives,
// as MySQL allows without ONLY_FULL_GROUP_BY): it keeps the value of the
// first partial row of its group. It is an aggregation all the same, so
// that GMS's ONLY_FULL_GROUP_BY check passes over the rewritten GroupBy:
// the check has judged the client's GroupBy already, but a derived
// table's plan is rewritten when GMS finishes it and then checked again
// as part of the outer query, where the split GroupBy groups by its own
// columns (p0, …) and a bare column would look ungrouped (`SELECT * FROM
// (SELECT y FROM b GROUP BY y) AS dt` failed with 1105). It keeps the
// original's name, table, type and id, so the plan above reads it
// unchanged.
type pickedValue struct {
	orig  sql.Expression
	field *expression.GetField
}

var (
	_ sql.Aggregation  = (*pickedValue)(nil)
	_ sql.Nameable     = (*pickedValue)(nil)
	_ sql.Tableable    = (*pickedValue)(nil)
	_ sql.Databaseable = (*pickedValue)(nil)
)

func (v *pickedValue) NewBuffer() (sql.AggregationBuffer, error) {
	return &firstValue{field: v.field}, nil
}

func (v *pickedValue) Resolved() bool             { return true }
func (v *pickedValue) String() string             { return v.orig.String() }
func (v *pickedValue) Type() sql.Type             { return v.orig.Type() }
func (v *pickedValue) IsNullable() bool           { return v.orig.IsNullable() }
func (v *pickedValue) Children() []sql.Expression { return nil }

// Name, Table and Database name the GroupBy's output column as the
// original did.
func (v *pickedValue) Name() string {
	if n, ok := v.orig.(sql.Nameable); ok {
		return n.Name()
	}
	return v.orig.String()
}

func (v *pickedValue) Table() string {
	if t, ok := v.orig.(sql.Tableable); ok {
		return t.Table()
	}
	return ""
}

func (v *pickedValue) Database() string {
	if d, ok := v.orig.(sql.Databaseable); ok {
		return d.Database()
	}
	return ""
}

func (v *pickedValue) Id() sql.ColumnId {
	if ide, ok := v.orig.(sql.IdExpression); ok {
		return ide.Id()
	}
	return 0
}

func (v *pickedValue) WithId(id sql.ColumnId) sql.IdExpression {
	n := *v
	if ide, ok := v.orig.(sql.IdExpression); ok {
		n.orig = ide.WithId(id).(sql.Expression)
	}
	return &n
}

func (v *pickedValue) Window() *sql.WindowDefinition                                  { return nil }
func (v *pickedValue) WithWindow(*sql.WindowDefinition) sql.WindowAdaptableExpression { return v }
func (v *pickedValue) NewWindowFunction() (sql.WindowFunction, error) {
	return nil, fmt.Errorf("%s: a picked value has no window form", v.orig)
}

func (v *pickedValue) Eval(*sql.Context, sql.Row) (interface{}, error) {
	return nil, aggregation.ErrEvalUnsupportedOnAggregation.New(v.orig.String())
}

func (v *pickedValue) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(v, len(children), 0)
	}
	return v, nil
}

// firstValue keeps the value of the first row.
type firstValue struct {
	field sql.Expression
	seen  bool
	v     interface{}
}

func (f *firstValue) Update(ctx *sql.Context, row sql.Row) error {
	if f.seen {
		return nil
	}
	v, err := f.field.Eval(ctx, row)
	if err != nil {
		return err
	}
	f.v, f.seen = v, true
	return nil
}

func (f *firstValue) Eval(*sql.Context) (interface{}, error) { return f.v, nil }
func (f *firstValue) Dispose()                               {}

// countMerge adds up partial counts.
type countMerge struct {
	field sql.Expression
	n     int64
}

func (c *countMerge) Update(ctx *sql.Context, row sql.Row) error {
	v, err := c.field.Eval(ctx, row)
	if err != nil || v == nil {
		return err
	}
	n, _, err := types.Int64.Convert(ctx, v)
	if err != nil {
		return err
	}
	c.n += n.(int64)
	return nil
}

func (c *countMerge) Eval(*sql.Context) (interface{}, error) { return c.n, nil }
func (c *countMerge) Dispose()                               {}

// avgMerge divides the summed partial sums by the summed partial counts,
// as the node's AVG does: a decimal quotient is rounded to the result
// type's scale (the argument's plus four), or, when the aggregate is not
// typed DECIMAL, to four more digits than the sum's.
type avgMerge struct {
	sum   sql.AggregationBuffer
	count countMerge
	scale int32 // -1: from the sum
}

func (a *avgMerge) Update(ctx *sql.Context, row sql.Row) error {
	if err := a.sum.Update(ctx, row); err != nil {
		return err
	}
	return a.count.Update(ctx, row)
}

func (a *avgMerge) Eval(ctx *sql.Context) (interface{}, error) {
	s, err := a.sum.Eval(ctx)
	if err != nil || s == nil || a.count.n == 0 {
		return nil, err
	}
	switch s := s.(type) {
	case float64:
		return s / float64(a.count.n), nil
	case decimal.Decimal:
		scale := a.scale
		if scale < 0 {
			scale = -s.Exponent() + 4
		}
		return s.DivRound(decimal.NewFromInt(a.count.n), scale), nil
	}
	return nil, fmt.Errorf("average of %T", s)
}

func (a *avgMerge) Dispose() {}
