package aggregator

import (
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
)

// JoinRuleID names PushJoins among the analyzer's rules; it runs before
// the aggregate and top-N rules, so they see the pushed join.
const JoinRuleID analyzer.RuleId = 9_999

// PushJoins is an analyzer rule that runs joins entirely on the leaves
// when every partition can answer its share alone: two sharded tables of
// one database joined on equality of their whole shard keys (matching
// rows live in the same partition), or a sharded table joined with a
// reference table (every leaf has all of it). Each partition runs the
// join; the aggregator receives the joined rows instead of both tables.
func PushJoins(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		j, ok := n.(*plan.JoinNode)
		if !ok {
			return n, transform.SameTree, nil
		}
		if nn, ok := colocatedJoin(ctx, j); ok {
			return nn, transform.NewTree, nil
		}
		if nn, ok := shuffledJoin(ctx, j); ok {
			return nn, transform.NewTree, nil
		}
		return n, transform.SameTree, nil
	})
}

// joinSide is one input of a join that the leaves can evaluate.
type joinSide struct {
	name   string // how the plan names the table (alias or name)
	table  string
	dist   *DistTable // nil for a reference table
	filter string     // the side's own conditions, as SQL
	schema sql.Schema
}

func joinInput(ctx *sql.Context, a *Aggregator, n sql.Node) (*joinSide, bool) {
	if h, ok := n.(*plan.HashLookup); ok {
		n = h.Child
	}
	rt, name, dt, cond := scanBelow(n)
	if rt == nil {
		return nil, false
	}
	s := &joinSide{schema: n.Schema(), name: name}
	if dt != nil {
		s.dist, s.table = dt, dt.Name()
	} else {
		// a reference table of a distributed database
		d := a.State().Database(rt.SqlDatabase.Name())
		if d == nil {
			return nil, false
		}
		mt := d.Table(rt.Name())
		if mt == nil || !mt.Reference {
			return nil, false
		}
		s.table = mt.Name
	}
	if cond != nil {
		var ok bool
		if s.filter, ok = planner.JoinSQL(ctx, cond, s.name); !ok {
			return nil, false
		}
	}
	return s, true
}

// columns are the side's columns as the join's SQL names them.
func (s *joinSide) columns() []string {
	cols := make([]string, len(s.schema))
	for i, c := range s.schema {
		cols[i] = quoteIdent(s.name) + "." + quoteIdent(c.Name)
	}
	return cols
}

// joinKind says whether the leaves can run a join of this type, and
// whether it is a LEFT JOIN.
func joinKind(j *plan.JoinNode) (outer, ok bool) {
	switch j.Op {
	case plan.JoinTypeInner, plan.JoinTypeHash, plan.JoinTypeMerge:
		return false, true
	case plan.JoinTypeLeftOuter, plan.JoinTypeLeftOuterHash, plan.JoinTypeLeftOuterMerge:
		return true, true
	}
	return false, false
}

// joinInputs are both sides of a join the leaves may run, and the
// aggregator the tables belong to.
func joinInputs(ctx *sql.Context, j *plan.JoinNode) (a *Aggregator, l, r *joinSide, outer, ok bool) {
	if outer, ok = joinKind(j); !ok || j.Filter == nil {
		return nil, nil, nil, false, false
	}
	if a = anyDist(j); a == nil {
		return nil, nil, nil, false, false
	}
	if l, ok = joinInput(ctx, a, j.Left()); !ok {
		return nil, nil, nil, false, false
	}
	if r, ok = joinInput(ctx, a, j.Right()); !ok || strings.EqualFold(l.name, r.name) {
		return nil, nil, nil, false, false
	}
	return a, l, r, outer, true
}

func colocatedJoin(ctx *sql.Context, j *plan.JoinNode) (sql.Node, bool) {
	a, l, r, outer, ok := joinInputs(ctx, j)
	if !ok {
		return nil, false
	}
	var db *meta.Database
	switch {
	case l.dist != nil && r.dist != nil:
		if l.dist.db.Name != r.dist.db.Name || !sameShardKeyJoin(j.Filter, l, r) {
			return nil, false
		}
		db = l.dist.db
	case l.dist != nil:
		db = l.dist.db // the reference table on the right: each sharded row once
	case r.dist != nil && !outer:
		db = r.dist.db
	default:
		return nil, false
	}
	on, ok := planner.JoinSQL(ctx, j.Filter, l.name, r.name)
	if !ok {
		return nil, false
	}
	cols := append(l.columns(), r.columns()...)
	ref := func(s *joinSide, part string) string {
		dbName := db.Name
		if s.dist != nil {
			dbName = part
		}
		return fmt.Sprintf("%s.%s AS %s", quoteIdent(dbName), quoteIdent(s.table), quoteIdent(s.name))
	}
	var where []string
	if l.filter != "" {
		where = append(where, l.filter)
	}
	if r.filter != "" {
		if outer {
			on = "(" + on + " AND " + r.filter + ")"
		} else {
			where = append(where, r.filter)
		}
	}
	kind := "JOIN"
	if outer {
		kind = "LEFT JOIN"
	}
	return &remoteQuery{
		a: a, db: db, schema: j.Schema(), ids: columnIds(j), label: "ColocatedJoin",
		build: func(part string) string {
			q := fmt.Sprintf("SELECT %s FROM %s %s %s ON %s", strings.Join(cols, ", "), ref(l, part), kind, ref(r, part), on)
			if len(where) > 0 {
				q += " WHERE " + strings.Join(where, " AND ")
			}
			return q
		},
	}, true
}

