// Package codec turns SQL values into bytes and back: an order-preserving
// encoding for index keys and a compact encoding for row values. It is pure
// logic with no I/O, so that every storage path agrees on one definition.
package codec

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/vt/proto/query"
)

// Kind is the storage class of a column: how its values are laid out in keys
// and rows, and which Go type GMS expects back when a value is decoded.
type Kind uint8

const (
	KindInt8 Kind = iota + 1
	KindInt16
	KindInt32
	KindInt64
	KindUint8
	KindUint16
	KindUint32
	KindUint64
	KindFloat32
	KindFloat64
	KindDecimal
	KindString // text types, Go string
	KindBytes  // binary types, Go []byte
	KindTime   // DATE, DATETIME, TIMESTAMP: time.Time
	KindTimespan
	KindYear // int16
	KindEnum // uint16
	KindSet  // uint64
	KindBit  // uint64
	KindJSON
	KindOther // anything else (geometry, …): the type's own wire form
)

// Column describes how one column is encoded.
type Column struct {
	Kind      Kind
	Type      sql.Type
	Collation sql.CollationID // for KindString
	// weights is non-nil when key order follows a collation's rune weights
	// rather than raw UTF-8 bytes.
	weights sql.CollationSorter
}

// NewColumn derives the encoding of a column from its SQL type.
func NewColumn(t sql.Type) Column {
	c := Column{Kind: kindOf(t), Type: t}
	if c.Kind == KindString {
		if st, ok := t.(sql.StringType); ok {
			c.Collation = st.Collation()
			if !binaryOrdered(c.Collation) {
				c.weights = c.Collation.Sorter()
			}
		}
	}
	return c
}

// binaryOrdered reports whether a collation compares code points, so that raw
// UTF-8 bytes already sort in its order.
func binaryOrdered(id sql.CollationID) bool {
	if id == sql.Collation_binary || id.Sorter() == nil {
		return true
	}
	name := id.Name()
	return len(name) > 4 && name[len(name)-4:] == "_bin"
}

func kindOf(t sql.Type) Kind {
	switch t.Type() {
	case query.Type_INT8:
		return KindInt8
	case query.Type_INT16:
		return KindInt16
	case query.Type_INT24, query.Type_INT32:
		return KindInt32
	case query.Type_INT64:
		return KindInt64
	case query.Type_UINT8:
		return KindUint8
	case query.Type_UINT16:
		return KindUint16
	case query.Type_UINT24, query.Type_UINT32:
		return KindUint32
	case query.Type_UINT64:
		return KindUint64
	case query.Type_FLOAT32:
		return KindFloat32
	case query.Type_FLOAT64:
		return KindFloat64
	case query.Type_DECIMAL:
		return KindDecimal
	case query.Type_VARCHAR, query.Type_CHAR, query.Type_TEXT, query.Type_BLOB,
		query.Type_VARBINARY, query.Type_BINARY:
		if types.IsBinaryType(t) {
			return KindBytes
		}
		return KindString
	case query.Type_DATE, query.Type_DATETIME, query.Type_TIMESTAMP:
		return KindTime
	case query.Type_TIME:
		return KindTimespan
	case query.Type_YEAR:
		return KindYear
	case query.Type_ENUM:
		return KindEnum
	case query.Type_SET:
		return KindSet
	case query.Type_BIT:
		return KindBit
	case query.Type_JSON:
		return KindJSON
	}
	return KindOther
}

// fixedKeyLen is the length of a non-null key column of a fixed-width kind
// (after its tag byte), or 0 for the escaped variable-width kinds.
func (c Column) fixedKeyLen() int {
	switch c.Kind {
	case KindTime:
		return 12
	case KindString, KindBytes, KindDecimal, KindJSON, KindOther:
		return 0
	}
	return 8
}
