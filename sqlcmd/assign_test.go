package sqlcmd

import "testing"

func TestRewriteAssignments(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT @a := 1", "SELECT canopy_set_user_var('a', 1) AS `@a := 1`"},
		{"SELECT @a:=1, @b := 'x'", "SELECT canopy_set_user_var('a', 1) AS `@a:=1`, canopy_set_user_var('b', 'x') AS `@b := 'x'`"},
		{"SELECT @r := @r + 1 FROM t", "SELECT canopy_set_user_var('r', @r + 1) AS `@r := @r + 1` FROM t"},
		{"SELECT @r := @r + 1 AS n FROM t", "SELECT canopy_set_user_var('r', @r + 1) AS n FROM t"},
		{"SELECT @r := @r + 1 n FROM t", "SELECT canopy_set_user_var('r', @r + 1) n FROM t"},
		{"SELECT @a := @b := 2", "SELECT canopy_set_user_var('a', canopy_set_user_var('b', 2)) AS `@a := @b := 2`"},
		{"SELECT IF(@a := 1, 2, 3)", "SELECT IF(canopy_set_user_var('a', 1), 2, 3)"},
		{"SELECT @a := CASE WHEN x THEN 1 ELSE 2 END FROM t", "SELECT canopy_set_user_var('a', CASE WHEN x THEN 1 ELSE 2 END) AS `@a := CASE WHEN x THEN 1 ELSE 2 END` FROM t"},
		{"SELECT x FROM t WHERE (@a := x) > 1", "SELECT x FROM t WHERE (canopy_set_user_var('a', x)) > 1"},
		{"SELECT DISTINCT @`my var` := 1", "SELECT DISTINCT canopy_set_user_var('my var', 1) AS `@``my var`` := 1`"},
		{"SELECT @a := 1 AND 0", "SELECT canopy_set_user_var('a', 1 AND 0) AS `@a := 1 AND 0`"},
		{"SELECT @a := DATE '2024-01-01'", "SELECT canopy_set_user_var('a', DATE '2024-01-01') AS `@a := DATE '2024-01-01'`"},
		{"SELECT ':=' , @a := x'FF'", "SELECT ':=' , canopy_set_user_var('a', x'FF') AS `@a := x'FF'`"},
		{"SELECT * FROM (SELECT @n := 0) init", "SELECT * FROM (SELECT canopy_set_user_var('n', 0) AS `@n := 0`) init"},
	} {
		got, ok := RewriteAssignments(c.in)
		if !ok || got != c.want {
			t.Errorf("RewriteAssignments(%q) = %q, %v\nwant %q", c.in, got, ok, c.want)
		}
	}
	for _, q := range []string{"SET @a := 1", "SELECT ':='", "SELECT 1 -- :=\n", "select @a", "SELECT /* := */ 1", "set @a := 1, @b := 2"} {
		if got, ok := RewriteAssignments(q); ok || got != q {
			t.Errorf("RewriteAssignments(%q) = %q, %v: want it unchanged", q, got, ok)
		}
	}
}
