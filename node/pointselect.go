package node

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/aggregator/planner"
)

// pointSelect answers `SELECT cols FROM t WHERE pk = literal [AND …]` in
// autocommit mode straight from storage: the leaf's hottest statement
// (every routed point query of an aggregator is one) costs a parse and a
// key lookup instead of the SQL engine's planning. Anything it does not
// recognise exactly is left to the engine (handled false).
func (h *handler) pointSelect(ctx context.Context, c *mysql.Conn, query string, callback func(*sqltypes.Result) error) (bool, error) {
	if !looksLikeSelect(query) {
		return false, nil
	}
	start := time.Now()
	select {
	case <-h.n.done:
		return true, errShutdown // see withRestarts
	default:
	}
	sess := h.n.session(c.ConnectionID)
	if sess == nil {
		return false, nil
	}
	stmt, err := ast.Parse(query)
	if err != nil {
		return false, nil
	}
	sel, ok := stmt.(*ast.Select)
	if !ok {
		return false, nil
	}
	ps, ok := parsePointSelect(sel, sess.GetCurrentDatabase())
	if !ok {
		return false, nil
	}
	sctx := sql.NewContext(ctx, sql.WithSession(sess))
	if !sess.Idle(sctx) {
		return false, nil
	}
	pt, ok := h.n.store.PointTable(ps.db, ps.table)
	if !ok {
		return false, nil
	}
	schema := pt.Schema()
	cols, ok := ps.columns(schema.Schema)
	if !ok {
		return false, nil
	}
	pk := make([]interface{}, len(schema.PkOrdinals))
	for i, ord := range schema.PkOrdinals {
		lit, ok := ps.where[strings.ToLower(schema.Schema[ord].Name)]
		if !ok {
			return false, nil
		}
		if pk[i], ok = literalFor(lit, schema.Schema[ord].Type); !ok {
			return false, nil
		}
	}
	if len(ps.where) != len(pk) {
		return false, nil // terms on other columns
	}
	row, found, err := pt.Get(pk)
	if err != nil {
		return false, nil // the engine reports it, or compares as MySQL does
	}
	h.n.metrics.statements.Inc()
	h.n.metrics.fastPath.Inc()
	res := &sqltypes.Result{Fields: pointFields(sctx, schema.Schema, cols, ps.alias, pt.Database())}
	if found && ps.limit != 0 {
		out := make([]sqltypes.Value, len(cols))
		for i, ord := range cols {
			if row[ord] == nil {
				out[i] = sqltypes.NULL
				continue
			}
			if out[i], err = schema.Schema[ord].Type.SQL(sctx, nil, row[ord]); err != nil {
				return false, nil
			}
		}
		res.Rows = [][]sqltypes.Value{out}
	}
	sess.ClearWarnings()
	sess.SetLastQueryInfoInt(sql.RowCount, -1)
	sess.SetLastQueryInfoInt(sql.FoundRows, int64(len(res.Rows)))
	err = callback(res)
	h.n.metrics.latency.Observe(time.Since(start).Seconds())
	return true, err
}

func looksLikeSelect(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n")
	return len(q) > 6 && strings.EqualFold(q[:6], "select")
}

// pointQuery is a recognised point select.
type pointQuery struct {
	db, table, alias string
	star             bool
	names            []string            // selected column names, unless star
	where            map[string]ast.Expr // lower-case column → literal
	limit            int64               // -1: none
}

// source is how the query names the table.
func (p *pointQuery) source() string {
	if p.alias != "" {
		return p.alias
	}
	return p.table
}

