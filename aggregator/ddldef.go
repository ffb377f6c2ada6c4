package aggregator

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Table definitions as SHOW CREATE TABLE prints them, and the ALTER
// statements that take a table from one definition to another: how a
// schema change job brings a partition back to the definition it had
// before (or on to the one the other partitions have) whatever part of
// the change it made. The engine runs an ALTER's clauses one at a time,
// so a partition that refused a clause may have made the ones before it.

// tableDef is a definition: the engine prints one element per line.
type tableDef struct {
	columns []defLine
	indexes []defLine // the primary key is named PRIMARY
	checks  []defLine // CONSTRAINT … lines
	options string    // the table options after the closing parenthesis
}

// defLine is one element of a definition: its name and its text.
type defLine struct{ name, text string }

var autoIncrementOption = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// normalizeDef is a definition without its AUTO_INCREMENT counter, which
// moves with the rows: the shape of the table is the rest.
func normalizeDef(def string) string {
	return autoIncrementOption.ReplaceAllString(def, "")
}

// parseDef reads a definition SHOW CREATE TABLE printed.
func parseDef(def string) (tableDef, error) {
	var out tableDef
	lines := strings.Split(def, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "CREATE TABLE ") || !strings.HasSuffix(lines[0], "(") ||
		!strings.HasPrefix(lines[len(lines)-1], ")") {
		return out, fmt.Errorf("not a table definition: %.60q", def)
	}
	for _, l := range lines[1 : len(lines)-1] {
		l = strings.TrimSuffix(strings.TrimSpace(l), ",")
		switch {
		case strings.HasPrefix(l, "`"):
			out.columns = append(out.columns, defLine{firstName(l), l})
		case strings.HasPrefix(l, "PRIMARY KEY"):
			out.indexes = append(out.indexes, defLine{"PRIMARY", l})
		case strings.HasPrefix(l, "KEY "), strings.HasPrefix(l, "UNIQUE KEY "), strings.HasPrefix(l, "FULLTEXT KEY "),
			strings.HasPrefix(l, "SPATIAL KEY "), strings.HasPrefix(l, "VECTOR KEY "):
			out.indexes = append(out.indexes, defLine{firstName(l), l})
		case strings.HasPrefix(l, "CONSTRAINT "):
			out.checks = append(out.checks, defLine{firstName(l), l})
		default:
			return out, fmt.Errorf("unexpected line in a table definition: %q", l)
		}
	}
	out.options = strings.TrimSpace(strings.TrimPrefix(lines[len(lines)-1], ")"))
	return out, nil
}

// firstName is the first backquoted name of a line (a doubled backquote
// in it stands for one).
func firstName(l string) string {
	i := strings.IndexByte(l, '`')
	if i < 0 {
		return ""
	}
	var b strings.Builder
	for j := i + 1; j < len(l); j++ {
		if l[j] == '`' {
			if j+1 < len(l) && l[j+1] == '`' {
				b.WriteByte('`')
				j++
				continue
			}
			break
		}
		b.WriteByte(l[j])
	}
	return b.String()
}

// afterName is a line after its first backquoted name.
func afterName(l string) string {
	i := strings.IndexByte(l, '`')
	if i < 0 {
		return l
	}
	for j := i + 1; j < len(l); j++ {
		if l[j] == '`' {
			if j+1 < len(l) && l[j+1] == '`' {
				j++
				continue
			}
			return l[j+1:]
		}
	}
	return ""
}

func find(lines []defLine, name string) (defLine, bool) {
	for _, l := range lines {
		if strings.EqualFold(l.name, name) {
			return l, true
		}
	}
	return defLine{}, false
}

// sameShape reports whether two definitions have the same columns,
// indexes and checks (table options aside: the aggregators' copy of a
// database may have another default character set than its partitions).
func sameShape(a, b tableDef) bool {
	eq := func(x, y []defLine) bool {
		return slices.EqualFunc(x, y, func(p, q defLine) bool { return p.text == q.text })
	}
	return eq(a.columns, b.columns) && eq(a.indexes, b.indexes) && eq(a.checks, b.checks)
}

// convergeStatements are the ALTER TABLE statements (each of one clause,
// which the engine applies whole) that take table tbl from definition cur
// to target. renames are the column renames (from, to) the way goes:
// a renamed column keeps its values. With options, the table options are
// brought over too.
func convergeStatements(tbl string, cur, target tableDef, renames [][2]string, options bool) []string {
	var out []string
	alter := func(format string, args ...any) {
		out = append(out, "ALTER TABLE "+tbl+" "+fmt.Sprintf(format, args...))
	}
	cols := slices.Clone(cur.columns)
	for _, r := range renames {
		_, hasFrom := find(cols, r[0])
		_, hasTo := find(cols, r[1])
		_, wantFrom := find(target.columns, r[0])
		_, wantTo := find(target.columns, r[1])
		if hasFrom && !hasTo && wantTo && !wantFrom {
			alter("RENAME COLUMN %s TO %s", quoteIdent(r[0]), quoteIdent(r[1]))
			for i := range cols {
				if strings.EqualFold(cols[i].name, r[0]) {
					cols[i].name = r[1]
					cols[i].text = quoteIdent(r[1]) + afterName(cols[i].text)
				}
			}
		}
	}
	for _, ix := range cur.indexes {
		if t, ok := find(target.indexes, ix.name); !ok || t.text != ix.text {
			if ix.name == "PRIMARY" {
				alter("DROP PRIMARY KEY")
			} else {
				alter("DROP INDEX %s", quoteIdent(ix.name))
			}
		}
	}
	for _, ck := range cur.checks {
		if t, ok := find(target.checks, ck.name); !ok || t.text != ck.text {
			alter("DROP CONSTRAINT %s", quoteIdent(ck.name))
		}
	}
	kept := cols[:0]
	for _, c := range cols {
		if _, ok := find(target.columns, c.name); ok {
			kept = append(kept, c)
		} else {
			alter("DROP COLUMN %s", quoteIdent(c.name))
		}
	}
	cols = kept
	for i, c := range target.columns {
		pos := "FIRST"
		if i > 0 {
			pos = "AFTER " + quoteIdent(target.columns[i-1].name)
		}
		j := slices.IndexFunc(cols, func(x defLine) bool { return strings.EqualFold(x.name, c.name) })
		switch {
		case j < 0:
			alter("ADD COLUMN %s %s", c.text, pos)
			cols = slices.Insert(cols, i, c)
		case j != i || cols[j].text != c.text:
			alter("MODIFY COLUMN %s %s", c.text, pos)
			cols = slices.Delete(cols, j, j+1)
			cols = slices.Insert(cols, i, c)
		}
	}
	for _, ix := range target.indexes {
		if t, ok := find(cur.indexes, ix.name); !ok || t.text != ix.text {
			alter("ADD %s", ix.text)
		}
	}
	for _, ck := range target.checks {
		if t, ok := find(cur.checks, ck.name); !ok || t.text != ck.text {
			alter("ADD %s", ck.text)
		}
	}
	if options && cur.options != target.options {
		o := strings.TrimSpace(engineOption.ReplaceAllString(target.options, ""))
		if strings.Contains(cur.options, "COMMENT=") && !strings.Contains(target.options, "COMMENT=") {
			o += " COMMENT=''"
		}
		if o = strings.TrimSpace(o); o != "" {
			alter("%s", o)
		}
	}
	return out
}

var engineOption = regexp.MustCompile(`ENGINE=\S+`)
