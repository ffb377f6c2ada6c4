package meta

import (
	"encoding/json"
	"testing"
)

// TestRenameTables: renames move tables in order (a swap through a
// temporary name included), record the copy's schema position, and keep
// the AUTO_INCREMENT counters' name through renames, so that values go on
// instead of starting over (and repeating). A command is applied whole or
// not at all.
func TestRenameTables(t *testing.T) {
	s := apply(t, New(),
		Bootstrap{ClusterID: "c1", Aggregator: Aggregator{Host: "ma", Port: 3306}},
		AddLeaf{leaf("l1")},
		CreateDatabase{Name: "db", Masters: []string{"l1:3306"}, LSN: 1},
		CreateTable{Database: "db", Table: Table{Name: "a", ShardKey: []string{"id"}, AutoIncrement: "id"}, LSN: 2},
		CreateTable{Database: "db", Table: Table{Name: "r", Reference: true}, LSN: 3},
		CreateTable{Database: "db", Table: Table{Name: "x", ShardKey: []string{"k"}}, LSN: 4},
		RenameTables{Database: "db", Renames: []Rename{{"A", "b"}, {"b", "c"}}, LSN: 5},
		RenameTables{Database: "db", Renames: []Rename{{"r", "r2"}}},
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
	if d.SchemaLSN != 5 {
		t.Errorf("schema position %d after the renames, want 5 (a rename without position leaves it)", d.SchemaLSN)
	}

	// a swap in one command
	s = apply(t, s, RenameTables{Database: "db", Renames: []Rename{{"c", "tmp"}, {"x", "c"}, {"tmp", "x"}}, LSN: 6})
	d = s.Database("db")
	if x, c := d.Table("x"), d.Table("c"); x == nil || c == nil || d.Table("tmp") != nil ||
		x.ShardKey[0] != "id" || c.ShardKey[0] != "k" || x.CounterName() != "a" {
		t.Errorf("after the swap: x = %+v, c = %+v, tmp = %+v", x, c, d.Table("tmp"))
	}

	// a table created under an old name counts on its own name again
	s = apply(t, s, CreateTable{Database: "db", Table: Table{Name: "b", ShardKey: []string{"id"}}, LSN: 7})
	if got := s.Database("db").Table("b").CounterName(); got != "b" {
		t.Errorf("counter of a new table b is %q", got)
	}

	// all or nothing: a rename that cannot be done undoes the ones before
	// it in the same command
	for _, bad := range []RenameTables{
		{Database: "db", Renames: []Rename{{"missing", "y"}}},
		{Database: "db", Renames: []Rename{{"x", "y"}, {"c", "r2"}}, LSN: 8},
		{Database: "db", Renames: []Rename{{"x", "y"}, {"x", "z"}}, LSN: 8},
		{Database: "nodb", Renames: []Rename{{"c", "y"}}},
	} {
		b, _ := Encode(bad)
		if n, err := s.Apply(b); err == nil || n != s {
			t.Errorf("%+v applied (%v)", bad, err)
		}
	}
	d = s.Database("db")
	if d.Table("x") == nil || d.Table("y") != nil || d.SchemaLSN != 7 {
		t.Errorf("a refused command changed the state: x = %+v, y = %+v, schema position %d", d.Table("x"), d.Table("y"), d.SchemaLSN)
	}

	// a single rename as the version before RenameTables logged it
	old, _ := json.Marshal(Command{Op: "rename_table", Payload: json.RawMessage(`{"Database":"db","From":"b","To":"b2","LSN":9}`)})
	n, err := s.Apply(old)
	if err != nil || n.Database("db").Table("b2") == nil || n.Database("db").SchemaLSN != 9 {
		t.Errorf("logged rename_table: %v, tables %+v", err, n.Database("db").Tables)
	}
}
