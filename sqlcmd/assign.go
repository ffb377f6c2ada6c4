package sqlcmd

import (
	"strings"
)

// AssignFunc is the engine function `@name := expr` becomes (see
// RewriteAssignments); internal/gmsfix implements it.
const AssignFunc = "canopy_set_user_var"

// RewriteAssignments rewrites MySQL's assignment operator outside SET,
// which the parser does not know (`SELECT @a := 1` was a syntax error;
// ODBC's SQLColumns sends `SELECT @r := @r + 1 …`), into a call of
// AssignFunc: `@r := @r + 1` becomes `canopy_set_user_var('r', @r + 1)`.
// The assignment has the lowest precedence, so its value runs to the end
// of the expression: a comma, a closing parenthesis, a clause keyword or
// an alias. A select expression that is an assignment keeps the column
// name MySQL gives it, its text, as an alias. ok is false when the
// statement has nothing to rewrite (or is a SET, which parses `:=`).
func RewriteAssignments(query string) (string, bool) {
	if !strings.Contains(query, ":=") {
		return query, false
	}
	toks, ok := lexSQL(query)
	if !ok || len(toks) == 0 || toks[0].isWord("SET") {
		return query, false
	}
	out, changed := rewriteAssignments(query, toks)
	return out, changed
}

// rewriteAssignments rewrites the assignments among toks, the tokens of q,
// from the left; an assigned expression is rewritten in its turn (`@a :=
// @b := 1`).
func rewriteAssignments(q string, toks []sqlToken) (string, bool) {
	var b strings.Builder
	copied := 0
	for i := 1; i < len(toks); i++ {
		if toks[i].kind != tkAssign || toks[i-1].kind != tkUserVar {
			continue
		}
		end := assignmentEnd(toks, i+1)
		if end == i+1 {
			continue // nothing assigned: the parser reports the error
		}
		lhs, last := toks[i-1], toks[end-1]
		rhs := q[toks[i+1].start:last.end]
		if inner, ok := lexSQL(rhs); ok {
			rhs, _ = rewriteAssignments(rhs, inner)
		}
		b.WriteString(q[copied:lhs.start])
		b.WriteString(AssignFunc + "('")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(lhs.name))
		b.WriteString("', ")
		b.WriteString(rhs)
		b.WriteString(")")
		if startsSelectExpr(toks, i-1) && endsSelectExpr(toks, end) {
			b.WriteString(" AS `" + strings.ReplaceAll(q[lhs.start:last.end], "`", "``") + "`")
		}
		copied = last.end
		i = end
	}
	if copied == 0 {
		return q, false
	}
	b.WriteString(q[copied:])
	return b.String(), true
}

// stopWords end an assigned expression at its own level.
var stopWords = map[string]bool{
	"FROM": true, "WHERE": true, "GROUP": true, "HAVING": true, "ORDER": true, "LIMIT": true,
	"INTO": true, "UNION": true, "EXCEPT": true, "INTERSECT": true, "WINDOW": true, "FOR": true,
	"LOCK": true, "AS": true, "THEN": true, "WHEN": true, "ELSE": true, "END": true, "ON": true,
	"USING": true,
}

// operatorWords are words that continue an expression (so a word after
// an operand that is not one of them is an alias).
var operatorWords = map[string]bool{
	"AND": true, "OR": true, "XOR": true, "NOT": true, "IS": true, "NULL": true, "LIKE": true,
	"IN": true, "BETWEEN": true, "DIV": true, "MOD": true, "REGEXP": true, "RLIKE": true,
	"COLLATE": true, "TRUE": true, "FALSE": true, "INTERVAL": true, "BINARY": true, "CASE": true,
	"ESCAPE": true, "SOUNDS": true, "UNKNOWN": true, "MEMBER": true, "OF": true,
	"DATE": true, "TIME": true, "TIMESTAMP": true, // typed literals: DATE '2024-01-01'
}

// assignmentEnd is the index of the first token after the expression that
// starts at toks[from].
func assignmentEnd(toks []sqlToken, from int) int {
	depth := 0
	for j := from; j < len(toks); j++ {
		t := toks[j]
		switch {
		case t.kind == tkLParen || t.isWord("CASE"):
			depth++
			continue
		case t.kind == tkRParen:
			if depth == 0 {
				return j
			}
			depth--
			continue
		case t.isWord("END") && depth > 0:
			depth--
			continue
		}
		if depth > 0 {
			continue
		}
		switch {
		case t.kind == tkComma || t.kind == tkSemicolon:
			return j
		case t.kind == tkWord && stopWords[strings.ToUpper(t.text)]:
			return j
		case j > from && isOperand(toks[j-1]) && startsOperand(t):
			return j // an alias without AS
		}
	}
	return len(toks)
}

func isOperand(t sqlToken) bool {
	switch t.kind {
	case tkNumber, tkString, tkQuoted, tkUserVar, tkRParen:
		return true
	case tkWord:
		return !operatorWords[strings.ToUpper(t.text)]
	}
	return false
}

func startsOperand(t sqlToken) bool {
	switch t.kind {
	case tkQuoted, tkString:
		return true
	case tkWord:
		return !operatorWords[strings.ToUpper(t.text)]
	}
	return false
}

