package meta

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
)

// High availability as pure functions of the metadata (DESIGN.md §3): where
// a new database's partitions go, what a leaf failure changes, and the
// steps that bring a returning leaf back. The master aggregator executes
// them; tests pin them down.

// Redundancy is the redundancy_level variable as a number.
func (s *State) Redundancy() int {
	if s.Variable("redundancy_level") == "2" {
		return 2
	}
	return 1
}

// Pairs lists the online pairs (group-1 leaf, its group-2 pair) in the
// order the group-1 leaves were added.
func (s *State) Pairs() [][2]string {
	var out [][2]string
	for _, l := range s.Leaves {
		if l.Group != 1 || l.PairHost == "" || l.State != LeafOnline {
			continue
		}
		if p, ok := s.Leaf(Addr(l.PairHost, l.PairPort)); ok && p.State == LeafOnline {
			out = append(out, [2]string{l.Addr(), p.Addr()})
		}
	}
	return out
}

// PairOf is the address of a leaf's pair, "" when it has none.
func (s *State) PairOf(addr string) string {
	l, ok := s.Leaf(addr)
	if !ok || l.PairHost == "" {
		return ""
	}
	return Addr(l.PairHost, l.PairPort)
}

// PlaceRedundant places n partitions on pairs: ordinal i goes to pair
// i mod pairs, its master alternating between the two leaves, so every
// pair holds the same number of partitions (±1) and each leaf of a pair
// the same number of masters (±1).
func PlaceRedundant(pairs [][2]string, n int) (masters []string, replicas [][]string) {
	if len(pairs) == 0 {
		return nil, nil
	}
	masters = make([]string, n)
	replicas = make([][]string, n)
	for i := 0; i < n; i++ {
		p := pairs[i%len(pairs)]
		m, r := p[0], p[1]
		if (i/len(pairs))%2 == 1 {
			m, r = r, m
		}
		masters[i], replicas[i] = m, []string{r}
	}
	return masters, replicas
}

// Failover is the partition map of d once leaf dead is gone: each master
// partition it held is taken over by a replica on a leaf online reports up
// (meta.LeafDown then raises its epoch, and the master aggregator promotes
// it at that epoch), or has no master; dead is dropped from every replica
// list.
func Failover(d *Database, dead string, online func(string) bool) []Partition {
	var parts []Partition
	for _, p := range d.Partitions {
		np := Partition{Ordinal: p.Ordinal, Master: p.Master, Locked: p.Locked}
		for _, r := range p.Replicas {
			if r != dead {
				np.Replicas = append(np.Replicas, r)
			}
		}
		if p.Master == dead {
			np.Master = ""
			for i, r := range np.Replicas {
				if online(r) {
					np.Master = r
					np.Replicas = append(append([]string(nil), np.Replicas[:i]...), np.Replicas[i+1:]...)
					break
				}
			}
		}
		parts = append(parts, np)
	}
	return parts
}

// MayTakeOver says whether leaf's copy of p, a partition without master,
// may become its master by itself: it is one of the candidates (or none
// are known).
func MayTakeOver(p Partition, leaf string) bool {
	return len(p.Candidates) == 0 || slices.Contains(p.Candidates, leaf)
}

// CopyInfo is what a leaf holds of one partition database.
type CopyInfo struct {
	Replica bool // a replica copy (follows a master); else it took writes as master
	// Pending: a snapshot is being installed in it; it holds nothing usable
	Pending bool
}

// Step actions, as SHOW REBALANCE STATUS prints them.
const (
	ActionAttach = "ATTACH PARTITION"
	ActionDrop   = "DROP PARTITION"
	ActionCopy   = "COPY PARTITION"
	// ActionPromote hands a partition's master role to the replica on
	// Target; the old master becomes its replica.
	ActionPromote = "PROMOTE PARTITION"
	// ActionCreate replaces a lost partition (no copy on an online leaf)
	// with an empty master on Target: REBALANCE PARTITIONS … FORCE.
	ActionCreate = "CREATE PARTITION"
)