// parsePointSelect recognises the shape; the table's schema is checked
// later.
func parsePointSelect(sel *ast.Select, currentDB string) (*pointQuery, bool) {
	if sel.With != nil || sel.QueryOpts.Distinct || sel.QueryOpts.SQLCalcFoundRows || len(sel.GroupBy) > 0 ||
		sel.Having != nil || len(sel.Window) > 0 || len(sel.OrderBy) > 0 || sel.Lock != "" || sel.Into != nil ||
		sel.Where == nil || len(sel.From) != 1 {
		return nil, false
	}
	te, ok := sel.From[0].(*ast.AliasedTableExpr)
	if !ok || te.Hints != nil || te.AsOf != nil || len(te.Partitions) > 0 || te.Lateral {
		return nil, false
	}
	tn, ok := te.Expr.(ast.TableName)
	if !ok {
		return nil, false
	}
	p := &pointQuery{db: tn.DbQualifier.String(), table: tn.Name.String(), alias: te.As.String(), limit: -1,
		where: map[string]ast.Expr{}}
	if p.db == "" {
		p.db = currentDB
	}
	if p.db == "" {
		return nil, false
	}
	if sel.Limit != nil {
		if sel.Limit.Offset != nil {
			return nil, false
		}
		v, ok := sel.Limit.Rowcount.(*ast.SQLVal)
		if !ok || v.Type != ast.IntVal {
			return nil, false
		}
		n, err := strconv.ParseInt(string(v.Val), 10, 64)
		if err != nil {
			return nil, false
		}
		p.limit = n
	}
	ownName := func(q ast.TableName) bool {
		if q.IsEmpty() {
			return true
		}
		if !q.DbQualifier.IsEmpty() && !strings.EqualFold(q.DbQualifier.String(), p.db) {
			return false
		}
		return strings.EqualFold(q.Name.String(), p.source())
	}
	for _, e := range sel.SelectExprs {
		switch e := e.(type) {
		case *ast.StarExpr:
			if len(sel.SelectExprs) != 1 || !ownName(e.TableName) {
				return nil, false
			}
			p.star = true
		case *ast.AliasedExpr:
			col, ok := e.Expr.(*ast.ColName)
			if !ok || !e.As.IsEmpty() || !ownName(col.Qualifier) {
				return nil, false
			}
			p.names = append(p.names, col.Name.String())
		default:
			return nil, false
		}
	}
	for _, term := range planner.Conjuncts(sel.Where.Expr) {
		cmp, ok := term.(*ast.ComparisonExpr)
		if !ok || cmp.Operator != ast.EqualStr {
			return nil, false
		}
		col, ok := cmp.Left.(*ast.ColName)
		lit := cmp.Right
		if !ok {
			col, ok = cmp.Right.(*ast.ColName)
			lit = cmp.Left
		}
		if !ok || !ownName(col.Qualifier) {
			return nil, false
		}
		if _, ok := lit.(*ast.SQLVal); !ok {
			return nil, false
		}
		name := strings.ToLower(col.Name.String())
		if _, dup := p.where[name]; dup {
			return nil, false
		}
		p.where[name] = lit
	}
	return p, true
}

// columns maps the selected names to ordinals; a name must be spelled as
// the column is (MySQL echoes the spelling of the query, the engine the
// column's: both agree then).
func (p *pointQuery) columns(s sql.Schema) ([]int, bool) {
	if p.star {
		out := make([]int, len(s))
		for i := range s {
			out[i] = i
		}
		return out, true
	}
	out := make([]int, len(p.names))
	for i, n := range p.names {
		idx := s.IndexOfColName(n)
		if idx < 0 || s[idx].Name != n {
			return nil, false
		}
		out[i] = idx
	}
	return out, true
}

// literalFor is a key literal as a value of the column's type, when the
// comparison means plain equality of keys: integers for integer columns,
// strings for string columns.
func literalFor(e ast.Expr, t sql.Type) (interface{}, bool) {
	v, ok := e.(*ast.SQLVal)
	if !ok {
		return nil, false
	}
	switch {
	case types.IsInteger(t) && v.Type == ast.IntVal:
		if i, err := strconv.ParseInt(string(v.Val), 10, 64); err == nil {
			return i, true
		}
		u, err := strconv.ParseUint(string(v.Val), 10, 64)
		return u, err == nil
	case types.IsText(t) && v.Type == ast.StrVal:
		return string(v.Val), true
	}
	return nil, false
}

// pointFields describes the result columns as the engine would; alias is
// the table's alias in the query, if any.
func pointFields(ctx *sql.Context, s sql.Schema, cols []int, alias, db string) []*querypb.Field {
	out := make([]*querypb.Field, len(cols))
	results := ctx.GetCharacterSetResults()
	for i, ord := range cols {
		c := s[ord]
		charset := uint32(sql.Collation_Default.CharacterSet())
		if tc, ok := c.Type.(sql.TypeWithCollation); ok {
			charset = uint32(tc.Collation().CharacterSet())
		}
		if types.IsBinaryType(c.Type) {
			charset = uint32(sql.Collation_binary)
		} else if results != sql.CharacterSet_Unspecified {
			charset = uint32(results)
		}
		var flags querypb.MySqlFlag
		if !c.Nullable {
			flags |= querypb.MySqlFlag_NOT_NULL_FLAG
		}
		if c.AutoIncrement {
			flags |= querypb.MySqlFlag_AUTO_INCREMENT_FLAG
		}
		if c.PrimaryKey {
			flags |= querypb.MySqlFlag_PRI_KEY_FLAG
		}
		if types.IsUnsigned(c.Type) {
			flags |= querypb.MySqlFlag_UNSIGNED_FLAG
		}
		source := c.Source
		if alias != "" {
			source = alias
		}
		f := &querypb.Field{
			Name: c.Name, OrgName: c.Name, Table: source, OrgTable: source, Database: db,
			Type: c.Type.Type(), Charset: charset, ColumnLength: c.Type.MaxTextResponseByteLength(ctx), Flags: uint32(flags),
		}
		if dt, ok := c.Type.(sql.DecimalType); ok {
			f.Decimals = uint32(dt.Scale())
		} else if dt, ok := c.Type.(sql.DatetimeType); ok {
			f.Decimals = uint32(dt.Precision())
		}
		out[i] = f
	}
	return out
}
