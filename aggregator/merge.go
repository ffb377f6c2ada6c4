package aggregator

import (
	"container/heap"
	"io"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"

	"github.com/canopydb/canopy/cluster/pool"
)

// SortRuleID names PushSort among the analyzer's rules; it runs after
// PushTopN, which gives an ORDER BY with a LIMIT to the partitions first.
const SortRuleID analyzer.RuleId = 10_003

// PushSort is an analyzer rule that replaces an ORDER BY over a sharded
// table scan with a merge: every partition sorts its rows, and the
// aggregator interleaves the sorted streams, holding one row per
// partition instead of the whole result. Filters and projections above
// the scan keep the order, and a LIMIT above stops the merge early.
func PushSort(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		if s, ok := n.(*plan.Sort); ok {
			if nn, ok := mergedSort(ctx, s); ok {
				return nn, transform.NewTree, nil
			}
		}
		return n, transform.SameTree, nil
	})
}

// mergedSort handles Sort [Project(columns)] [Filter] scan, sorted by
// columns of the table. Inside a client transaction a leaf's partitions
// share one connection and stream one after the other, which a merge
// cannot wait for; the aggregator sorts there.
func mergedSort(ctx *sql.Context, s *plan.Sort) (sql.Node, bool) {
	below := s.Child
	if p, ok := below.(*plan.Project); ok {
		for _, e := range p.Projections {
			if _, ok := e.(*expression.GetField); !ok {
				return nil, false
			}
		}
		below = p.Child
	}
	scan, name, dt, _ := scanBelow(below)
	if dt == nil || dt.suffix != "" || dt.a.inTransaction(ctx.Session.ID()) {
		return nil, false
	}
	schema := dt.Schema()
	var keys []string
	fields := make(sql.SortFields, len(s.SortFields))
	for i, sf := range s.SortFields {
		gf, ok := sf.Column.(*expression.GetField)
		if !ok || !strings.EqualFold(gf.Table(), name) {
			return nil, false
		}
		idx := schema.IndexOfColName(gf.Name())
		if idx < 0 {
			return nil, false
		}
		key := quoteIdent(schema[idx].Name)
		if sf.Order == sql.Descending {
			key += " DESC"
		}
		keys = append(keys, key)
		fields[i] = sf
		fields[i].Column = expression.NewGetFieldWithTable(idx, int(gf.TableId()), schema[idx].Type, gf.Database(), gf.Table(), schema[idx].Name, true)
	}
	nt := *dt
	nt.suffix = " ORDER BY " + strings.Join(keys, ", ")
	nt.merge = fields
	out, err := replaceScan(s.Child, scan, &nt)
	return out, err == nil
}

// gatherMerged runs a query on every partition, each sorted by fields,
// and merges the streams into one sorted stream.
func (a *Aggregator) gatherMerged(ctx *sql.Context, t *DistTable) (sql.RowIter, error) {
	d := a.State().Database(t.db.Name)
	if d == nil {
		return nil, sql.ErrDatabaseNotFound.New(t.db.Name)
	}
	g := &gatherIter{a: a, done: make(chan struct{})}
	m := &mergeIter{g: g, sorter: &expression.Sorter{SortFields: t.merge, Rows: make([]sql.Row, 2), Ctx: ctx}}
	schema := t.Schema()
	settings := a.settingsFor(ctx.Session.ID()).internal
	jobs, err := leafJobs(d, t.scanSQL)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		ch := make(chan sql.Row, 64)
		m.streams = append(m.streams, ch)
		g.wg.Add(1)
		go func(j gatherJob) {
			defer g.wg.Done()
			defer close(ch)
			lp, err := a.LeafPool(j.leaf)
			if err != nil {
				g.fail(leafError(j.leaf, err))
				return
			}
			c, err := lp.Acquire(ctx)
			if err != nil {
				g.fail(leafError(j.leaf, err))
				return
			}
			defer c.Release()
			sent, err := g.stream(ctx, c, settings, j.query, schema, ch, false)
			if err != nil && sent == 0 && j.split != nil && shapesDiffer(err) {
				err = a.mergeSplit(ctx, g, lp, j, settings, t, ch)
			}
			if err != nil {
				g.fail(leafError(j.leaf, err))
			}
		}(j)
	}
	return m, nil
}

