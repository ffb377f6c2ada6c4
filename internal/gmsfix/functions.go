package gmsfix

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/expression/function"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"
)

// Binary strings. GMS's string functions convert their arguments to
// utf8mb4 text, so a binary value that is not valid UTF-8 fails with an
// error quoting the whole value (`MD5(x'FF')`: "invalid string for charset
// utf8mb4: '[255]'", a 100 KB blob gives a 100 KB error), or is mangled
// (`HEX(LEFT(x'0001FF', 4))` gave 0001EFBFBD). MySQL works on the bytes
// of a binary string. The functions below replace GMS's under the same
// names (analyzer.ExternalFunctionProvider comes before the built-ins):
//
//   - the hashes (MD5, SHA1, SHA2, CRC32), TO_BASE64, ASCII, ORD and
//     BIT_LENGTH read the value's bytes;
//   - the functions that cut, join and search strings run GMS's own code
//     on a Latin-1 view of the bytes (byte b is rune b, so a character is
//     a byte and UTF-8's order is the bytes' order) when one of their
//     string arguments is binary, and turn the result back into bytes,
//     typed binary as MySQL types it. Text arguments take part with the
//     bytes of their UTF-8 encoding, as MySQL converts them to binary.
//
// With no binary argument GMS's function runs unchanged.

// SetUserVarFunc is the function the node rewrites `@name := expr` into
// (outside SET, where the parser knows the operator): it assigns the user
// variable and returns the value.
const SetUserVarFunc = "canopy_set_user_var"

var functionsOnce sync.Once

// InstallFunctions puts the replacements in front of GMS's built-ins.
func InstallFunctions() {
	functionsOnce.Do(func() {
		fns := map[string]sql.Function{}
		builtin := map[string]sql.Function{}
		for _, f := range function.BuiltIns {
			builtin[f.FunctionName()] = f
		}
		for name, h := range map[string]func([]byte) string{
			"md5": hashHex(md5.New), "sha1": hashHex(sha1.New), "sha": hashHex(sha1.New),
		} {
			fns[name] = byteFunc1(name, builtin[name], types.LongText, func(b []byte) interface{} { return h(b) })
		}
		fns["crc32"] = byteFunc1("crc32", builtin["crc32"], types.Uint32, func(b []byte) interface{} { return crc32.ChecksumIEEE(b) })
		fns["to_base64"] = byteFunc1("to_base64", builtin["to_base64"], types.LongText, func(b []byte) interface{} { return toBase64(b) })
		fns["bit_length"] = byteFunc1("bit_length", builtin["bit_length"], types.Int32, func(b []byte) interface{} { return int32(8 * len(b)) })
		firstByte := func(b []byte) interface{} {
			if len(b) == 0 {
				return uint8(0)
			}
			return b[0]
		}
		fns["ascii"] = binaryOnly1("ascii", builtin["ascii"], types.Uint8, firstByte)
		fns["ord"] = binaryOnly1("ord", builtin["ord"], types.Uint8, firstByte)
		fns["sha2"] = sql.Function2{Name: "sha2", Fn: func(arg, bits sql.Expression) sql.Expression {
			return &sha2{arg: arg, bits: bits}
		}}
		all := func(int) bool { return true }
		for name, strArg := range map[string]func(int) bool{
			"left": first, "right": first, "reverse": first, "repeat": first,
			"ltrim": first, "rtrim": first,
			"concat": all, "concat_ws": all, "replace": all, "substring_index": firstOrSecond,
			"elt":   func(i int) bool { return i > 0 },
			"field": all, "locate": firstOrSecond, "instr": firstOrSecond,
			"greatest": all, "least": all,
		} {
			orig, ok := builtin[name]
			if !ok {
				panic("gmsfix: no built-in function " + name)
			}
			name, strArg := name, strArg
			fns[name] = sql.FunctionN{Name: name, Fn: func(args ...sql.Expression) (sql.Expression, error) {
				e, err := orig.NewInstance(args)
				if err != nil {
					return nil, err
				}
				return newBytewise(name, e, strArg), nil
			}}
		}
		for _, name := range []string{"lpad", "rpad"} {
			name, orig := name, builtin[name]
			fns[name] = sql.Function3{Name: name, Fn: func(str, n, pad sql.Expression) sql.Expression {
				inner, err := orig.NewInstance([]sql.Expression{str, n, pad})
				if err != nil {
					panic(err)
				}
				return &padFunc{inner: inner, left: name == "lpad"}
			}}
		}
		fns["locate"] = sql.FunctionN{Name: "locate", Fn: func(args ...sql.Expression) (sql.Expression, error) {
			e, err := builtin["locate"].NewInstance(args)
			if err != nil {
				return nil, err
			}
			return &locate{inner: e, args: args}, nil
		}}
		fns["instr"] = sql.Function2{Name: "instr", Fn: func(str, substr sql.Expression) sql.Expression {
			e, err := builtin["instr"].NewInstance([]sql.Expression{str, substr})
			if err != nil {
				panic(err)
			}
			return &locate{inner: e, args: []sql.Expression{substr, str}, instr: true}
		}}
		fns[SetUserVarFunc] = sql.Function2{Name: SetUserVarFunc, Fn: func(name, value sql.Expression) sql.Expression {
			return &setUserVar{name: name, value: value}
		}}
		analyzer.ExternalFunctionProvider = functions(fns)
	})
}