// Step is one low-level partition operation of a plan. Steps of a phase
// can run in parallel; phases run in order.
type Step struct {
	Action  string
	DB      string
	Ordinal int
	Target  string // the leaf the step acts on
	Phase   int
	// AsMaster: an ATTACH PARTITION makes the copy the master (the
	// partition had none); otherwise the copy joins as a replica.
	AsMaster bool
}

// ConflictError is an attach refused because the leaf holds an online
// copy of a partition that has a master elsewhere.
type ConflictError struct {
	Leaf, DB, Master string
	Ordinal          int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("Unable to attach leaf %s. Database `%s` (which is in the 'Online' state) conflicts with an existing master instance of `%s`:%d on %s. Use ATTACH LEAF ... FORCE to override this conflict.",
		QuotedAddr(e.Leaf), PartitionName(e.DB, e.Ordinal), e.DB, e.Ordinal, QuotedAddr(e.Master))
}

// QuotedAddr prints a node address as the seeds do: 'host':port.
func QuotedAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "'" + addr + "'"
	}
	return "'" + host + "':" + port
}

// PlanAttach is how leaf, holding copies (partition database name → what
// it is), rejoins database d, as 003_00509c68988978d3.txt describes:
//   - a partition without master gets the leaf's copy as master (ATTACH);
//   - in redundancy 2, a replica copy of a partition mastered by the pair
//     rejoins as its replica (ATTACH); an online copy of a partition
//     mastered elsewhere conflicts (an error unless force) and is dropped
//     and copied again from the master (DROP, COPY); a partition of the
//     pair without replica gets one (COPY);
//   - then the pair's masters are split evenly between the two (PROMOTE,
//     see BalancePair).
//
// Copies of partitions it does not mention are left alone (orphans). The
// steps come in phase order.
func PlanAttach(st *State, d *Database, leaf string, copies map[string]CopyInfo, force bool) ([]Step, error) {
	redundancy := st.Redundancy()
	pair := st.PairOf(leaf)
	var steps []Step
	for _, p := range d.Partitions {
		name := PartitionName(d.Name, p.Ordinal)
		c, has := copies[name]
		if c.Pending {
			has = false // half provisioned: as good as absent
		}
		switch {
		case p.Master == "":
			// only a copy known to hold every acknowledged commit takes
			// over; another waits (the partition too) for such a copy
			if has && MayTakeOver(p, leaf) {
				steps = append(steps, Step{Action: ActionAttach, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: 1, AsMaster: true})
			}
		case p.Master == leaf || slices.Contains(p.Replicas, leaf):
		case redundancy < 2 || pair == "" || p.Master != pair:
			// not this leaf's to hold; an online copy still conflicts
			if has && !c.Replica && !force {
				return nil, &ConflictError{Leaf: leaf, DB: d.Name, Master: p.Master, Ordinal: p.Ordinal}
			}
		case has && c.Replica:
			steps = append(steps, Step{Action: ActionAttach, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: 1})
		case has:
			if !force {
				return nil, &ConflictError{Leaf: leaf, DB: d.Name, Master: p.Master, Ordinal: p.Ordinal}
			}
			steps = append(steps,
				Step{Action: ActionDrop, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: 2},
				Step{Action: ActionCopy, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: 3})
		case len(p.Replicas) == 0:
			steps = append(steps, Step{Action: ActionCopy, DB: d.Name, Ordinal: p.Ordinal, Target: leaf, Phase: 3})
		}
	}
	if redundancy >= 2 && pair != "" {
		// the partitions this leaf takes over without a replica get one
		// on its pair when that is online: whatever copy the pair holds
		// is older (it was no candidate), so it is replaced
		if pl, ok := st.Leaf(pair); ok && pl.State == LeafOnline {
			for _, p := range ApplySteps(d, steps).Partitions {
				if p.Master == leaf && len(p.Replicas) == 0 {
					steps = append(steps,
						Step{Action: ActionDrop, DB: d.Name, Ordinal: p.Ordinal, Target: pair, Phase: 2},
						Step{Action: ActionCopy, DB: d.Name, Ordinal: p.Ordinal, Target: pair, Phase: 3})
				}
			}
		}
		steps = append(steps, BalancePair(ApplySteps(d, steps), leaf, pair, 4)...)
	}
	sortSteps(steps)
	return steps, nil
}

