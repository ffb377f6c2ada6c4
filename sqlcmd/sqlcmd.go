// Package sqlcmd recognizes the statements Canopy answers itself, outside
// the SQL engine: cluster management (ADD LEAF, SHOW LEAVES, …) and node
// introspection (SHOW DATABASES EXTENDED). It is pure: text in, a typed
// command out.
package sqlcmd

import (
	"strings"
	"unicode"
)

// SplitFirst returns the first statement of a multi-statement query and the
// rest (after the ';'), ignoring semicolons inside quotes and comments.
func SplitFirst(q string) (first, rest string) {
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == '\\' && quote != '`' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '-' && i+1 < len(q) && q[i+1] == '-', c == '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return q, ""
			}
			i += end + 3
		case c == ';':
			return q[:i], strings.TrimLeftFunc(q[i+1:], unicode.IsSpace)
		}
	}
	return q, ""
}

// Silent starts a statement that is followed by others in the same
// multi-statement packet and gets no result of its own: the statement
// after it answers for both (the first error, if any, is the answer). An
// aggregator sends a pooled connection's settings this way together with
// a query whose rows it streams, since a client streams one result per
// packet.
const Silent = "/*canopy:silent*/ "

// token is a word, a quoted string, a number or a punctuation mark.
type token struct {
	text       string
	quoted     bool // a '…' or "…" string (text is unquoted)
	start, end int  // byte offsets in the statement
}

// tokenize splits a statement into tokens; it reports false on an
// unterminated quote.
func tokenize(s string) ([]token, bool) {
	s = uncomment(s)
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case unicode.IsSpace(rune(c)):
			i++
		case c == '\'' || c == '"' || c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\\' && c != '`' && j+1 < len(s) {
					j++
					writeEscaped(&b, s[j])
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						b.WriteByte(c)
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, false
			}
			out = append(out, token{text: b.String(), quoted: c != '`', start: i, end: j + 1})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			out = append(out, token{text: s[i:j], start: i, end: j})
			i = j
		default:
			out = append(out, token{text: s[i : i+1], start: i, end: i + 1})
			i++
		}
	}
	return out, true
}

// uncomment blanks out comments as MySQL reads them: a plain comment
// (/* … */, -- …, # …) is gone; a version comment (/*!NNNNN … */, MariaDB's
// /*M!NNNNNN … */) loses its markers and keeps its text, which is read
// whatever the version (as vitess reads it, so a dump's
// CREATE /*!90618 REFERENCE */ TABLE means what our engine would run).
// Every other byte keeps its offset, so token offsets index the result.
func uncomment(s string) string {
	if !strings.ContainsAny(s, "/#-") {
		return s
	}
	b := []byte(s)
	blank := func(from, to int) {
		for i := from; i < to && i < len(b); i++ {
			if b[i] != '\n' {
				b[i] = ' '
			}
		}
	}
	inVersion := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for ; j < len(b); j++ {
				if b[j] == '\\' && c != '`' {
					j++
					continue
				}
				if b[j] == c {
					if j+1 < len(b) && b[j+1] == c {
						j++
						continue
					}
					break
				}
			}
			i = j + 1
		case inVersion && c == '*' && i+1 < len(b) && b[i+1] == '/':
			blank(i, i+2)
			inVersion = false
			i += 2
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			j := i + 2
			if j < len(b) && b[j] == 'M' && j+1 < len(b) && b[j+1] == '!' {
				j++
			}
			if j < len(b) && b[j] == '!' && !inVersion {
				j++
				for k := 0; k < 6 && j < len(b) && b[j] >= '0' && b[j] <= '9'; k++ {
					j++
				}
				blank(i, j)
				inVersion = true
				i = j
				continue
			}
			end := strings.Index(string(b[i+2:]), "*/")
			if end < 0 {
				blank(i, len(b))
				return string(b)
			}
			blank(i, i+2+end+2)
			i += 2 + end + 2
		case c == '#' || c == '-' && i+1 < len(b) && b[i+1] == '-' && (i+2 == len(b) || b[i+2] <= ' '):
			j := i
			for j < len(b) && b[j] != '\n' {
				j++
			}
			blank(i, j)
			i = j
		default:
			i++
		}
	}
	return string(b)
}

// writeEscaped writes what MySQL reads for a backslash followed by c in a
// string literal (\% and \_ keep their backslash, for LIKE patterns).
func writeEscaped(b *strings.Builder, c byte) {
	switch c {
	case '0':
		b.WriteByte(0)
	case 'b':
		b.WriteByte('\b')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'Z':
		b.WriteByte(26)
	case '%', '_':
		b.WriteByte('\\')
		b.WriteByte(c)
	default:
		b.WriteByte(c)
	}
}

