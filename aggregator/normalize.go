package aggregator

import (
	"errors"
	"strconv"
	"strings"

	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

// normalize takes the number and string literals out of a statement: it
// returns the text with ? in their place and their values as bind
// variables v1, v2, …, so that statements differing only in constants
// share one template. ok is false when the statement has no literal or
// its text is not plain enough to cut safely.
func normalize(query string) (string, map[string]*querypb.BindVariable, bool) {
	tkn := ast.NewStringTokenizer(query)
	var b strings.Builder
	var vars map[string]*querypb.BindVariable
	copied := 0
	for {
		prev := tkn.Position - 1 // where the previous token ended
		typ, val := tkn.Scan()
		if typ == 0 {
			break
		}
		if typ == ast.LEX_ERROR {
			return "", nil, false
		}
		var bv *querypb.BindVariable
		switch typ {
		case ast.INTEGRAL:
			if _, err := strconv.ParseUint(string(val), 10, 64); err != nil {
				return "", nil, false
			}
			if _, err := strconv.ParseInt(string(val), 10, 64); err == nil {
				bv = &querypb.BindVariable{Type: sqltypes.Int64, Value: []byte(string(val))}
			} else {
				bv = &querypb.BindVariable{Type: sqltypes.Uint64, Value: []byte(string(val))}
			}
		case ast.FLOAT:
			bv = &querypb.BindVariable{Type: sqltypes.Float64, Value: []byte(string(val))}
		case ast.STRING:
			bv = sqltypes.StringBindVariable(string(val))
		default:
			continue
		}
		end := min(tkn.Position-1, len(query))
		start := max(prev, 0)
		for start < end && strings.IndexByte(" \t\r\n", query[start]) >= 0 {
			start++
		}
		// the span must be the literal itself (not a comment before it)
		if start >= end || !strings.ContainsRune("'\"0123456789.", rune(query[start])) {
			return "", nil, false
		}
		if typ == ast.STRING {
			// the tokenizer reads past a closing quote: find it
			if end = quotedEnd(query, start); end < 0 {
				return "", nil, false
			}
		}
		if vars == nil {
			vars = make(map[string]*querypb.BindVariable)
			b.Grow(len(query))
		}
		b.WriteString(query[copied:start])
		b.WriteByte('?')
		copied = end
		vars["v"+strconv.Itoa(len(vars)+1)] = bv
	}
	if vars == nil {
		return "", nil, false
	}
	b.WriteString(query[copied:])
	return b.String(), vars, true
}

// quotedEnd returns the index just past the quoted string starting at
// start, or -1.
func quotedEnd(s string, start int) int {
	q := s[start]
	for i := start + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			if i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return -1
}

var errNotTemplate = errors.New("not a template")

// valuesOnly reports whether every bind variable of a normalized
// statement stands where a value means the same as the literal it
// replaced: in WHERE conditions, SET values and LIMIT. (Elsewhere a
// number can be a column position, ORDER BY 1, or part of a type.)
func valuesOnly(stmt ast.Statement) bool {
	total := countArgs(stmt)
	if total < 0 {
		return false
	}
	in := 0
	add := func(n ast.SQLNode) bool {
		c := countArgs(n)
		in += c
		return c >= 0
	}
	switch s := stmt.(type) {
	case *ast.Select:
		if s.Where != nil && !add(s.Where) || s.Limit != nil && !add(s.Limit) {
			return false
		}
	case *ast.Update:
		if s.Where != nil && !add(s.Where) || !add(s.Exprs) || s.Limit != nil && !add(s.Limit) {
			return false
		}
	case *ast.Delete:
		if s.Where != nil && !add(s.Where) || s.Limit != nil && !add(s.Limit) {
			return false
		}
	default:
		return false
	}
	return in == total
}

// countArgs counts bind variables under n; -1 if n holds a subquery.
func countArgs(n ast.SQLNode) int {
	count := 0
	ast.Walk(func(n ast.SQLNode) (bool, error) {
		switch n := n.(type) {
		case *ast.Subquery:
			count = -1 << 30
			return false, nil
		case *ast.SQLVal:
			if n.Type == ast.ValArg {
				count++
			}
		}
		return true, nil
	}, n)
	if count < 0 {
		return -1
	}
	return count
}
