package gmsfix

import (
	"sync"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
)

// DeleteAllRuleID names KeepDeleteAll among the analyzer's rules.
const DeleteAllRuleID analyzer.RuleId = 9_003

// KeepDeleteAll keeps a DELETE without WHERE a DELETE. GMS turns it into
// a TRUNCATE of the table found in the current database, which fails with
// 1049 Unknown database ” when there is none (DELETE FROM db.t), reports
// 0 affected rows, and is not undone by ROLLBACK. A WHERE TRUE in front
// of the table keeps it a row-by-row delete, as in MySQL. It must run
// before GMS's processTruncate, in the analyzer's AlwaysBeforeDefault
// rules (the only ones the short path of a single-table DELETE runs).
func KeepDeleteAll(_ *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	d, ok := n.(*plan.DeleteFrom)
	if !ok || d.HasExplicitTargets() {
		return n, transform.SameTree, nil
	}
	rt, ok := d.Child.(*plan.ResolvedTable)
	if !ok {
		return n, transform.SameTree, nil
	}
	nd, err := d.WithChildren(plan.NewFilter(expression.NewLiteral(true, types.Boolean), rt))
	if err != nil {
		return nil, transform.SameTree, err
	}
	return nd, transform.NewTree, nil
}

var installOnce sync.Once

// Install adds the rules that must sit among GMS's own to the analyzer's
// global rule lists; call it before building an analyzer. after are rules
// to run last, after gmsfix's (the aggregator's LOAD DATA, which needs
// LoadDataReader's nodes).
func Install(after ...analyzer.Rule) {
	installOnce.Do(func() {
		analyzer.AlwaysBeforeDefault = append(analyzer.AlwaysBeforeDefault, analyzer.Rule{Id: DeleteAllRuleID, Apply: KeepDeleteAll})
		analyzer.OnceAfterAll = append(analyzer.OnceAfterAll, analyzer.Rule{Id: LoadDataRuleID, Apply: LoadDataReader})
		analyzer.OnceAfterAll = append(analyzer.OnceAfterAll, analyzer.Rule{Id: ViewsRuleID, Apply: ViewReadsDoNotCommit})
		analyzer.OnceAfterAll = append(analyzer.OnceAfterAll, after...)
	})
}
