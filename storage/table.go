package storage

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/tidwall/btree"

	"github.com/canopydb/canopy/storage/codec"
)

// Table is a cheap GMS handle on one version of a table. Creating one
// copies nothing; rows are read from pebble (merged with the session's
// write set) as the query iterates.
type Table struct {
	db *Database
	ts *tableState

	// currentView: read the transaction's writes as they are now, not as of
	// the statement start (foreign key checks and cascades need that).
	currentView bool

	projNames  []string
	proj       []int // column ordinals, in projection order
	projSorted []int // proj in ascending order, for the decoder
	projSchema sql.Schema
}

var (
	_ sql.Table                    = (*Table)(nil)
	_ sql.PrimaryKeyTable          = (*Table)(nil)
	_ sql.CommentedTable           = (*Table)(nil)
	_ sql.ProjectedTable           = (*Table)(nil)
	_ sql.IndexAddressableTable    = (*Table)(nil)
	_ sql.IndexAlterableTable      = (*Table)(nil)
	_ sql.StatisticsTable          = (*Table)(nil)
	_ sql.InsertableTable          = (*Table)(nil)
	_ sql.UpdatableTable           = (*Table)(nil)
	_ sql.DeletableTable           = (*Table)(nil)
	_ sql.ReplaceableTable         = (*Table)(nil)
	_ sql.TruncateableTable        = (*Table)(nil)
	_ sql.AutoIncrementTable       = (*Table)(nil)
	_ sql.AlterableTable           = (*Table)(nil)
	_ sql.PrimaryKeyAlterableTable = (*Table)(nil)
	_ sql.CheckTable               = (*Table)(nil)
	_ sql.CheckAlterableTable      = (*Table)(nil)
)

func (t *Table) Name() string                           { return t.ts.meta.Name }
func (t *Table) String() string                         { return t.ts.meta.Name }
func (t *Table) Collation() sql.CollationID             { return t.ts.meta.Collation }
func (t *Table) Comment() string                        { return t.ts.meta.Comment }
func (t *Table) PrimaryKeySchema() sql.PrimaryKeySchema { return t.ts.schema }

func (t *Table) Schema() sql.Schema {
	if t.projSchema != nil {
		return t.projSchema
	}
	return t.ts.schema.Schema
}

func (t *Table) WithProjections(cols []string) sql.Table {
	nt := *t
	nt.projNames, nt.proj, nt.projSorted, nt.projSchema = nil, nil, nil, nil
	if cols == nil {
		return &nt
	}
	for _, c := range cols {
		i := t.ts.schema.Schema.IndexOfColName(c)
		if i < 0 {
			continue
		}
		nt.proj = append(nt.proj, i)
		nt.projSchema = append(nt.projSchema, t.ts.schema.Schema[i])
	}
	nt.projNames = cols
	nt.projSorted = append([]int(nil), nt.proj...)
	sort.Ints(nt.projSorted)
	return &nt
}

func (t *Table) Projections() []string { return t.projNames }

// rowDecoder decodes stored rows into the table's (projected) shape.
type rowDecoder struct {
	ts     *tableState
	proj   []int // nil: all columns
	sorted []int
}

func (t *Table) decoder() rowDecoder {
	return rowDecoder{ts: t.ts, proj: t.proj, sorted: t.projSorted}
}

func (d rowDecoder) decode(b []byte) (sql.Row, error) {
	if d.proj == nil {
		row := make(sql.Row, len(d.ts.rows.Cols))
		return row, decodeErr(d.ts.rows.DecodeInto(b, row, nil))
	}
	row := make(sql.Row, len(d.sorted))
	if err := d.ts.rows.DecodeInto(b, row, d.sorted); err != nil {
		return nil, decodeErr(err)
	}
	if sameOrder(d.proj, d.sorted) {
		return row, nil
	}
	out := make(sql.Row, len(d.proj))
	for i, ord := range d.proj {
		out[i] = row[sort.SearchInts(d.sorted, ord)]
	}
	return out, nil
}