// explainStart is the offset of the statement after the EXPLAIN keyword.
func explainStart(stmt string) int {
	s := strings.TrimLeftFunc(stmt, unicode.IsSpace)
	off := len(stmt) - len(s)
	i := 0
	for i < len(s) && isWordByte(s[i]) {
		i++
	}
	return off + i
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// parser walks the tokens of one statement.
type parser struct {
	toks []token
	pos  int
}

func (p *parser) done() bool { return p.pos >= len(p.toks) }

func (p *parser) peek() token {
	if p.done() {
		return token{}
	}
	return p.toks[p.pos]
}

// keyword consumes the given keywords in order, case-insensitively.
func (p *parser) keyword(words ...string) bool {
	if p.pos+len(words) > len(p.toks) {
		return false
	}
	for i, w := range words {
		t := p.toks[p.pos+i]
		if t.quoted || !strings.EqualFold(t.text, w) {
			return false
		}
	}
	p.pos += len(words)
	return true
}

// Command is a statement Canopy executes itself.
type Command interface{ command() }

// ShowDatabasesExtended is SHOW DATABASES EXTENDED: per database, its log
// position, role and replication state.
type ShowDatabasesExtended struct{}

func (ShowDatabasesExtended) command() {}

// ShowReplicationStatus is SHOW REPLICATION STATUS on a node: each
// stream it ships a database on, to which copy, in which state.
type ShowReplicationStatus struct{}

// PartitionStatus is CANOPY PARTITION STATUS: a node's partition copies
// and replication streams as one typed document (internal/nodeapi), for
// the master aggregator.
type PartitionStatus struct{}

func (ShowReplicationStatus) command() {}
func (PartitionStatus) command()       {}

// Explain is EXPLAIN of a query or DML statement: the plan, one operator
// per row.
type Explain struct {
	Query string
}

func (Explain) command() {}

// explainable are the statements EXPLAIN shows a plan for; EXPLAIN of a
// table name is SHOW COLUMNS and stays with the engine.
var explainable = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true,
	"REPLACE": true, "WITH": true, "(": true, "TABLE": true}

// Parse recognizes one statement. It returns nil for anything the SQL engine
// should run.
func Parse(stmt string) Command {
	if plainDML(stmt) {
		return nil
	}
	toks, ok := tokenize(stmt)
	if !ok || len(toks) == 0 {
		return nil
	}
	p := &parser{toks: toks}
	if c := parseCluster(p); c != nil {
		return c
	}
	p.pos = 0
	if c := parseBackup(p); c != nil {
		return c
	}
	p.pos = 0
	if c := parseAccountStatement(stmt, p); c != nil {
		return c
	}
	p.pos = 0
	switch {
	case p.keyword("SHOW", "DATABASES", "EXTENDED"):
		if p.done() {
			return ShowDatabasesExtended{}
		}
	case p.keyword("SHOW", "REPLICATION", "STATUS"):
		if p.done() {
			return ShowReplicationStatus{}
		}
	case p.keyword("CANOPY", "PARTITION", "STATUS"):
		if p.done() {
			return PartitionStatus{}
		}
	case p.keyword("EXPLAIN"), p.keyword("DESCRIBE"), p.keyword("DESC"):
		if next := p.peek(); !next.quoted && explainable[strings.ToUpper(next.text)] {
			return Explain{Query: strings.TrimSpace(stmt[explainStart(stmt):])}
		}
	}
	return nil
}

// plainDML reports whether a statement starts with a word none of our
// commands starts with: the SELECT, INSERT, REPLACE, UPDATE and DELETE
// every client sends, and the multi-row INSERTs an aggregator sends a
// leaf, which are long to tokenize (a tenth of a leaf's CPU during a
// LOAD DATA went to tokenizing them only to find no command).
func plainDML(stmt string) bool {
	s := strings.TrimLeft(stmt, " \t\r\n")
	i := 0
	for i < len(s) && (s[i]|0x20 >= 'a' && s[i]|0x20 <= 'z') {
		i++
	}
	if i < len(s) && (s[i] == '_' || s[i] == '$' || s[i] >= '0' && s[i] <= '9' || s[i] >= 0x80) {
		return false // a longer identifier
	}
	switch strings.ToUpper(s[:i]) {
	case "SELECT", "INSERT", "REPLACE", "UPDATE", "DELETE":
		return true
	}
	return false
}
