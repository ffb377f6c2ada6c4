package meta

import (
	"errors"
	"reflect"
	"testing"
)

func TestPlaceRedundant(t *testing.T) {
	masters, replicas := PlaceRedundant([][2]string{{"a", "b"}, {"c", "d"}}, 8)
	wantM := []string{"a", "c", "b", "d", "a", "c", "b", "d"}
	if !reflect.DeepEqual(masters, wantM) {
		t.Errorf("masters %v, want %v", masters, wantM)
	}
	for i, m := range masters {
		pair := map[string]string{"a": "b", "b": "a", "c": "d", "d": "c"}[m]
		if !reflect.DeepEqual(replicas[i], []string{pair}) {
			t.Errorf("ordinal %d: master %s replicas %v", i, m, replicas[i])
		}
	}
}

func TestFailover(t *testing.T) {
	d := &Database{Name: "db", Partitions: []Partition{
		{Ordinal: 0, Master: "a", Replicas: []string{"b"}},
		{Ordinal: 1, Master: "b", Replicas: []string{"a"}},
		{Ordinal: 2, Master: "a"},
		{Ordinal: 3, Master: "a", Replicas: []string{"c"}},
	}}
	online := func(x string) bool { return x == "b" } // c is down too
	parts := Failover(d, "a", online)
	want := []Partition{
		{Ordinal: 0, Master: "b"},
		{Ordinal: 1, Master: "b"},
		{Ordinal: 2, Master: ""},
		{Ordinal: 3, Master: "", Replicas: []string{"c"}},
	}
	if !reflect.DeepEqual(parts, want) {
		t.Errorf("parts %+v, want %+v", parts, want)
	}
}

func TestPlanAttach(t *testing.T) {
	st := New()
	st.Variables["redundancy_level"] = "2"
	for _, l := range []Leaf{{Host: "h", Port: 1, Group: 1}, {Host: "h", Port: 2, Group: 2}} {
		if err := st.addLeaf(l); err != nil {
			t.Fatal(err)
		}
	}
	a, b := "h:1", "h:2"
	// b came back: it was master of 1 (failed over to a), replica of 0,
	// and lost its copy of 2
	d := &Database{Name: "db", Partitions: []Partition{
		{Ordinal: 0, Master: a},
		{Ordinal: 1, Master: a},
		{Ordinal: 2, Master: a},
		{Ordinal: 3, Master: ""},
	}}
	copies := map[string]CopyInfo{"db_0": {Replica: true}, "db_1": {}, "db_3": {}}
	if _, err := PlanAttach(st, d, b, copies, false); err == nil {
		t.Fatal("attach without FORCE over a conflicting master copy succeeded")
	} else {
		var c *ConflictError
		if !errors.As(err, &c) || c.Ordinal != 1 {
			t.Fatalf("conflict error %v", err)
		}
		want := "Unable to attach leaf 'h':2. Database `db_1` (which is in the 'Online' state) conflicts with an existing master instance of `db`:1 on 'h':1. Use ATTACH LEAF ... FORCE to override this conflict."
		if err.Error() != want {
			t.Errorf("error text\n%s\nwant\n%s", err, want)
		}
	}
	steps, err := PlanAttach(st, d, b, copies, true)
	if err != nil {
		t.Fatal(err)
	}
	// a holds masters 0, 1, 2 with b's replicas, b master 3 with a new
	// replica on a: one of a's masters moves back to b
	want := []Step{
		{Action: ActionAttach, DB: "db", Ordinal: 0, Target: b, Phase: 1},
		{Action: ActionAttach, DB: "db", Ordinal: 3, Target: b, Phase: 1, AsMaster: true},
		{Action: ActionDrop, DB: "db", Ordinal: 1, Target: b, Phase: 2},
		{Action: ActionDrop, DB: "db", Ordinal: 3, Target: a, Phase: 2},
		{Action: ActionCopy, DB: "db", Ordinal: 1, Target: b, Phase: 3},
		{Action: ActionCopy, DB: "db", Ordinal: 2, Target: b, Phase: 3},
		{Action: ActionCopy, DB: "db", Ordinal: 3, Target: a, Phase: 3},
		{Action: ActionPromote, DB: "db", Ordinal: 0, Target: b, Phase: 4},
	}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("steps\n%+v\nwant\n%+v", steps, want)
	}
	after := ApplySteps(d, steps)
	masters := map[string]int{}
	for _, p := range after.Partitions {
		masters[p.Master]++
		if len(p.Replicas) != 1 || p.Replicas[0] == p.Master {
			t.Errorf("after the attach partition %+v", p)
		}
	}
	if masters[a] != 2 || masters[b] != 2 {
		t.Errorf("masters after the attach: %v", masters)
	}
}

