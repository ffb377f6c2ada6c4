package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

// Row layout: a version byte, a null bitmap (one bit per column), then the
// non-null columns in schema order. Integers are varints, floats fixed
// width, everything else length-prefixed. The layout depends on the schema,
// so a schema change rewrites the table's rows.
const rowVersion = 1

// RowCodec encodes and decodes the rows of one table schema.
type RowCodec struct {
	Cols []Column
	// Format is written into every row and checked on decode, so that a
	// reader holding an older schema never misreads rewritten rows.
	Format uint64
}

// ErrFormatChanged means a row was written under another schema version.
var ErrFormatChanged = fmt.Errorf("codec: row written under another table definition")

// NewRowCodec builds the codec for a schema.
func NewRowCodec(schema sql.Schema) *RowCodec {
	rc := &RowCodec{Cols: make([]Column, len(schema))}
	for i, col := range schema {
		rc.Cols[i] = NewColumn(col.Type)
	}
	return rc
}

// Encode appends the encoding of row to dst.
func (rc *RowCodec) Encode(dst []byte, row sql.Row) ([]byte, error) {
	if len(row) != len(rc.Cols) {
		return nil, fmt.Errorf("codec: row has %d values, schema has %d columns", len(row), len(rc.Cols))
	}
	dst = append(dst, rowVersion)
	dst = binary.AppendUvarint(dst, rc.Format)
	bitmap := len(dst)
	for i := 0; i < (len(row)+7)/8; i++ {
		dst = append(dst, 0)
	}
	var err error
	for i, v := range row {
		if v == nil {
			dst[bitmap+i/8] |= 1 << (i % 8)
			continue
		}
		if dst, err = appendValue(dst, rc.Cols[i], v); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func appendValue(dst []byte, c Column, v interface{}) ([]byte, error) {
	switch c.Kind {
	case KindInt8, KindInt16, KindInt32, KindInt64, KindYear, KindTimespan:
		i, err := toInt64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.AppendVarint(dst, i), nil
	case KindUint8, KindUint16, KindUint32, KindUint64, KindEnum, KindSet, KindBit:
		u, err := toUint64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.AppendUvarint(dst, u), nil
	case KindFloat32:
		f, err := toFloat64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(f))), nil
	case KindFloat64:
		f, err := toFloat64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), nil
	case KindDecimal:
		d, err := toDecimal(c, v)
		if err != nil {
			return nil, err
		}
		coef := d.Coefficient()
		dst = binary.AppendVarint(dst, int64(d.Exponent()))
		dst = append(dst, byte(coef.Sign()+1))
		mag := coef.Bytes()
		dst = binary.AppendUvarint(dst, uint64(len(mag)))
		return append(dst, mag...), nil
	case KindTime:
		t, err := toTime(c, v)
		if err != nil {
			return nil, err
		}
		dst = binary.AppendVarint(dst, t.Unix())
		return binary.AppendUvarint(dst, uint64(t.Nanosecond())), nil
	case KindString:
		s, err := toString(c, v)
		if err != nil {
			return nil, err
		}
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		return append(dst, s...), nil
	case KindBytes:
		b, err := toBytes(c, v)
		if err != nil {
			return nil, err
		}
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		return append(dst, b...), nil
	default:
		b, err := opaqueBytes(c, v)
		if err != nil {
			return nil, err
		}
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		return append(dst, b...), nil
	}
}

// Decode decodes every column of b.
func (rc *RowCodec) Decode(b []byte) (sql.Row, error) {
	row := make(sql.Row, len(rc.Cols))
	return row, rc.DecodeInto(b, row, nil)
}

