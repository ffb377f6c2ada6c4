package aggregator

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
)

// ScratchDB is the database on every leaf that holds rows shipped there
// for one join: a copied side, or a leaf's share of a repartitioned one.
// Its tables live for one statement; a leaf drops the database when it
// starts, so a crash mid-join leaves nothing behind for long.
const ScratchDB = "canopy_scratch"

// BroadcastMaxRowsVar is the session variable bounding the rows a join
// copies to every leaf.
const BroadcastMaxRowsVar = "broadcast_join_max_rows"

// LookupMaxRowsVar is the session variable bounding the rows of a join's
// side whose keys the aggregator looks up in the other side.
const LookupMaxRowsVar = "lookup_join_max_rows"

// filteredFraction is the share of a table's rows its own conditions are
// guessed to keep (there are no column statistics yet).
const filteredFraction = 1.0 / 3

// shuffledJoin plans a join of two sharded tables whose matching rows may
// be in different partitions: a small side's keys looked up in the other
// side's partitions, one side copied to every leaf, or both repartitioned
// by the join key, so that the leaves do the heavy part and the aggregator
// streams the result. Inside a client transaction only a lookup runs (it
// reads through the transaction; shipped rows would be committed outside
// it); otherwise the aggregator joins.
func shuffledJoin(ctx *sql.Context, j *plan.JoinNode) (sql.Node, bool) {
	a, l, r, outer, ok := joinInputs(ctx, j)
	if !ok || l.dist == nil || r.dist == nil {
		return nil, false
	}
	on, ok := planner.JoinSQL(ctx, j.Filter, l.name, r.name)
	if !ok {
		return nil, false
	}
	pairs := equiPairs(j.Filter, l, r)
	leaves := masterLeaves(a.State().Database(l.dist.db.Name))
	if len(leaves) == 0 {
		return nil, false
	}
	shape := planner.JoinShape{
		LeftRows:     a.estimateRows(ctx, l),
		RightRows:    a.estimateRows(ctx, r),
		Leaves:       len(leaves),
		LeftOuter:    outer,
		BroadcastMax: sessionRows(ctx, BroadcastMaxRowsVar, defaultBroadcastMaxRows),
		LookupMax:    sessionRows(ctx, LookupMaxRowsVar, defaultLookupMaxRows),
	}
	for _, p := range pairs {
		shape.Hashable = shape.Hashable || p.hashable
		shape.Lookupable = shape.Lookupable || p.lookup
	}
	cond, ok := joinedCondition(j.Filter, l, r)
	shape.Lookupable = shape.Lookupable && ok
	if a.inTransaction(ctx.Session.ID()) {
		shape.Hashable, shape.BroadcastMax = false, -1
	}
	strategy := planner.ChooseJoin(shape)
	switch strategy {
	case planner.GatherJoin:
		return nil, false
	case planner.LookupLeft, planner.LookupRight:
		return newLookupJoin(a, strategy, shape, l, r, outer, pairs, cond, on, j), true
	}
	sj := &shuffleJoin{a: a, l: l, r: r, on: on, pairs: pairs, schema: j.Schema(), ids: columnIds(j), shape: shape, kind: "JOIN", strategy: strategy}
	if outer {
		sj.kind = "LEFT JOIN"
	}
	return sj, true
}

const (
	defaultBroadcastMaxRows = 100_000
	defaultLookupMaxRows    = 10_000
)

// sessionRows is a row-count session variable, or def when it cannot be
// read.
func sessionRows(ctx *sql.Context, name string, def float64) float64 {
	v, err := ctx.GetSessionVariable(ctx, name)
	if err != nil {
		return def
	}
	n, _, err := types.Int64.Convert(ctx, v)
	if err != nil || n == nil {
		return def
	}
	return float64(n.(int64))
}

// keyPair is an equality between a column of each side.
type keyPair struct {
	l, r     int  // column indexes in the sides' schemas
	hashable bool // equal values hash alike (see keyHash)
	lookup   bool // hashable, and a value written as an SQL literal compares as the column would
	text     bool // compared as strings under collation coll
	coll     sql.CollationID
}

