package planner

import "fmt"

// JoinStrategy is how the cluster runs a join whose matching rows may
// live in different partitions (co-located and reference-table joins
// never get here: they run on the partitions as they are).
type JoinStrategy int

const (
	// GatherJoin sends both sides to the aggregator, which joins them.
	GatherJoin JoinStrategy = iota
	// BroadcastLeft copies the left side to every leaf; each partition of
	// the right side joins with it.
	BroadcastLeft
	// BroadcastRight copies the right side to every leaf.
	BroadcastRight
	// Repartition sends every row of both sides, through the aggregator,
	// to the leaf its join-key hash picks; each leaf joins its share.
	Repartition
)

func (s JoinStrategy) String() string {
	switch s {
	case BroadcastLeft:
		return "broadcast left"
	case BroadcastRight:
		return "broadcast right"
	case Repartition:
		return "repartition"
	}
	return "gather"
}

// JoinShape is what the choice of a join strategy depends on.
type JoinShape struct {
	LeftRows, RightRows float64 // estimated rows each side contributes
	Leaves              int     // leaves that would run the join
	LeftOuter           bool    // LEFT JOIN: only the right side may be copied
	Hashable            bool    // an equality whose values hash alike on both sides
	BroadcastMax        float64 // the largest side worth copying to every leaf
}

func (s JoinShape) String() string {
	return fmt.Sprintf("left ~%.0f rows, right ~%.0f rows, %d leaves", s.LeftRows, s.RightRows, s.Leaves)
}

// ChooseJoin picks the strategy that moves the fewest rows while keeping
// the join itself on the leaves. Copying a side to every leaf moves it
// (1 + leaves) times (in to the aggregator, out to each leaf); a
// repartition moves both sides twice. The aggregator joins only when
// neither is possible: no usable equality and no side small enough.
func ChooseJoin(s JoinShape) JoinStrategy {
	best, cost := GatherJoin, -1.0
	consider := func(st JoinStrategy, c float64) {
		if cost < 0 || c < cost {
			best, cost = st, c
		}
	}
	copies := float64(1 + s.Leaves)
	if s.RightRows <= s.BroadcastMax {
		consider(BroadcastRight, s.RightRows*copies)
	}
	if !s.LeftOuter && s.LeftRows <= s.BroadcastMax {
		consider(BroadcastLeft, s.LeftRows*copies)
	}
	if s.Hashable {
		consider(Repartition, 2*(s.LeftRows+s.RightRows))
	}
	return best
}
