package aggregator

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/aggregator/planner"
)

// lookupKeysPerStatement bounds the IN list of one statement to the big
// side's partitions; more keys go in several statements, one after another.
const lookupKeysPerStatement = 2000

// lookupJoin runs a join one of whose sides is small (planner.LookupLeft,
// LookupRight): the aggregator reads the small side, sends its distinct
// join keys to the other side's partitions as an IN list (each leaf
// answers from an index on the key when it has one, as MariaDB does with
// the small side outermost), and joins the matching rows in a hash table
// of the small side. Nothing is written to the leaves, so it also runs
// inside a client transaction, through the transaction's connections.
type lookupJoin struct {
	a        *Aggregator
	strategy planner.JoinStrategy
	shape    planner.JoinShape
	l, r     *joinSide
	outer    bool           // LEFT JOIN, the small side preserved
	pairs    []keyPair      // the hashable equalities, for the hash table
	key      keyPair        // the equality whose values travel as the IN list
	cond     sql.Expression // the join condition over a joined row (l then r)
	on       string         // the join condition, as SQL (for EXPLAIN)
	schema   sql.Schema
	ids      []sql.ColumnId // the replaced join's column ids (see columnIds)
}

var (
	_ sql.ExecSourceRel = (*lookupJoin)(nil)
	_ sql.Projector     = (*lookupJoin)(nil)
)

func newLookupJoin(a *Aggregator, strategy planner.JoinStrategy, shape planner.JoinShape, l, r *joinSide, outer bool, pairs []keyPair, cond sql.Expression, on string, j *plan.JoinNode) *lookupJoin {
	lj := &lookupJoin{a: a, strategy: strategy, shape: shape, l: l, r: r, outer: outer, cond: cond, on: on, schema: j.Schema(), ids: columnIds(j)}
	for _, p := range pairs {
		if p.hashable {
			lj.pairs = append(lj.pairs, p)
		}
	}
	for _, p := range lj.pairs {
		if p.lookup {
			lj.key = p
			break
		}
	}
	return lj
}

// literalKey reports whether a value of type t, written as an SQL
// literal, compares with a column of the same type as the column's own
// value would: not for JSON (a string literal is not a JSON value),
// geometry or BIT.
func literalKey(t sql.Type) bool {
	return !types.IsJSON(t) && !types.IsGeometry(t) && !types.IsBit(t) && !types.IsFloat(t)
}

// joinedCondition is the join condition with its column references
// pointing into a joined row (the left side's columns, then the right
// side's), for the aggregator to evaluate; false when it refers to
// anything else.
func joinedCondition(cond sql.Expression, l, r *joinSide) (sql.Expression, bool) {
	ok := true
	out, _, err := transform.Expr(cond, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
		switch e := e.(type) {
		case *plan.Subquery:
			ok = false
		case *expression.GetField:
			i := -1
			switch {
			case strings.EqualFold(e.Table(), l.name):
				i = l.schema.IndexOfColName(e.Name())
			case strings.EqualFold(e.Table(), r.name):
				if i = r.schema.IndexOfColName(e.Name()); i >= 0 {
					i += len(l.schema)
				}
			}
			if i < 0 {
				ok = false
				return e, transform.SameTree, nil
			}
			return e.WithIndex(i), transform.NewTree, nil
		}
		return e, transform.SameTree, nil
	})
	return out, ok && err == nil
}

// sides are the side read first (small) and the side looked up (big).
func (j *lookupJoin) sides() (small, big *joinSide) {
	if j.strategy == planner.LookupLeft {
		return j.l, j.r
	}
	return j.r, j.l
}

// keyCol is the column of side s in the looked-up equality.
func (j *lookupJoin) keyCol(s *joinSide) int {
	if s == j.l {
		return j.key.l
	}
	return j.key.r
}

// lookupSQL is what a leaf runs for one IN list of keys.
func (j *lookupJoin) lookupSQL(part, keys string) string {
	_, big := j.sides()
	col := quoteIdent(big.name) + "." + quoteIdent(big.schema[j.keyCol(big)].Name)
	q := fmt.Sprintf("SELECT %s FROM %s.%s AS %s WHERE ", strings.Join(big.columns(), ", "), quoteIdent(part), quoteIdent(big.table), quoteIdent(big.name))
	if big.filter != "" {
		q += "(" + big.filter + ") AND "
	}
	return q + col + " IN (" + keys + ")"
}

func (j *lookupJoin) explain() []string {
	small, big := j.sides()
	sideDB := func(s *joinSide) string { return leafPartitions(s.dist.db.Name) }
	return []string{
		fmt.Sprintf("LookupJoin (%v): %s's join keys looked up in %s", j.shape, small.name, big.name),
		"  Leaf SQL (small side): " + sideSQL(small, sideDB(small)),
		"  Leaf SQL: " + j.lookupSQL(sideDB(big), "<keys of "+small.name+">"),
		"  Aggregator: hash join ON " + j.on,
	}
}

func (j *lookupJoin) String() string {
	return fmt.Sprintf("LookupJoin(%s; %v)", j.strategy, j.shape)
}

// ProjectedExprs gives GMS the column ids of the join this replaced.
func (j *lookupJoin) ProjectedExprs() []sql.Expression { return projectIds(j.schema, j.ids) }
func (j *lookupJoin) Resolved() bool                   { return true }
func (j *lookupJoin) IsReadOnly() bool                 { return true }
func (j *lookupJoin) Schema() sql.Schema               { return j.schema }
func (j *lookupJoin) Children() []sql.Node             { return nil }
func (j *lookupJoin) WithChildren(children ...sql.Node) (sql.Node, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(j, len(children), 0)
	}
	return j, nil
}

