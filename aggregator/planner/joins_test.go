package planner

import (
	"math"
	"testing"
)

func TestChooseJoin(t *testing.T) {
	const max, lookup = 100_000, 10_000
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
		{"a small right side is looked up", JoinShape{LeftRows: 1e6, RightRows: 1000, Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, LookupRight},
		{"a small left side is looked up", JoinShape{LeftRows: 1000, RightRows: 1e6, Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, LookupLeft},
		{"the smaller of two small sides is looked up", JoinShape{LeftRows: 900, RightRows: 800, Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, LookupRight},
		{"equal sides: the left is looked up", JoinShape{LeftRows: 800, RightRows: 800, Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, LookupLeft},
		{"a LEFT JOIN looks up only its preserved side", JoinShape{LeftRows: 1e6, RightRows: 10, Leaves: 4, LeftOuter: true, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, BroadcastRight},
		{"a LEFT JOIN with a small preserved side looks it up", JoinShape{LeftRows: 10, RightRows: 1e6, Leaves: 4, LeftOuter: true, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, LookupLeft},
		{"past lookup_join_max_rows the small side is copied", JoinShape{LeftRows: 1e6, RightRows: 5e4, Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, BroadcastRight},
		{"an equality that cannot travel as literals is not looked up", JoinShape{LeftRows: 1e6, RightRows: 100, Leaves: 4, Hashable: true, BroadcastMax: max, LookupMax: lookup}, BroadcastRight},
		{"lookup_join_max_rows = 0 looks up empty sides only", JoinShape{LeftRows: 1e6, RightRows: 100, Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max}, BroadcastRight},
		{"a side of unknown size is never looked up", JoinShape{LeftRows: math.Inf(1), RightRows: math.Inf(1), Leaves: 4, Hashable: true, Lookupable: true, BroadcastMax: max, LookupMax: lookup}, Repartition},
	} {
		if got := ChooseJoin(tc.shape); got != tc.want {
			t.Errorf("%s (%v): got %v, want %v", tc.name, tc.shape, got, tc.want)
		}
	}
}
