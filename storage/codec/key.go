package codec

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"time"
	"unicode/utf8"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

// Key layout of one column:
//
//	NULL      0x00
//	non-NULL  0x01, then 8 bytes (integers, floats, and the like), 12 bytes
//	          (time), or an escaped byte string ending in 0x00 0x01.
//
// Every column encoding is prefix-free and byte order equals SQL order
// (NULL first, as MySQL sorts ascending), so a composite key is simply the
// concatenation of its columns and a range on one column is a byte range.
const (
	TagNull  byte = 0x00
	TagValue byte = 0x01
	// TagMax sorts after every encoded column; it is the position "after all
	// values" used for open upper bounds.
	TagMax byte = 0x02
)

const (
	escByte  = 0x00
	escEsc   = 0xFF // 0x00 inside a string is written 0x00 0xFF
	escTerm  = 0x01 // a string ends with 0x00 0x01
	signFlip = uint64(1) << 63
)

// AppendKey appends the order-preserving encoding of v. prefixLen, when
// positive, keeps only that many characters (bytes for binary kinds), as in
// KEY (c(10)).
func AppendKey(dst []byte, c Column, v interface{}, prefixLen int) ([]byte, error) {
	if v == nil {
		return append(dst, TagNull), nil
	}
	dst = append(dst, TagValue)
	switch c.Kind {
	case KindInt8, KindInt16, KindInt32, KindInt64, KindYear, KindTimespan:
		i, err := toInt64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(dst, uint64(i)^signFlip), nil
	case KindUint8, KindUint16, KindUint32, KindUint64, KindEnum, KindSet, KindBit:
		u, err := toUint64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(dst, u), nil
	case KindFloat32, KindFloat64:
		f, err := toFloat64(c, v)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(dst, floatKey(f)), nil
	case KindDecimal:
		d, err := toDecimal(c, v)
		if err != nil {
			return nil, err
		}
		return appendEscaped(dst, decimalKey(d)), nil
	case KindTime:
		t, err := toTime(c, v)
		if err != nil {
			return nil, err
		}
		dst = binary.BigEndian.AppendUint64(dst, uint64(t.Unix())^signFlip)
		return binary.BigEndian.AppendUint32(dst, uint32(t.Nanosecond())), nil
	case KindString:
		s, err := toString(c, v)
		if err != nil {
			return nil, err
		}
		if prefixLen > 0 {
			s = truncateRunes(s, prefixLen)
		}
		if c.weights == nil {
			return appendEscaped(dst, []byte(s)), nil
		}
		return appendEscaped(dst, weightString(c.weights, s)), nil
	case KindBytes:
		b, err := toBytes(c, v)
		if err != nil {
			return nil, err
		}
		if prefixLen > 0 && len(b) > prefixLen {
			b = b[:prefixLen]
		}
		return appendEscaped(dst, b), nil
	default:
		b, err := opaqueBytes(c, v)
		if err != nil {
			return nil, err
		}
		return appendEscaped(dst, b), nil
	}
}

// KeyLen returns the length of the first encoded column in b.
func KeyLen(c Column, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("codec: empty key column")
	}
	if b[0] == TagNull {
		return 1, nil
	}
	if n := c.fixedKeyLen(); n > 0 {
		if len(b) < 1+n {
			return 0, fmt.Errorf("codec: short key column")
		}
		return 1 + n, nil
	}
	for i := 1; i+1 < len(b); i++ {
		if b[i] == escByte {
			if b[i+1] == escTerm {
				return i + 2, nil
			}
			i++ // skip the escaped byte
		}
	}
	return 0, fmt.Errorf("codec: unterminated key column")
}

// PrefixEnd returns the smallest key greater than every key that starts with
// p, or nil when there is none (p is all 0xFF).
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func appendEscaped(dst, b []byte) []byte {
	for _, x := range b {
		if x == escByte {
			dst = append(dst, escByte, escEsc)
		} else {
			dst = append(dst, x)
		}
	}
	return append(dst, escByte, escTerm)
}

func floatKey(f float64) uint64 {
	if f == 0 {
		f = 0 // -0 and +0 are equal in SQL
	}
	bits := math.Float64bits(f)
	if bits&signFlip != 0 {
		return ^bits
	}
	return bits | signFlip
}

