package gmsfix

import (
	"math"
	"math/big"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/expression/function/aggregation"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"
	"github.com/shopspring/decimal"
)

// ExactSumsRuleID names ExactSums among the analyzer's rules. It must run
// before the aggregator's rules, which split the aggregates it makes.
const ExactSumsRuleID analyzer.RuleId = 9_001

// ExactSums is an analyzer rule for SUM and AVG of exact values (integers
// and DECIMAL). GMS sums everything that is not a DECIMAL as float64 and
// types every SUM and AVG as DOUBLE, so `SUM(LENGTH(p))` over 1200 rows
// of 4000 characters printed `4.8e+06` and AVG(int) `2`; MySQL returns
// DECIMAL for both (`4800000`, `2.0000`) and DOUBLE only for approximate
// arguments.
//
// Rewriting the argument (SUM(CAST(x AS DECIMAL))) would not do: the
// planner has already typed every reference to the aggregate DOUBLE, and
// converting every row to a decimal costs an allocation a row. Instead
// the aggregate is replaced by ExactAggregate, which keeps the original's
// name, id and argument (so column names and the plan's strings are
// unchanged), is typed DECIMAL as MySQL types it, and sums int64 in an
// int64 until it would overflow, then in a decimal. References to it
// above the GROUP BY, and the columns of derived tables and views made
// of them, are retyped. SUM(x) OVER (…) is left to GMS.
func ExactSums(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	r := &retyper{ids: map[sql.ColumnId]sql.Type{}}
	return r.node(n)
}

// retyper replaces exact SUM and AVG aggregates and retypes what reads them.
type retyper struct {
	ids map[sql.ColumnId]sql.Type // aggregates replaced, derived-table columns of them: their type
}

// node rewrites n bottom up: children first, so a reference is seen
// after the aggregate it reads.
func (r *retyper) node(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
	return transform.NodeWithOpaque(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		n, same, err := transform.OneNodeExpressions(n, r.expr)
		if err != nil {
			return nil, transform.SameTree, err
		}
		switch x := n.(type) {
		case *plan.GroupBy:
			exprs := make([]sql.Expression, len(x.SelectedExprs))
			changed := false
			for i, e := range x.SelectedExprs {
				exprs[i] = e
				if ea := newExactAggregate(e); ea != nil {
					exprs[i] = ea
					r.ids[ea.Id()] = ea.typ
					changed = true
				}
			}
			if changed {
				gb := *x
				gb.SelectedExprs = exprs
				return &gb, transform.NewTree, nil
			}
		case *plan.SubqueryAlias:
			// `SELECT s FROM (SELECT SUM(x) s …) d` and views: the outer
			// query reads d.s by the alias's column id (its table id can
			// differ, for views), typed DOUBLE when it was planned. A
			// view's plan may have been rewritten when it was analyzed.
			schema := x.Schema()
			if x.Columns().Len() == len(schema) {
				i := 0
				x.Columns().ForEach(func(id sql.ColumnId) {
					if types.IsDecimal(schema[i].Type) {
						r.ids[id] = schema[i].Type
					}
					i++
				})
			}
		}
		return n, same, nil
	})
}

// expr retypes references to replaced aggregates and rewrites subqueries.
func (r *retyper) expr(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
	return transform.Expr(e, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
		switch x := e.(type) {
		case *plan.Subquery:
			q, same, err := r.node(x.Query)
			if err != nil || same {
				return e, transform.SameTree, err
			}
			return x.WithQuery(q), transform.NewTree, nil
		case *expression.GetField:
			t, ok := r.ids[x.Id()]
			if !ok || !types.IsFloat(x.Type()) { // retyped already, or not GMS's DOUBLE
				return e, transform.SameTree, nil
			}
			gf := expression.NewGetFieldWithTable(x.Index(), int(x.TableId()), t, x.Database(), x.Table(), x.Name(), x.IsNullable())
			return gf.WithId(x.Id()).(*expression.GetField), transform.NewTree, nil
		}
		return e, transform.SameTree, nil
	})
}

