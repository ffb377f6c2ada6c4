package codec

import (
	"bytes"
	"context"
	"math"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/vt/proto/query"
	"github.com/shopspring/decimal"
)

func mustType(t sql.Type, err error) sql.Type {
	if err != nil {
		panic(err)
	}
	return t
}

var ciVarchar = mustType(types.CreateString(query.Type_VARCHAR, 100, sql.Collation_utf8mb4_0900_ai_ci))
var binVarchar = mustType(types.CreateString(query.Type_VARCHAR, 100, sql.Collation_utf8mb4_0900_bin))

// orderCases lists values per type in no particular order; the test sorts
// them with the type's Compare and checks that encoded keys sort the same.
var orderCases = []struct {
	name string
	typ  sql.Type
	vals []interface{}
}{
	{"int64", types.Int64, []interface{}{int64(0), int64(-1), int64(1), int64(math.MinInt64), int64(math.MaxInt64), int64(-1000), int64(77)}},
	{"int8", types.Int8, []interface{}{int8(-128), int8(127), int8(0), int8(-1), int8(5)}},
	{"uint64", types.Uint64, []interface{}{uint64(0), uint64(math.MaxUint64), uint64(1), uint64(1 << 40)}},
	{"float64", types.Float64, []interface{}{0.0, -0.5, 0.5, math.Inf(1), math.Inf(-1), -1e300, 1e-300, 3.25, -3.25}},
	{"decimal", types.MustCreateDecimalType(30, 10), []interface{}{
		decimal.RequireFromString("0"), decimal.RequireFromString("1.5"), decimal.RequireFromString("-1.5"),
		decimal.RequireFromString("10"), decimal.RequireFromString("9.99"), decimal.RequireFromString("-10"),
		decimal.RequireFromString("0.001"), decimal.RequireFromString("-0.001"), decimal.RequireFromString("123456789.123"),
		decimal.RequireFromString("-0.12"), decimal.RequireFromString("-0.123"), decimal.RequireFromString("0.12"), decimal.RequireFromString("0.123"),
		decimal.RequireFromString("100"), decimal.RequireFromString("1e2"),
	}},
	{"varchar_bin", binVarchar, []interface{}{"", "a", "ab", "b", "B", "a\x00b", "a\x00", "zz", "é", "abc"}},
	{"varchar_ci", ciVarchar, []interface{}{"", "a", "B", "ab", "Ab", "b", "abc", "Z", "é"}},
	{"blob", types.Blob, []interface{}{[]byte{}, []byte{0}, []byte{0, 0}, []byte{1}, []byte{0xFF}, []byte{0, 0xFF}}},
	{"datetime", types.DatetimeMaxPrecision, []interface{}{
		time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 1000, time.UTC),
	}},
	{"time", types.Time, []interface{}{types.Timespan(0), types.Timespan(-5), types.Timespan(86400000000), types.Timespan(3)}},
}

func TestKeyOrderMatchesCompare(t *testing.T) {
	ctx := context.Background()
	for _, tc := range orderCases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewColumn(tc.typ)
			vals := append([]interface{}{nil}, tc.vals...)
			type enc struct {
				v interface{}
				k []byte
			}
			encs := make([]enc, len(vals))
			for i, v := range vals {
				k, err := AppendKey(nil, c, v, 0)
				if err != nil {
					t.Fatalf("encode %v: %v", v, err)
				}
				n, err := KeyLen(c, append(k, 0x42, 0x00)) // trailing bytes of a next column
				if err != nil || n != len(k) {
					t.Fatalf("KeyLen(%v) = %d, %v; want %d", v, n, err, len(k))
				}
				encs[i] = enc{v, k}
			}
			// NULL sorts before every value in an index (GMS ranges start at
			// BelowNull), although Type.Compare puts it last.
			for _, e := range encs[1:] {
				if bytes.Compare(encs[0].k, e.k) >= 0 {
					t.Errorf("NULL key does not sort before %v", e.v)
				}
			}
			encs = encs[1:]
			for i := range encs {
				for j := range encs {
					want, err := tc.typ.Compare(ctx, encs[i].v, encs[j].v)
					if err != nil {
						t.Fatal(err)
					}
					got := bytes.Compare(encs[i].k, encs[j].k)
					if sign(got) != sign(want) {
						t.Errorf("order of %v vs %v: keys say %d, type says %d", encs[i].v, encs[j].v, got, want)
					}
				}
			}
		})
	}
}

