package aggregator

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/rowexec"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/gmsfix"
	"github.com/canopydb/canopy/sharding"
)

// BulkLoadRuleID names BulkLoad among the analyzer's rules.
const BulkLoadRuleID analyzer.RuleId = 10_005

// BulkLoad is an analyzer rule, run after all others (after
// gmsfix.LoadDataReader), that gives LOAD DATA into a sharded table its
// own executor. GMS's insert runs a LOAD DATA LOCAL (IGNORE implied) one
// row per statement, which on a DistTable is a flush and a distributed
// commit per row (13 s for 10,000 rows). Here the aggregator reads and
// converts the rows (SET clauses, defaults and user variables evaluated
// by its engine), hashes each to its partition, and sends each partition
// multi-row INSERT [IGNORE] / REPLACE statements, every leaf in parallel
// with the reading, in one transaction per leaf committed together at
// the end (two-phase, as for other multi-leaf writes), or in the client's
// transaction. Duplicate keys are the leaves' to judge: IGNORE and
// REPLACE travel with the rows.
func BulkLoad(_ *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		ii, ok := n.(*plan.InsertInto)
		if !ok || ii.Source == nil || len(ii.OnDupExprs) > 0 || len(ii.Returning) > 0 {
			return n, transform.SameTree, nil
		}
		load := false
		transform.Inspect(ii.Source, func(n sql.Node) bool {
			if _, ok := n.(*gmsfix.LoadData); ok {
				load = true
			}
			return !load
		})
		if !load {
			return n, transform.SameTree, nil
		}
		it, err := plan.GetInsertable(ii.Destination)
		if err != nil {
			return n, transform.SameTree, nil
		}
		dt, ok := underlyingDist(it)
		if !ok {
			return n, transform.SameTree, nil
		}
		// the AUTO_INCREMENT values are ours to give (and to report)
		src, _, err := transform.NodeExprs(ii.Source, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
			if ai, ok := e.(*expression.AutoIncrement); ok {
				return ai.Child, transform.NewTree, nil
			}
			return e, transform.SameTree, nil
		})
		if err != nil {
			return nil, transform.SameTree, err
		}
		return &bulkLoad{ii: ii.WithSource(src), t: dt}, transform.NewTree, nil
	})
}

func underlyingDist(t sql.Table) (*DistTable, bool) {
	for {
		switch x := t.(type) {
		case *DistTable:
			return x, true
		case sql.TableWrapper:
			t = x.Underlying()
		default:
			return nil, false
		}
	}
}

// bulkLoad runs a LOAD DATA into a sharded table (see BulkLoad).
type bulkLoad struct {
	ii *plan.InsertInto
	t  *DistTable
}

var _ sql.ExecSourceRel = (*bulkLoad)(nil)

func (b *bulkLoad) Resolved() bool       { return b.ii.Resolved() }
func (b *bulkLoad) IsReadOnly() bool     { return false }
func (b *bulkLoad) String() string       { return "BulkLoad(" + b.t.Name() + ")" }
func (b *bulkLoad) Schema() sql.Schema   { return types.OkResultSchema }
func (b *bulkLoad) Children() []sql.Node { return nil }
func (b *bulkLoad) WithChildren(children ...sql.Node) (sql.Node, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(b, len(children), 0)
	}
	return b, nil
}

// A partition's batch is sent once it holds this many bytes or rows.
const (
	bulkBatchBytes = 1 << 20
	bulkBatchRows  = 5000
)

// leafSender runs one leaf's statements in order, beside the reading.
type leafSender struct {
	leaf     string
	c        *pool.Conn
	settings *pool.Settings
	queue    chan string
	closed   bool
	affected uint64
	err      error
	done     chan struct{}
}

func (s *leafSender) run(queue <-chan string, failed func()) {
	defer close(s.done)
	for q := range queue {
		if s.err != nil {
			continue // drain
		}
		res, err := s.c.ExecWith(s.settings, q, 0)
		if err != nil {
			s.err = leafError(s.leaf, err)
			failed()
			continue
		}
		s.affected += res.RowsAffected
	}
}

type bulkBatch struct {
	q    bytes.Buffer
	rows int
}

func (b *bulkLoad) RowIter(ctx *sql.Context, row sql.Row) (sql.RowIter, error) {
	res, err := b.run(ctx, row)
	if err != nil {
		return nil, err
	}
	return sql.RowsToRowIter(sql.NewRow(res)), nil
}

