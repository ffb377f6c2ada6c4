package planner

import (
	"sort"
	"strconv"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

func sqlIsNumber(t sql.Type) bool { return types.IsNumber(t) }
func sqlIsString(t sql.Type) bool { return types.IsText(t) || types.IsBinaryType(t) }

func planInsert(in Input, ins *ast.Insert) (*Plan, error) {
	rs, err := refs(in, ins)
	if err != nil {
		return nil, err
	}
	target := rs[0]
	switch {
	case target.dist == nil:
		return &Plan{Kind: Local, Reason: "not a distributed database"}, nil
	case target.reference():
		return &Plan{Kind: ReferenceWrite, Database: target.dist.Name}, nil
	case target.table == nil:
		return &Plan{Kind: Local, Database: target.dist.Name, Reason: "not a table of the database"}, nil
	}
	if err := checkUpsertShardKey(ins, target); err != nil {
		return nil, err
	}
	var rows ast.Values
	switch v := ins.Rows.(type) {
	case ast.Values:
		rows = v
	case *ast.AliasedValues:
		rows = v.Values
	case ast.AliasedValues:
		rows = v.Values
	default:
		// INSERT … SELECT: the aggregator computes the rows and routes each.
		return &Plan{Kind: Gather, Database: target.dist.Name, Reason: "INSERT … SELECT"}, nil
	}
	schema := in.Catalog.Schema(target.db, target.name)
	if schema == nil {
		return &Plan{Kind: Local, Database: target.dist.Name, Reason: "no schema"}, nil
	}
	t, d := target.table, target.dist
	cols := make([]string, 0, len(schema))
	if len(ins.Columns) > 0 {
		for _, c := range ins.Columns {
			cols = append(cols, c.String())
		}
	} else {
		for _, c := range schema {
			cols = append(cols, c.Name)
		}
	}
	colIndex := func(name string) int {
		for i, c := range cols {
			if strings.EqualFold(c, name) {
				return i
			}
		}
		return -1
	}
	auto := -1
	addAuto := false
	if t.AutoIncrement != "" {
		if auto = colIndex(t.AutoIncrement); auto < 0 {
			cols = append(cols, t.AutoIncrement)
			auto, addAuto = len(cols)-1, true
		}
	}
	var key interface {
		Partition([]interface{}, int) (int, error)
	}
	keyIdx := make([]int, len(t.ShardKey))
	if len(t.ShardKey) > 0 {
		k, ok := shardKey(schema, t.ShardKey)
		if !ok {
			return &Plan{Kind: Gather, Database: d.Name, Reason: "shard key not in schema"}, nil
		}
		key = k
		for i, c := range t.ShardKey {
			keyIdx[i] = colIndex(c)
		}
	}
	plan := &Plan{Database: d.Name}
	byPart := map[int]ast.Values{}
	for _, row := range rows {
		row = append(ast.ValTuple(nil), row...)
		if addAuto {
			row = append(row, nil)
		}
		if len(row) != len(cols) {
			return nil, errorf(1136, "Column count doesn't match value count at row %d", len(byPart)+1)
		}
		if auto >= 0 && autoValueWanted(row[auto]) {
			id, err := in.NextAutoIncrement(d.Name, t.Name)
			if err != nil {
				return nil, err
			}
			if plan.InsertID == 0 {
				plan.InsertID = id
			}
			row[auto] = ast.NewIntVal([]byte(strconv.FormatUint(id, 10)))
		}
		var p int
		if key == nil {
			p = in.Spread(len(d.Partitions))
		} else {
			vals := make([]interface{}, len(keyIdx))
			for i, idx := range keyIdx {
				var e ast.Expr
				if idx >= 0 {
					e = row[idx]
				} else if e = literalDefault(schema, t.ShardKey[i]); e == nil {
					return &Plan{Kind: Gather, Database: d.Name, Reason: "shard key from a default expression"}, nil
				}
				if !isLiteral(e) {
					return &Plan{Kind: Gather, Database: d.Name, Reason: "shard key is not a constant"}, nil
				}
				v, err := literal(e)
				if err != nil {
					return &Plan{Kind: Gather, Database: d.Name, Reason: "shard key is not a constant"}, nil
				}
				vals[i] = v
			}
			var err error
			if p, err = key.Partition(vals, len(d.Partitions)); err != nil {
				return nil, errorf(1366, "Incorrect value for shard key of table '%s': %v", t.Name, err)
			}
		}
		byPart[p] = append(byPart[p], row)
	}
	parts := make([]int, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	base := clone(ins)
	for _, p := range parts {
		c := base().(*ast.Insert)
		c.Columns = nil
		for _, name := range cols {
			c.Columns = append(c.Columns, ast.NewColIdent(name))
		}
		switch av := c.Rows.(type) {
		case *ast.AliasedValues:
			av.Values = byPart[p]
		case ast.AliasedValues:
			av.Values = byPart[p]
			c.Rows = av
		default:
			c.Rows = byPart[p]
		}
		rewrite(c, in, d, p)
		plan.Routes = append(plan.Routes, Route{Partition: p, SQL: ast.String(c)})
	}
	plan.Kind = InsertSplit
	if len(plan.Routes) == 1 {
		plan.Kind = Routed
	}
	if len(plan.Routes) > 1 || in.bound {
		plan.StatementTime = fillsFromClock(schema, true, len(ins.OnDup) > 0)
	}
	return plan, nil
}

// fillsFromClock reports whether a leaf fills columns of a table from the
// clock when it inserts rows (a default that is an expression, such as
// CURRENT_TIMESTAMP) or updates them (ON UPDATE CURRENT_TIMESTAMP). Such
// a statement gives the leaves its time (Plan.StatementTime) when it runs
// on several partitions or has values the aggregator bound at its time.
func fillsFromClock(schema sql.Schema, insert, update bool) bool {
	for _, c := range schema {
		if insert && !c.Default.IsLiteral() || update && c.OnUpdate != nil {
			return true
		}
	}
	return false
}

// autoValueWanted: NULL, 0 or DEFAULT ask for a generated value.
func autoValueWanted(e ast.Expr) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *ast.NullVal:
		return true
	case *ast.Default:
		return true
	case *ast.SQLVal:
		return e.Type == ast.IntVal && string(e.Val) == "0"
	}
	return false
}

