package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/sqlcmd"
)

// execCommand runs one of Canopy's own statements.
func (n *Node) execCommand(c *mysql.Conn, cmd sqlcmd.Command) (*sqltypes.Result, error) {
	switch cmd := cmd.(type) {
	case sqlcmd.ShowDatabasesExtended:
		return n.showDatabasesExtended(), nil
	case sqlcmd.Explain:
		return n.explain(c, cmd.Query)
	default:
		return nil, fmt.Errorf("statement %T is not supported on this node", cmd)
	}
}

// showDatabasesExtended lists every database with its partition log
// position, as in 003_00509c68988978d3.txt. A standalone node is master of
// all its databases.
func (n *Node) showDatabasesExtended() *sqltypes.Result {
	res := &sqltypes.Result{Fields: []*querypb.Field{
		varcharField("Database"), intField("Commits"), varcharField("Role"), varcharField("State"),
		varcharField("Position"), varcharField("Details"), intField("AsyncSlaves"), intField("SyncSlaves"),
	}}
	res.Rows = append(res.Rows, []sqltypes.Value{strValue("information_schema"),
		sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL})
	for _, d := range n.store.DatabaseInfos() {
		res.Rows = append(res.Rows, []sqltypes.Value{
			strValue(d.Name), uintValue(d.Commits), strValue("master"), strValue("online"),
			strValue(d.Pos.String()), strValue(""), intValue(0), intValue(0),
		})
	}
	return res
}

// explain shows the plan GMS chose for a statement, one operator per row,
// in a single EXPLAIN column as SingleStore prints plans.
func (n *Node) explain(c *mysql.Conn, query string) (*sqltypes.Result, error) {
	sess := n.session(c.ConnectionID)
	if sess == nil {
		return nil, fmt.Errorf("no session for connection %d", c.ConnectionID)
	}
	ctx := sql.NewContext(context.Background(), sql.WithSession(sess))
	plan, err := n.engine.AnalyzeQuery(ctx, query)
	if err != nil {
		return nil, err
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("EXPLAIN")}}
	for _, line := range strings.Split(strings.TrimRight(plan.String(), "\n"), "\n") {
		res.Rows = append(res.Rows, []sqltypes.Value{strValue(line)})
	}
	return res, nil
}
