package sqlcmd

import (
	"strconv"
	"strings"
)

// CreateTable is a CREATE TABLE in SingleStore's dialect, taken apart: the
// SHARD KEY clause and the REFERENCE keyword, which MySQL's grammar lacks,
// and the statement without them.
type CreateTable struct {
	SQL         string // the statement in MySQL's grammar
	Reference   bool
	HasShardKey bool     // a SHARD KEY clause was given (it may be empty)
	ShardKey    []string // its columns
}

// ParseCreateTable recognizes CREATE [REFERENCE] TABLE; ok is false for any
// other statement. SHOW CREATE TABLE's form (ShowCreateTable) is read too:
// CREATE /*!90618 REFERENCE */ TABLE and /*!90618 SHARD */ KEY (…).
func ParseCreateTable(stmt string) (CreateTable, bool) {
	stmt = uncomment(stmt) // the cuts below index the statement without its comments
	toks, good := tokenize(stmt)
	if !good {
		return CreateTable{}, false
	}
	p := &parser{toks: toks}
	if !p.keyword("CREATE") {
		return CreateTable{}, false
	}
	var c CreateTable
	var cut [][2]int // byte ranges to remove
	var serial []int // the cuts that SERIAL's meaning replaces
	if t := p.peek(); !t.quoted && strings.EqualFold(t.text, "REFERENCE") && p.pos+1 < len(toks) {
		c.Reference = true
		cut = append(cut, [2]int{t.start, p.toks[p.pos+1].start})
		p.pos++
	}
	if !p.keyword("TABLE") {
		return CreateTable{}, false
	}
	depth := 0
	for i := p.pos; i < len(toks); i++ {
		t := toks[i]
		if t.quoted {
			continue
		}
		switch t.text {
		case "(":
			depth++
			continue
		case ")":
			depth--
			continue
		}
		if depth == 1 && strings.EqualFold(t.text, "SERIAL") && i >= 2 && (toks[i-2].text == "(" || toks[i-2].text == ",") &&
			(i+1 >= len(toks) || !strings.EqualFold(toks[i+1].text, "DEFAULT")) {
			// the SERIAL type: the parser drops its UNSIGNED
			cut = append(cut, [2]int{t.start, t.end})
			serial = append(serial, len(cut)-1)
			continue
		}
		if depth != 1 || !strings.EqualFold(t.text, "SHARD") || i+1 >= len(toks) || !strings.EqualFold(toks[i+1].text, "KEY") {
			continue
		}
		// SHARD KEY [name] ( cols ) [USING …]
		j := i + 2
		if j < len(toks) && toks[j].text != "(" {
			j++ // an index name
		}
		if j >= len(toks) || toks[j].text != "(" {
			return CreateTable{}, false
		}
		c.HasShardKey = true
		j++
		for ; j < len(toks) && toks[j].text != ")"; j++ {
			if toks[j].text == "," {
				continue
			}
			c.ShardKey = append(c.ShardKey, toks[j].text)
			if j+1 < len(toks) && toks[j+1].text == "(" { // a prefix length
				for j < len(toks) && toks[j].text != ")" {
					j++
				}
			}
		}
		if j >= len(toks) {
			return CreateTable{}, false
		}
		end := j // the closing parenthesis
		for end+1 < len(toks) && strings.EqualFold(toks[end+1].text, "USING") {
			end += 2
		}
		// remove the clause and one comma next to it
		from, to := t.start, toks[end].end
		if prev := toks[i-1]; prev.text == "," {
			from = prev.start
		} else if end+1 < len(toks) && toks[end+1].text == "," {
			to = toks[end+1].end
		}
		cut = append(cut, [2]int{from, to})
		i = end
	}
	var b strings.Builder
	last := 0
	for i, r := range cut {
		b.WriteString(stmt[last:r[0]])
		if len(serial) > 0 && serial[0] == i {
			b.WriteString("BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE")
			serial = serial[1:]
		}
		last = r[1]
	}
	b.WriteString(stmt[last:])
	c.SQL = b.String()
	return c, true
}

// Table options in SHOW CREATE TABLE and SHOW CREATE DATABASE are printed
// in MemSQL's form: version comments that MySQL 8 skips (it replays a dump
// as ordinary tables, the shard key as an ordinary index) and that
// ParseCreateTable and ParseClusterDDL read back.
const versionComment = "/*!90618 "