// ExactAggregate is SUM or AVG of an exact value, typed and computed as
// MySQL does: a DECIMAL. It wraps the aggregate GMS planned.
type ExactAggregate struct {
	orig sql.Aggregation // *aggregation.Sum or *aggregation.Avg
	arg  sql.Expression
	avg  bool
	typ  sql.DecimalType
}

var _ sql.Aggregation = (*ExactAggregate)(nil)

// newExactAggregate is e as an ExactAggregate, or nil when e is not a
// plain SUM or AVG of an exact value.
func newExactAggregate(e sql.Expression) *ExactAggregate {
	var arg sql.Expression
	avg := false
	switch x := e.(type) {
	case *aggregation.Sum:
		arg = x.Child
	case *aggregation.Avg:
		arg, avg = x.Child, true
	default:
		return nil
	}
	agg := e.(sql.Aggregation)
	if agg.Window() != nil {
		return nil
	}
	t, ok := ExactResultType(arg.Type(), avg)
	if !ok {
		return nil
	}
	return &ExactAggregate{orig: agg, arg: arg, avg: avg, typ: t}
}

// ExactResultType is MySQL's type for SUM (avg false) or AVG of a value
// of type arg, when arg is exact: SUM keeps the argument's scale and adds
// 22 digits of precision (DECIMAL_LONGLONG_DIGITS); AVG adds 4 digits of
// scale (div_precision_increment). MySQL gives AVG only 4 more digits of
// precision; here it gets SUM's 22, because GMS types some expressions
// narrower than their values (ROUND(d) of a DECIMAL(10,2) is typed
// DECIMAL(10,2) and can have 9 integer digits) and a value wider than its
// column type fails to print. Only the column length differs.
func ExactResultType(arg sql.Type, avg bool) (sql.DecimalType, bool) {
	prec, scale, ok := exactDigits(arg)
	if !ok {
		return nil, false
	}
	prec += 22
	if avg {
		scale = min(scale+4, types.DecimalTypeMaxScale)
	}
	prec = min(max(prec, scale), types.DecimalTypeMaxPrecision)
	return types.MustCreateDecimalType(uint8(prec), uint8(scale)), true
}

// exactDigits is the precision and scale of an integer or decimal type.
func exactDigits(t sql.Type) (prec, scale int, ok bool) {
	if t == nil {
		return 0, 0, false
	}
	if dt, ok := t.(sql.DecimalType); ok {
		return int(dt.Precision()), int(dt.Scale()), true
	}
	switch t.Type() {
	case sqltypes.Int8, sqltypes.Uint8:
		return 3, 0, true
	case sqltypes.Int16, sqltypes.Uint16:
		return 5, 0, true
	case sqltypes.Int24:
		return 7, 0, true
	case sqltypes.Uint24:
		return 8, 0, true
	case sqltypes.Int32, sqltypes.Uint32:
		return 10, 0, true
	case sqltypes.Int64:
		return 19, 0, true
	case sqltypes.Uint64:
		return 20, 0, true
	}
	return 0, 0, false
}

// Arg is the aggregate's argument; Avg tells AVG from SUM.
func (a *ExactAggregate) Arg() sql.Expression { return a.arg }
func (a *ExactAggregate) Avg() bool           { return a.avg }

func (a *ExactAggregate) Type() sql.Type                { return a.typ }
func (a *ExactAggregate) IsNullable() bool              { return true }
func (a *ExactAggregate) Resolved() bool                { return a.orig.Resolved() }
func (a *ExactAggregate) String() string                { return a.orig.String() }
func (a *ExactAggregate) Children() []sql.Expression    { return a.orig.Children() }
func (a *ExactAggregate) Id() sql.ColumnId              { return a.orig.Id() }
func (a *ExactAggregate) Window() *sql.WindowDefinition { return nil }
func (a *ExactAggregate) FunctionName() string          { return a.orig.(sql.FunctionExpression).FunctionName() }
func (a *ExactAggregate) Description() string           { return a.orig.(sql.FunctionExpression).Description() }

