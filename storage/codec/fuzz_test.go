package codec

import (
	"bytes"
	"context"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
)

// fuzzSchema covers every kind of column the row codec encodes.
var fuzzSchema = sql.Schema{
	{Name: "i8", Type: types.Int8}, {Name: "i64", Type: types.Int64}, {Name: "u64", Type: types.Uint64},
	{Name: "f64", Type: types.Float64}, {Name: "dec", Type: types.MustCreateDecimalType(20, 4)},
	{Name: "s", Type: ciVarchar}, {Name: "b", Type: types.Blob},
	{Name: "dt", Type: types.DatetimeMaxPrecision}, {Name: "tm", Type: types.Time},
	{Name: "j", Type: types.JSON}, {Name: "n", Type: types.Int64, Nullable: true},
}

// FuzzRowDecode: decoding arbitrary bytes (a corrupt or hostile value
// from disk or a replication stream) returns a row or an error, never
// panics; a row it returns encodes back to a row that decodes the same.
func FuzzRowDecode(f *testing.F) {
	rc := NewRowCodec(fuzzSchema)
	good, err := rc.Encode(nil, sql.Row{int8(1), int64(-5), uint64(math.MaxUint64), 2.5, nil, "x", []byte{0}, nil, nil, nil, nil})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		row, err := rc.Decode(b)
		if err != nil {
			return
		}
		again, err := rc.Encode(nil, row)
		if err != nil {
			return // decoded values a table could never hold (e.g. invalid JSON text)
		}
		row2, err := rc.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded row does not decode: %v", err)
		}
		ctx := context.Background()
		for i, c := range fuzzSchema {
			if f1, ok := row[i].(float64); ok && math.IsNaN(f1) {
				if f2, ok := row2[i].(float64); ok && math.IsNaN(f2) {
					continue // NaN equals nothing, itself included
				}
			}
			if cmp, err := c.Type.Compare(ctx, row[i], row2[i]); err != nil || cmp != 0 {
				t.Fatalf("column %s: %v then %v", c.Name, row[i], row2[i])
			}
		}
	})
}

// FuzzKeyLen: measuring an encoded key in arbitrary bytes never panics
// and never reports a length past the bytes.
func FuzzKeyLen(f *testing.F) {
	cols := []Column{NewColumn(types.Int64), NewColumn(types.Float64), NewColumn(types.MustCreateDecimalType(30, 10)),
		NewColumn(ciVarchar), NewColumn(binVarchar), NewColumn(types.Blob), NewColumn(types.DatetimeMaxPrecision)}
	for _, c := range cols {
		k, err := AppendKey(nil, c, nil, 0)
		if err == nil {
			f.Add(k)
		}
	}
	k, _ := AppendKey(nil, NewColumn(binVarchar), "a\x00b", 0)
	f.Add(k)
	f.Add([]byte{0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range cols {
			n, err := KeyLen(c, b)
			if err == nil && (n < 0 || n > len(b)) {
				t.Fatalf("KeyLen(%v, %x) = %d of %d bytes", c, b, n, len(b))
			}
		}
	})
}

// FuzzKeyOrder: for two strings and two integers, the order of their
// encoded keys is the order of the values (what index range scans rely on).
func FuzzKeyOrder(f *testing.F) {
	f.Add("a", "b", int64(1), int64(-1))
	f.Add("", "\x00", int64(math.MinInt64), int64(math.MaxInt64))
	f.Add("a\x00", "a", int64(0), int64(0))
	bin, ci, i64 := NewColumn(binVarchar), NewColumn(ciVarchar), NewColumn(types.Int64)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, s1, s2 string, i1, i2 int64) {
		if !utf8.ValidString(s1) || !utf8.ValidString(s2) {
			return // the engine refuses such values for utf8mb4 columns before they reach a key
		}
		for _, c := range []struct {
			col  Column
			typ  sql.Type
			a, b interface{}
		}{{bin, binVarchar, s1, s2}, {ci, ciVarchar, s1, s2}, {i64, types.Int64, i1, i2}} {
			ka, err1 := AppendKey(nil, c.col, c.a, 0)
			kb, err2 := AppendKey(nil, c.col, c.b, 0)
			if err1 != nil || err2 != nil {
				continue // not a value of the type (e.g. invalid UTF-8)
			}
			want, err := c.typ.Compare(ctx, c.a, c.b)
			if err != nil {
				continue
			}
			if got := bytes.Compare(ka, kb); sign(got) != sign(want) {
				t.Fatalf("%v vs %v: keys compare %d, values %d", c.a, c.b, got, want)
			}
		}
	})
}