// DecodeInto decodes b into dst. With proj nil, dst has one slot per column;
// otherwise dst[i] receives column proj[i], and proj must be ascending.
func (rc *RowCodec) DecodeInto(b []byte, dst sql.Row, proj []int) error {
	if len(b) == 0 || b[0] != rowVersion {
		return fmt.Errorf("codec: bad row header")
	}
	format, hn := binary.Uvarint(b[1:])
	if hn <= 0 {
		return fmt.Errorf("codec: bad row header")
	}
	if format != rc.Format {
		return ErrFormatChanged
	}
	start := 1 + hn
	if len(b) < start+(len(rc.Cols)+7)/8 {
		return fmt.Errorf("codec: row of %d bytes is shorter than its header", len(b))
	}
	bitmap := b[start : start+(len(rc.Cols)+7)/8]
	pos := start + len(bitmap)
	next := 0 // index into proj
	for i := range rc.Cols {
		want := proj == nil
		if !want && next < len(proj) && proj[next] == i {
			want = true
		}
		if !want && next >= len(proj) && proj != nil {
			return nil
		}
		out := i
		if proj != nil {
			out = next
		}
		if bitmap[i/8]&(1<<(i%8)) != 0 {
			if want {
				dst[out] = nil
				next++
			}
			continue
		}
		v, n, err := decodeValue(rc.Cols[i], b[pos:], want)
		if err != nil {
			return fmt.Errorf("codec: column %d: %w", i, err)
		}
		pos += n
		if want {
			dst[out] = v
			next++
		}
	}
	return nil
}

func decodeValue(c Column, b []byte, want bool) (interface{}, int, error) {
	switch c.Kind {
	case KindInt8, KindInt16, KindInt32, KindInt64, KindYear, KindTimespan:
		i, n := binary.Varint(b)
		if n <= 0 {
			return nil, 0, errShort
		}
		switch c.Kind {
		case KindInt8:
			return int8(i), n, nil
		case KindInt16, KindYear:
			return int16(i), n, nil
		case KindInt32:
			return int32(i), n, nil
		case KindTimespan:
			return types.Timespan(i), n, nil
		}
		return i, n, nil
	case KindUint8, KindUint16, KindUint32, KindUint64, KindEnum, KindSet, KindBit:
		u, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, 0, errShort
		}
		switch c.Kind {
		case KindUint8:
			return uint8(u), n, nil
		case KindUint16, KindEnum:
			return uint16(u), n, nil
		case KindUint32:
			return uint32(u), n, nil
		}
		return u, n, nil
	case KindFloat32:
		if len(b) < 4 {
			return nil, 0, errShort
		}
		return math.Float32frombits(binary.LittleEndian.Uint32(b)), 4, nil
	case KindFloat64:
		if len(b) < 8 {
			return nil, 0, errShort
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), 8, nil
	case KindDecimal:
		exp, n := binary.Varint(b)
		if n <= 0 || len(b) < n+1 {
			return nil, 0, errShort
		}
		sign := int(b[n]) - 1
		n++
		l, m := binary.Uvarint(b[n:])
		if m <= 0 || l > uint64(len(b)-n-m) {
			return nil, 0, errShort
		}
		n += m
		if !want {
			return nil, n + int(l), nil
		}
		coef := new(big.Int).SetBytes(b[n : n+int(l)])
		if sign < 0 {
			coef.Neg(coef)
		}
		return decimal.NewFromBigInt(coef, int32(exp)), n + int(l), nil
	case KindTime:
		sec, n := binary.Varint(b)
		if n <= 0 {
			return nil, 0, errShort
		}
		nsec, m := binary.Uvarint(b[n:])
		if m <= 0 {
			return nil, 0, errShort
		}
		return time.Unix(sec, int64(nsec)).UTC(), n + m, nil
	default:
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, 0, errShort
		}
		if !want {
			return nil, n + int(l), nil
		}
		raw := b[n : n+int(l)]
		v, err := decodeBytesKind(c, raw)
		return v, n + int(l), err
	}
}

func decodeBytesKind(c Column, raw []byte) (interface{}, error) {
	switch c.Kind {
	case KindString:
		return string(raw), nil
	case KindBytes:
		return append([]byte{}, raw...), nil
	case KindJSON:
		return types.NewLazyJSONDocument(append([]byte{}, raw...)), nil
	}
	v, _, err := c.Type.Convert(bg, append([]byte{}, raw...))
	return v, err
}

var errShort = fmt.Errorf("short row")