// selectOptions may stand between SELECT and its first expression.
var selectOptions = map[string]bool{
	"ALL": true, "DISTINCT": true, "DISTINCTROW": true, "HIGH_PRIORITY": true, "STRAIGHT_JOIN": true,
	"SQL_SMALL_RESULT": true, "SQL_BIG_RESULT": true, "SQL_BUFFER_RESULT": true, "SQL_NO_CACHE": true,
	"SQL_CACHE": true, "SQL_CALC_FOUND_ROWS": true,
}

// startsSelectExpr reports whether toks[at] begins an expression of a
// select list.
func startsSelectExpr(toks []sqlToken, at int) bool {
	if at == 0 {
		return false
	}
	prev := toks[at-1]
	if prev.kind != tkComma && !(prev.kind == tkWord && (selectOptions[strings.ToUpper(prev.text)] || prev.isWord("SELECT"))) {
		return false
	}
	depth := 0
	for k := at - 1; k >= 0; k-- {
		t := toks[k]
		switch {
		case t.kind == tkRParen:
			depth++
		case t.kind == tkLParen:
			if depth == 0 {
				return false
			}
			depth--
		case depth > 0:
		case t.isWord("SELECT"):
			return true
		case t.kind == tkWord && (stopWords[strings.ToUpper(t.text)] || t.isWord("SET") || t.isWord("VALUES")):
			return false
		}
	}
	return false
}

// endsSelectExpr reports whether toks[at] ends a select expression that
// has no alias of its own.
func endsSelectExpr(toks []sqlToken, at int) bool {
	if at == len(toks) {
		return true
	}
	t := toks[at]
	switch t.kind {
	case tkComma, tkSemicolon, tkRParen:
		return true
	case tkWord:
		switch strings.ToUpper(t.text) {
		case "FROM", "INTO", "UNION", "EXCEPT", "INTERSECT", "FOR", "LOCK", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "WINDOW":
			return true
		}
	}
	return false
}

type tokenKind int

const (
	tkWord tokenKind = iota + 1
	tkNumber
	tkString  // '…' or "…"
	tkQuoted  // `…`
	tkUserVar // @name, @'name', @"name", @`name`
	tkSysVar  // @@name
	tkAssign  // :=
	tkLParen
	tkRParen
	tkComma
	tkSemicolon
	tkOther
)

type sqlToken struct {
	kind       tokenKind
	start, end int
	text       string
	name       string // a user variable's name
}

func (t sqlToken) isWord(w string) bool { return t.kind == tkWord && strings.EqualFold(t.text, w) }

func identByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// lexSQL splits a statement into tokens, skipping blanks and comments;
// ok is false for text it cannot split (an unterminated quote).
func lexSQL(q string) ([]sqlToken, bool) {
	var toks []sqlToken
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '#' || c == '-' && strings.HasPrefix(q[i:], "--") && (i+2 == len(q) || q[i+2] <= ' '):
			if nl := strings.IndexByte(q[i:], '\n'); nl >= 0 {
				i += nl + 1
			} else {
				i = len(q)
			}
			continue
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return nil, false
			}
			i += end + 4
			continue
		}
		start := i
		t := sqlToken{start: start}
		switch {
		case c == '\'' || c == '"' || c == '`':
			end, ok := quoteEnd(q, i)
			if !ok {
				return nil, false
			}
			i = end
			t.kind = tkString
			if c == '`' {
				t.kind = tkQuoted
			}
		case c == '@' && i+1 < len(q) && q[i+1] == '@':
			i += 2
			for i < len(q) && (identByte(q[i]) || q[i] == '.') {
				i++
			}
			t.kind = tkSysVar
		case c == '@':
			i++
			t.kind = tkUserVar
			if i < len(q) && (q[i] == '\'' || q[i] == '"' || q[i] == '`') {
				end, ok := quoteEnd(q, i)
				if !ok {
					return nil, false
				}
				quote := q[i : i+1]
				t.name = strings.ReplaceAll(q[i+1:end-1], quote+quote, quote)
				i = end
			} else {
				for i < len(q) && (identByte(q[i]) || q[i] == '.') {
					i++
				}
				t.name = q[start+1 : i]
				if t.name == "" {
					t.kind = tkOther
				}
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			for i < len(q) && (identByte(q[i]) || q[i] == '.') {
				i++
			}
			t.kind = tkNumber
		case identByte(c):
			for i < len(q) && identByte(q[i]) {
				i++
			}
			t.kind = tkWord
			// x'…', b'…', N'…', _charset'…': one literal
			if i < len(q) && q[i] == '\'' {
				end, ok := quoteEnd(q, i)
				if !ok {
					return nil, false
				}
				i = end
				t.kind = tkString
			}
		case c == ':' && i+1 < len(q) && q[i+1] == '=':
			i += 2
			t.kind = tkAssign
		case c == '(':
			i++
			t.kind = tkLParen
		case c == ')':
			i++
			t.kind = tkRParen
		case c == ',':
			i++
			t.kind = tkComma
		case c == ';':
			i++
			t.kind = tkSemicolon
		default:
			i++
			t.kind = tkOther
		}
		t.end = i
		t.text = q[start:i]
		toks = append(toks, t)
	}
	return toks, true
}

// quoteEnd is the index after the quoted text that starts at q[i]: a
// doubled quote stands for itself, and a backslash escapes in strings.
func quoteEnd(q string, i int) (int, bool) {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			if quote != '`' {
				j++
			}
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}
