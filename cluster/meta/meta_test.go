package meta

import (
	"strings"
	"testing"
)

func apply(t *testing.T, s *State, payloads ...interface{}) *State {
	t.Helper()
	for _, p := range payloads {
		b, err := Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Apply(b)
		if err != nil {
			t.Fatalf("%T: %v", p, err)
		}
		s = n
	}
	return s
}

func leaf(host string) Leaf { return Leaf{Host: host, Port: 3306, User: "root"} }

func TestFormationAndDatabases(t *testing.T) {
	s := apply(t, New(),
		Bootstrap{ClusterID: "c1", Aggregator: Aggregator{Host: "ma", Port: 3306}},
		AddLeaf{leaf("l1")}, AddLeaf{leaf("l2")},
		AddAggregator{Aggregator{Host: "ca", Port: 3306}},
	)
	if len(s.Leaves) != 2 || s.Leaves[0].Group != 1 || s.Leaves[0].State != LeafOnline || s.Leaves[0].PairHost != "" {
		t.Fatalf("leaves = %+v", s.Leaves)
	}
	if a, _ := s.Aggregator("ca:3306"); a.Number != 1 {
		t.Fatalf("child aggregator number = %d", a.Number)
	}
	masters := PlacePartitions(s.OnlineLeaves(), 5)
	if strings.Join(masters, ",") != "l1:3306,l2:3306,l1:3306,l2:3306,l1:3306" {
		t.Fatalf("placement = %v", masters)
	}
	s = apply(t, s, CreateDatabase{Name: "Test", Masters: masters, LSN: 1},
		CreateTable{Database: "test", Table: Table{Name: "T", ShardKey: []string{"id"}}, LSN: 4})
	d := s.Database("TEST")
	if d == nil || len(d.Partitions) != 5 || d.Partitions[3].Master != "l2:3306" || d.Table("t") == nil {
		t.Fatalf("database = %+v", d)
	}
	// the schema position only moves forward
	if d.SchemaLSN != 4 {
		t.Fatalf("schema position %d after CREATE TABLE, want 4", d.SchemaLSN)
	}
	s = apply(t, s, SchemaChanged{Database: "test", LSN: 9}, SchemaChanged{Database: "test", LSN: 7})
	if got := s.Database("test").SchemaLSN; got != 9 {
		t.Fatalf("schema position %d, want 9", got)
	}
	// a leaf that masters partitions cannot go
	b, _ := Encode(RemoveLeaf{Addr: "l1:3306"})
	if _, err := s.Apply(b); err == nil {
		t.Fatal("removed a leaf that masters partitions")
	}
	// errors leave the state unchanged
	b, _ = Encode(AddLeaf{leaf("l1")})
	n, err := s.Apply(b)
	if err == nil || n != s {
		t.Fatalf("duplicate leaf: %v", err)
	}
	if s.Variable("redundancy_level") != "1" || s.Variable("AUTO_ATTACH") != "ON" {
		t.Fatal("variable defaults")
	}
}

func TestPairing(t *testing.T) {
	s := apply(t, New(), Bootstrap{ClusterID: "c", Aggregator: Aggregator{Host: "ma", Port: 1}},
		SetVariable{Name: "redundancy_level", Value: "2"},
		AddLeaf{leaf("a")}, AddLeaf{leaf("b")}, AddLeaf{leaf("c")},
		AddLeaf{Leaf{Host: "d", Port: 3306, Group: 1}})
	got := map[string]string{}
	for _, l := range s.Leaves {
		got[l.Host] = l.PairHost
	}
	// a→g1, b→g2 (smaller) pairs with a, c→g1, d→g1 explicitly: no partner left
	if got["a"] != "b" || got["b"] != "a" || got["c"] != "" || got["d"] != "" {
		t.Fatalf("pairs = %v (%+v)", got, s.Leaves)
	}
	if s.Leaves[1].Group != 2 || s.Leaves[2].Group != 1 {
		t.Fatalf("groups = %+v", s.Leaves)
	}
	s = apply(t, s, AddLeaf{leaf("e")})
	if l, _ := s.Leaf("e:3306"); l.Group != 2 || l.PairHost != "c" {
		t.Fatalf("e = %+v", l)
	}
}

// TestTakeOver: every reign of a master aggregator gets the next epoch;
// a forced takeover gets at least the epoch it asks for, and an older
// demand does not move the epoch back.
func TestTakeOver(t *testing.T) {
	s := apply(t, New(), Bootstrap{ClusterID: "c1", Aggregator: Aggregator{Host: "ma", Port: 3306}})
	if s.MasterEpoch != 1 || s.MasterAddr != "ma:3306" {
		t.Fatalf("after bootstrap: epoch %d by %q", s.MasterEpoch, s.MasterAddr)
	}
	s = apply(t, s, TakeOver{Master: "ca:3306"})
	if s.MasterEpoch != 2 || s.MasterAddr != "ca:3306" {
		t.Fatalf("after an elected takeover: epoch %d by %q", s.MasterEpoch, s.MasterAddr)
	}
	s = apply(t, s, TakeOver{Master: "ma:3306", MinEpoch: 7})
	if s.MasterEpoch != 7 || s.MasterAddr != "ma:3306" {
		t.Fatalf("after a forced takeover past epoch 6: epoch %d by %q", s.MasterEpoch, s.MasterAddr)
	}
	s = apply(t, s, TakeOver{Master: "ca:3306", MinEpoch: 3})
	if s.MasterEpoch != 8 {
		t.Fatalf("a takeover asking for an older epoch: epoch %d, want 8", s.MasterEpoch)
	}
}
