package aggregator

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
)

// RescanRuleID names CacheRescans among the analyzer's rules; it runs
// after every other rule of the aggregator, on the plan they leave.
const RescanRuleID analyzer.RuleId = 10_004

// CacheRescans is an analyzer rule that makes the partitions answer each
// read of a nested-loop join's inner side once. GMS builds the inner side
// of a cross join, and of a join on conditions it cannot hash, again for
// every row of the outer side: on a leaf that rescans memory, but on an
// aggregator every rescan asks every partition again, so a cross join of
// eight tables of a few dozen rows sent hundreds of thousands of queries
// and ran for minutes where a leaf takes milliseconds. Each read from the
// partitions below such an inner side (a sharded table's scan, a pushed
// join or partial aggregate) is wrapped in GMS's CachedResults, which
// keeps the rows of its first complete read for the later ones. Only the
// reads are kept, not the joins above them, so the memory held is the
// rows that travelled, never a product of them. A read's SQL never
// depends on the outer row (conditions that name the outer side stay on
// the aggregator), so every rescan would have returned the same rows.
func CacheRescans(_ *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		j, ok := n.(*plan.JoinNode)
		if !ok || !rescansRight(j.Op) {
			return n, transform.SameTree, nil
		}
		right, same, err := cacheReads(j.Right())
		if err != nil || same {
			return n, transform.SameTree, err
		}
		nj, err := j.WithChildren(j.Left(), right)
		if err != nil {
			return nil, transform.SameTree, err
		}
		return nj, transform.NewTree, nil
	})
}

// rescansRight says whether GMS's iterator for a join builds the right
// side again for each left row. Hash joins keep the right side in their
// HashLookup and merge joins read both sides once; lookup and range-heap
// joins read an index with the left row's values, which a sharded table
// does not offer.
func rescansRight(op plan.JoinType) bool {
	return !(op.IsHash() || op.IsMerge() || op.IsLookup() || op.IsRange())
}

// cacheReads wraps every read from the partitions in n (top down, so a
// table's alias is wrapped with it) in a CachedResults.
func cacheReads(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
	switch c := n.(type) {
	case *plan.CachedResults, *plan.HashLookup:
		return n, transform.SameTree, nil // read once already
	case *plan.TableAlias:
		if isDistScan(c.Child) {
			return plan.NewCachedResults(n), transform.NewTree, nil
		}
	case *plan.ResolvedTable:
		if isDistScan(c) {
			return plan.NewCachedResults(n), transform.NewTree, nil
		}
		return n, transform.SameTree, nil
	case *remoteQuery, *partialScan, *shuffleJoin:
		return plan.NewCachedResults(n), transform.NewTree, nil
	}
	children := n.Children()
	if len(children) == 0 {
		return n, transform.SameTree, nil
	}
	newChildren := make([]sql.Node, len(children))
	same := transform.SameTree
	for i, ch := range children {
		nc, s, err := cacheReads(ch)
		if err != nil {
			return nil, transform.SameTree, err
		}
		newChildren[i] = nc
		same = same && s
	}
	if same {
		return n, transform.SameTree, nil
	}
	nn, err := n.WithChildren(newChildren...)
	if err != nil {
		return nil, transform.SameTree, err
	}
	return nn, transform.NewTree, nil
}

// isDistScan says whether n reads a sharded table from its partitions.
func isDistScan(n sql.Node) bool {
	rt, ok := n.(*plan.ResolvedTable)
	if !ok {
		return false
	}
	_, ok = rt.Table.(*DistTable)
	return ok
}