// literalDefault is a column's default as a literal expression: NULL
// when there is none, nil when the default is not a constant.
func literalDefault(schema sql.Schema, col string) ast.Expr {
	c := schema[schema.IndexOfColName(col)]
	if c.Default == nil {
		return &ast.NullVal{}
	}
	text := c.Default.String()
	e, err := ast.Parse("SELECT " + text)
	if err != nil {
		return nil
	}
	sel, ok := e.(*ast.Select)
	if !ok || len(sel.SelectExprs) != 1 {
		return nil
	}
	ae, ok := sel.SelectExprs[0].(*ast.AliasedExpr)
	if !ok {
		return nil
	}
	expr := ae.Expr
	if p, ok := expr.(*ast.ParenExpr); ok {
		expr = p.Expr
	}
	if !isLiteral(expr) {
		return nil
	}
	return expr
}

// dmlTables collects the tables of an UPDATE or DELETE; without a sharded
// table it returns the finished plan (a reference write, or local).
func dmlTables(in Input, stmt ast.SQLNode) ([]*tableRef, census, *Plan, error) {
	rs, err := refs(in, stmt)
	if err != nil {
		return nil, census{}, nil, err
	}
	c := count(rs)
	if c.sharded == 0 && !c.views {
		if c.reference > 0 && rs[0].reference() {
			return nil, c, &Plan{Kind: ReferenceWrite, Database: rs[0].dist.Name}, nil
		}
		return nil, c, &Plan{Kind: Local, Database: dbName(c.db), Reason: "no sharded table"}, nil
	}
	return rs, c, nil, nil
}

func planUpdate(in Input, upd *ast.Update) (*Plan, error) {
	rs, c, p, err := dmlTables(in, upd)
	if err != nil || p != nil {
		return p, err
	}
	target := rs[0]
	if err := singleShardedTarget(upd.TableExprs, target, c, "UPDATE"); err != nil {
		return nil, err
	}
	for _, a := range upd.Exprs {
		for _, k := range target.table.ShardKey {
			if strings.EqualFold(a.Name.Name.String(), k) {
				return nil, shardKeyUpdateError(k, target.name)
			}
		}
	}
	if p, ok, err := routeBy(in, target, upd.Where, rs); err != nil {
		return nil, err
	} else if ok {
		pl, err := routed(in, upd, target.dist, p)
		if err == nil && in.bound {
			pl.StatementTime = fillsFromClock(in.Catalog.Schema(target.db, target.name), false, true)
		}
		return pl, err
	}
	if upd.Limit != nil || len(upd.OrderBy) > 0 {
		return nil, errorf(ErNotSupported, "UPDATE … ORDER BY/LIMIT on sharded table '%s' needs a WHERE on its whole shard key", target.name)
	}
	pl := broadcast(in, clone(upd), target.dist)
	pl.StatementTime = fillsFromClock(in.Catalog.Schema(target.db, target.name), false, true)
	return pl, nil
}

func planDelete(in Input, del *ast.Delete) (*Plan, error) {
	rs, c, p, err := dmlTables(in, del)
	if err != nil || p != nil {
		return p, err
	}
	if len(del.Targets) > 0 {
		return nil, errorf(ErNotSupported, "multi-table DELETE over sharded tables is not supported")
	}
	target := rs[0]
	if err := singleShardedTarget(del.TableExprs, target, c, "DELETE"); err != nil {
		return nil, err
	}
	if p, ok, err := routeBy(in, target, del.Where, rs); err != nil {
		return nil, err
	} else if ok {
		return routed(in, del, target.dist, p)
	}
	if del.Limit != nil || len(del.OrderBy) > 0 {
		return nil, errorf(ErNotSupported, "DELETE … ORDER BY/LIMIT on sharded table '%s' needs a WHERE on its whole shard key", target.name)
	}
	return broadcast(in, clone(del), target.dist), nil
}

// singleShardedTarget checks that a DML statement writes one sharded table
// and reads no other sharded table (a partition would see only its share
// of the other table).
func singleShardedTarget(tables ast.TableExprs, target *tableRef, c census, what string) error {
	single := false
	if len(tables) == 1 {
		if a, ok := tables[0].(*ast.AliasedTableExpr); ok {
			_, single = a.Expr.(ast.TableName)
		}
	}
	if !single || !target.sharded() {
		return errorf(ErNotSupported, "%s with joins over sharded tables is not supported yet", what)
	}
	if c.sharded > 1 || c.views {
		return errorf(ErNotSupported, "%s of sharded table '%s' reading other sharded tables is not supported yet", what, target.name)
	}
	if c.multiDB {
		return errorf(ErNotSupported, "%s across distributed databases is not supported", what)
	}
	return nil
}
