package planner

import (
	"strconv"
	"strings"

	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sharding"
)

// Template is the plan of a statement whose shard key values are bind
// variables (a prepared statement, or a query with its literals taken
// out): it is planned once, and each execution only hashes the values to
// pick the partition and fills them into that partition's SQL. This keeps
// the analysis off the path of routed point queries.
type Template struct {
	Database string
	key      sharding.Key
	args     []string // the bind variables holding the shard key values, in key order
	queries  []*ast.ParsedQuery
}

// MakeTemplate plans a SELECT, UPDATE or DELETE with bind variables
// (:v1, …). It succeeds when the statement is routed by the equality of
// every shard key column with a bind variable; anything else (gathers,
// literal keys, INSERT with its AUTO_INCREMENT and splitting) is planned
// per execution by Make.
func MakeTemplate(in Input) (*Template, bool) {
	switch in.Stmt.(type) {
	case *ast.Select, *ast.Update, *ast.Delete:
	default:
		return nil, false
	}
	if ReadsSession(in.Stmt) {
		return nil, false // its values come from the session per execution
	}
	text := ast.String(in.Stmt)
	t := &Template{}
	in.template = t
	p, err := Make(in)
	if err != nil || p.Kind != Routed || t.args == nil {
		return nil, false
	}
	d := in.Catalog.Database(t.Database)
	for i := range d.Partitions {
		stmt, err := ast.Parse(text)
		if err != nil {
			return nil, false
		}
		rewrite(stmt, in, d, i)
		t.queries = append(t.queries, ast.NewParsedQuery(stmt))
	}
	return t, true
}

// bind records how a template finds its partition: the shard key values
// must all be bind variables.
func (t *Template) bind(d *meta.Database, key sharding.Key, exprs []ast.Expr) (int, bool, error) {
	args := make([]string, len(exprs))
	for i, e := range exprs {
		if !isArg(e) {
			return 0, false, nil
		}
		args[i] = string(e.(*ast.SQLVal).Val)
	}
	t.Database, t.key, t.args = d.Name, key, args
	return 0, true, nil
}

// Route returns the partition and the SQL it runs for one execution; ok
// false means these values need the general planner (a NULL key, or a
// value that MySQL would compare differently from its hash).
func (t *Template) Route(vars map[string]*querypb.BindVariable) (partition int, query string, ok bool) {
	vals := make([]interface{}, len(t.args))
	for i, name := range t.args {
		v, ok := argValue(vars[strings.TrimPrefix(name, ":")])
		if !ok || v == nil || !literalFits(v, t.key.Types[i]) {
			return 0, "", false
		}
		vals[i] = v
	}
	p, err := t.key.Partition(vals, len(t.queries))
	if err != nil {
		return 0, "", false
	}
	q, err := t.queries[p].GenerateQuery(vars, nil)
	if err != nil {
		return 0, "", false
	}
	return p, q, true
}

// Partitions is how many partitions the template was planned for.
func (t *Template) Partitions() int { return len(t.queries) }

func isArg(e ast.Expr) bool {
	v, ok := e.(*ast.SQLVal)
	return ok && v.Type == ast.ValArg
}

// argValue is a bind variable as the Go value a literal of the same text
// would have.
func argValue(bv *querypb.BindVariable) (interface{}, bool) {
	if bv == nil {
		return nil, false
	}
	switch {
	case bv.Type == sqltypes.Null:
		return nil, true
	case sqltypes.IsSigned(bv.Type):
		i, err := strconv.ParseInt(string(bv.Value), 10, 64)
		return i, err == nil
	case sqltypes.IsUnsigned(bv.Type):
		u, err := strconv.ParseUint(string(bv.Value), 10, 64)
		if err == nil && u <= 1<<63-1 {
			return int64(u), true
		}
		return u, err == nil
	case sqltypes.IsFloat(bv.Type):
		f, err := strconv.ParseFloat(string(bv.Value), 64)
		return f, err == nil
	case sqltypes.IsText(bv.Type) || sqltypes.IsBinary(bv.Type):
		return string(bv.Value), true
	}
	return nil, false
}