// equiPairs finds the equalities between a column of each side in a join
// condition.
func equiPairs(cond sql.Expression, l, r *joinSide) []keyPair {
	var pairs []keyPair
	for _, eq := range columnEqualities(cond, l, r) {
		a, b := eq[0], eq[1]
		li, ri := l.schema.IndexOfColName(a.Name()), r.schema.IndexOfColName(b.Name())
		if li < 0 || ri < 0 {
			continue
		}
		p := keyPair{l: li, r: ri}
		lt, rt := l.schema[li].Type, r.schema[ri].Type
		switch {
		case types.IsInteger(lt) && types.IsInteger(rt):
			p.hashable = true
		case types.IsText(lt) && types.IsText(rt):
			lc, rc := lt.(sql.StringType).Collation(), rt.(sql.StringType).Collation()
			p.hashable, p.text, p.coll = lc == rc, true, lc
		case !types.IsFloat(lt) && lt.String() == rt.String():
			p.hashable = true
		}
		p.lookup = p.hashable && literalKey(lt) && literalKey(rt)
		pairs = append(pairs, p)
	}
	return pairs
}

// keyHash hashes a row's join key so that rows that join hash alike:
// integers by value whatever their width, strings by their collation's
// weights, anything else only against the identical type. A NULL key
// joins nothing; its rows go to the first leaf.
func keyHash(row sql.Row, pairs []keyPair, left bool) (uint64, error) {
	h := xxhash.New()
	for _, p := range pairs {
		if !p.hashable {
			continue
		}
		i := p.r
		if left {
			i = p.l
		}
		v := row[i]
		if v == nil {
			return 0, nil
		}
		if p.text {
			s, ok := v.(string)
			if !ok {
				s = fmt.Sprint(v)
			}
			k, err := p.coll.HashToUint(s)
			if err != nil {
				return 0, err
			}
			fmt.Fprintf(h, "%d|", k)
			continue
		}
		fmt.Fprintf(h, "%v|", v)
	}
	return h.Sum64(), nil
}

// masterLeaves are the leaves holding master partitions of a database,
// sorted.
func masterLeaves(d *meta.Database) []string {
	if d == nil {
		return nil
	}
	seen := map[string]bool{}
	var leaves []string
	for _, p := range d.Partitions {
		if p.Master != "" && !seen[p.Master] {
			seen[p.Master] = true
			leaves = append(leaves, p.Master)
		}
	}
	sort.Strings(leaves)
	return leaves
}

// shuffleJoin runs a join by shipping rows to the leaves first.
type shuffleJoin struct {
	a        *Aggregator
	strategy planner.JoinStrategy
	shape    planner.JoinShape
	l, r     *joinSide
	kind     string // JOIN or LEFT JOIN
	on       string
	pairs    []keyPair
	schema   sql.Schema
	ids      []sql.ColumnId // the replaced join's column ids (see columnIds)
}

var (
	_ sql.ExecSourceRel = (*shuffleJoin)(nil)
	_ sql.Projector     = (*shuffleJoin)(nil)
)

// ProjectedExprs gives GMS the column ids of the join this replaced.
func (j *shuffleJoin) ProjectedExprs() []sql.Expression { return projectIds(j.schema, j.ids) }

func (j *shuffleJoin) label() string {
	if j.strategy == planner.Repartition {
		return "RepartitionJoin"
	}
	return "BroadcastJoin"
}

// copied and kept are the sides of a broadcast join.
func (j *shuffleJoin) copied() (copied, kept *joinSide) {
	if j.strategy == planner.BroadcastLeft {
		return j.l, j.r
	}
	return j.r, j.l
}

// sideSQL is what partition part sends of a side.
func sideSQL(s *joinSide, part string) string {
	q := fmt.Sprintf("SELECT %s FROM %s.%s AS %s", strings.Join(s.columns(), ", "), quoteIdent(part), quoteIdent(s.table), quoteIdent(s.name))
	if s.filter != "" {
		q += " WHERE " + s.filter
	}
	return q
}

// joinSQL is the join a leaf runs; from gives each side's FROM item.
func (j *shuffleJoin) joinSQL(from func(*joinSide) string, where string) string {
	q := fmt.Sprintf("SELECT %s FROM %s AS %s %s %s AS %s ON %s",
		strings.Join(append(j.l.columns(), j.r.columns()...), ", "),
		from(j.l), quoteIdent(j.l.name), j.kind, from(j.r), quoteIdent(j.r.name), j.on)
	if where != "" {
		q += " WHERE " + where
	}
	return q
}

