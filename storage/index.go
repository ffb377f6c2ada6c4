package storage

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/storage/codec"
)

// Index is the GMS view of a primary or secondary index.
type Index struct {
	ts *tableState
	is *indexState // nil for PRIMARY
}

var (
	_ sql.Index         = (*Index)(nil)
	_ sql.ExtendedIndex = (*Index)(nil)
	_ sql.OrderedIndex  = (*Index)(nil)
)

func (i *Index) primary() bool { return i.is == nil }

// keyCols are the columns of the index key in order: the index columns,
// then the primary key columns not already among them (the extended key).
func (i *Index) keyCols() []keyCol {
	if i.primary() {
		return i.ts.pk
	}
	return i.is.keyCols
}

func (i *Index) ID() string {
	if i.primary() {
		return "PRIMARY"
	}
	return i.is.meta.Name
}

func (i *Index) Database() string { return i.ts.db.meta.Name }
func (i *Index) Table() string    { return i.ts.meta.Name }

func (i *Index) cols() []keyCol {
	if i.primary() {
		return i.ts.pk
	}
	return i.is.cols
}

func (i *Index) exprs(cols []keyCol) []string {
	out := make([]string, len(cols))
	for n, c := range cols {
		out[n] = i.ts.meta.Name + "." + i.ts.schema.Schema[c.ord].Name
	}
	return out
}

func (i *Index) types(cols []keyCol) []sql.ColumnExpressionType {
	names := i.exprs(cols)
	out := make([]sql.ColumnExpressionType, len(cols))
	for n, c := range cols {
		out[n] = sql.ColumnExpressionType{Expression: names[n], Type: i.ts.schema.Schema[c.ord].Type}
	}
	return out
}

func (i *Index) Expressions() []string                             { return i.exprs(i.cols()) }
func (i *Index) ExtendedExpressions() []string                     { return i.exprs(i.keyCols()) }
func (i *Index) ColumnExpressionTypes() []sql.ColumnExpressionType { return i.types(i.cols()) }
func (i *Index) ExtendedColumnExpressionTypes() []sql.ColumnExpressionType {
	return i.types(i.keyCols())
}
func (i *Index) IsUnique() bool                             { return i.primary() || i.is.meta.Unique }
func (i *Index) IsSpatial() bool                            { return false }
func (i *Index) IsFullText() bool                           { return false }
func (i *Index) IsVector() bool                             { return false }
func (i *Index) IsGenerated() bool                          { return false }
func (i *Index) IndexType() string                          { return "BTREE" }
func (i *Index) CanSupport(*sql.Context, ...sql.Range) bool { return true }
func (i *Index) CanSupportOrderBy(sql.Expression) bool      { return false }
func (i *Index) Order() sql.IndexOrder                      { return sql.IndexOrderAsc }
func (i *Index) Reversible() bool                           { return true }

func (i *Index) Comment() string {
	if i.primary() {
		return ""
	}
	return i.is.meta.Comment
}

func (i *Index) PrefixLengths() []uint16 {
	var out []uint16
	any := false
	for _, c := range i.cols() {
		out = append(out, uint16(c.prefix))
		any = any || c.prefix > 0
	}
	if !any {
		return nil
	}
	return out
}

func (i *Index) String() string {
	return fmt.Sprintf("%s(%s)", i.ID(), strings.Join(i.Expressions(), ", "))
}

// keySpan is the part of an index a lookup range reads: the byte span
// [lo, hi) plus per-column bounds that the span alone cannot express
// (constraints on columns after the first non-equality column).
type keySpan struct {
	lo, hi  []byte
	point   bool // every key column bound to one value (at most one row on a unique index)
	filters []segFilter
}

type segFilter struct {
	col    int // position among the key columns
	lo, hi []byte
}

// spansFor translates a GMS lookup into spans of the index key space.
func (i *Index) spansFor(lookup sql.IndexLookup) ([]keySpan, error) {
	ranges, ok := lookup.Ranges.(sql.MySQLRangeCollection)
	if !ok {
		return nil, fmt.Errorf("storage: unsupported range collection %T", lookup.Ranges)
	}
	base := i.ts.pkPrefix
	if !i.primary() {
		base = i.is.prefix
	}
	cols := i.keyCols()
	out := make([]keySpan, 0, len(ranges))
	for _, r := range ranges {
		sp, empty, err := spanForRange(base, cols, r)
		if err != nil {
			return nil, err
		}
		if !empty {
			out = append(out, sp)
		}
	}
	return out, nil
}

