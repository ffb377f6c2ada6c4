package storage

import (
	"bytes"
	"container/heap"
	"io"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
)

// A leaf holds several partitions of a distributed database, each a
// database of its own under its own key prefix of the one pebble DB. An
// aggregator's fan-out read names them all at once (Provider.Union gives
// the name's partitions), and the leaf plans and runs the statement once
// over all of them: a sharded table is the union of its partitions'
// tables, every other table is the leaf's copy of the distributed
// database (reference tables). So a range query, a partial aggregate or
// a top-N costs one parse, one plan and one round trip per leaf, not per
// partition, and merges on the leaf before it travels.
//
// A union is read-only. Its index lookups merge the partitions' lookups
// in index order, so GMS may rely on an index's order (sorts it drops,
// merge joins) as on one table.

// UnionDatabase is a read-only view of several partitions of one
// distributed database on this leaf.
type UnionDatabase struct {
	name  string
	parts []*Database
	copy  *Database // the leaf's copy of the distributed database, or nil
}

var (
	_ sql.Database         = (*UnionDatabase)(nil)
	_ sql.ReadOnlyDatabase = (*UnionDatabase)(nil)
	_ sql.ViewDatabase     = (*UnionDatabase)(nil)
)

// errPartitionShapes is a union's refusal when its partitions' tables
// differ (a schema change is running): the aggregator then reads the
// partitions one at a time. ER_TABLE_DEF_CHANGED, as a read that meets a
// changed definition gets.
func errPartitionShapes(table, a, b string) error {
	return mysql.NewSQLError(1412, "HY000",
		"Table definition has changed, please retry transaction (table %s differs between partitions %s and %s)", table, a, b)
}

func (u *UnionDatabase) Name() string     { return u.name }
func (u *UnionDatabase) IsReadOnly() bool { return true }

func (u *UnionDatabase) GetCollation(ctx *sql.Context) sql.CollationID {
	return u.parts[0].GetCollation(ctx)
}

// Views: a union holds none (the statements aggregators send name
// tables only).
func (u *UnionDatabase) CreateView(*sql.Context, string, string, string) error {
	return sql.ErrDatabaseWriteLocked.New()
}
func (u *UnionDatabase) DropView(*sql.Context, string) error { return sql.ErrDatabaseWriteLocked.New() }
func (u *UnionDatabase) GetViewDefinition(*sql.Context, string) (sql.ViewDefinition, bool, error) {
	return sql.ViewDefinition{}, false, nil
}
func (u *UnionDatabase) AllViews(*sql.Context) ([]sql.ViewDefinition, error) { return nil, nil }

func (u *UnionDatabase) GetTableNames(ctx *sql.Context) ([]string, error) {
	if u.copy != nil {
		return u.copy.GetTableNames(ctx)
	}
	return u.parts[0].GetTableNames(ctx)
}

// GetTableInsensitive: a table of the partitions is their union; any
// other is the copy's (a reference table).
func (u *UnionDatabase) GetTableInsensitive(ctx *sql.Context, name string) (sql.Table, bool, error) {
	first := u.parts[0].d.table(name)
	if first == nil {
		for _, p := range u.parts[1:] {
			if p.d.table(name) != nil { // a sharded table missing from one partition
				return nil, false, sql.ErrTableNotFound.New(u.parts[0].Name() + "." + name)
			}
		}
		if u.copy != nil {
			return u.copy.GetTableInsensitive(ctx, name)
		}
		return nil, false, nil
	}
	t := &UnionTable{db: u, tables: make([]*Table, len(u.parts))}
	for i, p := range u.parts {
		ts := first
		if i > 0 {
			if ts = p.d.table(name); ts == nil {
				return nil, false, sql.ErrTableNotFound.New(p.Name() + "." + name)
			}
			if !sameShape(first, ts) {
				return nil, false, errPartitionShapes(name, u.parts[0].Name(), p.Name())
			}
		}
		t.tables[i] = &Table{db: p, ts: ts}
	}
	return t, true, nil
}