// broadcastSQL is what a partition of the kept side runs against the copy.
func (j *shuffleJoin) broadcastSQL(part, copyTable string) string {
	copied, kept := j.copied()
	return j.joinSQL(func(s *joinSide) string {
		if s == copied {
			return copyTable
		}
		return quoteIdent(part) + "." + quoteIdent(s.table)
	}, kept.filter)
}

// repartitionSQL is what a leaf runs over its shares of both sides.
func (j *shuffleJoin) repartitionSQL(lTable, rTable string) string {
	return j.joinSQL(func(s *joinSide) string {
		if s == j.l {
			return lTable
		}
		return rTable
	}, "")
}

func (j *shuffleJoin) explain() []string {
	sideDB := func(s *joinSide) string { return leafPartitions(s.dist.db.Name) }
	scratch := func(s *joinSide) string { return quoteIdent(ScratchDB) + ".<" + s.name + ">" }
	if j.strategy == planner.Repartition {
		return []string{
			fmt.Sprintf("RepartitionJoin (%v): both sides sent to the leaf their join key hashes to", j.shape),
			"  Leaf SQL (left side): " + sideSQL(j.l, sideDB(j.l)),
			"  Leaf SQL (right side): " + sideSQL(j.r, sideDB(j.r)),
			"  Leaf SQL: " + j.repartitionSQL(scratch(j.l), scratch(j.r)),
		}
	}
	copied, kept := j.copied()
	return []string{
		fmt.Sprintf("BroadcastJoin (%v): %s copied to every leaf", j.shape, copied.name),
		"  Leaf SQL (copied side): " + sideSQL(copied, sideDB(copied)),
		"  Leaf SQL: " + j.broadcastSQL(sideDB(kept), scratch(copied)),
	}
}

func (j *shuffleJoin) String() string {
	return fmt.Sprintf("%s(%s; %v)", j.label(), j.strategy, j.shape)
}

func (j *shuffleJoin) Resolved() bool       { return true }
func (j *shuffleJoin) IsReadOnly() bool     { return true }
func (j *shuffleJoin) Schema() sql.Schema   { return j.schema }
func (j *shuffleJoin) Children() []sql.Node { return nil }
func (j *shuffleJoin) WithChildren(children ...sql.Node) (sql.Node, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(j, len(children), 0)
	}
	return j, nil
}