func TestBalancePair(t *testing.T) {
	x, y := "h:1", "h:2"
	for _, tc := range []struct {
		masters string // per ordinal: x or y master, the other the replica; '-' not the pair's
		want    []int  // ordinals promoted
		to      string
	}{
		{"xxxx", []int{0, 1}, y},
		{"xxxxx", []int{0, 1}, y},
		{"xyxy", nil, ""},
		{"yyyx", []int{0}, x},
		{"x-x-x-x-", []int{0, 2}, y},
		{"", nil, ""},
	} {
		d := &Database{Name: "db"}
		for i, c := range tc.masters {
			p := Partition{Ordinal: i, Master: x, Replicas: []string{y}}
			switch c {
			case 'y':
				p.Master, p.Replicas = y, []string{x}
			case '-':
				p.Master, p.Replicas = "h:3", []string{"h:4"}
			}
			d.Partitions = append(d.Partitions, p)
		}
		steps := BalancePair(d, x, y, 4)
		var got []int
		for _, s := range steps {
			got = append(got, s.Ordinal)
			if s.Target != tc.to || s.Action != ActionPromote || s.Phase != 4 {
				t.Errorf("%s: step %+v", tc.masters, s)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: promoted %v, want %v", tc.masters, got, tc.want)
		}
	}
}

func TestCopyRole(t *testing.T) {
	st := New()
	st.Databases["db"] = &Database{Name: "db", Partitions: []Partition{
		{Ordinal: 0, Master: "a", Replicas: []string{"b"}},
		{Ordinal: 1, Master: ""},
	}}
	for _, tc := range []struct {
		leaf, name, role string
		ok               bool
	}{
		{"a", "db_0", RoleMaster, true},
		{"b", "db_0", RoleReplica, true},
		{"c", "db_0", RoleOrphan, true},
		{"a", "db_1", RoleOrphan, true},
		{"a", "db", RoleReference, true},
		{"a", "DB_0", RoleMaster, true},
		{"a", "db_2", "", false},
		{"a", "other", "", false},
	} {
		role, _, ok := CopyRole(st, tc.leaf, tc.name)
		if role != tc.role || ok != tc.ok {
			t.Errorf("CopyRole(%s, %s) = %q %v, want %q %v", tc.leaf, tc.name, role, ok, tc.role, tc.ok)
		}
	}
}

// TestUnlinkedFollowsTheMap: an unlinked replica is kept across map
// changes until it is a replica again or the partition's master changes.
func TestUnlinkedFollowsTheMap(t *testing.T) {
	prev := []Partition{{Ordinal: 0, Master: "a", Unlinked: "b"}, {Ordinal: 1, Master: "a", Unlinked: "b"}, {Ordinal: 2, Master: "a", Unlinked: "b"}}
	next := []Partition{
		{Ordinal: 0, Master: "a", Unlinked: "b"},                          // unchanged
		{Ordinal: 1, Master: "a", Replicas: []string{"b"}, Unlinked: "b"}, // back
		{Ordinal: 2, Master: "b", Unlinked: "b"},                          // failed over to it
	}
	got := successors(prev, next)
	for i, want := range []string{"b", "", ""} {
		if got[i].Unlinked != want {
			t.Errorf("partition %d: unlinked %q, want %q", i, got[i].Unlinked, want)
		}
	}
	if got[2].Epoch != 1 {
		t.Errorf("partition 2: epoch %d, want 1", got[2].Epoch)
	}
}
