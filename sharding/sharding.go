// Package sharding defines which partition a row belongs to. The
// definition is fixed (changing it would strand every stored row):
//
//	partition = xxhash64(key(v1) ‖ key(v2) ‖ …) mod partitions
//
// where vi is the row's value of the i-th shard key column, converted to
// that column's type, and key() is the order-preserving key encoding of
// storage/codec (so values equal under the column's collation, such as 'a'
// and 'A' in a case-insensitive column, land together, as a unique key on
// them requires).
package sharding

import (
	"context"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/storage/codec"
)

// Key describes the shard key columns of a table.
type Key struct {
	Types []sql.Type
	cols  []codec.Column
}

// NewKey builds a shard key from the column types.
func NewKey(types []sql.Type) Key {
	k := Key{Types: types, cols: make([]codec.Column, len(types))}
	for i, t := range types {
		k.cols[i] = codec.NewColumn(t)
	}
	return k
}

// Hash hashes shard key values; each is converted to its column's type
// first, so the literal '5' and the integer 5 agree for an INT column.
func (k Key) Hash(vals []interface{}) (uint64, error) {
	if len(vals) != len(k.cols) {
		return 0, fmt.Errorf("sharding: %d values for a %d-column shard key", len(vals), len(k.cols))
	}
	var buf []byte
	for i, v := range vals {
		if v != nil {
			cv, _, err := k.Types[i].Convert(context.Background(), v)
			if err != nil {
				return 0, fmt.Errorf("sharding: %v is not a %s: %w", v, k.Types[i], err)
			}
			v = cv
		}
		var err error
		if buf, err = codec.AppendKey(buf, k.cols[i], v, 0); err != nil {
			return 0, err
		}
	}
	return xxhash.Sum64(buf), nil
}

// Partition maps shard key values to a partition ordinal.
func (k Key) Partition(vals []interface{}, partitions int) (int, error) {
	h, err := k.Hash(vals)
	if err != nil {
		return 0, err
	}
	return int(h % uint64(partitions)), nil
}
