package sqlcmd

import "strings"

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
// other statement.
func ParseCreateTable(stmt string) (CreateTable, bool) {
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
	for _, r := range cut {
		b.WriteString(stmt[last:r[0]])
		last = r[1]
	}
	b.WriteString(stmt[last:])
	c.SQL = b.String()
	return c, true
}
