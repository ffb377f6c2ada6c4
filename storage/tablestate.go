package storage

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/storage/codec"
)

// tableState is one version of a table: its definition and everything
// derived from it. It is immutable; DDL installs a new version that shares
// the counters.
type tableState struct {
	db       *dbState
	meta     *tableMeta
	schema   sql.PrimaryKeySchema
	rows     *codec.RowCodec
	pk       []keyCol
	keyless  bool
	indexes  []*indexState // secondary indexes
	autoInc  int           // ordinal of the AUTO_INCREMENT column, or -1
	data     []byte        // prefix of all the table's keys
	pkPrefix []byte
	hashIdx  []byte // keyless tables: prefix of the row-hash index
	counters *tableCounters
}

type keyCol struct {
	ord    int
	col    codec.Column
	prefix int // characters kept by a prefix index, 0 for all
}

type indexState struct {
	meta  indexMeta
	cols  []keyCol // the index columns
	extra []keyCol // primary key columns the index columns do not cover
	// keyCols = cols + extra: the columns of an entry's key (GMS's extended
	// index). Keyless tables end entries with the hidden row id instead.
	keyCols []keyCol
	prefix  []byte
}

func newTableState(d *dbState, m *tableMeta, counters *tableCounters) (*tableState, error) {
	schema, err := m.schema(d.meta.Name)
	if err != nil {
		return nil, err
	}
	if counters == nil {
		counters = &tableCounters{}
	}
	t := &tableState{
		db:       d,
		meta:     m,
		schema:   schema,
		rows:     codec.NewRowCodec(schema.Schema),
		autoInc:  -1,
		data:     join(d.prefix, tableDataSuffix(m.ID)),
		counters: counters,
	}
	t.rows.Format = m.RowFormat
	t.pkPrefix = indexPrefix(t.data, pkIndexID)
	for i, c := range schema.Schema {
		if c.AutoIncrement {
			t.autoInc = i
		}
	}
	t.keyless = len(schema.PkOrdinals) == 0
	if t.keyless {
		t.hashIdx = indexPrefix(t.data, keylessHashID)
	}
	pkPrefixLens := map[string]int64{}
	for _, im := range m.Indexes {
		if im.ID == pkIndexID {
			for _, c := range im.Columns {
				pkPrefixLens[strings.ToLower(c.Name)] = c.Length
			}
		}
	}
	for _, ord := range schema.PkOrdinals {
		t.pk = append(t.pk, keyCol{ord: ord, col: t.rows.Cols[ord], prefix: int(pkPrefixLens[strings.ToLower(schema.Schema[ord].Name)])})
	}
	for _, im := range m.Indexes {
		if im.ID == pkIndexID {
			continue
		}
		is := &indexState{meta: im, prefix: indexPrefix(t.data, im.ID)}
		for _, c := range im.Columns {
			ord := m.columnIndex(c.Name)
			if ord < 0 {
				return nil, fmt.Errorf("table %s index %s: no column %s", m.Name, im.Name, c.Name)
			}
			is.cols = append(is.cols, keyCol{ord: ord, col: t.rows.Cols[ord], prefix: int(c.Length)})
		}
	pkLoop:
		for _, p := range t.pk {
			for _, c := range is.cols {
				if c.ord == p.ord && c.prefix == 0 {
					continue pkLoop
				}
			}
			is.extra = append(is.extra, p)
		}
		is.keyCols = append(append([]keyCol(nil), is.cols...), is.extra...)
		t.indexes = append(t.indexes, is)
	}
	return t, nil
}

// pkSuffix encodes the primary key of row (not for keyless tables).
func (t *tableState) pkSuffix(row sql.Row) ([]byte, error) {
	return appendKeyCols(nil, t.pk, row)
}

func appendKeyCols(dst []byte, cols []keyCol, row sql.Row) ([]byte, error) {
	var err error
	for _, c := range cols {
		if dst, err = codec.AppendKey(dst, c.col, row[c.ord], c.prefix); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// rowidSuffix is the hidden key of a keyless row.
func rowidSuffix(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{codec.TagValue}, id)
}

func (t *tableState) rowKey(pkSuffix []byte) []byte {
	return join(t.pkPrefix, pkSuffix)
}

// indexEntry returns the key of row's entry in a secondary index, and the
// unique prefix (index columns only) that a unique index must not repeat.
// hasNull reports a NULL index column: such entries never conflict.
func (t *tableState) indexEntry(is *indexState, row sql.Row, pkSuffix []byte) (key, uniq []byte, hasNull bool, err error) {
	key = append([]byte(nil), is.prefix...)
	for _, c := range is.cols {
		if row[c.ord] == nil {
			hasNull = true
		}
		if key, err = codec.AppendKey(key, c.col, row[c.ord], c.prefix); err != nil {
			return nil, nil, false, err
		}
	}
	uniq = key
	key = key[:len(key):len(key)]
	if t.keyless {
		key = append(key, pkSuffix...)
	} else if key, err = appendKeyCols(key, is.extra, row); err != nil {
		return nil, nil, false, err
	}
	return key, uniq, hasNull, nil
}

func (t *tableState) hashEntry(rowBytes, pkSuffix []byte) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), t.hashIdx...), xxhash.Sum64(rowBytes))
	return append(k, pkSuffix...)
}

// tableCounters are the persisted counters of a table, shared by all its
// versions: committed row count, next AUTO_INCREMENT value, last row id.
type tableCounters struct {
	// altering is set while an ALTER rewrites the table; writers of the
	// table cannot commit meanwhile. Guarded by Store.commitMu.
	altering bool

	mu      sync.Mutex
	rows    int64
	autoinc uint64
	rowid   uint64

	// diskBytes is pebble's estimate of the table's bytes on disk as of
	// diskAt (unix ns): the planner asks for it on every index scan it
	// costs, so it is measured at most once a second
	diskBytes atomic.Uint64
	diskAt    atomic.Int64
}

func (c *tableCounters) encodeWith(delta int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := binary.BigEndian.AppendUint64(nil, uint64(c.rows+delta))
	b = binary.BigEndian.AppendUint64(b, c.autoinc)
	return binary.BigEndian.AppendUint64(b, c.rowid)
}

// decode installs persisted values; the sequences only move forward, as
// other transactions may have drawn values since the record was made.
func (c *tableCounters) decode(b []byte) {
	if len(b) != 24 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows = int64(binary.BigEndian.Uint64(b))
	c.autoinc = max(c.autoinc, binary.BigEndian.Uint64(b[8:]))
	c.rowid = max(c.rowid, binary.BigEndian.Uint64(b[16:]))
}

func (c *tableCounters) rowCount() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.rows, 0)
}

func (c *tableCounters) nextRowID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rowid++
	return c.rowid
}

// nextAutoInc implements GMS's contract: with given nil, hand out the next
// value; otherwise make sure later values exceed given.
func (c *tableCounters) nextAutoInc(given uint64, hasGiven bool) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.autoinc == 0 {
		c.autoinc = 1
	}
	if hasGiven {
		if given >= c.autoinc {
			c.autoinc = given + 1
		}
		return c.autoinc
	}
	v := c.autoinc
	c.autoinc++
	return v
}

func (c *tableCounters) peekAutoInc() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.autoinc == 0 {
		return 1
	}
	return c.autoinc
}

func (c *tableCounters) setAutoInc(v uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.autoinc = v
}
