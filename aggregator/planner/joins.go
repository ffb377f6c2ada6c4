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
	// LookupLeft reads the left side on the aggregator and sends its
	// distinct join keys to the right side's partitions as an IN list
	// (answered from an index on the key where there is one); the
	// aggregator joins the matching rows. Nothing is written to the leaves.
	LookupLeft
	// LookupRight reads the right side and looks its keys up in the left.
	LookupRight
)

func (s JoinStrategy) String() string {
	switch s {
	case BroadcastLeft:
		return "broadcast left"
	case BroadcastRight:
		return "broadcast right"
	case Repartition:
		return "repartition"
	case LookupLeft:
		return "lookup left"
	case LookupRight:
		return "lookup right"
	}
	return "gather"
}

// JoinShape is what the choice of a join strategy depends on.
type JoinShape struct {
	LeftRows, RightRows float64 // estimated rows each side contributes
	Leaves              int     // leaves that would run the join
	LeftOuter           bool    // LEFT JOIN: only the right side may be copied
	Hashable            bool    // an equality whose values hash alike on both sides
	Lookupable          bool    // such an equality whose values can travel as SQL literals
	BroadcastMax        float64 // the largest side worth copying to every leaf
	LookupMax           float64 // the largest side worth reading to look its keys up
}

func (s JoinShape) String() string {
	return fmt.Sprintf("left ~%.0f rows, right ~%.0f rows, %d leaves", s.LeftRows, s.RightRows, s.Leaves)
}

// ChooseJoin picks how to run the join. A side small enough to look up
// (at most LookupMax rows, never the inner side of a LEFT JOIN) is read
// once and its keys sent as an IN list: that moves no more than copying
// it to every leaf would, and creates and fills no scratch table, which
// costs more than the rows themselves for a small side. Otherwise it
// picks the strategy that moves the fewest rows while keeping the join on
// the leaves. Copying a side to every leaf moves it (1 + leaves) times (in
// to the aggregator, out to each leaf); a repartition moves both sides
// twice. The aggregator joins only when neither is possible: no usable
// equality and no side small enough.
func ChooseJoin(s JoinShape) JoinStrategy {
	if s.Lookupable {
		left := s.LeftRows <= s.LookupMax
		right := !s.LeftOuter && s.RightRows <= s.LookupMax
		switch {
		case left && (!right || s.LeftRows <= s.RightRows):
			return LookupLeft
		case right:
			return LookupRight
		}
	}
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