func first(i int) bool         { return i == 0 }
func firstOrSecond(i int) bool { return i <= 1 }

type functions map[string]sql.Function

func (f functions) Function(_ *sql.Context, name string) (sql.Function, bool) {
	fn, ok := f[strings.ToLower(name)]
	return fn, ok
}

func hashHex(h func() hash.Hash) func([]byte) string {
	return func(b []byte) string {
		x := h()
		x.Write(b)
		return hex.EncodeToString(x.Sum(nil))
	}
}

// toBase64 is MySQL's TO_BASE64: a line break after every 76 characters.
func toBase64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	if len(s) <= 76 {
		return s
	}
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76])
		out.WriteByte('\n')
		s = s[76:]
	}
	out.WriteString(s)
	return out.String()
}

// valueBytes is the bytes MySQL's functions see of a value: a binary
// string's own, a text's UTF-8 encoding, anything else's text form.
func valueBytes(ctx *sql.Context, v interface{}) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	}
	v, err := sql.UnwrapAny(ctx, v)
	if err != nil {
		return nil, err
	}
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	s, _, err := types.LongText.Convert(ctx, v)
	if err != nil {
		return nil, err
	}
	return []byte(s.(string)), nil
}

// isBinary reports whether an argument is a binary string.
func isBinary(e sql.Expression) bool {
	return types.IsBinaryType(e.Type())
}

// byteFunc1 is a one-argument function of the argument's bytes, whatever
// its type (the hashes: text hashes as its UTF-8 bytes, as before).
func byteFunc1(name string, orig sql.Function, typ sql.Type, f func([]byte) interface{}) sql.Function {
	return sql.Function1{Name: name, Fn: func(arg sql.Expression) sql.Expression {
		inner, err := orig.NewInstance([]sql.Expression{arg})
		if err != nil {
			panic(err) // a one-argument built-in takes one argument
		}
		return &bytesFunc{inner: inner, typ: typ, f: f, always: true}
	}}
}

// binaryOnly1 replaces a one-argument function for binary arguments only.
func binaryOnly1(name string, orig sql.Function, typ sql.Type, f func([]byte) interface{}) sql.Function {
	return sql.Function1{Name: name, Fn: func(arg sql.Expression) sql.Expression {
		inner, err := orig.NewInstance([]sql.Expression{arg})
		if err != nil {
			panic(err)
		}
		return &bytesFunc{inner: inner, typ: typ, f: f}
	}}
}

// bytesFunc computes f of its one argument's bytes; GMS's function
// (inner) names and describes it, and runs for text unless always.
type bytesFunc struct {
	inner  sql.Expression
	typ    sql.Type
	f      func([]byte) interface{}
	always bool
}

var _ sql.FunctionExpression = (*bytesFunc)(nil)

func (b *bytesFunc) arg() sql.Expression { return b.inner.Children()[0] }
func (b *bytesFunc) Resolved() bool      { return b.inner.Resolved() }
func (b *bytesFunc) String() string      { return b.inner.String() }
func (b *bytesFunc) IsNullable() bool    { return b.inner.IsNullable() }
func (b *bytesFunc) Children() []sql.Expression {
	return b.inner.Children()
}
func (b *bytesFunc) FunctionName() string { return functionName(b.inner) }
func (b *bytesFunc) Description() string  { return description(b.inner) }
func (b *bytesFunc) Type() sql.Type {
	if b.always || isBinary(b.arg()) {
		return b.typ
	}
	return b.inner.Type()
}

