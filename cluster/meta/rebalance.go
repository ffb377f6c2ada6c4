package meta

import (
	"slices"
	"sort"
)

// Rebalance planning (003_00509c68988978d3.txt, "Rebalancing the
// Cluster"): a pure function from the metadata to phased steps. A
// redundancy-1 database is balanced when every online leaf holds an equal
// number of partitions (±1); a redundancy-2 database when every pair holds
// an equal number (±1), every partition has a replica on its master's
// pair, and within a pair each leaf holds equal numbers of masters (±1).
//
// Phases, as in the seed's example (steps of a phase can run in parallel):
//
//	1 COPY PARTITION     new copies: missing replicas, and the copies of moving partitions
//	2 PROMOTE PARTITION  a moving partition's master role goes to its new copy
//	3 DROP PARTITION     the copies a move left behind
//	4 PROMOTE PARTITION  masters split evenly within each pair
//
// A copy is dropped only once another copy is master, so no plan ever
// drops the last copy of a partition. Partitions without an online master
// are left alone (ATTACH LEAF or REBALANCE … FORCE deal with them).

// Phases of a rebalance plan.
const (
	PhaseCopy        = 1
	PhaseMove        = 2
	PhaseDrop        = 3
	PhaseBalancePair = 4
)

// PlanRebalance is the plan that balances d (REBALANCE PARTITIONS).
func PlanRebalance(st *State, d *Database) []Step {
	var steps []Step
	if st.Redundancy() >= 2 {
		steps = planRedundant(st, d)
	} else {
		steps = planSingle(st, d)
	}
	sortSteps(steps)
	return steps
}

// LostPartitions lists the ordinals of d's partitions that have neither a
// master nor a replica (nor a candidate copy) on an online leaf: their data is offline until a
// leaf holding a copy is attached again.
func LostPartitions(st *State, d *Database) []int {
	var lost []int
	for _, p := range d.Partitions {
		if !st.online(p.Master) && !slices.ContainsFunc(p.Replicas, st.online) && !slices.ContainsFunc(p.Candidates, st.online) {
			lost = append(lost, p.Ordinal)
		}
	}
	return lost
}

// PlanRebalanceForce is REBALANCE PARTITIONS … FORCE: a partition without
// master whose replica or candidate copy is online gets it as master (ATTACH PARTITION, phase
// 1), each lost partition is replaced by an empty master (CREATE PARTITION,
// phase 1) on the
// least loaded online leaf (redundancy 2: the least loaded leaf of the
// least loaded pair), then the result is balanced as PlanRebalance does,
// one phase later. The lost copies' data is given up: if their leaves
// return, those copies are orphans.
func PlanRebalanceForce(st *State, d *Database) []Step {
	lost := LostPartitions(st, d)
	var candidates []string
	pairOf := map[string]string{}
	if st.Redundancy() >= 2 {
		for _, p := range st.Pairs() {
			candidates = append(candidates, p[0], p[1])
			pairOf[p[0]], pairOf[p[1]] = p[0], p[0]
		}
	}
	if len(candidates) == 0 {
		for _, l := range st.Leaves {
			if l.State == LeafOnline {
				candidates = append(candidates, l.Addr())
				pairOf[l.Addr()] = l.Addr()
			}
		}
	}
	if len(candidates) == 0 {
		return PlanRebalance(st, d)
	}
	sort.Strings(candidates)
	perLeaf, perUnit := map[string]int{}, map[string]int{}
	for _, p := range d.Partitions {
		if st.online(p.Master) {
			perLeaf[p.Master]++
			perUnit[pairOf[p.Master]]++
		}
	}
	var steps []Step
	// a partition without master whose replica or candidate copy is
	// online (its promotion failed) gets that copy as master
	for _, p := range d.Partitions {
		if !st.online(p.Master) {
			whole := append(append([]string(nil), p.Replicas...), p.Candidates...)
			if i := slices.IndexFunc(whole, st.online); i >= 0 {
				steps = append(steps, Step{Action: ActionAttach, DB: d.Name, Ordinal: p.Ordinal, Target: whole[i], Phase: PhaseCopy, AsMaster: true})
			}
		}
	}
	for _, o := range lost {
		to := candidates[0]
		for _, c := range candidates[1:] {
			if perUnit[pairOf[c]] < perUnit[pairOf[to]] ||
				perUnit[pairOf[c]] == perUnit[pairOf[to]] && perLeaf[c] < perLeaf[to] {
				to = c
			}
		}
		perLeaf[to]++
		perUnit[pairOf[to]]++
		steps = append(steps, Step{Action: ActionCreate, DB: d.Name, Ordinal: o, Target: to, Phase: PhaseCopy})
	}
	if len(steps) == 0 {
		return PlanRebalance(st, d)
	}
	rest := PlanRebalance(st, ApplySteps(d, steps))
	for i := range rest {
		rest[i].Phase++
	}
	return append(steps, rest...)
}

