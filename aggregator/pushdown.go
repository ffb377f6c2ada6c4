package aggregator

import (
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/aggregator/planner"
)

// PushdownRuleID names PushFilters among the analyzer's rules; it is far
// past GMS's own ids.
const PushdownRuleID analyzer.RuleId = 10_000

// PushFilters is an analyzer rule that hands the filters GMS placed right
// above a sharded table's scan to the table, so each partition evaluates
// them and only matching rows travel. GMS 0.20 no longer pushes filters
// into sql.FilteredTable itself. The Filter node stays: the aggregator
// evaluates the condition again, which costs little and keeps the answer
// MySQL's even if a leaf were laxer.
func PushFilters(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return pushFilters(ctx, n)
}

func pushFilters(ctx *sql.Context, n sql.Node) (sql.Node, transform.TreeIdentity, error) {
	n, same, err := transform.NodeWithOpaque(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		f, ok := n.(*plan.Filter)
		if !ok {
			return n, transform.SameTree, nil
		}
		child, ok := withFilters(ctx, f.Child, expression.SplitConjunction(f.Expression))
		if !ok {
			return n, transform.SameTree, nil
		}
		return plan.NewFilter(f.Expression, child), transform.NewTree, nil
	})
	if err != nil {
		return nil, transform.SameTree, err
	}
	// Subqueries in expressions are plans of their own.
	n, same2, err := transform.NodeExprsWithOpaque(n, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
		sq, ok := e.(*plan.Subquery)
		if !ok || sq.Query == nil {
			return e, transform.SameTree, nil
		}
		q, same, err := pushFilters(ctx, sq.Query)
		if err != nil || same {
			return e, transform.SameTree, err
		}
		return sq.WithQuery(q), transform.NewTree, nil
	})
	return n, same && same2, err
}

// withFilters gives a sharded table scan (maybe under an alias) the
// conditions it can run on the partitions.
func withFilters(ctx *sql.Context, child sql.Node, conds []sql.Expression) (sql.Node, bool) {
	switch c := child.(type) {
	case *plan.TableAlias:
		rt, ok := c.Child.(*plan.ResolvedTable)
		if !ok {
			return nil, false
		}
		nrt, ok := filterTable(ctx, rt, c.Name(), conds)
		if !ok {
			return nil, false
		}
		na, err := c.WithChildren(nrt)
		return na, err == nil
	case *plan.ResolvedTable:
		return filterTable(ctx, c, c.Name(), conds)
	}
	return nil, false
}

func filterTable(ctx *sql.Context, rt *plan.ResolvedTable, name string, conds []sql.Expression) (sql.Node, bool) {
	dt, ok := rt.Table.(*DistTable)
	if !ok || dt.where != "" {
		return nil, false
	}
	nt, ok := dt.withFilters(ctx, name, conds)
	if !ok {
		return nil, false
	}
	nrt, err := rt.WithTable(nt)
	return nrt, err == nil
}

// TopNRuleID names PushTopN among the analyzer's rules.
const TopNRuleID analyzer.RuleId = 10_002

// PushTopN is an analyzer rule that gives a sharded table scan the
// ORDER BY … LIMIT above it (each partition sends only its first
// offset+limit rows; the aggregator sorts those and applies the limit
// again) and the DISTINCT above it (each partition sends its distinct
// rows; the aggregator removes duplicates across partitions).
func PushTopN(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		switch n := n.(type) {
		case *plan.Limit:
			if nn, ok := pushLimit(ctx, n); ok {
				return nn, transform.NewTree, nil
			}
		case *plan.TopN:
			if nn, ok := pushTopN(ctx, n); ok {
				return nn, transform.NewTree, nil
			}
		case *plan.Distinct:
			if nn, ok := pushDistinct(n); ok {
				return nn, transform.NewTree, nil
			}
		}
		return n, transform.SameTree, nil
	})
}

// pushLimit handles Limit [Offset] [Project] Sort [Filter] scan, when the
// partitions can evaluate the whole filter and every sort key.
func pushLimit(ctx *sql.Context, l *plan.Limit) (sql.Node, bool) {
	if l.CalcFoundRows {
		return nil, false
	}
	count, ok := constInt(ctx, l.Limit)
	if !ok {
		return nil, false
	}
	var wrappers []sql.Node // nodes between the Limit and the Sort, top down
	n := l.Child
	if o, ok := n.(*plan.Offset); ok {
		off, ok := constInt(ctx, o.Offset)
		if !ok {
			return nil, false
		}
		count += off
		wrappers, n = append(wrappers, o), o.Child
	}
	if p, ok := n.(*plan.Project); ok {
		wrappers, n = append(wrappers, p), p.Child
	}
	s, ok := n.(*plan.Sort)
	if !ok {
		return nil, false
	}
	child, ok := sortedScan(ctx, s.Child, s.SortFields, count)
	if !ok {
		return nil, false
	}
	out, err := s.WithChildren(child)
	if err != nil {
		return nil, false
	}
	for i := len(wrappers) - 1; i >= 0; i-- {
		if out, err = wrappers[i].WithChildren(out); err != nil {
			return nil, false
		}
	}
	nl, err := l.WithChildren(out)
	return nl, err == nil
}