func (a *ExactAggregate) DebugString() string { return sql.DebugString(a.orig) }

func (a *ExactAggregate) Eval(*sql.Context, sql.Row) (interface{}, error) {
	return nil, aggregation.ErrEvalUnsupportedOnAggregation.New(a.orig.String())
}

func (a *ExactAggregate) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	o, err := a.orig.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	if na := newExactAggregate(o); na != nil {
		return na, nil
	}
	return o, nil
}

func (a *ExactAggregate) WithId(id sql.ColumnId) sql.IdExpression {
	n := *a
	n.orig = a.orig.WithId(id).(sql.Aggregation)
	return &n
}

// WithWindow gives GMS's own aggregate back: window functions are its.
func (a *ExactAggregate) WithWindow(w *sql.WindowDefinition) sql.WindowAdaptableExpression {
	return a.orig.WithWindow(w)
}

func (a *ExactAggregate) NewWindowFunction() (sql.WindowFunction, error) {
	return a.orig.NewWindowFunction()
}

func (a *ExactAggregate) NewBuffer() (sql.AggregationBuffer, error) {
	child, err := transform.Clone(a.arg) // a DISTINCT argument keeps state
	if err != nil {
		return nil, err
	}
	return &exactSumBuffer{expr: child, avg: a.avg, scale: int32(a.typ.Scale())}, nil
}

// exactSumBuffer sums exact values: integers in an int64 while they fit
// (no allocation a row), everything else and the overflow in a decimal.
type exactSumBuffer struct {
	expr  sql.Expression
	avg   bool
	scale int32 // AVG's result scale

	rows   int64 // non-NULL values seen
	small  int64
	big    decimal.Decimal
	hasBig bool
}

func (b *exactSumBuffer) Update(ctx *sql.Context, row sql.Row) error {
	v, err := b.expr.Eval(ctx, row)
	if err != nil || v == nil {
		return err
	}
	b.rows++
	switch x := v.(type) {
	case int64:
		b.addInt(x)
	case int32:
		b.addInt(int64(x))
	case int8:
		b.addInt(int64(x))
	case int16:
		b.addInt(int64(x))
	case int:
		b.addInt(int64(x))
	case uint8:
		b.addInt(int64(x))
	case uint16:
		b.addInt(int64(x))
	case uint32:
		b.addInt(int64(x))
	case uint64:
		if x <= math.MaxInt64 {
			b.addInt(int64(x))
		} else {
			b.addBig(decimal.NewFromBigInt(new(big.Int).SetUint64(x), 0))
		}
	case bool:
		if x {
			b.addInt(1)
		}
	case decimal.Decimal:
		b.addBig(x)
	default:
		// a string, float, … from an expression typed exact: MySQL
		// converts it (a value that is not a number counts as 0)
		d, _, err := types.InternalDecimalType.Convert(ctx, x)
		if err == nil {
			if d, ok := d.(decimal.Decimal); ok {
				b.addBig(d)
			}
		}
	}
	return nil
}

func (b *exactSumBuffer) addInt(x int64) {
	s := b.small + x
	if (x > 0 && s < b.small) || (x < 0 && s > b.small) { // overflow
		b.addBig(decimal.NewFromInt(b.small))
		s = x
	}
	b.small = s
}

func (b *exactSumBuffer) addBig(d decimal.Decimal) {
	if b.hasBig {
		b.big = b.big.Add(d)
	} else {
		b.big, b.hasBig = d, true
	}
}

func (b *exactSumBuffer) Eval(*sql.Context) (interface{}, error) {
	if b.rows == 0 {
		return nil, nil
	}
	sum := decimal.NewFromInt(b.small)
	if b.hasBig {
		sum = b.big.Add(sum)
	}
	if b.avg {
		return sum.DivRound(decimal.NewFromInt(b.rows), b.scale), nil
	}
	return sum, nil
}

func (b *exactSumBuffer) Dispose() { expression.Dispose(b.expr) }