// PlanRestoreRedundancy gives every partition of d that lacks one a
// replica on its master's pair (RESTORE REDUNDANCY); it moves nothing.
func PlanRestoreRedundancy(st *State, d *Database) []Step {
	if st.Redundancy() < 2 {
		return nil
	}
	steps := restoreSteps(st, d)
	sortSteps(steps)
	return steps
}

func (s *State) online(addr string) bool {
	l, ok := s.Leaf(addr)
	return ok && l.State == LeafOnline
}

// share splits n items over units: the units holding the most (then the
// lowest address) get the remainder, which moves the least.
func share(units []string, held map[string]int, n int) map[string]int {
	order := append([]string(nil), units...)
	sort.SliceStable(order, func(i, j int) bool {
		if held[order[i]] != held[order[j]] {
			return held[order[i]] > held[order[j]]
		}
		return order[i] < order[j]
	})
	target := map[string]int{}
	for i, u := range order {
		target[u] = n / len(units)
		if i < n%len(units) {
			target[u]++
		}
	}
	return target
}

// moves pairs the surplus items of over-target units (their highest
// ordinals) with the under-target units (lowest address first).
func moves(units []string, items map[string][]int, target map[string]int) (ordinals []int, from, to []string) {
	var surplus []struct {
		ordinal int
		unit    string
	}
	for _, u := range units {
		own := append([]int(nil), items[u]...)
		sort.Ints(own)
		for _, o := range own[min(target[u], len(own)):] {
			surplus = append(surplus, struct {
				ordinal int
				unit    string
			}{o, u})
		}
	}
	sort.Slice(surplus, func(i, j int) bool { return surplus[i].ordinal < surplus[j].ordinal })
	i := 0
	for _, u := range units {
		for need := target[u] - len(items[u]); need > 0 && i < len(surplus); need-- {
			ordinals = append(ordinals, surplus[i].ordinal)
			from = append(from, surplus[i].unit)
			to = append(to, u)
			i++
		}
	}
	return ordinals, from, to
}

func planSingle(st *State, d *Database) []Step {
	var leaves []string
	for _, l := range st.Leaves {
		if l.State == LeafOnline {
			leaves = append(leaves, l.Addr())
		}
	}
	sort.Strings(leaves)
	if len(leaves) == 0 {
		return nil
	}
	items := map[string][]int{}
	held := map[string]int{}
	n := 0
	for _, p := range d.Partitions {
		if p.Master != "" && st.online(p.Master) {
			items[p.Master] = append(items[p.Master], p.Ordinal)
			held[p.Master]++
			n++
		}
	}
	var steps []Step
	ordinals, from, to := moves(leaves, items, share(leaves, held, n))
	for i, o := range ordinals {
		steps = append(steps,
			Step{Action: ActionCopy, DB: d.Name, Ordinal: o, Target: to[i], Phase: PhaseCopy},
			Step{Action: ActionPromote, DB: d.Name, Ordinal: o, Target: to[i], Phase: PhaseMove},
			Step{Action: ActionDrop, DB: d.Name, Ordinal: o, Target: from[i], Phase: PhaseDrop})
	}
	return steps
}

// restoreSteps copies a partition to its master's pair where that copy is
// missing.
func restoreSteps(st *State, d *Database) []Step {
	var steps []Step
	for _, p := range d.Partitions {
		if p.Master == "" || !st.online(p.Master) {
			continue
		}
		pair := st.PairOf(p.Master)
		if pair == "" || !st.online(pair) || slices.Contains(p.Replicas, pair) {
			continue
		}
		steps = append(steps, Step{Action: ActionCopy, DB: d.Name, Ordinal: p.Ordinal, Target: pair, Phase: PhaseCopy})
	}
	return steps
}

func planRedundant(st *State, d *Database) []Step {
	pairs := st.Pairs()
	if len(pairs) == 0 {
		return nil
	}
	steps := restoreSteps(st, d)
	pairOf := unitOf(pairs)
	var units []string
	for _, p := range pairs {
		units = append(units, p[0])
	}
	sort.Strings(units)
	items := map[string][]int{}
	held := map[string]int{}
	masters := map[string]int{} // per leaf, to choose where a moved master goes
	n := 0
	for _, p := range d.Partitions {
		u, ok := pairOf[p.Master]
		if !ok {
			continue // no master, or its pair is incomplete: not movable now
		}
		items[u] = append(items[u], p.Ordinal)
		held[u]++
		masters[p.Master]++
		n++
	}
	ordinals, _, to := moves(units, items, share(units, held, n))
	for i, o := range ordinals {
		p := d.Partitions[o]
		x, y := to[i], st.PairOf(to[i])
		if masters[y] < masters[x] {
			x, y = y, x
		}
		masters[x]++
		masters[p.Master]--
		steps = slices.DeleteFunc(steps, func(s Step) bool { return s.Ordinal == o }) // no replica in the old pair
		steps = append(steps,
			Step{Action: ActionCopy, DB: d.Name, Ordinal: o, Target: x, Phase: PhaseCopy},
			Step{Action: ActionCopy, DB: d.Name, Ordinal: o, Target: y, Phase: PhaseCopy},
			Step{Action: ActionPromote, DB: d.Name, Ordinal: o, Target: x, Phase: PhaseMove},
			Step{Action: ActionDrop, DB: d.Name, Ordinal: o, Target: p.Master, Phase: PhaseDrop})
		for _, r := range p.Replicas {
			steps = append(steps, Step{Action: ActionDrop, DB: d.Name, Ordinal: o, Target: r, Phase: PhaseDrop})
		}
	}
	after := ApplySteps(d, steps)
	for _, p := range pairs {
		steps = append(steps, BalancePair(after, p[0], p[1], PhaseBalancePair)...)
	}
	return steps
}

