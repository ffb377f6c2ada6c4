package aggregator

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
)

// columnIds are the column ids of n's output, in order, as GMS's
// assignExecIndexes (sql/analyzer/fix_exec_indexes.go, columnIdsForNode)
// derives them, for the nodes a join the leaves run can replace: joins,
// hash lookups, filters, table aliases and tables.
//
// A node that replaces a join must report the join's ids (through
// sql.Projector, see projectIds). assignExecIndexes runs after our rules
// and resolves every column reference above by id against the ids of the
// nodes below, laid side by side: a node without ids shifted those of its
// right-hand neighbours, so a join above a pushed join read the wrong
// columns and returned wrong rows (no rows at all for select4's
// `FROM t1, t9, t6, t3, t2` joins).
func columnIds(n sql.Node) []sql.ColumnId {
	var ids []sql.ColumnId
	switch n := n.(type) {
	case sql.Projector:
		for _, e := range n.ProjectedExprs() {
			if ide, ok := e.(sql.IdExpression); ok {
				ids = append(ids, ide.Id())
			} else {
				ids = append(ids, 0)
			}
		}
	case *plan.TableAlias:
		ids = columnIds(n.Child)
	case plan.TableIdNode:
		cols := n.Columns()
		if tn, ok := n.(sql.TableNode); ok {
			if pkt, ok := tn.UnderlyingTable().(sql.PrimaryKeyTable); ok && len(pkt.PrimaryKeySchema().Schema) != len(n.Schema()) {
				// a projected table: ids by the columns' places in the whole table
				first, _ := cols.Next(1)
				for _, c := range n.Schema() {
					ids = append(ids, first+sql.ColumnId(pkt.PrimaryKeySchema().IndexOfColName(c.Name)))
				}
				return ids
			}
		}
		cols.ForEach(func(c sql.ColumnId) { ids = append(ids, c) })
	case *plan.JoinNode:
		ids = columnIds(n.Left())
		if !n.Op.IsPartial() {
			ids = append(ids, columnIds(n.Right())...)
		}
	default:
		for _, c := range n.Children() {
			ids = append(ids, columnIds(c)...)
		}
	}
	return ids
}

// projectIds is a replacing node's sql.Projector answer: its schema's
// columns, carrying the ids of the node it replaced. Without ids (a shape
// columnIds does not know), nil: the node then reports none, as before.
func projectIds(schema sql.Schema, ids []sql.ColumnId) []sql.Expression {
	if len(ids) != len(schema) {
		return nil
	}
	out := make([]sql.Expression, len(schema))
	for i, c := range schema {
		out[i] = expression.NewGetFieldWithTable(i, 0, c.Type, c.DatabaseSource, c.Source, c.Name, c.Nullable).WithId(ids[i]).(sql.Expression)
	}
	return out
}
