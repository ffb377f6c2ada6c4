package planner

import (
	"math"
	"testing"
)

func TestChooseJoin(t *testing.T) {
	const max = 100_000
	for _, tc := range []struct {
		name  string
		shape JoinShape
		want  JoinStrategy
	}{
		{"small right side is copied", JoinShape{LeftRows: 1e6, RightRows: 100, Leaves: 4, Hashable: true, BroadcastMax: max}, BroadcastRight},
		{"small left side is copied", JoinShape{LeftRows: 100, RightRows: 1e6, Leaves: 4, Hashable: true, BroadcastMax: max}, BroadcastLeft},
		{"outer join never copies its preserved side", JoinShape{LeftRows: 100, RightRows: 1e6, Leaves: 4, LeftOuter: true, Hashable: true, BroadcastMax: max}, Repartition},
		{"two big sides are repartitioned", JoinShape{LeftRows: 5e5, RightRows: 4e5, Leaves: 4, Hashable: true, BroadcastMax: max}, Repartition},
		{"copying to many leaves costs more than a repartition", JoinShape{LeftRows: 1000, RightRows: 900, Leaves: 16, Hashable: true, BroadcastMax: max}, Repartition},
		{"no usable equality: copy the small side", JoinShape{LeftRows: 1000, RightRows: 900, Leaves: 16, BroadcastMax: max}, BroadcastRight},
		{"no usable equality, both sides too big: the aggregator joins", JoinShape{LeftRows: 5e5, RightRows: 4e5, Leaves: 4, BroadcastMax: max}, GatherJoin},
		{"outer join with a big right side and no equality", JoinShape{LeftRows: 10, RightRows: 4e5, Leaves: 4, LeftOuter: true, BroadcastMax: max}, GatherJoin},
		{"empty sides: copying nothing is free", JoinShape{Leaves: 2, Hashable: true, BroadcastMax: max}, BroadcastRight},
		{"a side of unknown size is never copied", JoinShape{LeftRows: 10, RightRows: math.Inf(1), Leaves: 4, LeftOuter: true, Hashable: true, BroadcastMax: max}, Repartition},
		{"both unknown, no equality: the aggregator joins", JoinShape{LeftRows: math.Inf(1), RightRows: math.Inf(1), Leaves: 4, BroadcastMax: max}, GatherJoin},
	} {
		if got := ChooseJoin(tc.shape); got != tc.want {
			t.Errorf("%s (%v): got %v, want %v", tc.name, tc.shape, got, tc.want)
		}
	}
}