// Balanced reports whether d is balanced as PlanRebalance defines it, over
// the partitions that have an online master.
func Balanced(st *State, d *Database) bool {
	if st.Redundancy() < 2 {
		count := map[string]int{}
		for _, l := range st.Leaves {
			if l.State == LeafOnline {
				count[l.Addr()] = 0
			}
		}
		for _, p := range d.Partitions {
			if p.Master != "" && st.online(p.Master) {
				count[p.Master]++
			}
		}
		return spread(count) <= 1
	}
	perPair := map[string]int{}
	perLeaf := map[string]int{}
	pairs := st.Pairs()
	pairOf := unitOf(pairs)
	for _, p := range pairs {
		perPair[p[0]] = 0
		perLeaf[p[0]], perLeaf[p[1]] = 0, 0
	}
	for _, p := range d.Partitions {
		if p.Master == "" || !st.online(p.Master) {
			continue
		}
		pair := st.PairOf(p.Master)
		if pair == "" || !st.online(pair) {
			continue
		}
		if !slices.Contains(p.Replicas, pair) {
			return false
		}
		perLeaf[p.Master]++
		perPair[pairOf[p.Master]]++
	}
	for _, p := range pairs {
		if d := perLeaf[p[0]] - perLeaf[p[1]]; d > 1 || d < -1 {
			return false
		}
	}
	return spread(perPair) <= 1
}

// unitOf maps each leaf of the pairs to its pair's name (the group-1 leaf).
func unitOf(pairs [][2]string) map[string]string {
	out := map[string]string{}
	for _, p := range pairs {
		out[p[0]], out[p[1]] = p[0], p[0]
	}
	return out
}

func spread(count map[string]int) int {
	lo, hi, first := 0, 0, true
	for _, c := range count {
		if first || c < lo {
			lo = c
		}
		if first || c > hi {
			hi = c
		}
		first = false
	}
	return hi - lo
}

// PlanRemoveLeaf moves a leaf's partitions of d away before REMOVE LEAF
// forgets it, losing no write: a master with an online replica hands its
// role to it; any other master (redundancy 1, or its replicas are gone)
// is copied to the online leaf holding the fewest copies of d, promoted
// there and dropped here; a replica is dropped (the partition keeps its
// master).
func PlanRemoveLeaf(st *State, d *Database, leaf string) []Step {
	held := map[string]int{}
	var targets []string
	for _, l := range st.Leaves {
		if l.State == LeafOnline && l.Addr() != leaf {
			targets = append(targets, l.Addr())
		}
	}
	sort.Strings(targets)
	for _, p := range d.Partitions {
		if p.Master != "" {
			held[p.Master]++
		}
		for _, r := range p.Replicas {
			held[r]++
		}
	}
	var steps []Step
	for _, p := range d.Partitions {
		if slices.Contains(p.Replicas, leaf) {
			steps = append(steps, Step{Action: ActionDrop, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: PhaseDrop})
		}
		if p.Master != leaf {
			continue
		}
		if i := slices.IndexFunc(p.Replicas, st.online); i >= 0 && p.Replicas[i] != leaf {
			steps = append(steps,
				Step{Action: ActionPromote, DB: d.Name, Ordinal: p.Ordinal, Target: p.Replicas[i], Phase: PhaseMove},
				Step{Action: ActionDrop, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: PhaseDrop})
			continue
		}
		if len(targets) == 0 {
			continue // nowhere to go: REMOVE LEAF refuses
		}
		to := targets[0]
		for _, t := range targets[1:] {
			if held[t] < held[to] {
				to = t
			}
		}
		held[to]++
		steps = append(steps,
			Step{Action: ActionCopy, DB: d.Name, Ordinal: p.Ordinal, Target: to, Phase: PhaseCopy},
			Step{Action: ActionPromote, DB: d.Name, Ordinal: p.Ordinal, Target: to, Phase: PhaseMove},
			Step{Action: ActionDrop, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: PhaseDrop})
	}
	sortSteps(steps)
	return steps
}