// mergeSplit runs a leaf's query partition by partition (its partitions'
// tables differ: see gatherJob.split), each on a connection of its own,
// and merges their sorted streams into out.
func (a *Aggregator) mergeSplit(ctx *sql.Context, g *gatherIter, lp *pool.Pool, j gatherJob, settings *pool.Settings, t *DistTable, out chan<- sql.Row) error {
	sub := &mergeIter{g: g, sorter: &expression.Sorter{SortFields: t.merge, Rows: make([]sql.Row, 2), Ctx: ctx}}
	schema := t.Schema()
	for _, q := range j.split() {
		sc := make(chan sql.Row, 64)
		sub.streams = append(sub.streams, sc)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer close(sc)
			c, err := lp.Acquire(ctx)
			if err == nil {
				defer c.Release()
				_, err = g.stream(ctx, c, settings, q, schema, sc, false)
			}
			if err != nil {
				g.fail(leafError(j.leaf, err))
			}
		}()
	}
	for {
		row, err := sub.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case out <- row:
		case <-g.done:
			return nil
		}
	}
}

// mergeIter interleaves sorted partition streams: a heap holds the next
// row of every stream that has one.
type mergeIter struct {
	g       *gatherIter
	streams []chan sql.Row
	heads   []mergeHead
	sorter  *expression.Sorter
	started bool
}

type mergeHead struct {
	row    sql.Row
	stream int
}

func (m *mergeIter) Len() int { return len(m.heads) }
func (m *mergeIter) Less(i, j int) bool {
	m.sorter.Rows[0], m.sorter.Rows[1] = m.heads[i].row, m.heads[j].row
	return m.sorter.Less(0, 1)
}
func (m *mergeIter) Swap(i, j int)      { m.heads[i], m.heads[j] = m.heads[j], m.heads[i] }
func (m *mergeIter) Push(x interface{}) { m.heads = append(m.heads, x.(mergeHead)) }
func (m *mergeIter) Pop() interface{} {
	h := m.heads[len(m.heads)-1]
	m.heads = m.heads[:len(m.heads)-1]
	return h
}

// next reads a stream's next row; ok is false at its end.
func (m *mergeIter) next(ctx *sql.Context, i int) (sql.Row, bool, error) {
	select {
	case row, ok := <-m.streams[i]:
		return row, ok, nil
	case <-ctx.Done():
		m.g.stop()
		return nil, false, ctx.Err()
	}
}

func (m *mergeIter) Next(ctx *sql.Context) (sql.Row, error) {
	if !m.started {
		m.started = true
		for i := range m.streams {
			row, ok, err := m.next(ctx, i)
			if err != nil {
				return nil, err
			}
			if ok {
				m.heads = append(m.heads, mergeHead{row, i})
			}
		}
		heap.Init(m)
	}
	if err := m.g.failed(); err != nil {
		return nil, err
	}
	if len(m.heads) == 0 {
		return nil, io.EOF
	}
	top := m.heads[0]
	row, ok, err := m.next(ctx, top.stream)
	if err != nil {
		return nil, err
	}
	if ok {
		m.heads[0].row = row
		heap.Fix(m, 0)
	} else {
		heap.Pop(m)
	}
	if m.sorter.LastError != nil {
		return nil, m.sorter.LastError
	}
	// a stream that ended early may have ended on an error
	if err := m.g.failed(); err != nil {
		return nil, err
	}
	return top.row, nil
}

// Close does not wait for the producers: each closes its connection at
// its next row (none is a transaction's), and one still waiting for a
// leaf's sort must not hold up the client.
func (m *mergeIter) Close(*sql.Context) error {
	m.g.stop()
	return nil
}
