package meta

import (
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// parseCluster builds a state and a database from the golden files'
// notation:
//
//	leaves a b c           redundancy 1, all online; "c!" is offline
//	leaves a:1 b:2 c:1 d:2 redundancy 2 with groups (pairs in ADD LEAF order)
//	partitions 0=a 1=b/c 2=-   ordinal=master[/replica…]; "-" no master
func parseCluster(t *testing.T, d *datadriven.TestData) (*State, *Database) {
	st := New()
	db := &Database{Name: "db"}
	addr := func(name string) string { return Addr(name, 3306) }
	var offline []string
	for _, line := range strings.Split(d.Input, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "leaves":
			for _, l := range f[1:] {
				if strings.HasSuffix(l, "!") {
					l = strings.TrimSuffix(l, "!")
					offline = append(offline, addr(strings.SplitN(l, ":", 2)[0]))
				}
				leaf := Leaf{Host: l, Port: 3306}
				if name, g, ok := strings.Cut(l, ":"); ok {
					st.Variables["redundancy_level"] = "2"
					leaf.Host = name
					leaf.Group, _ = strconv.Atoi(g)
				}
				if err := st.addLeaf(leaf); err != nil {
					t.Fatal(err)
				}
			}
		case "partitions":
			for i, p := range f[1:] {
				_, copies, _ := strings.Cut(p, "=")
				part := Partition{Ordinal: i}
				for j, c := range strings.Split(copies, "/") {
					switch {
					case c == "-":
					case j == 0:
						part.Master = addr(c)
					default:
						part.Replicas = append(part.Replicas, addr(c))
					}
				}
				db.Partitions = append(db.Partitions, part)
			}
		default:
			t.Fatalf("unknown line %q", line)
		}
	}
	for i := range st.Leaves {
		for _, o := range offline {
			if st.Leaves[i].Addr() == o {
				st.Leaves[i].State = LeafOffline
			}
		}
	}
	return st, db
}

func printPlan(st *State, steps []Step, d *Database) string {
	var b strings.Builder
	for _, s := range steps {
		host, _, _ := strings.Cut(s.Target, ":")
		fmt.Fprintf(&b, "%s %d %s %d\n", s.Action, s.Ordinal, host, s.Phase)
	}
	after := ApplySteps(d, steps)
	fmt.Fprintf(&b, "after:")
	for _, p := range after.Partitions {
		m := "-"
		if p.Master != "" {
			m, _, _ = strings.Cut(p.Master, ":")
		}
		fmt.Fprintf(&b, " %d=%s", p.Ordinal, m)
		for _, r := range p.Replicas {
			h, _, _ := strings.Cut(r, ":")
			fmt.Fprintf(&b, "/%s", h)
		}
	}
	fmt.Fprintf(&b, "\nbalanced: %v\n", Balanced(st, after))
	return b.String()
}

func TestRebalancePlans(t *testing.T) {
	datadriven.RunTest(t, "testdata/rebalance", func(t *testing.T, d *datadriven.TestData) string {
		st, db := parseCluster(t, d)
		switch d.Cmd {
		case "rebalance":
			return printPlan(st, PlanRebalance(st, db), db)
		case "rebalance-force":
			return printPlan(st, PlanRebalanceForce(st, db), db)
		case "restore-redundancy":
			return printPlan(st, PlanRestoreRedundancy(st, db), db)
		case "remove-leaf":
			return printPlan(st, PlanRemoveLeaf(st, db, Addr(d.CmdArgs[0].Key, 3306)), db)
		}
		t.Fatalf("unknown command %s", d.Cmd)
		return ""
	})
}

// TestRebalanceProperties applies the plan of random valid clusters:
// the result is balanced, a second plan is empty, and no step ever leaves
// a partition without a copy.
func TestRebalanceProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 3000; iter++ {
		st := New()
		redundant := iter%2 == 1
		units := 1 + rng.Intn(5)
		var leaves []string
		for i := 0; i < units; i++ {
			if redundant {
				st.Variables["redundancy_level"] = "2"
				for g := 1; g <= 2; g++ {
					l := Leaf{Host: fmt.Sprintf("l%d", 2*i+g), Port: 3306, Group: g}
					if err := st.addLeaf(l); err != nil {
						t.Fatal(err)
					}
					leaves = append(leaves, l.Addr())
				}
			} else {
				l := Leaf{Host: fmt.Sprintf("l%d", i), Port: 3306}
				if err := st.addLeaf(l); err != nil {
					t.Fatal(err)
				}
				leaves = append(leaves, l.Addr())
			}
		}
		// the data sits on a random subset (new leaves were just added)
		used := 1 + rng.Intn(units)
		d := &Database{Name: "db"}
		for o := 0; o < 1+rng.Intn(24); o++ {
			p := Partition{Ordinal: o}
			if redundant {
				u := rng.Intn(used)
				x, y := leaves[2*u], leaves[2*u+1]
				if rng.Intn(2) == 0 {
					x, y = y, x
				}
				p.Master = x
				if rng.Intn(5) > 0 {
					p.Replicas = []string{y}
				}
			} else {
				p.Master = leaves[rng.Intn(used)]
			}
			d.Partitions = append(d.Partitions, p)
		}
		// now and then a leaf (a pair) is lost for good and FORCE replaces
		// its partitions, as failover left them: no master, no copy there
		force := units > 1 && iter%3 == 0
		if force {
			u := rng.Intn(units)
			gone := leaves[u : u+1]
			if redundant {
				gone = leaves[2*u : 2*u+2]
			}
			for i := range st.Leaves {
				if slices.Contains(gone, st.Leaves[i].Addr()) {
					st.Leaves[i].State = LeafOffline
				}
			}
			for i, p := range d.Partitions {
				if slices.Contains(gone, p.Master) {
					d.Partitions[i].Master = ""
				}
				d.Partitions[i].Replicas = slices.DeleteFunc(p.Replicas, func(r string) bool { return slices.Contains(gone, r) })
			}
		}
		plan := PlanRebalance
		if force {
			plan = PlanRebalanceForce
		}
		steps := plan(st, d)
		cur := d
		for _, s := range steps {
			before := cur
			cur = ApplySteps(cur, []Step{s})
			for _, p := range cur.Partitions {
				if p.Master == "" && before.Partitions[p.Ordinal].Master != "" {
					t.Fatalf("iteration %d: step %+v leaves partition %d without master\n%s", iter, s, p.Ordinal, printPlan(st, steps, d))
				}
			}
		}
		if !Balanced(st, cur) {
			t.Fatalf("iteration %d: not balanced after\n%s", iter, printPlan(st, steps, d))
		}
		if force {
			if lost := LostPartitions(st, cur); len(lost) > 0 {
				t.Fatalf("iteration %d: partitions %v still lost after\n%s", iter, lost, printPlan(st, steps, d))
			}
		}
		if again := plan(st, cur); len(again) > 0 {
			t.Fatalf("iteration %d: balanced state planned again: %+v", iter, again)
		}
	}
}