// sameShape reports whether two partitions' tables decode and index
// alike.
func sameShape(a, b *tableState) bool {
	if len(a.meta.Columns) != len(b.meta.Columns) || len(a.indexes) != len(b.indexes) || a.keyless != b.keyless {
		return false
	}
	for i, c := range a.meta.Columns {
		d := b.meta.Columns[i]
		if !strings.EqualFold(c.Name, d.Name) || c.Type != d.Type || c.Collation != d.Collation {
			return false
		}
	}
	for i, x := range a.indexes {
		if !strings.EqualFold(x.meta.Name, b.indexes[i].meta.Name) || x.meta.Unique != b.indexes[i].meta.Unique || !sameKey(x.keyCols, b.indexes[i].keyCols) {
			return false
		}
	}
	return sameKey(a.pk, b.pk)
}

// sameKey reports whether two keys have the same columns: the union
// encodes a lookup's key spans once for all partitions.
func sameKey(a, b []keyCol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ord != b[i].ord || a[i].prefix != b[i].prefix {
			return false
		}
	}
	return true
}

// UnionTable is one table of every partition of a UnionDatabase.
type UnionTable struct {
	db     *UnionDatabase
	tables []*Table
}

var (
	_ sql.Table                 = (*UnionTable)(nil)
	_ sql.PrimaryKeyTable       = (*UnionTable)(nil)
	_ sql.ProjectedTable        = (*UnionTable)(nil)
	_ sql.IndexAddressableTable = (*UnionTable)(nil)
	_ sql.IndexSearchableTable  = (*UnionTable)(nil)
	_ sql.StatisticsTable       = (*UnionTable)(nil)
)

func (t *UnionTable) Name() string                           { return t.tables[0].Name() }
func (t *UnionTable) String() string                         { return t.tables[0].Name() }
func (t *UnionTable) Collation() sql.CollationID             { return t.tables[0].Collation() }
func (t *UnionTable) Schema() sql.Schema                     { return t.tables[0].Schema() }
func (t *UnionTable) PrimaryKeySchema() sql.PrimaryKeySchema { return t.tables[0].PrimaryKeySchema() }
func (t *UnionTable) Projections() []string                  { return t.tables[0].Projections() }

func (t *UnionTable) WithProjections(cols []string) sql.Table {
	nt := &UnionTable{db: t.db, tables: make([]*Table, len(t.tables))}
	for i, x := range t.tables {
		nt.tables[i] = x.WithProjections(cols).(*Table)
	}
	return nt
}

// unionPart is one partition's table, or (lookup set) a lookup merged
// over all of them.
type unionPart struct {
	i      int
	lookup *sql.IndexLookup
}

func (p *unionPart) Key() []byte { return []byte{byte(p.i), byte(p.i >> 8)} }

type unionPartIter struct {
	parts []*unionPart
}

func (it *unionPartIter) Next(*sql.Context) (sql.Partition, error) {
	if len(it.parts) == 0 {
		return nil, io.EOF
	}
	p := it.parts[0]
	it.parts = it.parts[1:]
	return p, nil
}

func (it *unionPartIter) Close(*sql.Context) error { return nil }

