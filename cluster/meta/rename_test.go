package meta

import "testing"

// TestRenameTable: a rename moves the table, records the copy's schema
// position, and keeps the AUTO_INCREMENT counters' name through renames,
// so that values go on instead of starting over (and repeating).
func TestRenameTable(t *testing.T) {
	s := apply(t, New(),
		Bootstrap{ClusterID: "c1", Aggregator: Aggregator{Host: "ma", Port: 3306}},
		AddLeaf{leaf("l1")},
		CreateDatabase{Name: "db", Masters: []string{"l1:3306"}, LSN: 1},
		CreateTable{Database: "db", Table: Table{Name: "a", ShardKey: []string{"id"}, AutoIncrement: "id"}, LSN: 2},
		CreateTable{Database: "db", Table: Table{Name: "r", Reference: true}, LSN: 3},
		RenameTable{Database: "db", From: "A", To: "b", LSN: 5},
		RenameTable{Database: "db", From: "b", To: "c", LSN: 6},
		RenameTable{Database: "db", From: "r", To: "r2"},
	)
	d := s.Database("db")
	if d.Table("a") != nil || d.Table("b") != nil || d.Table("r") != nil {
		t.Fatalf("old names still listed: %+v", d.Tables)
	}
	c := d.Table("c")
	if c == nil || c.Name != "c" || c.AutoIncrement != "id" || len(c.ShardKey) != 1 {
		t.Fatalf("renamed table = %+v", c)
	}
	if got := c.CounterName(); got != "a" {
		t.Errorf("counter of a table renamed a → b → c is %q, want its first name a", got)
	}
	if r := d.Table("r2"); r == nil || !r.Reference || r.CounterName() != "r" {
		t.Errorf("renamed reference table = %+v", r)
	}
	if d.SchemaLSN != 6 {
		t.Errorf("schema position %d after the renames, want 6 (a rename without position leaves it)", d.SchemaLSN)
	}
	// a table created under an old name counts on its own name again
	s = apply(t, s, CreateTable{Database: "db", Table: Table{Name: "b", ShardKey: []string{"id"}}, LSN: 7})
	if got := s.Database("db").Table("b").CounterName(); got != "b" {
		t.Errorf("counter of a new table b is %q", got)
	}
	for _, bad := range []RenameTable{
		{Database: "db", From: "missing", To: "x"},
		{Database: "db", From: "c", To: "r2"},
		{Database: "nodb", From: "c", To: "x"},
	} {
		b, _ := Encode(bad)
		if n, err := s.Apply(b); err == nil || n != s {
			t.Errorf("%+v applied (%v)", bad, err)
		}
	}
}
