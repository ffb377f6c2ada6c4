package gmsfix

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

// ViewsRuleID names ViewReadsDoNotCommit among the analyzer's rules.
const ViewsRuleID analyzer.RuleId = 9_005

// ViewReadsDoNotCommit keeps a statement that reads a view from
// committing the client's transaction. GMS resolves a view by binding its
// stored CREATE VIEW statement, which marks the whole statement as DDL,
// and a DDL statement commits implicitly: BEGIN; INSERT …; SELECT … FROM
// v; ROLLBACK kept the insert, and the transaction's savepoints were
// gone. A query, a SHOW (SHOW FIELDS FROM v, as mariadb-dump runs in
// its transaction), an EXPLAIN or a DML statement is not DDL whatever it
// reads, so the mark goes. What the statement is comes from its text
// (the rule also sees the parts GMS analyzes apart, such as the query of
// a CREATE VIEW); only statements marked DDL are parsed again, which is
// DDL and reads of views.
func ViewReadsDoNotCommit(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, qFlags *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	if qFlags == nil || !qFlags.IsSet(sql.QFlagDDL) || ctx == nil {
		return n, transform.SameTree, nil
	}
	stmt, err := ast.Parse(ctx.Query())
	if err != nil {
		return n, transform.SameTree, nil // left as GMS marked it
	}
	switch stmt.(type) {
	case ast.SelectStatement, *ast.Insert, *ast.Update, *ast.Delete, *ast.Show, *ast.Explain:
		qFlags.Unset(sql.QFlagDDL)
	}
	return n, transform.SameTree, nil
}
