package aggregator

import (
	"strings"
	"testing"

	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

const defBefore = "CREATE TABLE `t` (\n" +
	"  `k` int,\n" +
	"  `v` int,\n" +
	"  `w` varchar(20),\n" +
	"  KEY `v` (`v`),\n" +
	"  CONSTRAINT `t_chk_1` CHECK ((`v` >= 0))\n" +
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin"

// a partition that made part of
// ALTER TABLE t CHANGE w ww VARCHAR(30), DROP INDEX v, ADD COLUMN c INT DEFAULT 7 FIRST, ADD UNIQUE KEY u (k, v)
const defMiddle = "CREATE TABLE `t` (\n" +
	"  `c` int DEFAULT '7',\n" +
	"  `k` int,\n" +
	"  `v` int,\n" +
	"  `ww` varchar(30),\n" +
	"  UNIQUE KEY `u` (`k`,`v`),\n" +
	"  CONSTRAINT `t_chk_1` CHECK ((`v` >= 0))\n" +
	") ENGINE=InnoDB AUTO_INCREMENT=12 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin COMMENT='x'"

func TestParseDef(t *testing.T) {
	d, err := parseDef(normalizeDef(defMiddle))
	if err != nil {
		t.Fatal(err)
	}
	var cols, idx []string
	for _, c := range d.columns {
		cols = append(cols, c.name)
	}
	for _, c := range d.indexes {
		idx = append(idx, c.name+"="+c.text)
	}
	if got := strings.Join(cols, ","); got != "c,k,v,ww" {
		t.Errorf("columns %s", got)
	}
	if got := strings.Join(idx, ";"); got != "u=UNIQUE KEY `u` (`k`,`v`)" {
		t.Errorf("indexes %s", got)
	}
	if len(d.checks) != 1 || d.checks[0].name != "t_chk_1" {
		t.Errorf("checks %v", d.checks)
	}
	if d.options != "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin COMMENT='x'" {
		t.Errorf("options %q (the AUTO_INCREMENT counter is not part of the shape)", d.options)
	}
	if _, err := parseDef("CREATE VIEW v AS SELECT 1"); err == nil {
		t.Error("a view parsed as a table definition")
	}
	if got := firstName("`a``b` int"); got != "a`b" {
		t.Errorf("firstName of a quoted backquote: %q", got)
	}
	if got := afterName("`a``b` int"); got != " int" {
		t.Errorf("afterName: %q", got)
	}
}

func TestConvergeStatements(t *testing.T) {
	before, _ := parseDef(defBefore)
	middle, _ := parseDef(normalizeDef(defMiddle))
	back := convergeStatements("`db_1`.`t`", middle, before, [][2]string{{"ww", "w"}}, true)
	want := []string{
		"ALTER TABLE `db_1`.`t` RENAME COLUMN `ww` TO `w`",
		"ALTER TABLE `db_1`.`t` DROP INDEX `u`",
		"ALTER TABLE `db_1`.`t` DROP COLUMN `c`",
		"ALTER TABLE `db_1`.`t` MODIFY COLUMN `w` varchar(20) AFTER `v`",
		"ALTER TABLE `db_1`.`t` ADD KEY `v` (`v`)",
		"ALTER TABLE `db_1`.`t` DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin COMMENT=''",
	}
	if strings.Join(back, "\n") != strings.Join(want, "\n") {
		t.Errorf("back to the definition before:\n%s\nwant\n%s", strings.Join(back, "\n"), strings.Join(want, "\n"))
	}
	if s := convergeStatements("`t`", before, before, nil, true); len(s) != 0 {
		t.Errorf("from a definition to itself: %q", s)
	}
	// forward, a column moved and one added in the middle
	after, _ := parseDef("CREATE TABLE `t` (\n  `w` varchar(20),\n  `k` int,\n  `n` int,\n  `v` int,\n  KEY `v` (`v`),\n  CONSTRAINT `t_chk_1` CHECK ((`v` >= 0))\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin")
	fwd := convergeStatements("`t`", before, after, nil, false)
	want = []string{
		"ALTER TABLE `t` MODIFY COLUMN `w` varchar(20) FIRST",
		"ALTER TABLE `t` ADD COLUMN `n` int AFTER `k`",
	}
	if strings.Join(fwd, "\n") != strings.Join(want, "\n") {
		t.Errorf("forward:\n%s\nwant\n%s", strings.Join(fwd, "\n"), strings.Join(want, "\n"))
	}
	if !sameShape(before, before) || sameShape(before, middle) {
		t.Error("sameShape")
	}
}

// TestAlterSQL: an ALTER printed for a partition parses back (the
// parser's own printer puts column definitions in parentheses MySQL's
// grammar refuses after MODIFY and CHANGE, and before FIRST or AFTER).
func TestAlterSQL(t *testing.T) {
	for q, want := range map[string]string{
		"ALTER TABLE t CHANGE COLUMN w ww VARCHAR(30) NOT NULL DEFAULT 'x' AFTER k, DROP INDEX v, ADD COLUMN c INT DEFAULT 7 FIRST, ADD UNIQUE KEY u (k, v), MODIFY `select` INT FIRST": "alter table db_1.t change column w ww VARCHAR(30) not null default 'x' after k, drop index v, add column c INT default 7 first, add unique index u (k, v), modify column `select` INT first",
		"CREATE UNIQUE INDEX u ON t (k, v)": "alter table db_1.t add unique index u (k, v)",
		"ALTER TABLE t RENAME COLUMN a TO b, ALTER COLUMN x SET DEFAULT 3, DROP CHECK c1, ADD CONSTRAINT c2 CHECK (a > 0)": "alter table db_1.t rename column a to b, alter column x set default 3, drop check c1, add constraint c2 check (a > 0)",
	} {
		s, err := ast.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		got := alterSQL(retarget(s, "db_1", "t"))
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", q, got, want)
		}
		if _, err := ast.Parse(got); err != nil {
			t.Errorf("%s does not parse: %v", got, err)
		}
	}
}
