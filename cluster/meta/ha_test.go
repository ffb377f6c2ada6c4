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
	parts, promote := Failover(d, "a", online)
	want := []Partition{
		{Ordinal: 0, Master: "b"},
		{Ordinal: 1, Master: "b"},
		{Ordinal: 2, Master: ""},
		{Ordinal: 3, Master: "", Replicas: []string{"c"}},
	}
	if !reflect.DeepEqual(parts, want) {
		t.Errorf("parts %+v, want %+v", parts, want)
	}
	if len(promote) != 1 || promote[0].Ordinal != 0 || promote[0].Master != "b" {
		t.Errorf("promote %+v", promote)
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
	want := []Step{
		{Action: ActionAttach, DB: "db", Ordinal: 0, Target: b, Phase: 1},
		{Action: ActionDrop, DB: "db", Ordinal: 1, Target: b, Phase: 2},
		{Action: ActionCopy, DB: "db", Ordinal: 1, Target: b, Phase: 3},
		{Action: ActionCopy, DB: "db", Ordinal: 2, Target: b, Phase: 3},
		{Action: ActionAttach, DB: "db", Ordinal: 3, Target: b, Phase: 1, AsMaster: true},
	}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("steps\n%+v\nwant\n%+v", steps, want)
	}
}
