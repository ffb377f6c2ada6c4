package planner

import (
	"strings"

	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

// shardKeyUpdateError refuses a write that would change a row's shard key
// in place: the row would stay in the partition of its old key, where
// lookups by the new key never find it.
func shardKeyUpdateError(col, table string) error {
	return errorf(ErNotSupported, "UPDATE of shard key column '%s' of table '%s' is not supported: delete the row and insert it again", col, table)
}

// checkUpsertShardKey refuses an INSERT … ON DUPLICATE KEY UPDATE that
// assigns a shard key column anything but the value it has. Assigning it
// its own value (id = id) or the inserted row's (id = VALUES(id), or
// id = new.id with a row alias) keeps it: the duplicate row shares a
// unique key with the inserted one, and every unique key of a sharded
// table contains the shard key, so both have the same shard key values.
// REPLACE needs no check for the same reason: the rows it deletes have
// the new row's shard key, so they are in the partition it goes to.
func checkUpsertShardKey(ins *ast.Insert, target *tableRef) error {
	if len(ins.OnDup) == 0 || !target.sharded() {
		return nil
	}
	rowAlias := ""
	switch v := ins.Rows.(type) {
	case *ast.AliasedValues:
		if len(v.Columns) == 0 {
			rowAlias = v.As.String()
		}
	case ast.AliasedValues:
		if len(v.Columns) == 0 {
			rowAlias = v.As.String()
		}
	}
	for _, a := range ins.OnDup {
		col := a.Name.Name.String()
		for _, k := range target.table.ShardKey {
			if strings.EqualFold(col, k) && !keepsValue(a.Expr, k, target, rowAlias) {
				return shardKeyUpdateError(k, target.name)
			}
		}
	}
	return nil
}

// keepsValue reports whether e is, in an ON DUPLICATE KEY UPDATE of
// target, the shard key column col of the existing or the inserted row.
func keepsValue(e ast.Expr, col string, target *tableRef, rowAlias string) bool {
	for {
		p, ok := e.(*ast.ParenExpr)
		if !ok {
			break
		}
		e = p.Expr
	}
	switch e := e.(type) {
	case *ast.ValuesFuncExpr:
		return e.Name != nil && e.Name.Qualifier.IsEmpty() && strings.EqualFold(e.Name.Name.String(), col)
	case *ast.ColName:
		if !strings.EqualFold(e.Name.String(), col) {
			return false
		}
		q := e.Qualifier
		switch {
		case q.IsEmpty():
			return true
		case rowAlias != "" && q.DbQualifier.IsEmpty() && strings.EqualFold(q.Name.String(), rowAlias):
			return true
		case strings.EqualFold(q.Name.String(), target.name):
			return q.DbQualifier.IsEmpty() || strings.EqualFold(q.DbQualifier.String(), target.db)
		}
	}
	return false
}