func spanForRange(base []byte, cols []keyCol, r sql.MySQLRange) (keySpan, bool, error) {
	prefix := append([]byte(nil), base...)
	n := len(r)
	if n > len(cols) {
		n = len(cols)
	}
	sp := keySpan{}
	k := 0
	for ; k < n; k++ {
		lo, hi, err := cutBounds(cols[k], r[k])
		if err != nil {
			return sp, false, err
		}
		if hi != nil && bytes.Compare(lo, hi) >= 0 {
			return sp, true, nil
		}
		if cols[k].prefix == 0 && isPointSpan(lo, hi, r[k]) {
			if _, null := r[k].LowerBound.(sql.BelowNull); null {
				prefix = append(prefix, codec.TagNull)
			} else {
				prefix = append(prefix, lo...)
			}
			continue
		}
		// first non-point column: it bounds the span
		sp.lo = append(append([]byte(nil), prefix...), lo...)
		if hi == nil {
			sp.hi = prefixEnd(prefix)
		} else {
			sp.hi = append(append([]byte(nil), prefix...), hi...)
		}
		if cols[k].prefix > 0 {
			// lossy prefix column: later columns cannot be checked here; GMS
			// keeps its filter because such an index is not precise.
			return sp, false, nil
		}
		for j := k + 1; j < n; j++ {
			flo, fhi, err := cutBounds(cols[j], r[j])
			if err != nil {
				return sp, false, err
			}
			if len(flo) == 0 && fhi == nil {
				continue
			}
			if bytes.Compare(flo, fhi) >= 0 && fhi != nil {
				return sp, true, nil
			}
			sp.filters = append(sp.filters, segFilter{col: j, lo: flo, hi: fhi})
		}
		return sp, false, nil
	}
	sp.lo = prefix
	sp.hi = prefixEnd(prefix)
	sp.point = n == len(cols)
	return sp, false, nil
}

// cutBounds turns one column's range into [lo, hi) over the column's
// encoding; lo empty means unbounded below, hi nil unbounded above.
func cutBounds(c keyCol, e sql.MySQLRangeColumnExpr) (lo, hi []byte, err error) {
	switch cut := e.LowerBound.(type) {
	case sql.BelowNull:
		lo = []byte{}
	case sql.AboveNull:
		lo = []byte{codec.TagValue}
	case sql.AboveAll:
		lo = []byte{codec.TagMax}
	case sql.Below:
		if lo, err = codec.AppendKey(nil, c.col, cut.Key, c.prefix); err != nil {
			return nil, nil, err
		}
	case sql.Above:
		if lo, err = codec.AppendKey(nil, c.col, cut.Key, c.prefix); err != nil {
			return nil, nil, err
		}
		if c.prefix == 0 {
			lo = prefixEnd(lo)
		}
	default:
		return nil, nil, fmt.Errorf("storage: unknown range cut %T", cut)
	}
	switch cut := e.UpperBound.(type) {
	case sql.BelowNull:
		hi = []byte{codec.TagNull}
	case sql.AboveNull:
		hi = []byte{codec.TagValue}
	case sql.AboveAll:
		hi = nil
	case sql.Below:
		if hi, err = codec.AppendKey(nil, c.col, cut.Key, c.prefix); err != nil {
			return nil, nil, err
		}
		if c.prefix > 0 {
			hi = prefixEnd(hi)
		}
	case sql.Above:
		if hi, err = codec.AppendKey(nil, c.col, cut.Key, c.prefix); err != nil {
			return nil, nil, err
		}
		hi = prefixEnd(hi)
	default:
		return nil, nil, fmt.Errorf("storage: unknown range cut %T", cut)
	}
	return lo, hi, nil
}

// isPointSpan reports a range holding exactly one encoded column value:
// [v, v] or NULL only.
func isPointSpan(lo, hi []byte, e sql.MySQLRangeColumnExpr) bool {
	if hi == nil {
		return false
	}
	switch e.LowerBound.(type) {
	case sql.Below:
		_, ok := e.UpperBound.(sql.Above)
		return ok && bytes.Equal(prefixEnd(lo), hi)
	case sql.BelowNull:
		_, ok := e.UpperBound.(sql.AboveNull)
		return ok
	}
	return false
}

// matches checks the filters of a span against an index key (relative to
// the index prefix).
func (sp *keySpan) matches(cols []keyCol, key []byte) (bool, error) {
	if len(sp.filters) == 0 {
		return true, nil
	}
	pos, col := 0, 0
	for _, f := range sp.filters {
		for ; col < f.col; col++ {
			n, err := codec.KeyLen(cols[col].col, key[pos:])
			if err != nil {
				return false, err
			}
			pos += n
		}
		n, err := codec.KeyLen(cols[col].col, key[pos:])
		if err != nil {
			return false, err
		}
		seg := key[pos : pos+n]
		if len(f.lo) > 0 && bytes.Compare(seg, f.lo) < 0 {
			return false, nil
		}
		if f.hi != nil && bytes.Compare(seg, f.hi) >= 0 {
			return false, nil
		}
		pos += n
		col++
	}
	return true, nil
}