func TestCompositeKeysAreConcatenations(t *testing.T) {
	// (a, b) pairs: prefix-free columns make tuple order equal byte order.
	a := NewColumn(binVarchar)
	b := NewColumn(types.Int64)
	tuples := [][2]interface{}{{"a", int64(2)}, {"a", int64(10)}, {"ab", int64(-1)}, {"a\x00", int64(0)}, {nil, int64(5)}, {"", int64(3)}}
	type kt struct {
		k []byte
		t [2]interface{}
	}
	var ks []kt
	for _, tu := range tuples {
		k, _ := AppendKey(nil, a, tu[0], 0)
		k, _ = AppendKey(k, b, tu[1], 0)
		ks = append(ks, kt{k, tu})
	}
	sort.Slice(ks, func(i, j int) bool { return bytes.Compare(ks[i].k, ks[j].k) < 0 })
	var got []string
	for _, x := range ks {
		s, _ := x.t[0].(string)
		if x.t[0] == nil {
			s = "NULL"
		}
		got = append(got, s)
	}
	want := []string{"NULL", "", "a", "a", "a\x00", "ab"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("tuple order = %q, want %q", got, want)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want []byte }{
		{[]byte{1, 2, 3}, []byte{1, 2, 4}},
		{[]byte{1, 0xFF}, []byte{2}},
		{[]byte{0xFF, 0xFF}, nil},
	}
	for _, c := range cases {
		if got := PrefixEnd(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", c.in, got, c.want)
		}
	}
}

func TestRowRoundTrip(t *testing.T) {
	enumT := types.MustCreateEnumType([]string{"x", "y"}, sql.Collation_Default)
	schema := sql.Schema{
		{Name: "i8", Type: types.Int8}, {Name: "i32", Type: types.Int32}, {Name: "i64", Type: types.Int64},
		{Name: "u8", Type: types.Uint8}, {Name: "u64", Type: types.Uint64},
		{Name: "f32", Type: types.Float32}, {Name: "f64", Type: types.Float64},
		{Name: "dec", Type: types.MustCreateDecimalType(20, 4)},
		{Name: "s", Type: ciVarchar}, {Name: "b", Type: types.Blob},
		{Name: "dt", Type: types.DatetimeMaxPrecision}, {Name: "d", Type: types.Date},
		{Name: "tm", Type: types.Time}, {Name: "y", Type: types.Year},
		{Name: "e", Type: enumT}, {Name: "j", Type: types.JSON},
		{Name: "n", Type: types.Int64, Nullable: true},
	}
	row := sql.Row{
		int8(-3), int32(1 << 20), int64(-1 << 40), uint8(200), uint64(math.MaxUint64),
		float32(1.5), -2.25, decimal.RequireFromString("-12.3400"),
		"héllo", []byte{0, 1, 2}, time.Date(2020, 5, 17, 1, 2, 3, 456000, time.UTC), time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC),
		types.Timespan(-3600000000), int16(2024), uint16(2), types.MustJSON(`{"a": [1, 2, "x"]}`), nil,
	}
	rc := NewRowCodec(schema)
	b, err := rc.Encode(nil, row)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rc.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, col := range schema {
		cmp, err := col.Type.Compare(ctx, row[i], got[i])
		if err != nil || cmp != 0 {
			t.Errorf("column %s: wrote %v (%T), read %v (%T)", col.Name, row[i], row[i], got[i], got[i])
		}
	}
	if d := got[7].(decimal.Decimal); d.String() != "-12.34" || d.Exponent() != -4 {
		t.Errorf("decimal lost its scale: %s exp %d", d, d.Exponent())
	}
	// Projection decodes a subset in order.
	dst := make(sql.Row, 3)
	if err := rc.DecodeInto(b, dst, []int{2, 8, 16}); err != nil {
		t.Fatal(err)
	}
	if dst[0] != int64(-1<<40) || dst[1] != "héllo" || dst[2] != nil {
		t.Errorf("projection = %v", dst)
	}
	// Encoding is canonical: decode then encode gives the same bytes.
	b2, err := rc.Encode(nil, got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("re-encoding differs:\n%x\n%x", b, b2)
	}
}

func TestRandomIntAndStringOrder(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	ic := NewColumn(types.Int64)
	sc := NewColumn(ciVarchar)
	letters := []rune("aAbBzZ é\x00")
	for i := 0; i < 2000; i++ {
		x, y := r.Int63()-r.Int63(), r.Int63()-r.Int63()
		kx, _ := AppendKey(nil, ic, x, 0)
		ky, _ := AppendKey(nil, ic, y, 0)
		if sign(bytes.Compare(kx, ky)) != sign(cmp64(x, y)) {
			t.Fatalf("int order %d vs %d", x, y)
		}
		sx, sy := randString(r, letters), randString(r, letters)
		want, _ := ciVarchar.Compare(context.Background(), sx, sy)
		ksx, _ := AppendKey(nil, sc, sx, 0)
		ksy, _ := AppendKey(nil, sc, sy, 0)
		if sign(bytes.Compare(ksx, ksy)) != sign(want) {
			t.Fatalf("string order %q vs %q", sx, sy)
		}
	}
}

func randString(r *rand.Rand, letters []rune) string {
	n := r.Intn(5)
	out := make([]rune, n)
	for i := range out {
		out[i] = letters[r.Intn(len(letters))]
	}
	return string(out)
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}
