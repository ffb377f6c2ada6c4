package sharding

import (
	"testing"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/vt/proto/query"
)

// The partition of a value must never change: these pin the definition.
func TestPinnedPartitions(t *testing.T) {
	ci := types.MustCreateString(query.Type_VARCHAR, 50, sql.Collation_utf8mb4_0900_ai_ci)
	cases := []struct {
		types []sql.Type
		vals  []interface{}
	}{
		{[]sql.Type{types.Int64}, []interface{}{int64(1)}},
		{[]sql.Type{types.Int64}, []interface{}{int64(2)}},
		{[]sql.Type{types.Int64}, []interface{}{int64(42)}},
		{[]sql.Type{types.Int32}, []interface{}{"42"}},
		{[]sql.Type{types.Text}, []interface{}{"hello"}},
		{[]sql.Type{ci}, []interface{}{"Hello"}},
		{[]sql.Type{types.Int64, types.Text}, []interface{}{int64(7), "x"}},
	}
	got := make([]int, len(cases))
	for i, c := range cases {
		p, err := NewKey(c.types).Partition(c.vals, 16)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = p
	}
	t.Logf("partitions: %v", got)
	want := []int{pin1, pin2, pin42, pin42, pinHello, pinHelloCI, pinPair}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("case %d (%v): partition %d, pinned %d", i, cases[i].vals, got[i], want[i])
		}
	}
	// equal under the collation, equal partition
	a, _ := NewKey([]sql.Type{ci}).Partition([]interface{}{"hello"}, 16)
	if a != got[5] {
		t.Errorf("'hello' and 'Hello' in a _ci column: partitions %d and %d", a, got[5])
	}
}

func TestSpread(t *testing.T) {
	k := NewKey([]sql.Type{types.Int64})
	counts := make([]int, 8)
	for i := int64(0); i < 8000; i++ {
		p, _ := k.Partition([]interface{}{i}, 8)
		counts[p]++
	}
	for p, c := range counts {
		if c < 850 || c > 1150 {
			t.Errorf("partition %d got %d of 8000 rows", p, c)
		}
	}
}

const (
	pin1, pin2, pin42, pinHello, pinHelloCI, pinPair = 15, 1, 14, 11, 6, 7
)