func (j *shuffleJoin) RowIter(ctx *sql.Context, _ sql.Row) (sql.RowIter, error) {
	a := j.a
	name := fmt.Sprintf("j%x_%d", a.started.UnixNano(), a.xidSeq.Add(1))
	var leaves, tables []string
	cleanup := func() { a.dropScratch(leaves, tables) }
	var it sql.RowIter
	var err error
	switch j.strategy {
	case planner.BroadcastLeft, planner.BroadcastRight:
		a.shuffled.broadcast.Add(1)
		copied, kept := j.copied()
		leaves = masterLeaves(a.State().Database(kept.dist.db.Name))
		tables = []string{name}
		var key []int
		for _, p := range j.pairs {
			if copied == j.l {
				key = append(key, p.l)
			} else {
				key = append(key, p.r)
			}
		}
		err = a.shipSide(ctx, copied, leaves, name, key, nil)
		if err == nil {
			copyTable := quoteIdent(ScratchDB) + "." + quoteIdent(name)
			it, err = a.gather(ctx, kept.dist.db.Name, func(database string) string {
				return j.broadcastSQL(database, copyTable)
			}, j.schema)
		}
	case planner.Repartition:
		a.shuffled.repartition.Add(1)
		leaves = masterLeaves(a.State().Database(j.l.dist.db.Name))
		tables = []string{name + "_l", name + "_r"}
		var lKey, rKey []int
		for _, p := range j.pairs {
			lKey, rKey = append(lKey, p.l), append(rKey, p.r)
		}
		route := func(left bool) func(sql.Row) (int, error) {
			return func(row sql.Row) (int, error) {
				h, err := keyHash(row, j.pairs, left)
				return int(h % uint64(len(leaves))), err
			}
		}
		err = a.shipSide(ctx, j.l, leaves, tables[0], lKey, route(true))
		if err == nil {
			err = a.shipSide(ctx, j.r, leaves, tables[1], rKey, route(false))
		}
		if err == nil {
			q := j.repartitionSQL(quoteIdent(ScratchDB)+"."+quoteIdent(tables[0]), quoteIdent(ScratchDB)+"."+quoteIdent(tables[1]))
			jobs := make([]gatherJob, len(leaves))
			for i, leaf := range leaves {
				jobs[i] = gatherJob{leaf: leaf, query: q}
			}
			it = a.runGather(ctx, jobs, false, j.schema)
		}
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	return &cleanupIter{RowIter: it, cleanup: cleanup}, nil
}

// cleanupIter runs cleanup once its rows have been read or abandoned.
type cleanupIter struct {
	sql.RowIter
	once    sync.Once
	cleanup func()
}

// Next cleans up as soon as the rows are read to the end: GMS's cross
// join drops a right-side iterator it has read to the end without closing
// it, which left the scratch tables behind.
func (c *cleanupIter) Next(ctx *sql.Context) (sql.Row, error) {
	row, err := c.RowIter.Next(ctx)
	if err != nil {
		c.finish(ctx)
	}
	return row, err
}

func (c *cleanupIter) Close(ctx *sql.Context) error { return c.finish(ctx) }

func (c *cleanupIter) finish(ctx *sql.Context) error {
	var err error
	c.once.Do(func() {
		err = c.RowIter.Close(ctx)
		c.cleanup()
	})
	return err
}

// shipSide streams a side's rows from its partitions into a scratch table
// on the leaves: every row to every leaf, or each to the leaf route picks.
func (a *Aggregator) shipSide(ctx *sql.Context, s *joinSide, leaves []string, table string, key []int, route func(sql.Row) (int, error)) error {
	sh, err := a.newShipment(ctx, leaves, table, s.schema, key)
	if err != nil {
		return err
	}
	defer sh.release()
	db := s.dist.db.Name
	rows, err := a.gather(ctx, db, func(database string) string { return sideSQL(s, database) }, s.schema)
	if err != nil {
		return err
	}
	defer rows.Close(ctx)
	for {
		row, err := rows.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if route == nil {
			for i := range leaves {
				if err := sh.send(ctx, i, row); err != nil {
					return err
				}
			}
			continue
		}
		i, err := route(row)
		if err != nil {
			return err
		}
		if err := sh.send(ctx, i, row); err != nil {
			return err
		}
	}
	return sh.flushAll(ctx)
}

// shipment is rows on their way into one scratch table on each leaf.
type shipment struct {
	table  string // quoted, with its database
	schema sql.Schema
	leaves []string
	conns  []*pool.Conn
	buf    [][]sql.Row
}

func (a *Aggregator) newShipment(ctx *sql.Context, leaves []string, table string, schema sql.Schema, key []int) (*shipment, error) {
	sh := &shipment{table: quoteIdent(ScratchDB) + "." + quoteIdent(table), schema: schema, leaves: leaves, buf: make([][]sql.Row, len(leaves))}
	defs := make([]string, 0, len(schema)+1)
	for _, c := range schema {
		defs = append(defs, quoteIdent(c.Name)+" "+c.Type.String())
	}
	var keyCols []string
	for _, k := range key {
		col := quoteIdent(schema[k].Name)
		// BLOB/TEXT, JSON and geometry columns cannot be indexed whole; a
		// column the condition equates twice (ON a = b AND b = a) is
		// indexed once, as a repeated column is an error (1060)
		if t := schema[k].Type; !types.IsTextBlob(t) && !types.IsJSON(t) && !types.IsGeometry(t) && !slices.Contains(keyCols, col) {
			keyCols = append(keyCols, col)
		}
	}
	if len(keyCols) > 0 {
		defs = append(defs, "KEY ("+strings.Join(keyCols, ", ")+")")
	}
	create := fmt.Sprintf("CREATE TABLE %s (%s)", sh.table, strings.Join(defs, ", "))
	for _, leaf := range leaves {
		lp, err := a.LeafPool(leaf)
		if err != nil {
			sh.release()
			return nil, leafError(leaf, err)
		}
		c, err := lp.Acquire(ctx)
		if err != nil {
			sh.release()
			return nil, leafError(leaf, err)
		}
		sh.conns = append(sh.conns, c)
		for _, q := range []string{"CREATE DATABASE IF NOT EXISTS " + quoteIdent(ScratchDB), create} {
			if _, err := c.Exec(q, 0); err != nil {
				sh.release()
				return nil, leafError(leaf, fmt.Errorf("prepare join rows: %w", err))
			}
		}
	}
	return sh, nil
}

func (sh *shipment) send(ctx *sql.Context, leaf int, row sql.Row) error {
	sh.buf[leaf] = append(sh.buf[leaf], row)
	if len(sh.buf[leaf]) >= insertBatch {
		return sh.flush(ctx, leaf)
	}
	return nil
}

func (sh *shipment) flush(ctx *sql.Context, leaf int) error {
	rows := sh.buf[leaf]
	if len(rows) == 0 {
		return nil
	}
	sh.buf[leaf] = rows[:0]
	q, err := insertSQL(ctx, "INSERT INTO", sh.table, sh.schema, rows)
	if err != nil {
		return err
	}
	if _, err := sh.conns[leaf].Exec(q, 0); err != nil {
		return leafError(sh.leaves[leaf], fmt.Errorf("ship join rows: %w", err))
	}
	return nil
}

func (sh *shipment) flushAll(ctx *sql.Context) error {
	for i := range sh.leaves {
		if err := sh.flush(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func (sh *shipment) release() {
	for _, c := range sh.conns {
		c.Release()
	}
	sh.conns = nil
}

// dropScratch removes a statement's scratch tables from the leaves. It
// runs after the client's context may be gone, so it has its own.
func (a *Aggregator) dropScratch(leaves, tables []string) {
	if len(leaves) == 0 || len(tables) == 0 {
		return
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = quoteIdent(ScratchDB) + "." + quoteIdent(t)
	}
	q := "DROP TABLE IF EXISTS " + strings.Join(names, ", ")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, leaf := range leaves {
		lp, err := a.LeafPool(leaf)
		if err == nil {
			_, err = lp.Exec(ctx, q, 0)
		}
		if err != nil {
			a.log.Warn("drop join scratch tables", "leaf", leaf, "tables", tables, "err", err)
		}
	}
}

// estimateRows guesses how many rows a side of a join sends: the table's
// committed row count (from the leaves, cached briefly), less when the
// side has its own conditions. A count no leaf could give is unbounded,
// so that such a side is never copied to every leaf.
func (a *Aggregator) estimateRows(ctx *sql.Context, s *joinSide) float64 {
	rows, ok := a.tableRows(ctx, s.dist.db, s.table)
	if !ok {
		return math.Inf(1)
	}
	n := float64(rows)
	if s.filter != "" {
		n *= filteredFraction
	}
	return n
}

// sqlString is s as an SQL string literal.
func sqlString(s string) string {
	var b strings.Builder
	sqltypes.NewVarChar(s).EncodeSQL(&b)
	return b.String()
}

type rowCount struct {
	rows uint64
	at   time.Time
}

// rowCountTTL bounds how stale a row count used for planning may be.
const rowCountTTL = 2 * time.Second

// tableRows is a sharded table's committed row count summed over its
// partitions; ok is false when a leaf cannot tell.
func (a *Aggregator) tableRows(ctx *sql.Context, d *meta.Database, table string) (uint64, bool) {
	key := strings.ToLower(d.Name + "." + table)
	if v, ok := a.rowCounts.Load(key); ok && time.Since(v.(rowCount).at) < rowCountTTL {
		return v.(rowCount).rows, true
	}
	byLeaf := map[string][]string{}
	for _, p := range d.Partitions {
		if p.Master != "" {
			byLeaf[p.Master] = append(byLeaf[p.Master], sqlString(meta.PartitionName(d.Name, p.Ordinal)))
		}
	}
	var total uint64
	for leaf, parts := range byLeaf {
		lp, err := a.LeafPool(leaf)
		if err != nil {
			return 0, false
		}
		res, err := lp.Exec(ctx, fmt.Sprintf("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_NAME = %s AND TABLE_SCHEMA IN (%s)",
			sqlString(table), strings.Join(parts, ", ")), len(parts))
		if err != nil {
			return 0, false
		}
		for _, row := range res.Rows {
			n, err := strconv.ParseUint(row[0].ToString(), 10, 64)
			if err != nil {
				return 0, false
			}
			total += n
		}
	}
	a.rowCounts.Store(key, rowCount{rows: total, at: time.Now()})
	return total, true
}
