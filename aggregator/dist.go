package aggregator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/sharding"
	"github.com/canopydb/canopy/storage"
)

// Provider is a node's SQL engine view of its databases. On an aggregator,
// the sharded tables of a distributed database are DistTables: their rows
// come from the partitions.
type Provider struct {
	*storage.Provider
	agg func() *Aggregator
}

// NewProvider wraps a node's storage provider; agg returns the node's
// aggregator, or nil on a leaf.
func NewProvider(p *storage.Provider, agg func() *Aggregator) *Provider {
	return &Provider{Provider: p, agg: agg}
}

func (p *Provider) wrap(ctx *sql.Context, db sql.Database) sql.Database {
	a := p.agg()
	sdb, ok := db.(*storage.Database)
	if a == nil || !ok || (ctx.Session != nil && a.seesLocal(ctx.Session.ID())) {
		return db
	}
	if d := a.State().Database(db.Name()); d != nil {
		return &DistDatabase{Database: sdb, a: a, name: d.Name}
	}
	return db
}

func (p *Provider) Database(ctx *sql.Context, name string) (sql.Database, error) {
	db, err := p.Provider.Database(ctx, name)
	if err != nil {
		return nil, err
	}
	return p.wrap(ctx, db), nil
}

func (p *Provider) AllDatabases(ctx *sql.Context) []sql.Database {
	all := p.Provider.AllDatabases(ctx)
	for i, db := range all {
		all[i] = p.wrap(ctx, db)
	}
	return all
}

// DistDatabase is a distributed database on an aggregator: this node's
// copy (reference tables, views, table definitions) with sharded tables
// read from the partitions.
type DistDatabase struct {
	*storage.Database
	a    *Aggregator
	name string
}

func (d *DistDatabase) GetTableInsensitive(ctx *sql.Context, name string) (sql.Table, bool, error) {
	t, ok, err := d.Database.GetTableInsensitive(ctx, name)
	if err != nil || !ok {
		return t, ok, err
	}
	md := d.a.State().Database(d.name)
	if md == nil {
		return t, ok, nil
	}
	if mt := md.Table(name); mt != nil && !mt.Reference {
		return &DistTable{a: d.a, db: md, meta: mt, local: t}, true, nil
	}
	return t, ok, nil
}

// DistTable is a sharded table seen from an aggregator.
type DistTable struct {
	a     *Aggregator
	db    *meta.Database
	meta  *meta.Table
	local sql.Table // this node's copy: the definition, no rows

	proj     []string
	schema   sql.Schema
	where    string         // conditions the partitions evaluate
	distinct bool           // partitions send distinct rows
	suffix   string         // ORDER BY … LIMIT the partitions apply
	merge    sql.SortFields // the order of the partitions' rows, to merge them in
}

var (
	_ sql.Table              = (*DistTable)(nil)
	_ sql.ProjectedTable     = (*DistTable)(nil)
	_ sql.InsertableTable    = (*DistTable)(nil)
	_ sql.ReplaceableTable   = (*DistTable)(nil)
	_ sql.AutoIncrementTable = (*DistTable)(nil)
	_ sql.PrimaryKeyTable    = (*DistTable)(nil)
)

func (t *DistTable) Name() string               { return t.local.Name() }
func (t *DistTable) String() string             { return t.local.Name() }
func (t *DistTable) Collation() sql.CollationID { return t.local.Collation() }

func (t *DistTable) Schema() sql.Schema {
	if t.schema != nil {
		return t.schema
	}
	return t.local.Schema()
}

func (t *DistTable) PrimaryKeySchema() sql.PrimaryKeySchema {
	return t.local.(sql.PrimaryKeyTable).PrimaryKeySchema()
}

func (t *DistTable) WithProjections(cols []string) sql.Table {
	nt := *t
	nt.proj, nt.schema = nil, nil
	if cols == nil {
		return &nt
	}
	full := t.local.Schema()
	for _, c := range cols {
		if i := full.IndexOfColName(c); i >= 0 {
			nt.proj = append(nt.proj, full[i].Name)
			nt.schema = append(nt.schema, full[i])
		}
	}
	return &nt
}