func (t *UnionTable) fences(ctx *sql.Context) error {
	for _, x := range t.tables {
		if err := x.ts.db.readFence(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (t *UnionTable) Partitions(ctx *sql.Context) (sql.PartitionIter, error) {
	if err := t.fences(ctx); err != nil {
		return nil, err
	}
	it := &unionPartIter{}
	for i := range t.tables {
		it.parts = append(it.parts, &unionPart{i: i})
	}
	return it, nil
}

func (t *UnionTable) PartitionRows(ctx *sql.Context, p sql.Partition) (sql.RowIter, error) {
	up, ok := p.(*unionPart)
	if !ok {
		return nil, sql.ErrPartitionNotFound.New(string(p.Key()))
	}
	if up.lookup == nil {
		return t.tables[up.i].PartitionRows(ctx, &partition{})
	}
	return t.mergedLookup(ctx, *up.lookup)
}

// Indexes: the first partition's; lookups find each partition's own by
// name.

func (t *UnionTable) GetIndexes(ctx *sql.Context) ([]sql.Index, error) {
	return t.tables[0].GetIndexes(ctx)
}

func (t *UnionTable) PreciseMatch() bool { return true }

func (t *UnionTable) IndexedAccess(ctx *sql.Context, lookup sql.IndexLookup) sql.IndexedTable {
	return &unionIndexed{UnionTable: t}
}

type unionIndexed struct{ *UnionTable }

func (t *unionIndexed) LookupPartitions(ctx *sql.Context, lookup sql.IndexLookup) (sql.PartitionIter, error) {
	if err := t.fences(ctx); err != nil {
		return nil, err
	}
	return &unionPartIter{parts: []*unionPart{{lookup: &lookup}}}, nil
}

func (t *UnionTable) SkipIndexCosting() bool { return false }

func (t *UnionTable) LookupForExpressions(ctx *sql.Context, exprs ...sql.Expression) (sql.IndexLookup, *sql.FuncDepSet, sql.Expression, bool, error) {
	return t.tables[0].LookupForExpressions(ctx, exprs...)
}

func (t *UnionTable) RowCount(ctx *sql.Context) (uint64, bool, error) {
	var n uint64
	for _, x := range t.tables {
		c, _, err := x.RowCount(ctx)
		if err != nil {
			return 0, false, err
		}
		n += c
	}
	return n, false, nil
}

func (t *UnionTable) DataLength(ctx *sql.Context) (uint64, error) {
	var n uint64
	for _, x := range t.tables {
		c, err := x.DataLength(ctx)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// mergedLookup runs a lookup on every partition and merges the rows in
// index key order (reversed for a reverse lookup).
func (t *UnionTable) mergedLookup(ctx *sql.Context, lookup sql.IndexLookup) (sql.RowIter, error) {
	m := &mergeIter{reverse: lookup.IsReverse}
	// the partitions' tables have one shape: their spans differ only in
	// the key prefix, so they are encoded once
	var like *lookupIter
	for _, x := range t.tables {
		it, err := x.lookupRowsIn(ctx, lookup, like)
		if err != nil {
			m.Close(ctx)
			return nil, err
		}
		li, ok := it.(*lookupIter)
		if !ok { // an empty range
			continue
		}
		like = li
		li.keepKey = true
		m.srcs = append(m.srcs, &mergeSrc{it: li})
	}
	return m, nil
}

type mergeSrc struct {
	it  *lookupIter
	row sql.Row
}

type mergeIter struct {
	srcs    []*mergeSrc
	heap    []*mergeSrc
	started bool
	reverse bool
}

func (m *mergeIter) Len() int { return len(m.heap) }
func (m *mergeIter) Less(i, j int) bool {
	c := bytes.Compare(m.heap[i].it.key, m.heap[j].it.key)
	if m.reverse {
		return c > 0
	}
	return c < 0
}
func (m *mergeIter) Swap(i, j int) { m.heap[i], m.heap[j] = m.heap[j], m.heap[i] }
func (m *mergeIter) Push(x any)    { m.heap = append(m.heap, x.(*mergeSrc)) }
func (m *mergeIter) Pop() any {
	x := m.heap[len(m.heap)-1]
	m.heap = m.heap[:len(m.heap)-1]
	return x
}

// advance reads a source's next row; false when it is done.
func (m *mergeIter) advance(ctx *sql.Context, s *mergeSrc) (bool, error) {
	row, err := s.it.Next(ctx)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.row = row
	return true, nil
}

func (m *mergeIter) Next(ctx *sql.Context) (sql.Row, error) {
	if !m.started {
		m.started = true
		for _, s := range m.srcs {
			ok, err := m.advance(ctx, s)
			if err != nil {
				return nil, err
			}
			if ok {
				m.heap = append(m.heap, s)
			}
		}
		heap.Init(m)
	} else if len(m.heap) > 0 {
		// the row returned last came from the top source
		s := m.heap[0]
		ok, err := m.advance(ctx, s)
		if err != nil {
			return nil, err
		}
		if ok {
			heap.Fix(m, 0)
		} else {
			heap.Pop(m)
		}
	}
	if len(m.heap) == 0 {
		return nil, io.EOF
	}
	return m.heap[0].row, nil
}

func (m *mergeIter) Close(ctx *sql.Context) error {
	var first error
	for _, s := range m.srcs {
		if err := s.it.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