func (b *bulkLoad) run(ctx *sql.Context, row sql.Row) (types.OkResult, error) {
	t, ii := b.t, b.ii
	schema := ii.Destination.Schema()
	src, err := rowexec.DefaultBuilder.Build(ctx, ii.Source, row)
	if err != nil {
		return types.OkResult{}, err
	}
	defer src.Close(ctx)

	verb := "INSERT INTO "
	switch {
	case ii.IsReplace:
		verb = "REPLACE INTO "
	case ii.Ignore:
		verb = "INSERT IGNORE INTO "
	}
	table := quoteIdent(t.Name())
	var head bytes.Buffer
	head.WriteString(" (")
	for k, c := range schema {
		if k > 0 {
			head.WriteString(", ")
		}
		head.WriteString(quoteIdent(c.Name))
	}
	head.WriteString(") VALUES ")

	auto := -1
	for k, c := range schema {
		if c.AutoIncrement {
			auto = k
		}
	}
	var keyIdx []int
	var key sharding.Key
	if len(t.meta.ShardKey) > 0 {
		typs := make([]sql.Type, len(t.meta.ShardKey))
		for k, c := range t.meta.ShardKey {
			i := schema.IndexOfColName(c)
			if i < 0 {
				return types.OkResult{}, fmt.Errorf("shard key column %s not in table %s", c, t.Name())
			}
			keyIdx = append(keyIdx, i)
			typs[k] = schema[i].Type
		}
		key = sharding.NewKey(typs)
	}
	nparts := len(t.db.Partitions)

	// the leaves' connections and senders
	ins := &distInserter{t: t, connID: ctx.Session.ID(), conns: map[string]*pool.Conn{}}
	ins.StatementBegin(ctx)
	senders := map[string]*leafSender{}
	var failedOnce sync.Once
	stop := make(chan struct{})
	failed := func() { failedOnce.Do(func() { close(stop) }) }
	st := t.a.State()
	settings := t.a.settingsFor(ins.connID).internal
	wait := func() error {
		var first error
		for _, s := range senders {
			if !s.closed {
				close(s.queue)
				s.closed = true
			}
			<-s.done
			if s.err != nil && first == nil {
				first = s.err
			}
		}
		return first
	}
	// in the client's transaction, the statement's rows go or stay
	// together: a savepoint on each leaf
	endSavepoints := func(how string) error {
		var first error
		for _, s := range senders {
			if _, err := s.c.Exec(how+" SAVEPOINT canopy_statement", 0); err != nil && first == nil {
				first = leafError(s.leaf, err)
			}
		}
		return first
	}
	abort := func(err error) (types.OkResult, error) {
		if werr := wait(); werr != nil {
			err = werr // a leaf's error came first
		}
		if ins.inTxn {
			endSavepoints("ROLLBACK TO")
		} else {
			ins.finish("ROLLBACK")
		}
		return types.OkResult{}, err
	}
	batches := make([]*bulkBatch, nparts)
	send := func(p int) error {
		bt := batches[p]
		if bt == nil || bt.rows == 0 {
			return nil
		}
		batches[p] = nil
		leaf, err := routeLeaf(st, t.db.Name, p)
		if err != nil {
			return err
		}
		s := senders[leaf]
		if s == nil {
			c, err := ins.conn(ctx, leaf)
			if err != nil {
				return leafError(leaf, err)
			}
			if ins.inTxn {
				if _, err := c.ExecWith(settings, "SAVEPOINT canopy_statement", 0); err != nil {
					return leafError(leaf, err)
				}
			}
			s = &leafSender{leaf: leaf, c: c, settings: settings, queue: make(chan string, 2), done: make(chan struct{})}
			senders[leaf] = s
			go s.run(s.queue, failed)
		}
		select {
		case s.queue <- bt.q.String():
			return nil
		case <-stop:
			return nil // the leaf's error is reported
		}
	}

	var rows, firstID uint64
	vals := make([]interface{}, len(keyIdx))
	for {
		select {
		case <-stop:
			return abort(nil)
		default:
		}
		r, err := src.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return abort(err)
		}
		rows++
		if err := convertRow(ctx, schema, r, ii.Ignore, rows); err != nil {
			return abort(err)
		}
		if auto >= 0 && autoWanted(r[auto]) {
			id, err := t.a.nextAutoIncrement(t.db.Name, t.Name())
			if err != nil {
				return abort(err)
			}
			if firstID == 0 {
				firstID = id
			}
			r[auto], _, _ = schema[auto].Type.Convert(ctx, id)
		}
		var p int
		if len(keyIdx) == 0 {
			p = t.a.spreadPartition(nparts)
		} else {
			for k, i := range keyIdx {
				vals[k] = r[i]
			}
			if p, err = key.Partition(vals, nparts); err != nil {
				return abort(fmt.Errorf("shard key of table %s: %w", t.Name(), err))
			}
		}
		bt := batches[p]
		if bt == nil {
			bt = &bulkBatch{}
			batches[p] = bt
			bt.q.WriteString(verb)
			bt.q.WriteString(quoteIdent(meta.PartitionName(t.db.Name, p)) + "." + table)
			bt.q.Write(head.Bytes())
		} else {
			bt.q.WriteString(", ")
		}
		if err := encodeRow(ctx, &bt.q, schema, r); err != nil {
			return abort(err)
		}
		bt.rows++
		if bt.q.Len() >= bulkBatchBytes || bt.rows >= bulkBatchRows {
			if err := send(p); err != nil {
				return abort(err)
			}
		}
	}
	for p := range batches {
		if err := send(p); err != nil {
			return abort(err)
		}
	}
	if err := wait(); err != nil {
		return abort(err)
	}
	var affected uint64
	for _, s := range senders {
		affected += s.affected
	}
	if ins.inTxn {
		if err := endSavepoints("RELEASE"); err != nil {
			return types.OkResult{}, err
		}
	} else if err := ins.finish("COMMIT"); err != nil {
		return types.OkResult{}, err
	}
	if firstID > 0 {
		ctx.SetLastQueryInfoInt(sql.LastInsertId, int64(firstID))
	}
	ctx.SetLastQueryInfoInt(sql.RowCount, int64(affected))
	// MySQL's info line: REPLACE counts a replaced row twice, IGNORE
	// skips duplicates
	var deleted, skipped uint64
	switch {
	case ii.IsReplace && affected > rows:
		deleted = affected - rows
	case !ii.IsReplace && rows > affected:
		skipped = rows - affected
	}
	info := fmt.Sprintf("Records: %d  Deleted: %d  Skipped: %d  Warnings: %d", rows, deleted, skipped, ctx.WarningCount()+uint16(skipped))
	return types.OkResult{RowsAffected: affected, InsertID: firstID, Info: okInfo(info)}, nil
}