func (b *bytesFunc) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	return collationOf(ctx, b.inner)
}

func (b *bytesFunc) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	inner, err := b.inner.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	c := *b
	c.inner = inner
	return &c, nil
}

func (b *bytesFunc) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	if !b.always && !isBinary(b.arg()) {
		return b.inner.Eval(ctx, row)
	}
	v, err := b.arg().Eval(ctx, row)
	if err != nil || v == nil {
		return nil, err
	}
	data, err := valueBytes(ctx, v)
	if err != nil {
		return nil, err
	}
	return b.f(data), nil
}

// sha2 is SHA2(str, bits) of str's bytes: NULL for an unknown length,
// as MySQL gives.
type sha2 struct{ arg, bits sql.Expression }

var _ sql.FunctionExpression = (*sha2)(nil)

func (s *sha2) Resolved() bool             { return s.arg.Resolved() && s.bits.Resolved() }
func (s *sha2) String() string             { return fmt.Sprintf("SHA2(%s,%s)", s.arg, s.bits) }
func (s *sha2) Type() sql.Type             { return types.LongText }
func (s *sha2) IsNullable() bool           { return true }
func (s *sha2) Children() []sql.Expression { return []sql.Expression{s.arg, s.bits} }
func (s *sha2) FunctionName() string       { return "sha2" }
func (s *sha2) Description() string        { return "calculates an SHA-2 checksum." }
func (s *sha2) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	return ctx.GetCollation(), 4
}
func (s *sha2) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	if len(children) != 2 {
		return nil, sql.ErrInvalidChildrenNumber.New(s, len(children), 2)
	}
	return &sha2{arg: children[0], bits: children[1]}, nil
}

func (s *sha2) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	v, err := s.arg.Eval(ctx, row)
	if err != nil || v == nil {
		return nil, err
	}
	bv, err := s.bits.Eval(ctx, row)
	if err != nil || bv == nil {
		return nil, err
	}
	n, _, err := types.Int64.Convert(ctx, bv)
	if err != nil {
		return nil, nil
	}
	var h hash.Hash
	switch n.(int64) {
	case 0, 256:
		h = sha256.New()
	case 224:
		h = sha256.New224()
	case 384:
		h = sha512.New384()
	case 512:
		h = sha512.New()
	default:
		return nil, nil
	}
	data, err := valueBytes(ctx, v)
	if err != nil {
		return nil, err
	}
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bytewise runs a GMS string function (inner) on the Latin-1 view of its
// string arguments when one of them is binary (see the top of the file).
type bytewise struct {
	name   string
	inner  sql.Expression
	strArg func(int) bool // which arguments are strings

	once sync.Once
	bin  sql.Expression // inner over Latin-1 views
	err  error
}

var _ sql.FunctionExpression = (*bytewise)(nil)

func newBytewise(name string, inner sql.Expression, strArg func(int) bool) *bytewise {
	return &bytewise{name: name, inner: inner, strArg: strArg}
}

func (b *bytewise) Resolved() bool             { return b.inner.Resolved() }
func (b *bytewise) String() string             { return b.inner.String() }
func (b *bytewise) IsNullable() bool           { return b.inner.IsNullable() }
func (b *bytewise) Children() []sql.Expression { return b.inner.Children() }
func (b *bytewise) FunctionName() string       { return b.name }
func (b *bytewise) Description() string        { return description(b.inner) }

func (b *bytewise) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	inner, err := b.inner.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	return newBytewise(b.name, inner, b.strArg), nil
}

// binary reports whether a string argument is binary: then the function
// works on bytes.
func (b *bytewise) binary() bool {
	for i, c := range b.inner.Children() {
		if b.strArg(i) && isBinary(c) {
			return true
		}
	}
	return false
}

// stringResult reports whether the function returns a string (and so a
// binary string of binary arguments), not a position or an index.
func (b *bytewise) stringResult() bool {
	switch b.name {
	case "field":
		return false
	}
	return true
}

