package meta

import (
	"strings"
	"testing"
)

func TestDatabaseNameConflict(t *testing.T) {
	for _, c := range []struct {
		name     string
		existing []string
		want     string // substring of the reason; "" for none
	}{
		{"shop", nil, ""},
		{"shop_1", []string{"shop"}, "partition 1 of database 'shop'"},
		{"SHOP_12", []string{"shop"}, "partition 12 of database 'shop'"},
		{"shop_01", []string{"shop"}, ""}, // never a partition name
		{"shop_x", []string{"shop"}, ""},
		{"shop", []string{"shop_1"}, "take the name of database 'shop_1'"},
		{"shop", []string{"shop_a", "shopping"}, ""},
		{"a_b_3", []string{"a_b"}, "partition 3 of database 'a_b'"},
		{"a_b_3", []string{"a"}, ""},
		{"a", []string{"a_b_3"}, ""},
		{"mysql", nil, "reserved"},
		{"Information_Schema", nil, "reserved"},
		{"canopy_scratch", nil, "reserved"},
		{"canopy_x", nil, "reserved"},
		{"_1", []string{""}, ""},
	} {
		got := DatabaseNameConflict(c.name, c.existing)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("DatabaseNameConflict(%q, %q) = %q, want %q", c.name, c.existing, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		db   string
		n    int
		ok   bool
	}{{"db_0", "db", 0, true}, {"db_10", "db", 10, true}, {"db_", "", 0, false}, {"_3", "", 0, false}, {"db", "", 0, false}, {"db_007", "", 0, false}} {
		db, n, ok := PartitionOf(c.name)
		if db != c.db || n != c.n || ok != c.ok {
			t.Errorf("PartitionOf(%q) = %q, %d, %v", c.name, db, n, ok)
		}
	}
}

func TestPartitionSetNames(t *testing.T) {
	for _, c := range []struct {
		db    string
		ords  []int
		name  string
		parts []string
	}{
		{"d", []int{3}, "d_3", nil},
		{"d", []int{0, 4, 8}, "d#0,4,8", []string{"d_0", "d_4", "d_8"}},
		{"my_db_2", []int{1, 10}, "my_db_2#1,10", []string{"my_db_2_1", "my_db_2_10"}},
	} {
		if got := PartitionSetName(c.db, c.ords); got != c.name {
			t.Errorf("PartitionSetName(%s, %v) = %s, want %s", c.db, c.ords, got, c.name)
		}
		db, parts, ok := PartitionSetOf(c.name)
		if ok != (c.parts != nil) || (ok && (db != c.db || strings.Join(parts, " ") != strings.Join(c.parts, " "))) {
			t.Errorf("PartitionSetOf(%s) = %s, %v, %v", c.name, db, parts, ok)
		}
	}
	for _, bad := range []string{"d#", "#1", "d#1,,2", "d#01", "d#-1", "d#x", "d#1 "} {
		if _, _, ok := PartitionSetOf(bad); ok {
			t.Errorf("PartitionSetOf(%q) accepted", bad)
		}
	}
	if DatabaseNameConflict("a#1", nil) == "" {
		t.Error("a database may be named like a set of partitions")
	}
}