func (t *DistTable) Projections() []string { return t.proj }

// withFilters returns the scan with the conditions a partition can
// evaluate itself; name is how the conditions refer to the table.
func (t *DistTable) withFilters(ctx *sql.Context, name string, conds []sql.Expression) (*DistTable, bool) {
	var parts []string
	for _, f := range conds {
		if s, ok := planner.FilterSQL(ctx, f, name); ok {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return nil, false
	}
	nt := *t
	nt.where = strings.Join(parts, " AND ")
	return &nt, true
}

// scanSQL is what a leaf runs for this scan; database names the
// partitions it reads (meta.PartitionSetName).
func (t *DistTable) scanSQL(database string) string {
	cols := "*"
	if t.proj != nil {
		q := make([]string, len(t.proj))
		for i, c := range t.proj {
			q[i] = quoteIdent(c)
		}
		cols = strings.Join(q, ", ")
	}
	distinct := ""
	if t.distinct {
		distinct = "DISTINCT "
	}
	s := fmt.Sprintf("SELECT %s%s FROM %s.%s", distinct, cols, quoteIdent(database), quoteIdent(t.Name()))
	if t.where != "" {
		s += " WHERE " + t.where
	}
	return s + t.suffix
}

func (t *DistTable) explain() []string {
	label := "Leaf SQL: "
	if t.merge != nil {
		label = "Leaf SQL (sorted streams merged in order): "
	}
	return []string{label + t.scanSQL(leafPartitions(t.db.Name))}
}

// leafPartitions is how EXPLAIN writes the database a leaf's statement
// names: all of that leaf's partitions of db (meta.PartitionSetName).
func leafPartitions(db string) string { return db + "#<leaf's partitions>" }

type allPartitions struct{}

func (allPartitions) Key() []byte { return []byte("all") }

type onePartition struct{ done bool }

func (o *onePartition) Next(*sql.Context) (sql.Partition, error) {
	if o.done {
		return nil, io.EOF
	}
	o.done = true
	return allPartitions{}, nil
}

func (o *onePartition) Close(*sql.Context) error { return nil }

// Partitions: one GMS partition whose rows come from every cluster
// partition in parallel.
func (t *DistTable) Partitions(*sql.Context) (sql.PartitionIter, error) { return &onePartition{}, nil }

func (t *DistTable) PartitionRows(ctx *sql.Context, _ sql.Partition) (sql.RowIter, error) {
	if t.merge != nil {
		return t.a.gatherMerged(ctx, t)
	}
	return t.a.gather(ctx, t.db.Name, t.scanSQL, t.Schema())
}

// gather runs a query on every partition of a database in parallel and
// streams the rows back; sqlFor gives the query for a database name,
// which stands for all of a leaf's partitions at once
// (meta.PartitionSetName): each leaf parses, plans and runs one
// statement over its partitions (storage.UnionDatabase).
func (a *Aggregator) gather(ctx *sql.Context, db string, sqlFor func(database string) string, schema sql.Schema) (sql.RowIter, error) {
	d := a.State().Database(db)
	if d == nil {
		return nil, sql.ErrDatabaseNotFound.New(db)
	}
	jobs, err := leafJobs(d, sqlFor)
	if err != nil {
		return nil, err
	}
	return a.runGather(ctx, jobs, a.inTransaction(ctx.Session.ID()), schema), nil
}

// leafJobs is one job per leaf that masters partitions of d, its query
// over all of them.
func leafJobs(d *meta.Database, sqlFor func(database string) string) ([]gatherJob, error) {
	byLeaf := map[string][]int{}
	var leaves []string
	for _, p := range d.Partitions {
		if p.Master == "" {
			return nil, errNoMaster(d.Name, p.Ordinal)
		}
		if byLeaf[p.Master] == nil {
			leaves = append(leaves, p.Master)
		}
		byLeaf[p.Master] = append(byLeaf[p.Master], p.Ordinal)
	}
	jobs := make([]gatherJob, 0, len(leaves))
	for _, leaf := range leaves {
		parts := byLeaf[leaf]
		j := gatherJob{leaf: leaf, query: sqlFor(meta.PartitionSetName(d.Name, parts))}
		if len(parts) > 1 {
			db := d.Name
			j.split = func() []string {
				qs := make([]string, len(parts))
				for i, p := range parts {
					qs[i] = sqlFor(meta.PartitionName(db, p))
				}
				return qs
			}
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// gatherJob is the query one leaf runs.
type gatherJob struct {
	leaf  string
	query string
	// split gives the query partition by partition, run instead when
	// the leaf refuses query because its partitions' tables differ (a
	// schema change is running); nil for one partition. Made only then:
	// fan-out reads are a hot path.
	split func() []string
}

// shapesDiffer reports a leaf's refusal of a query over several
// partitions whose tables differ (storage.UnionDatabase).
func shapesDiffer(err error) bool {
	var se *mysql.SQLError
	return errors.As(err, &se) && se.Num == 1412
}

// runGather runs the jobs in parallel and streams their rows back; in a
// client transaction it uses the transaction's connections.
func (a *Aggregator) runGather(ctx *sql.Context, jobs []gatherJob, inTxn bool, schema sql.Schema) sql.RowIter {
	it := &gatherIter{a: a, rows: make(chan sql.Row, 256), done: make(chan struct{})}
	connID := ctx.Session.ID()
	settings := a.settingsFor(connID).internal
	it.wg.Add(len(jobs))
	for _, j := range jobs {
		go func(j gatherJob) {
			defer it.wg.Done()
			var c *pool.Conn
			var err error
			if inTxn {
				c, err = a.txnConn(ctx, a.session(connID), j.leaf)
			} else {
				var lp *pool.Pool
				if lp, err = a.LeafPool(j.leaf); err == nil {
					c, err = lp.Acquire(ctx)
					if err == nil {
						defer c.Release()
					}
				}
			}
			if err != nil {
				it.fail(leafError(j.leaf, err))
				return
			}
			sent, err := it.stream(ctx, c, settings, j.query, schema, it.rows, inTxn)
			if err != nil && sent == 0 && j.split != nil && shapesDiffer(err) && !c.IsClosed() {
				for _, q := range j.split() {
					if _, err = it.stream(ctx, c, settings, q, schema, it.rows, inTxn); err != nil {
						break
					}
				}
			}
			if err != nil {
				it.fail(leafError(j.leaf, err))
			}
		}(j)
	}
	go func() {
		it.wg.Wait()
		close(it.rows)
	}()
	return it
}

// gatherIter merges the rows partitions stream back.
type gatherIter struct {
	a    *Aggregator
	rows chan sql.Row
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	once sync.Once
}

func (g *gatherIter) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.stop()
}

func (g *gatherIter) stop() { g.once.Do(func() { close(g.done) }) }

func (g *gatherIter) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// stream runs query on c under settings (their SET, when c holds other
// ones, in the query's packet) and sends its rows to out. When the
// reader goes away mid-result, a connection of a client transaction (txn)
// reads the rest of the result, since closing it would end the
// transaction; any other connection is closed.
func (g *gatherIter) stream(ctx *sql.Context, c *pool.Conn, settings *pool.Settings, query string, schema sql.Schema, out chan<- sql.Row, txn bool) (sent int, _ error) {
	if err := c.StreamWith(settings, query); err != nil {
		return 0, err
	}
	for ; ; sent++ {
		vals, err := c.FetchNext()
		if err != nil {
			// a leaf that fails mid-result closes the connection
			c.CloseResult()
			return sent, c.Check(err)
		}
		if vals == nil {
			c.CloseResult()
			return sent, nil
		}
		size := 0
		for _, v := range vals {
			size += len(v.Raw())
		}
		g.a.gathered.rows.Add(1)
		g.a.gathered.bytes.Add(uint64(size))
		row, convErr := fromSQL(ctx, schema, vals)
		if convErr == nil {
			select {
			case out <- row:
				continue
			case <-g.done:
			}
		}
		if !txn {
			c.Close()
			return sent, convErr
		}
		for vals != nil && err == nil {
			vals, err = c.FetchNext()
		}
		c.CloseResult()
		if err != nil {
			return sent, c.Check(err)
		}
		return sent, convErr
	}
}

func (g *gatherIter) Next(ctx *sql.Context) (sql.Row, error) {
	select {
	case row, ok := <-g.rows:
		if ok {
			return row, nil
		}
		if err := g.failed(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	case <-ctx.Done():
		g.stop()
		return nil, ctx.Err()
	}
}

func (g *gatherIter) Close(*sql.Context) error {
	g.stop()
	for range g.rows { // let producers finish
	}
	return nil
}

// fromSQL converts a row a leaf sent into the engine's values.
func fromSQL(ctx *sql.Context, schema sql.Schema, vals []sqltypes.Value) (sql.Row, error) {
	if len(vals) != len(schema) {
		return nil, fmt.Errorf("partition returned %d columns, expected %d", len(vals), len(schema))
	}
	row := make(sql.Row, len(vals))
	for i, v := range vals {
		if v.IsNull() {
			continue
		}
		t := schema[i].Type
		raw := v.Raw()
		if types.IsBinaryType(t) {
			row[i] = append([]byte(nil), raw...)
			continue
		}
		if bt, ok := t.(types.BitType); ok {
			var u uint64
			for _, b := range raw {
				u = u<<8 | uint64(b)
			}
			row[i], _, _ = bt.Convert(ctx, u)
			continue
		}
		cv, _, err := t.Convert(ctx, string(raw))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", schema[i].Name, err)
		}
		row[i] = cv
	}
	return row, nil
}

// AUTO_INCREMENT values of sharded tables come from the aggregator.

func (t *DistTable) PeekNextAutoIncrementValue(*sql.Context) (uint64, error) { return 0, nil }

func (t *DistTable) GetNextAutoIncrementValue(ctx *sql.Context, given interface{}) (uint64, error) {
	if given != nil {
		return 0, nil
	}
	return t.a.nextAutoIncrement(t.db.Name, t.Name())
}

func (t *DistTable) AutoIncrementSetter(*sql.Context) sql.AutoIncrementSetter { return noAutoSetter{} }

type noAutoSetter struct{}

func (noAutoSetter) SetAutoIncrementValue(*sql.Context, uint64) error      { return nil }
func (noAutoSetter) AcquireAutoIncrementLock(*sql.Context) (func(), error) { return func() {}, nil }
func (noAutoSetter) Close(*sql.Context) error                              { return nil }

// Inserter routes rows the engine computed (INSERT … SELECT) to their
// partitions, in batches, in one transaction per leaf that commits when
// the statement completes.
func (t *DistTable) Inserter(ctx *sql.Context) sql.RowInserter {
	return &distInserter{t: t, verb: "INSERT INTO", connID: ctx.Session.ID(), buf: map[int][]sql.Row{}, conns: map[string]*pool.Conn{}}
}

// Replacer is an Inserter whose rows the partitions REPLACE. GMS deletes
// a row only when an insert reports the duplicate, which a partition's
// REPLACE never does, so Delete has nothing to do. (LOAD DATA … REPLACE
// runs in BulkLoad; GMS checks that the table has a Replacer first.)
func (t *DistTable) Replacer(ctx *sql.Context) sql.RowReplacer {
	i := t.Inserter(ctx).(*distInserter)
	i.verb = "REPLACE INTO"
	return i
}

func (i *distInserter) Delete(*sql.Context, sql.Row) error { return nil }

type distInserter struct {
	t      *DistTable
	verb   string // INSERT INTO, or REPLACE INTO for a Replacer
	connID uint32
	buf    map[int][]sql.Row
	conns  map[string]*pool.Conn // outside a client transaction: ours
	inTxn  bool
}

const insertBatch = 500

func (i *distInserter) StatementBegin(*sql.Context) { i.inTxn = i.t.a.inTransaction(i.connID) }

func (i *distInserter) Insert(ctx *sql.Context, row sql.Row) error {
	p, err := i.partition(row)
	if err != nil {
		return err
	}
	i.buf[p] = append(i.buf[p], row)
	if len(i.buf[p]) >= insertBatch {
		return i.flush(ctx, p)
	}
	return nil
}

func (i *distInserter) partition(row sql.Row) (int, error) {
	n := len(i.t.db.Partitions)
	if len(i.t.meta.ShardKey) == 0 {
		return i.t.a.spreadPartition(n), nil
	}
	schema := i.t.local.Schema()
	vals := make([]interface{}, len(i.t.meta.ShardKey))
	typs := make([]sql.Type, len(vals))
	for k, c := range i.t.meta.ShardKey {
		idx := schema.IndexOfColName(c)
		if idx < 0 {
			return 0, fmt.Errorf("shard key column %s not in table %s", c, i.t.Name())
		}
		vals[k], typs[k] = row[idx], schema[idx].Type
	}
	return sharding.NewKey(typs).Partition(vals, n)
}

func (i *distInserter) conn(ctx *sql.Context, leaf string) (*pool.Conn, error) {
	if i.inTxn {
		return i.t.a.txnConn(ctx, i.t.a.session(i.connID), leaf)
	}
	if c, ok := i.conns[leaf]; ok {
		return c, nil
	}
	lp, err := i.t.a.LeafPool(leaf)
	if err != nil {
		return nil, err
	}
	c, err := lp.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	a := i.t.a
	if _, err := c.ExecWith(a.settingsFor(i.connID).internal, "BEGIN", 0); err != nil {
		c.Release()
		return nil, err
	}
	i.conns[leaf] = c
	return c, nil
}

func (i *distInserter) flush(ctx *sql.Context, p int) error {
	rows := i.buf[p]
	if len(rows) == 0 {
		return nil
	}
	delete(i.buf, p)
	leaf, err := routeLeaf(i.t.a.State(), i.t.db.Name, p)
	if err != nil {
		return err
	}
	q, err := insertSQL(ctx, i.verb, quoteIdent(meta.PartitionName(i.t.db.Name, p))+"."+quoteIdent(i.t.Name()), i.t.local.Schema(), rows)
	if err != nil {
		return err
	}
	c, err := i.conn(ctx, leaf)
	if err != nil {
		return leafError(leaf, err)
	}
	if _, err := c.Exec(q, 0); err != nil {
		return leafError(leaf, err)
	}
	return nil
}

// insertSQL is an INSERT of rows into table (already quoted).
func insertSQL(ctx *sql.Context, verb, table string, schema sql.Schema, rows []sql.Row) (string, error) {
	var q bytes.Buffer
	fmt.Fprintf(&q, "%s %s (", verb, table)
	for k, c := range schema {
		if k > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quoteIdent(c.Name))
	}
	q.WriteString(") VALUES ")
	for r, row := range rows {
		if r > 0 {
			q.WriteString(", ")
		}
		if err := encodeRow(ctx, &q, schema, row); err != nil {
			return "", err
		}
	}
	return q.String(), nil
}

func (i *distInserter) StatementComplete(ctx *sql.Context) error {
	for p := range i.buf {
		if err := i.flush(ctx, p); err != nil {
			i.finish("ROLLBACK")
			return err
		}
	}
	return i.finish("COMMIT")
}

func (i *distInserter) DiscardChanges(ctx *sql.Context, _ error) error {
	i.buf = map[int][]sql.Row{}
	return i.finish("ROLLBACK")
}

func (i *distInserter) finish(how string) error {
	var first error
	if how == "COMMIT" && len(i.conns) > 0 {
		first = i.t.a.commitLeaves(i.conns, nil)
	} else {
		for leaf, c := range i.conns {
			if _, err := c.Exec(how, 0); err != nil && first == nil {
				first = leafError(leaf, err)
			}
		}
	}
	for _, c := range i.conns {
		c.Release()
	}
	i.conns = map[string]*pool.Conn{}
	return first
}

func (i *distInserter) Close(*sql.Context) error {
	i.finish("ROLLBACK") // a no-op after StatementComplete
	return nil
}