func (b *bytewise) Type() sql.Type {
	if !b.binary() || !b.stringResult() {
		return b.inner.Type()
	}
	if st, ok := b.inner.Type().(sql.StringType); ok {
		if n := st.MaxCharacterLength(); n > 0 && n <= 65_535 {
			return types.MustCreateBinary(sqltypes.VarBinary, n)
		}
	}
	return types.LongBlob
}

func (b *bytewise) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	c, co := collationOf(ctx, b.inner)
	if b.binary() && b.stringResult() {
		return sql.Collation_binary, co
	}
	return c, co
}

func (b *bytewise) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	if !b.binary() {
		return b.inner.Eval(ctx, row)
	}
	b.once.Do(func() {
		children := append([]sql.Expression(nil), b.inner.Children()...)
		for i, c := range children {
			if b.strArg(i) {
				children[i] = &latin1View{child: c}
			}
		}
		b.bin, b.err = b.inner.WithChildren(children...)
	})
	if b.err != nil {
		return nil, b.err
	}
	v, err := b.bin.Eval(ctx, row)
	if err != nil || v == nil || !b.stringResult() {
		return v, err
	}
	switch x := v.(type) {
	case string:
		return fromLatin1(x), nil
	case []byte:
		return fromLatin1(string(x)), nil
	}
	return v, nil
}

// latin1View gives a string argument's bytes as a string with one rune
// per byte (typed as binary-collated text, so comparisons are the bytes').
type latin1View struct{ child sql.Expression }

var latin1Type = types.CreateLongText(sql.Collation_utf8mb4_bin)

func (l *latin1View) Resolved() bool             { return l.child.Resolved() }
func (l *latin1View) String() string             { return l.child.String() }
func (l *latin1View) Type() sql.Type             { return latin1Type }
func (l *latin1View) IsNullable() bool           { return l.child.IsNullable() }
func (l *latin1View) Children() []sql.Expression { return []sql.Expression{l.child} }
func (l *latin1View) CollationCoercibility(*sql.Context) (sql.CollationID, byte) {
	return sql.Collation_utf8mb4_bin, 2
}
func (l *latin1View) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	if len(children) != 1 {
		return nil, sql.ErrInvalidChildrenNumber.New(l, len(children), 1)
	}
	return &latin1View{child: children[0]}, nil
}

func (l *latin1View) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	v, err := l.child.Eval(ctx, row)
	if err != nil || v == nil {
		return nil, err
	}
	if !types.IsText(l.child.Type()) && !types.IsBinaryType(l.child.Type()) {
		switch v.(type) {
		case string, []byte:
		default:
			return v, nil // a number stays a number (LPAD's length, …)
		}
	}
	data, err := valueBytes(ctx, v)
	if err != nil {
		return nil, err
	}
	return toLatin1(data), nil
}

func toLatin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// fromLatin1 turns a Latin-1 view back into bytes; a rune beyond a byte
// (which GMS's function made up) keeps its UTF-8 encoding.
func fromLatin1(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 256 {
			out = append(out, byte(r))
		} else {
			out = utf8.AppendRune(out, r)
		}
	}
	return out
}

func functionName(e sql.Expression) string {
	if f, ok := e.(sql.FunctionExpression); ok {
		return f.FunctionName()
	}
	return ""
}

func description(e sql.Expression) string {
	if f, ok := e.(sql.FunctionExpression); ok {
		return f.Description()
	}
	return ""
}

func collationOf(ctx *sql.Context, e sql.Expression) (sql.CollationID, byte) {
	if c, ok := e.(sql.CollationCoercible); ok {
		return c.CollationCoercibility(ctx)
	}
	return sql.Collation_binary, 5
}

// setUserVar is `@name := value` outside SET: it assigns the user
// variable, row by row where it is evaluated per row, and returns the
// value. It is never folded or cached (IsNonDeterministic).
type setUserVar struct{ name, value sql.Expression }

var (
	_ sql.FunctionExpression         = (*setUserVar)(nil)
	_ sql.NonDeterministicExpression = (*setUserVar)(nil)
)