// RowIter reads the small side whole, then streams the big side's
// matching rows, one IN list at a time, and joins each as it comes.
func (j *lookupJoin) RowIter(ctx *sql.Context, _ sql.Row) (sql.RowIter, error) {
	a := j.a
	a.shuffled.lookup.Add(1)
	small, big := j.sides()
	rows, err := a.gather(ctx, small.dist.db.Name, func(database string) string { return sideSQL(small, database) }, small.schema)
	if err != nil {
		return nil, err
	}
	it := &lookupIter{j: j, smallLeft: small == j.l, byKey: map[uint64][]int{}}
	for {
		row, err := rows.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			rows.Close(ctx)
			return nil, err
		}
		it.small = append(it.small, row)
	}
	if err := rows.Close(ctx); err != nil {
		return nil, err
	}
	if j.outer {
		it.matched = make([]bool, len(it.small))
	}
	// the distinct keys, as literals of the small side's type; a NULL key
	// joins nothing
	col, seen := j.keyCol(small), map[string]bool{}
	var keys []string
	var lit bytes.Buffer
	for i, row := range it.small {
		if nullKey(row, j.pairs, it.smallLeft) {
			continue
		}
		h, err := keyHash(row, j.pairs, it.smallLeft)
		if err != nil {
			return nil, err
		}
		it.byKey[h] = append(it.byKey[h], i)
		v, err := small.schema[col].Type.SQL(ctx, nil, row[col])
		if err != nil {
			return nil, err
		}
		lit.Reset()
		v.EncodeSQL(&lit)
		if k := lit.String(); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for len(keys) > 0 {
		n := min(len(keys), lookupKeysPerStatement)
		it.lists = append(it.lists, strings.Join(keys[:n], ", "))
		keys = keys[n:]
	}
	it.bigDB = big.dist.db.Name
	return it, nil
}

// nullKey reports whether a row has a NULL in one of the join's hashable
// equalities: such a row matches nothing.
func nullKey(row sql.Row, pairs []keyPair, left bool) bool {
	for _, p := range pairs {
		i := p.r
		if left {
			i = p.l
		}
		if row[i] == nil {
			return true
		}
	}
	return false
}

// lookupIter joins the big side's rows, as the leaves send them, with the
// small side's hash table; a LEFT JOIN's unmatched small rows come last.
type lookupIter struct {
	j         *lookupJoin
	smallLeft bool
	small     []sql.Row
	byKey     map[uint64][]int // key hash → indexes into small
	matched   []bool           // LEFT JOIN: small rows that joined
	lists     []string         // IN lists not yet sent
	bigDB     string
	big       sql.RowIter // the current IN list's rows
	pending   []sql.Row
	unmatched int // LEFT JOIN: next small row to check once the big side is done
}

func (it *lookupIter) Next(ctx *sql.Context) (sql.Row, error) {
	for {
		if len(it.pending) > 0 {
			row := it.pending[0]
			it.pending = it.pending[1:]
			return row, nil
		}
		if it.big == nil {
			if len(it.lists) == 0 {
				return it.nextUnmatched()
			}
			list := it.lists[0]
			it.lists = it.lists[1:]
			big, err := it.j.a.gather(ctx, it.bigDB, func(database string) string { return it.j.lookupSQL(database, list) }, it.bigSchema())
			if err != nil {
				return nil, err
			}
			it.big = big
		}
		row, err := it.big.Next(ctx)
		if err == io.EOF {
			err = it.big.Close(ctx)
			it.big = nil
			if err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := it.join(ctx, row); err != nil {
			return nil, err
		}
	}
}

func (it *lookupIter) bigSchema() sql.Schema {
	_, big := it.j.sides()
	return big.schema
}

// join queues the joined rows a big-side row makes.
func (it *lookupIter) join(ctx *sql.Context, row sql.Row) error {
	if nullKey(row, it.j.pairs, !it.smallLeft) {
		return nil
	}
	h, err := keyHash(row, it.j.pairs, !it.smallLeft)
	if err != nil {
		return err
	}
	for _, i := range it.byKey[h] {
		var joined sql.Row
		if it.smallLeft {
			joined = append(append(make(sql.Row, 0, len(it.j.schema)), it.small[i]...), row...)
		} else {
			joined = append(append(make(sql.Row, 0, len(it.j.schema)), row...), it.small[i]...)
		}
		ok, err := sql.EvaluateCondition(ctx, it.j.cond, joined)
		if err != nil {
			return err
		}
		if sql.IsTrue(ok) {
			it.pending = append(it.pending, joined)
			if it.matched != nil {
				it.matched[i] = true
			}
		}
	}
	return nil
}

// nextUnmatched is a LEFT JOIN's next small row that joined nothing,
// with NULLs for the other side.
func (it *lookupIter) nextUnmatched() (sql.Row, error) {
	for ; it.matched != nil && it.unmatched < len(it.small); it.unmatched++ {
		if !it.matched[it.unmatched] {
			row := make(sql.Row, len(it.j.schema))
			copy(row, it.small[it.unmatched])
			it.unmatched++
			return row, nil
		}
	}
	return nil, io.EOF
}

func (it *lookupIter) Close(ctx *sql.Context) error {
	if it.big != nil {
		err := it.big.Close(ctx)
		it.big = nil
		return err
	}
	return nil
}