// pushTopN handles TopN [Filter] scan (GMS's fused sort and limit).
func pushTopN(ctx *sql.Context, t *plan.TopN) (sql.Node, bool) {
	if t.CalcFoundRows {
		return nil, false
	}
	count, ok := constInt(ctx, t.Limit)
	if !ok {
		return nil, false
	}
	child, ok := sortedScan(ctx, t.Child, t.Fields, count)
	if !ok {
		return nil, false
	}
	nt, err := t.WithChildren(child)
	return nt, err == nil
}

// sortedScan gives the scan below n (a [Filter] scan) the ORDER BY and
// LIMIT, when the partitions can evaluate the whole filter (rows the
// aggregator would drop must not push others out) and every sort key.
func sortedScan(ctx *sql.Context, n sql.Node, fields sql.SortFields, count int64) (sql.Node, bool) {
	scan, name, dt, cond := scanBelow(n)
	if dt == nil || dt.suffix != "" {
		return nil, false
	}
	if cond != nil {
		if _, ok := planner.FilterSQL(ctx, cond, name); !ok {
			return nil, false
		}
	}
	var keys []string
	for _, sf := range fields {
		text, ok := planner.FilterSQL(ctx, sf.Column, name)
		if !ok || sf.NullOrdering != sql.NullsFirst {
			return nil, false
		}
		if sf.Order == sql.Descending {
			text += " DESC"
		}
		keys = append(keys, text)
	}
	nt := *dt
	nt.suffix = fmt.Sprintf(" ORDER BY %s LIMIT %d", strings.Join(keys, ", "), count)
	out, err := replaceScan(n, scan, &nt)
	return out, err == nil
}

// pushDistinct handles Distinct [Project(columns)] [Filter] scan.
func pushDistinct(d *plan.Distinct) (sql.Node, bool) {
	below := d.Child
	if p, ok := below.(*plan.Project); ok {
		for _, e := range p.Projections {
			if _, ok := e.(*expression.GetField); !ok {
				return nil, false
			}
		}
		below = p.Child
	}
	scan, _, dt, _ := scanBelow(below)
	if dt == nil || dt.distinct || dt.suffix != "" {
		return nil, false
	}
	nt := *dt
	nt.distinct = true
	child, err := replaceScan(d.Child, scan, &nt)
	if err != nil {
		return nil, false
	}
	nd, err := d.WithChildren(child)
	return nd, err == nil
}

// scanBelow finds [Filter] [TableAlias] ResolvedTable(DistTable): the
// ResolvedTable, the name conditions use for the table, and the filter.
func scanBelow(n sql.Node) (*plan.ResolvedTable, string, *DistTable, sql.Expression) {
	var cond sql.Expression
	if f, ok := n.(*plan.Filter); ok {
		cond, n = f.Expression, f.Child
	}
	var rt *plan.ResolvedTable
	var name string
	switch c := n.(type) {
	case *plan.TableAlias:
		rt, _ = c.Child.(*plan.ResolvedTable)
		name = c.Name()
	case *plan.ResolvedTable:
		rt, name = c, c.Name()
	}
	if rt == nil {
		return nil, "", nil, nil
	}
	dt, _ := rt.Table.(*DistTable)
	return rt, name, dt, cond
}

// replaceScan swaps the table of rt (somewhere below n) for t.
func replaceScan(n sql.Node, rt *plan.ResolvedTable, t *DistTable) (sql.Node, error) {
	nrt, err := rt.WithTable(t)
	if err != nil {
		return nil, err
	}
	out, _, err := transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		if n == sql.Node(rt) {
			return nrt, transform.NewTree, nil
		}
		return n, transform.SameTree, nil
	})
	return out, err
}

// constInt evaluates a LIMIT or OFFSET (a constant expression).
func constInt(ctx *sql.Context, e sql.Expression) (int64, bool) {
	if transform.InspectExpr(e, func(e sql.Expression) bool {
		switch e.(type) {
		case *expression.GetField, *expression.BindVar, *plan.Subquery:
			return true
		}
		return false
	}) {
		return 0, false
	}
	v, err := e.Eval(ctx, nil)
	if err != nil {
		return 0, false
	}
	n, _, err := types.Int64.Convert(ctx, v)
	if err != nil || n == nil || n.(int64) < 0 || n.(int64) > 1<<40 {
		return 0, false
	}
	return n.(int64), true
}