func (s *setUserVar) Resolved() bool { return s.name.Resolved() && s.value.Resolved() }
func (s *setUserVar) String() string {
	return fmt.Sprintf("%s(%s, %s)", SetUserVarFunc, s.name, s.value)
}
func (s *setUserVar) Type() sql.Type             { return s.value.Type() }
func (s *setUserVar) IsNullable() bool           { return s.value.IsNullable() }
func (s *setUserVar) Children() []sql.Expression { return []sql.Expression{s.name, s.value} }
func (s *setUserVar) FunctionName() string       { return SetUserVarFunc }
func (s *setUserVar) Description() string {
	return "assigns a user variable and returns the value (@name := value)."
}
func (s *setUserVar) IsNonDeterministic() bool { return true }
func (s *setUserVar) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	return collationOf(ctx, s.value)
}
func (s *setUserVar) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	if len(children) != 2 {
		return nil, sql.ErrInvalidChildrenNumber.New(s, len(children), 2)
	}
	return &setUserVar{name: children[0], value: children[1]}, nil
}

func (s *setUserVar) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	n, err := s.name.Eval(ctx, row)
	if err != nil {
		return nil, err
	}
	name, ok := n.(string)
	if !ok {
		return nil, fmt.Errorf("%s: the variable's name must be a string", SetUserVarFunc)
	}
	v, err := s.value.Eval(ctx, row)
	if err != nil {
		return nil, err
	}
	typ := s.value.Type()
	if v == nil {
		typ = types.Null
	}
	if err := ctx.SetUserVariable(ctx, name, v, typ); err != nil {
		return nil, err
	}
	return v, nil
}

// locate is LOCATE(substr, str[, pos]) and INSTR(str, substr): with a
// binary argument the position is in bytes (GMS's version of the Latin-1
// view counts UTF-8 bytes).
type locate struct {
	inner sql.Expression
	args  []sql.Expression // substr, str[, pos]
	instr bool
}

var _ sql.FunctionExpression = (*locate)(nil)

func (l *locate) Resolved() bool             { return l.inner.Resolved() }
func (l *locate) String() string             { return l.inner.String() }
func (l *locate) Type() sql.Type             { return l.inner.Type() }
func (l *locate) IsNullable() bool           { return l.inner.IsNullable() }
func (l *locate) Children() []sql.Expression { return l.inner.Children() }
func (l *locate) FunctionName() string       { return functionName(l.inner) }
func (l *locate) Description() string        { return description(l.inner) }
func (l *locate) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	return collationOf(ctx, l.inner)
}

func (l *locate) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	inner, err := l.inner.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	args := append([]sql.Expression(nil), children...)
	if l.instr {
		args[0], args[1] = args[1], args[0]
	}
	return &locate{inner: inner, args: args, instr: l.instr}, nil
}

func (l *locate) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	if !isBinary(l.args[0]) && !isBinary(l.args[1]) {
		return l.inner.Eval(ctx, row)
	}
	vals := make([][]byte, 2)
	for i := range vals {
		v, err := l.args[i].Eval(ctx, row)
		if err != nil || v == nil {
			return nil, err
		}
		if vals[i], err = valueBytes(ctx, v); err != nil {
			return nil, err
		}
	}
	from := int64(1)
	if len(l.args) > 2 {
		v, err := l.args[2].Eval(ctx, row)
		if err != nil || v == nil {
			return nil, err
		}
		n, _, err := types.Int64.Convert(ctx, v)
		if err != nil {
			return nil, err
		}
		from = n.(int64)
	}
	if from < 1 || from > int64(len(vals[1]))+1 {
		return int32(0), nil
	}
	i := bytes.Index(vals[1][from-1:], vals[0])
	if i < 0 {
		return int32(0), nil
	}
	return int32(int64(i) + from), nil
}

// BinaryStringsRuleID names BinaryStrings among the analyzer's rules.
const BinaryStringsRuleID analyzer.RuleId = 9_007

// BinaryStrings gives SUBSTRING and TRIM, which the parser builds itself
// (not by name), the byte semantics of the functions above, and string
// literals of the binary character set their binary type.
func BinaryStrings(ctx *sql.Context, a *analyzer.Analyzer, n sql.Node, scope *plan.Scope, sel analyzer.RuleSelector, qf *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.NodeExprsWithOpaque(n, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
		switch x := e.(type) {
		case *function.Substring:
			return newBytewise("substring", x, first), transform.NewTree, nil
		case *function.Trim:
			return newBytewise("trim", x, firstOrSecond), transform.NewTree, nil
		case *expression.Literal:
			return binaryLiteral(x)
		case *plan.Subquery:
			q, same, err := BinaryStrings(ctx, a, x.Query, scope, sel, qf)
			if err != nil || same {
				return e, transform.SameTree, err
			}
			return x.WithQuery(q), transform.NewTree, nil
		}
		return e, transform.SameTree, nil
	})
}