// decimalKey orders decimals by sign, then decimal exponent, then digits.
func decimalKey(d decimal.Decimal) []byte {
	switch d.Sign() {
	case 0:
		return []byte{0x01}
	}
	digits := new(big.Int).Abs(d.Coefficient()).String()
	exp := int64(d.Exponent())
	for len(digits) > 1 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	// value = 0.d1d2…dn × 10^e
	e := uint32(int64(len(digits)) + exp + math.MaxInt32)
	out := make([]byte, 0, 6+len(digits))
	if d.Sign() > 0 {
		out = append(out, 0x02)
		out = binary.BigEndian.AppendUint32(out, e)
		return append(out, digits...)
	}
	out = append(out, 0x00)
	out = binary.BigEndian.AppendUint32(out, ^e)
	for i := 0; i < len(digits); i++ {
		out = append(out, ^digits[i])
	}
	return append(out, 0xFF)
}

func weightString(sorter sql.CollationSorter, s string) []byte {
	out := make([]byte, 0, len(s)*4)
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if n == 0 {
			break
		}
		out = binary.BigEndian.AppendUint32(out, uint32(sorter(r))^0x80000000)
		s = s[n:]
	}
	return out
}

func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// The converters accept the Go type GMS uses for a column and fall back to
// the column type's own conversion for anything else.

var bg = context.Background()

func convert(c Column, v interface{}) (interface{}, error) {
	out, _, err := c.Type.Convert(bg, v)
	if err != nil {
		return nil, fmt.Errorf("codec: convert %T for %s: %w", v, c.Type, err)
	}
	return out, nil
}

func toInt64(c Column, v interface{}) (int64, error) {
	switch x := v.(type) {
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case types.Timespan:
		return int64(x), nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return 0, err
	}
	switch x := cv.(type) {
	case int8, int16, int32, int64, int, types.Timespan:
		return toInt64(c, x)
	}
	return 0, fmt.Errorf("codec: %T is not an integer for %s", cv, c.Type)
}

func toUint64(c Column, v interface{}) (uint64, error) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case uint:
		return uint64(x), nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return 0, err
	}
	switch x := cv.(type) {
	case uint8, uint16, uint32, uint64, uint:
		return toUint64(c, x)
	}
	return 0, fmt.Errorf("codec: %T is not unsigned for %s", cv, c.Type)
}

func toFloat64(c Column, v interface{}) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return 0, err
	}
	switch x := cv.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	return 0, fmt.Errorf("codec: %T is not a float for %s", cv, c.Type)
}

func toDecimal(c Column, v interface{}) (decimal.Decimal, error) {
	if d, ok := v.(decimal.Decimal); ok {
		return d, nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return decimal.Decimal{}, err
	}
	if d, ok := cv.(decimal.Decimal); ok {
		return d, nil
	}
	return decimal.Decimal{}, fmt.Errorf("codec: %T is not a decimal for %s", cv, c.Type)
}

func toTime(c Column, v interface{}) (time.Time, error) {
	if t, ok := v.(time.Time); ok {
		return t, nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := cv.(time.Time); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("codec: %T is not a time for %s", cv, c.Type)
}

func toString(c Column, v interface{}) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return "", err
	}
	switch x := cv.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case sql.StringWrapper:
		return x.Unwrap(bg)
	}
	return "", fmt.Errorf("codec: %T is not a string for %s", cv, c.Type)
}

func toBytes(c Column, v interface{}) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	}
	cv, err := convert(c, v)
	if err != nil {
		return nil, err
	}
	switch x := cv.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	case sql.BytesWrapper:
		return x.Unwrap(bg)
	}
	return nil, fmt.Errorf("codec: %T is not bytes for %s", cv, c.Type)
}

// opaqueBytes is the stored form of JSON and the rare kinds without a
// dedicated layout.
func opaqueBytes(c Column, v interface{}) ([]byte, error) {
	if c.Kind == KindJSON {
		w, ok := v.(sql.JSONWrapper)
		if !ok {
			cv, err := convert(c, v)
			if err != nil {
				return nil, err
			}
			if w, ok = cv.(sql.JSONWrapper); !ok {
				return nil, fmt.Errorf("codec: %T is not JSON", cv)
			}
		}
		// MySQL's own text form (with its spacing), so that values read back
		// print as MySQL prints them.
		return types.JsonToMySqlBytes(w)
	}
	sv, err := c.Type.SQL(sql.NewEmptyContext(), nil, v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T for %s: %w", v, c.Type, err)
	}
	return sv.ToBytes(), nil
}
