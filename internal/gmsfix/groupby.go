package gmsfix

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression/function/aggregation"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/rowexec"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

// NewExecBuilder is GMS's executor builder with a faster GROUP BY: a
// GroupBy with grouping expressions runs as hashGroupIter. GMS's grouping
// iterator hashes every row's key by printing each value with fmt into a
// new xxhash, then looks the hash up in a locked cache: most of a grouped
// scan's time. hashGroupIter keys a Go map with the bytes GMS prints (so
// the same values group together), written without fmt for the common
// types, and updates GMS's own aggregation buffers, so every aggregate
// computes as before. The plan keeps GMS's GroupBy: EXPLAIN and the
// validation of re-analyzed plans (views, derived tables) see no change.
func NewExecBuilder() sql.NodeExecBuilder { return newGroupByOverride().outer }

func newGroupByOverride() *groupByOverride {
	o := &groupByOverride{}
	o.outer = rowexec.NewOverrideBuilder(o)
	return o
}

// groupByOverride builds the GroupBy nodes it takes and leaves the rest
// (nil iterator) to GMS; children are built by outer, so a GroupBy
// anywhere in the tree is taken.
type groupByOverride struct {
	outer sql.NodeExecBuilder
	built atomic.Int64 // GroupBys taken (tests); sessions build at once
}

func (o *groupByOverride) Build(ctx *sql.Context, n sql.Node, row sql.Row) (sql.RowIter, error) {
	gb, ok := n.(*plan.GroupBy)
	if !ok || len(gb.GroupByExprs) == 0 {
		return nil, nil
	}
	child, err := o.outer.Build(ctx, gb.Child, row)
	if err != nil {
		return nil, err
	}
	o.built.Add(1)
	return &hashGroupIter{selected: gb.SelectedExprs, groupBy: gb.GroupByExprs, child: child}, nil
}

type hashGroupIter struct {
	selected, groupBy []sql.Expression
	child             sql.RowIter

	computed bool
	index    map[string]int
	groups   [][]sql.AggregationBuffer
	pos      int
	key      []byte
	text     []byte
}

func (it *hashGroupIter) Next(ctx *sql.Context) (sql.Row, error) {
	if !it.computed {
		it.computed = true
		if err := it.compute(ctx); err != nil {
			return nil, err
		}
	}
	if it.pos >= len(it.groups) {
		return nil, io.EOF
	}
	bufs := it.groups[it.pos]
	it.pos++
	out := make(sql.Row, len(bufs))
	for i, b := range bufs {
		v, err := b.Eval(ctx)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (it *hashGroupIter) compute(ctx *sql.Context) error {
	it.index = map[string]int{}
	for {
		row, err := it.child.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := it.groupKey(ctx, row); err != nil {
			return err
		}
		i, ok := it.index[string(it.key)]
		if !ok {
			bufs := make([]sql.AggregationBuffer, len(it.selected))
			for j, e := range it.selected {
				if bufs[j], err = newBuffer(e); err != nil {
					return err
				}
			}
			i = len(it.groups)
			it.groups = append(it.groups, bufs)
			it.index[string(it.key)] = i
		}
		for _, b := range it.groups[i] {
			if err := b.Update(ctx, row); err != nil {
				return err
			}
		}
	}
}

// newBuffer is GMS's buffer for a selected expression: a non-aggregate
// keeps its first value.
func newBuffer(e sql.Expression) (sql.AggregationBuffer, error) {
	if a, ok := e.(sql.Aggregation); ok {
		return a.NewBuffer()
	}
	return aggregation.NewFirst(e).NewBuffer()
}

// Key parts: a tag, then the length and the bytes GMS hashes for the
// value (a string's collation weights; anything else as fmt's %v prints
// it). The length keeps two expressions' bytes apart.
const (
	keyNull byte = iota
	keyWeights
	keyText
)

func (it *hashGroupIter) groupKey(ctx *sql.Context, row sql.Row) error {
	it.key = it.key[:0]
	for _, e := range it.groupBy {
		v, err := e.Eval(ctx, row)
		if err != nil {
			return err
		}
		if v == nil {
			it.key = append(it.key, keyNull)
			continue
		}
		it.text = it.text[:0]
		tag := keyText
		if st, ok := e.Type().(sql.StringType); ok {
			s, err := types.ConvertToString(ctx, v, st, nil)
			if err != nil {
				return err
			}
			w := byteWriter{&it.text}
			if err := st.Collation().WriteWeightString(w, s); err != nil {
				return err
			}
			tag = keyWeights
		} else {
			it.text = appendValue(it.text, v)
		}
		it.key = append(it.key, tag)
		it.key = binary.AppendUvarint(it.key, uint64(len(it.text)))
		it.key = append(it.key, it.text...)
	}
	return nil
}

// appendValue appends v as fmt's %v prints it, without fmt for the
// common types.
func appendValue(b []byte, v interface{}) []byte {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case int16:
		return strconv.AppendInt(b, int64(x), 10)
	case int8:
		return strconv.AppendInt(b, int64(x), 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10)
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case float32:
		return strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	case decimal.Decimal:
		if x.Exponent() == 0 && x.NumDigits() <= 18 {
			return strconv.AppendInt(b, x.CoefficientInt64(), 10)
		}
		return append(b, x.String()...)
	case string:
		return append(b, x...)
	}
	return fmt.Append(b, v)
}

type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

func (it *hashGroupIter) Close(ctx *sql.Context) error {
	for _, bufs := range it.groups {
		for _, b := range bufs {
			b.Dispose()
		}
	}
	it.groups, it.index = nil, nil
	return it.child.Close(ctx)
}