// binaryLiteral types as binary a string literal of the binary character
// set (_binary'…'), which MySQL makes VARBINARY and GMS text with the
// binary collation, and a string literal whose bytes are not UTF-8
// (MySQLdb sends bytes as '\0\xff…'; MySQL passes them through with a
// warning): text that is not UTF-8 failed when it was sent to the
// client.
func binaryLiteral(l *expression.Literal) (sql.Expression, transform.TreeIdentity, error) {
	st, ok := l.Type().(sql.StringType)
	if !ok || !types.IsText(st) {
		return l, transform.SameTree, nil
	}
	var b []byte
	switch v := l.Value().(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return l, transform.SameTree, nil
	}
	if st.Collation() != sql.Collation_binary && utf8.Valid(b) {
		return l, transform.SameTree, nil
	}
	return expression.NewLiteral(b, types.LongBlob), transform.NewTree, nil
}

// padFunc is LPAD and RPAD(str, len, padstr) as MySQL has them: len in
// characters (bytes for a binary string; GMS counted UTF-8 bytes of text,
// so LPAD('é', 3, 'x') was 'xé'), NULL for a negative len or an empty
// padstr that would be needed.
type padFunc struct {
	inner sql.Expression // GMS's, for its name and arguments
	left  bool
}

var _ sql.FunctionExpression = (*padFunc)(nil)

func (p *padFunc) Resolved() bool             { return p.inner.Resolved() }
func (p *padFunc) String() string             { return p.inner.String() }
func (p *padFunc) IsNullable() bool           { return true }
func (p *padFunc) Children() []sql.Expression { return p.inner.Children() }
func (p *padFunc) FunctionName() string       { return functionName(p.inner) }
func (p *padFunc) Description() string        { return description(p.inner) }
func (p *padFunc) binary() bool {
	c := p.inner.Children()
	return isBinary(c[0]) || isBinary(c[2])
}
func (p *padFunc) Type() sql.Type {
	if p.binary() {
		return types.LongBlob
	}
	return types.LongText
}
func (p *padFunc) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	if p.binary() {
		return sql.Collation_binary, 2
	}
	return collationOf(ctx, p.inner)
}
func (p *padFunc) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	inner, err := p.inner.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	return &padFunc{inner: inner, left: p.left}, nil
}

func (p *padFunc) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	c := p.inner.Children()
	vals := make([]interface{}, 3)
	for i, e := range c {
		v, err := e.Eval(ctx, row)
		if err != nil || v == nil {
			return nil, err
		}
		vals[i] = v
	}
	nv, _, err := types.Int64.Convert(ctx, vals[1])
	if err != nil {
		return nil, err
	}
	n := nv.(int64)
	if n < 0 {
		return nil, nil
	}
	str, err := valueBytes(ctx, vals[0])
	if err != nil {
		return nil, err
	}
	pad, err := valueBytes(ctx, vals[2])
	if err != nil {
		return nil, err
	}
	if p.binary() {
		out, ok := padUnits(toLatin1(str), toLatin1(pad), n, p.left)
		if !ok {
			return nil, nil
		}
		return fromLatin1(out), nil
	}
	out, ok := padUnits(string(str), string(pad), n, p.left)
	if !ok {
		return nil, nil
	}
	return out, nil
}

// padUnits pads or cuts s to n characters.
func padUnits(s, pad string, n int64, left bool) (string, bool) {
	r := []rune(s)
	if int64(len(r)) >= n {
		return string(r[:n]), true
	}
	pr := []rune(pad)
	if len(pr) == 0 {
		return "", false
	}
	fill := make([]rune, 0, n-int64(len(r)))
	for int64(len(fill)) < n-int64(len(r)) {
		fill = append(fill, pr[len(fill)%len(pr)])
	}
	if left {
		return string(fill) + s, true
	}
	return s + string(fill), true
}