// anyDist returns the aggregator of a sharded table below n.
func anyDist(n sql.Node) *Aggregator {
	var a *Aggregator
	transform.Inspect(n, func(n sql.Node) bool {
		if rt, ok := n.(*plan.ResolvedTable); ok {
			if dt, ok := rt.Table.(*DistTable); ok && a == nil {
				a = dt.a
			}
		}
		return a == nil
	})
	return a
}

// columnEqualities are the conditions of a join of the form left column =
// right column, as (left, right) pairs.
func columnEqualities(cond sql.Expression, l, r *joinSide) [][2]*expression.GetField {
	var out [][2]*expression.GetField
	for _, c := range expression.SplitConjunction(cond) {
		eq, ok := c.(*expression.Equals)
		if !ok {
			continue
		}
		a, ok1 := eq.Left().(*expression.GetField)
		b, ok2 := eq.Right().(*expression.GetField)
		if !ok1 || !ok2 {
			continue
		}
		if strings.EqualFold(a.Table(), r.name) {
			a, b = b, a
		}
		if strings.EqualFold(a.Table(), l.name) && strings.EqualFold(b.Table(), r.name) {
			out = append(out, [2]*expression.GetField{a, b})
		}
	}
	return out
}

// sameShardKeyJoin reports whether the join condition equates the whole
// shard keys of both tables, column by column, with identical types (so
// that equal values hash to the same partition).
func sameShardKeyJoin(cond sql.Expression, l, r *joinSide) bool {
	lk, rk := l.dist.meta.ShardKey, r.dist.meta.ShardKey
	if len(lk) == 0 || len(lk) != len(rk) {
		return false
	}
	ls, rs := l.dist.local.Schema(), r.dist.local.Schema()
	for i := range lk {
		li, ri := ls.IndexOfColName(lk[i]), rs.IndexOfColName(rk[i])
		if li < 0 || ri < 0 || ls[li].Type.String() != rs[ri].Type.String() {
			return false
		}
	}
	equated := make([]bool, len(lk))
	for _, eq := range columnEqualities(cond, l, r) {
		for i := range lk {
			if strings.EqualFold(eq[0].Name(), lk[i]) && strings.EqualFold(eq[1].Name(), rk[i]) {
				equated[i] = true
			}
		}
	}
	for _, ok := range equated {
		if !ok {
			return false
		}
	}
	return true
}

// remoteQuery runs a query on every partition and returns the union of
// the results (a pushed-down join).
type remoteQuery struct {
	a      *Aggregator
	db     *meta.Database
	schema sql.Schema
	ids    []sql.ColumnId // the replaced join's column ids (see columnIds)
	label  string
	build  func(partitionDB string) string
}

var (
	_ sql.ExecSourceRel = (*remoteQuery)(nil)
	_ sql.Projector     = (*remoteQuery)(nil)
)

// ProjectedExprs gives GMS the column ids of the join the query replaced.
func (q *remoteQuery) ProjectedExprs() []sql.Expression { return projectIds(q.schema, q.ids) }

func (q *remoteQuery) RowIter(ctx *sql.Context, _ sql.Row) (sql.RowIter, error) {
	return q.a.gather(ctx, q.db.Name, q.build, q.schema)
}

func (q *remoteQuery) Resolved() bool       { return true }
func (q *remoteQuery) IsReadOnly() bool     { return true }
func (q *remoteQuery) Schema() sql.Schema   { return q.schema }
func (q *remoteQuery) Children() []sql.Node { return nil }
func (q *remoteQuery) WithChildren(children ...sql.Node) (sql.Node, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(q, len(children), 0)
	}
	return q, nil
}

func (q *remoteQuery) explain() []string {
	return []string{"Leaf SQL (" + q.label + "): " + q.build(leafPartitions(q.db.Name))}
}

func (q *remoteQuery) String() string {
	return q.label + "(every leaf: " + q.build(leafPartitions(q.db.Name)) + ")"
}
