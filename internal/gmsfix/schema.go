package gmsfix

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
)

// SchemaIsDatabaseRuleID names SchemaIsDatabase among the analyzer's rules.
const SchemaIsDatabaseRuleID analyzer.RuleId = 9_006

// SchemaIsDatabase makes CREATE SCHEMA the synonym of CREATE DATABASE it is
// in MySQL. GMS plans it as a schema inside the current database (for
// engines with schemas) and refuses it with 1046 when there is none, before
// it would fall back to CREATE DATABASE for engines without.
func SchemaIsDatabase(_ *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	if cs, ok := n.(*plan.CreateSchema); ok && cs.CreateDB != nil {
		return cs.CreateDB, transform.NewTree, nil
	}
	return n, transform.SameTree, nil
}