// ShowCreateTable adds a distributed table's options to the text of GMS's
// SHOW CREATE TABLE: REFERENCE, the shard key (none for a table whose rows
// are spread, nor when it is the primary key, the default) and AUTO_INCREMENT=autoInc when that is above what the text
// says (0: leave it).
func ShowCreateTable(text string, reference bool, shardKey []string, autoInc uint64) string {
	toks, ok := tokenize(text)
	if !ok || len(toks) < 3 || !strings.EqualFold(toks[0].text, "CREATE") {
		return text
	}
	type edit struct {
		at, to int // replace text[at:to]
		with   string
	}
	var edits []edit
	open, close := -1, -1
	for i, t := range toks {
		if t.quoted {
			continue
		}
		if reference && open < 0 && strings.EqualFold(t.text, "TABLE") {
			edits = append(edits, edit{t.start, t.start, versionComment + "REFERENCE */ "})
			reference = false
		}
		if t.text == "(" && open < 0 {
			open = i
		}
		if open >= 0 && close < 0 {
			depth := 0
			for j := open; j < len(toks); j++ {
				if toks[j].quoted {
					continue
				}
				if toks[j].text == "(" {
					depth++
				} else if toks[j].text == ")" {
					if depth--; depth == 0 {
						close = j
						break
					}
				}
			}
			if close < 0 {
				return text
			}
			break
		}
	}
	if close < 0 {
		return text
	}
	if len(shardKey) > 0 && !equalFold(primaryKey(toks[open:close]), shardKey) {
		cols := make([]string, len(shardKey))
		for i, c := range shardKey {
			cols[i] = "`" + strings.ReplaceAll(c, "`", "``") + "`"
		}
		key := versionComment + "SHARD */ KEY (" + strings.Join(cols, ",") + ")"
		at := toks[close].start
		if at > 0 && text[at-1] == '\n' {
			edits = append(edits, edit{at - 1, at - 1, ",\n  " + key})
		} else {
			edits = append(edits, edit{at, at, ", " + key})
		}
	}
	if autoInc > 0 {
		n := strconv.FormatUint(autoInc, 10)
		done := false
		for i := close + 1; i+2 < len(toks); i++ {
			if strings.EqualFold(toks[i].text, "AUTO_INCREMENT") && toks[i+1].text == "=" {
				if cur, err := strconv.ParseUint(toks[i+2].text, 10, 64); err != nil || cur < autoInc {
					edits = append(edits, edit{toks[i+2].start, toks[i+2].end, n})
				}
				done = true
				break
			}
		}
		if !done {
			at := toks[close].end
			// MySQL's place: after ENGINE=…
			if close+3 < len(toks) && strings.EqualFold(toks[close+1].text, "ENGINE") && toks[close+2].text == "=" {
				at = toks[close+3].end
			}
			edits = append(edits, edit{at, at, " AUTO_INCREMENT=" + n})
		}
	}
	var b strings.Builder
	last := 0
	for _, e := range edits { // in text order
		b.WriteString(text[last:e.at])
		b.WriteString(e.with)
		last = e.to
	}
	b.WriteString(text[last:])
	return b.String()
}

// primaryKey is the PRIMARY KEY (…) of a table's definitions.
func primaryKey(toks []token) []string {
	for i := 0; i+2 < len(toks); i++ {
		if toks[i].quoted || !strings.EqualFold(toks[i].text, "PRIMARY") || !strings.EqualFold(toks[i+1].text, "KEY") || toks[i+2].text != "(" {
			continue
		}
		var cols []string
		for j := i + 3; j < len(toks) && toks[j].text != ")"; j++ {
			if toks[j].text != "," {
				cols = append(cols, toks[j].text)
			}
		}
		return cols
	}
	return nil
}

func equalFold(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// ShowCreateDatabase adds a distributed database's partition count (and
// its replication mode when synchronous) to GMS's SHOW CREATE DATABASE.
func ShowCreateDatabase(text string, partitions int, sync bool) string {
	opt := "PARTITIONS " + strconv.Itoa(partitions)
	if sync {
		opt += " WITH SYNC REPLICATION"
	}
	return text + " " + versionComment + opt + " */"
}