type okInfo string

func (s okInfo) String() string { return string(s) }

// autoWanted: NULL or 0 ask for a generated AUTO_INCREMENT value.
func autoWanted(v interface{}) bool {
	if v == nil {
		return true
	}
	switch x := v.(type) {
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, uint:
		return fmt.Sprint(x) == "0"
	}
	return false
}

// convertRow converts a row's values to its columns' types, as GMS's
// insert does: with IGNORE a value that does not fit becomes its type's
// zero (numbers: the clipped value) with a warning, without it is an
// error.
func convertRow(ctx *sql.Context, schema sql.Schema, r sql.Row, ignore bool, n uint64) error {
	for i, c := range schema {
		if r[i] == nil {
			continue
		}
		v, inRange, err := c.Type.Convert(ctx, r[i])
		if err == nil && !inRange {
			err = sql.ErrValueOutOfRange.New(r[i], c.Type)
		}
		if err == nil {
			r[i] = v
			continue
		}
		if !ignore || c.Type.Type() == querypb.Type_JSON {
			return sql.NewWrappedInsertError(r, err)
		}
		if v == nil {
			v = c.Type.Zero()
		}
		r[i] = v
		ctx.Session.Warn(&sql.Warning{Level: "Warning", Code: sql.CastSQLError(err).Num,
			Message: fmt.Sprintf("%s at row %s", err.Error(), strconv.FormatUint(n, 10))})
	}
	return nil
}

// encodeRow appends a row of converted values as an SQL tuple.
func encodeRow(ctx *sql.Context, q *bytes.Buffer, schema sql.Schema, r sql.Row) error {
	q.WriteByte('(')
	for k, v := range r {
		if k > 0 {
			q.WriteString(", ")
		}
		if v == nil {
			q.WriteString("NULL")
			continue
		}
		sv, err := schema[k].Type.SQL(ctx, nil, v)
		if err != nil {
			return err
		}
		sv.EncodeSQL(q)
	}
	q.WriteByte(')')
	return nil
}
