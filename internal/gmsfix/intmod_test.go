package gmsfix

import (
	"fmt"
	"math"
	"testing"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

// TestIntegerModMatchesGMS: the int64 path gives GMS's own values and
// type, signs, zero and the extremes included.
func TestIntegerModMatchesGMS(t *testing.T) {
	ctx := sql.NewEmptyContext()
	vals := []int64{0, 1, -1, 7, -7, 100, -100, 12345, math.MaxInt64, math.MinInt64, math.MaxInt32}
	for _, l := range vals {
		for _, r := range vals {
			for _, typs := range [][2]sql.Type{{types.Int64, types.Int64}, {types.Int32, types.Int8}} {
				lv, rv := convert(typs[0], l), convert(typs[1], r)
				if lv == nil || rv == nil {
					continue
				}
				m := expression.NewMod(expression.NewLiteral(lv, typs[0]), expression.NewLiteral(rv, typs[1]))
				fast := &intMod{Mod: m, typ: m.Type()}
				want, werr := m.Eval(ctx, nil)
				if (l == math.MinInt64 || r == math.MinInt64) && r != 0 {
					// GMS's decimal conversion gets -2^63 wrong (MaxInt64 %
					// MinInt64 gave -1); MySQL's answer is the int64 one
					want = decimal.NewFromInt(l % r)
				}
				got, gerr := fast.Eval(ctx, nil)
				if fmt.Sprint(werr) != fmt.Sprint(gerr) || fmt.Sprintf("%T %v", want, want) != fmt.Sprintf("%T %v", got, got) {
					t.Errorf("%v %% %v (%v, %v): got %T %v, %v; want %T %v, %v", lv, rv, typs[0], typs[1], got, got, gerr, want, want, werr)
				}
				if w, ok := want.(decimal.Decimal); ok && w.Exponent() != got.(decimal.Decimal).Exponent() {
					t.Errorf("%v %% %v: exponent %d, want %d", lv, rv, got.(decimal.Decimal).Exponent(), w.Exponent())
				}
				if !fast.Type().Equals(m.Type()) {
					t.Errorf("type %v, want %v", fast.Type(), m.Type())
				}
			}
		}
	}
}

func convert(t sql.Type, v int64) interface{} {
	switch t {
	case types.Int32:
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil
		}
		return int32(v)
	case types.Int8:
		if v < math.MinInt8 || v > math.MaxInt8 {
			return nil
		}
		return int8(v)
	}
	return v
}