// sortSteps orders steps by phase, then ordinal, then target.
func sortSteps(steps []Step) {
	sort.SliceStable(steps, func(i, j int) bool {
		a, b := steps[i], steps[j]
		if a.Phase != b.Phase {
			return a.Phase < b.Phase
		}
		if a.Ordinal != b.Ordinal {
			return a.Ordinal < b.Ordinal
		}
		return a.Target < b.Target
	})
}

// BalancePair plans the PROMOTE steps that split the masters of the
// partitions held by both leaves of a pair evenly between them (the
// heavier side keeps the odd one). The partitions handed over are the
// heavier side's lowest ordinals.
func BalancePair(d *Database, x, y string, phase int) []Step {
	var onX, onY []int
	for _, p := range d.Partitions {
		if len(p.Replicas) != 1 {
			continue
		}
		switch {
		case p.Master == x && p.Replicas[0] == y:
			onX = append(onX, p.Ordinal)
		case p.Master == y && p.Replicas[0] == x:
			onY = append(onY, p.Ordinal)
		}
	}
	from, to, moves := onX, y, (len(onX)-len(onY))/2
	if moves < 0 {
		from, to, moves = onY, x, -moves
	}
	var steps []Step
	for _, o := range from[:moves] {
		steps = append(steps, Step{Action: ActionPromote, DB: d.Name, Ordinal: o, Target: to, Phase: phase})
	}
	return steps
}

// ApplySteps is the partition map of d after steps have run.
func ApplySteps(d *Database, steps []Step) *Database {
	out := *d
	out.Partitions = make([]Partition, len(d.Partitions))
	for i, p := range d.Partitions {
		p.Replicas = append([]string(nil), p.Replicas...)
		out.Partitions[i] = p
	}
	for _, s := range steps {
		if s.Ordinal < 0 || s.Ordinal >= len(out.Partitions) {
			continue
		}
		p := &out.Partitions[s.Ordinal]
		switch s.Action {
		case ActionCreate:
			p.Master, p.Replicas = s.Target, nil
		case ActionAttach:
			if s.AsMaster {
				p.Master = s.Target
				p.Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return r == s.Target })
			} else if !slices.Contains(p.Replicas, s.Target) {
				p.Replicas = append(p.Replicas, s.Target)
			}
		case ActionCopy:
			if !slices.Contains(p.Replicas, s.Target) && p.Master != s.Target {
				p.Replicas = append(p.Replicas, s.Target)
			}
		case ActionDrop:
			p.Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return r == s.Target })
			if p.Master == s.Target {
				p.Master = ""
			}
		case ActionPromote:
			if i := slices.Index(p.Replicas, s.Target); i >= 0 {
				p.Replicas[i] = p.Master
				p.Master = s.Target
			}
		}
	}
	return &out
}

// Roles of a database copy on a leaf, as SHOW CLUSTER STATUS prints them.
const (
	RoleMaster    = "Master"
	RoleReplica   = "Slave"
	RoleReference = "Reference"
	RoleOrphan    = "Orphan"
)

// CopyRole is what the metadata makes of a database named name on leaf:
// a distributed database's reference copy, a partition's master or
// replica, or an orphan (a partition database the metadata does not place
// there), with the partition it is a copy of. ok is false for a name that
// is no database of the cluster.
func CopyRole(st *State, leaf, name string) (role string, p Partition, ok bool) {
	for _, dn := range st.DatabaseNames() {
		d := st.Database(dn)
		if strings.EqualFold(name, d.Name) {
			return RoleReference, Partition{}, true
		}
		for _, part := range d.Partitions {
			if !strings.EqualFold(name, PartitionName(d.Name, part.Ordinal)) {
				continue
			}
			switch {
			case part.Master == leaf:
				return RoleMaster, part, true
			case slices.Contains(part.Replicas, leaf):
				return RoleReplica, part, true
			}
			return RoleOrphan, part, true
		}
	}
	return "", Partition{}, false
}