func sameOrder(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func decodeErr(err error) error {
	if errors.Is(err, codec.ErrFormatChanged) {
		return errTableDefChanged
	}
	return err
}

// Partitions: a table is one partition here; the cluster's partitions are
// whole databases on leaves.
type partition struct{ lookup *sql.IndexLookup }

func (p *partition) Key() []byte { return []byte("p") }

type partitionIter struct {
	p    *partition
	done bool
}

func (i *partitionIter) Next(*sql.Context) (sql.Partition, error) {
	if i.done {
		return nil, io.EOF
	}
	i.done = true
	return i.p, nil
}

func (i *partitionIter) Close(*sql.Context) error { return nil }

func (t *Table) Partitions(ctx *sql.Context) (sql.PartitionIter, error) {
	if err := t.ts.db.readFence(ctx); err != nil {
		return nil, err
	}
	return &partitionIter{p: &partition{}}, nil
}

func (t *Table) PartitionRows(ctx *sql.Context, p sql.Partition) (sql.RowIter, error) {
	if pp, ok := p.(*partition); ok && pp.lookup != nil {
		return t.lookupRows(ctx, *pp.lookup)
	}
	it, err := t.ts.db.store().newKVIter(t.readView(ctx))
	if err != nil {
		return nil, err
	}
	it.seek(t.ts.pkPrefix, prefixEnd(t.ts.pkPrefix), false)
	return &scanIter{it: it, dec: t.decoder()}, nil
}

type scanIter struct {
	it  *kvIter
	dec rowDecoder
}

func (s *scanIter) Next(ctx *sql.Context) (sql.Row, error) {
	if !s.it.next() {
		if err := s.it.err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return s.dec.decode(s.it.val)
}

func (s *scanIter) Close(*sql.Context) error { return s.it.close() }

func (t *Table) readView(ctx *sql.Context) *btree.BTreeG[*kv] {
	txn := txnFrom(ctx)
	if t.currentView {
		return txn.current()
	}
	return txn.readView(stmtSeq(ctx))
}

// Indexes.

func (t *Table) indexes() []sql.Index {
	var out []sql.Index
	if !t.ts.keyless {
		out = append(out, &Index{ts: t.ts})
	}
	for _, is := range t.ts.indexes {
		out = append(out, &Index{ts: t.ts, is: is})
	}
	// by name after PRIMARY, as SHOW CREATE TABLE lists them
	start := 0
	if !t.ts.keyless {
		start = 1
	}
	sort.SliceStable(out[start:], func(i, j int) bool {
		return strings.ToLower(out[start+i].ID()) < strings.ToLower(out[start+j].ID())
	})
	return out
}

func (t *Table) GetIndexes(*sql.Context) ([]sql.Index, error) { return t.indexes(), nil }

// PreciseMatch: lookups return exactly the rows in their ranges, so GMS can
// drop the filters an index covers (and take its single-row path).
func (t *Table) PreciseMatch() bool { return true }

func (t *Table) IndexedAccess(ctx *sql.Context, lookup sql.IndexLookup) sql.IndexedTable {
	return &indexedTable{Table: t, lookup: lookup}
}

type indexedTable struct {
	*Table
	lookup sql.IndexLookup
}

func (t *indexedTable) LookupPartitions(ctx *sql.Context, lookup sql.IndexLookup) (sql.PartitionIter, error) {
	if err := t.ts.db.readFence(ctx); err != nil {
		return nil, err
	}
	return &partitionIter{p: &partition{lookup: &lookup}}, nil
}

func (t *Table) indexByID(id string) *Index {
	for _, idx := range t.indexes() {
		if strings.EqualFold(idx.ID(), id) {
			return idx.(*Index)
		}
	}
	return nil
}

func (t *Table) lookupRows(ctx *sql.Context, lookup sql.IndexLookup) (sql.RowIter, error) {
	return t.lookupRowsIn(ctx, lookup, nil)
}

// lookupRowsIn is lookupRows, given the spans of the same lookup on a
// table of the same shape (another partition), whose keys differ only in
// their prefix; nil computes them.
func (t *Table) lookupRowsIn(ctx *sql.Context, lookup sql.IndexLookup, like *lookupIter) (sql.RowIter, error) {
	if lookup.IsEmptyRange {
		return sql.RowsToRowIter(), nil
	}
	idx := t.indexByID(lookup.Index.ID())
	if idx == nil {
		return nil, sql.ErrIndexNotFound.New(lookup.Index.ID())
	}
	base := t.ts.pkPrefix
	if !idx.primary() {
		base = idx.is.prefix
	}
	spans, ok := rebaseSpans(like, base)
	if !ok {
		var err error
		if spans, err = idx.spansFor(lookup); err != nil {
			return nil, err
		}
	}
	ws := t.readView(ctx)
	it, err := t.ts.db.store().newKVIter(ws)
	if err != nil {
		return nil, err
	}
	l := &lookupIter{
		s: t.ts.db.store(), ws: ws, ts: t.ts, idx: idx, cols: idx.keyCols(), base: base,
		spans: spans, reverse: lookup.IsReverse, it: it, dec: t.decoder(),
	}
	if lo, hi, ok := ascendingSpans(spans); ok && !l.reverse {
		l.ascending = true
		it.setOuterBounds(lo, hi)
	}
	return l, nil
}

// rebaseSpans are another lookup's spans moved under base, when all of
// them lie under that lookup's prefix (a span that ends where its prefix
// does has a bound that does not, and is computed afresh).
func rebaseSpans(like *lookupIter, base []byte) ([]keySpan, bool) {
	if like == nil {
		return nil, false
	}
	move := func(k []byte) ([]byte, bool) {
		if k == nil {
			return nil, true
		}
		if !bytes.HasPrefix(k, like.base) {
			return nil, false
		}
		return append(append(make([]byte, 0, len(base)+len(k)-len(like.base)), base...), k[len(like.base):]...), true
	}
	out := make([]keySpan, len(like.spans))
	for i, sp := range like.spans {
		lo, ok1 := move(sp.lo)
		hi, ok2 := move(sp.hi)
		if !ok1 || !ok2 {
			return nil, false
		}
		out[i] = keySpan{lo: lo, hi: hi, point: sp.point, filters: sp.filters}
	}
	return out, true
}

// ascendingSpans reports whether several spans follow one another in key
// order without overlapping, and the bounds around them all.
func ascendingSpans(spans []keySpan) (lo, hi []byte, ok bool) {
	if len(spans) < 2 {
		return nil, nil, false
	}
	for i := 1; i < len(spans); i++ {
		prev := spans[i-1].hi
		if prev == nil || bytes.Compare(prev, spans[i].lo) > 0 {
			return nil, nil, false
		}
	}
	return spans[0].lo, spans[len(spans)-1].hi, true
}

type lookupIter struct {
	s       *Store
	ws      *btree.BTreeG[*kv]
	ts      *tableState
	idx     *Index
	cols    []keyCol
	base    []byte
	spans   []keySpan
	reverse bool
	it      *kvIter
	dec     rowDecoder

	cur    int
	inSpan bool
	// ascending: forward spans in key order, sought within one set of
	// bounds (kvIter.seekIn)
	ascending bool

	// keepKey: key holds the returned row's index key after the
	// table's prefix (a union merges partitions by it)
	keepKey bool
	key     []byte
}

func (l *lookupIter) Next(ctx *sql.Context) (sql.Row, error) {
	for {
		if l.cur >= len(l.spans) {
			return nil, io.EOF
		}
		sp := &l.spans[l.cur]
		if !l.inSpan {
			if sp.point && l.idx.primary() {
				l.cur++
				v, ok, err := l.s.get(l.ws, sp.lo)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
				if l.keepKey {
					l.key = append(l.key[:0], sp.lo[len(l.base):]...)
				}
				return l.dec.decode(v)
			}
			if l.ascending {
				l.it.seekIn(sp.lo, sp.hi)
			} else {
				l.it.seek(sp.lo, sp.hi, l.reverse)
			}
			l.inSpan = true
		}
		if !l.it.next() {
			if err := l.it.err(); err != nil {
				return nil, err
			}
			l.inSpan = false
			l.cur++
			continue
		}
		ok, err := sp.matches(l.cols, l.it.key[len(l.base):])
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if l.keepKey {
			l.key = append(l.key[:0], l.it.key[len(l.base):]...)
		}
		if l.idx.primary() {
			return l.dec.decode(l.it.val)
		}
		v, found, err := l.s.get(l.ws, l.ts.rowKey(l.it.val))
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		return l.dec.decode(v)
	}
}

func (l *lookupIter) Close(*sql.Context) error { return l.it.close() }

// Statistics for the costed planner.

func (t *Table) RowCount(*sql.Context) (uint64, bool, error) {
	// Not exact: the count is committed rows, without the session's own
	// writes, so GMS must not answer COUNT(*) from it.
	return uint64(t.ts.counters.rowCount()), false, nil
}

// DataLength is the table's bytes on disk (rows and indexes), as pebble
// estimates them from its files. Rows still only in the memtable are not
// on disk yet; they count at the schema's width, so a fresh table does
// not read as empty.
func (t *Table) DataLength(*sql.Context) (uint64, error) {
	c := t.ts.counters
	rows := uint64(c.rowCount())
	now := time.Now().UnixNano()
	n := c.diskBytes.Load()
	if now-c.diskAt.Load() >= int64(time.Second) {
		var err error
		if n, err = t.ts.db.s.db.EstimateDiskUsage(t.ts.data, prefixEnd(t.ts.data)); err != nil {
			n = 0
		}
		c.diskBytes.Store(n)
		c.diskAt.Store(now)
	}
	if n == 0 {
		return rows * uint64(16+8*len(t.ts.rows.Cols)), nil
	}
	return n, nil
}
