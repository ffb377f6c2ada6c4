package aggregator

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
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
