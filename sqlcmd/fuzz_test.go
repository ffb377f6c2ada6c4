package sqlcmd

import (
	"strings"
	"testing"
)

// FuzzParse: whatever text a client sends, the recognizers return a
// command or nothing without panicking, and SplitFirst cuts the text
// into a prefix and a suffix of it; a rewrite of `@x := e` is final.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"ADD LEAF root:'pw'@'127.0.0.1':3307 INTO GROUP 2", "REBALANCE PARTITIONS ON db FORCE",
		"COPY PARTITION db:3 TO 'h':1", "PROMOTE PARTITION db:0 ON 'h':2 WITH DROP", "SHOW PARTITIONS ON x",
		"CANOPY JOIN CLUSTER 'abc' AS AGGREGATOR 'h:1' SECRET '00ff'", "CANOPY IMPERSONATE 'u'@'%'",
		"CANOPY AUTHENTICATE 'beef'", "SET PASSWORD FOR 'a'@'b' = PASSWORD('x')", "ALTER USER u IDENTIFIED BY 'p' REQUIRE SSL",
		"CREATE DATABASE IF NOT EXISTS d WITH SYNC REPLICATION PARTITIONS=8", "SET @@GLOBAL.redundancy_level = 2",
		"CREATE REFERENCE TABLE t (id INT, SHARD KEY (id), PRIMARY KEY (id))", "EXPLAIN SELECT 1; SELECT ';'",
		"SELECT '\\'' -- ;\n; /* ; */ x", "CREATE /*!90618 REFERENCE */ TABLE r (id SERIAL, /*!90618 SHARD */ KEY (id)) # x", "ATTACH LEAF ALL FORCE", "SELECT @a := 1, @b:=@b+1 AS n FROM t WHERE (@c := 2)", "'unterminated", "CANOPY", "@", ":",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		Parse(s)
		ParseClusterDDL(s)
		// only SERIAL, spelled out, makes it longer
		if ct, ok := ParseCreateTable(s); ok && len(ct.SQL) > len(s)+40*strings.Count(strings.ToUpper(s), "SERIAL") {
			t.Fatalf("CREATE TABLE grew: %q from %q", ct.SQL, s)
		}
		first, rest := SplitFirst(s)
		if !strings.HasPrefix(s, first) || !strings.HasSuffix(s, rest) || len(first)+len(rest) > len(s) {
			t.Fatalf("SplitFirst(%q) = %q, %q", s, first, rest)
		}
		if c := Parse(s); c != nil {
			AccessOf(c)
		}
		// a rewritten assignment leaves nothing to rewrite
		if r, ok := RewriteAssignments(s); ok {
			if _, again := RewriteAssignments(r); again {
				t.Fatalf("RewriteAssignments(%q) = %q, which rewrites again", s, r)
			}
		}
	})
}
