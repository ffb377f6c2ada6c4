package planner

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"
	"github.com/shopspring/decimal"

	"github.com/canopydb/canopy/sqlcmd"
)

// Session-dependent expressions. A statement an aggregator sends to a
// partition runs on a pooled leaf connection, whose user variables,
// LAST_INSERT_ID(), current database, connection id, user and clock are
// not the client's. So before a statement is routed, every expression
// that reads the client's session (or the statement's clock) is replaced
// by its value, evaluated once on the aggregator in the client's session:
// a statement split over partitions sees one NOW(), as MySQL gives one
// value per statement. Statements that assign session state (SELECT …
// INTO @x, LAST_INSERT_ID(expr)) are left to the aggregator's engine, or
// routed to one partition and the assignment read back (see
// Plan.SetsInsertID). Session variables that change how a leaf evaluates
// what it gets (time_zone, sql_mode, …) are carried on the leaf
// connection instead; see package aggregator.

// SessionKind says what a session-dependent expression reads.
type SessionKind int

const (
	// UserVariable: @name.
	UserVariable SessionKind = iota + 1
	// SystemVariable: @@name, @@session.name, @@global.name.
	SystemVariable
	// SessionFunction: a function of the session or of the statement's
	// clock, with constant arguments (NOW(3), DATABASE(), …).
	SessionFunction
)

// SessionRef is one session-dependent expression of a statement.
type SessionRef struct {
	Kind SessionKind
	// Name is the variable's name, or the function's name in lower case.
	Name string
	// Scope and SpecifiedScope of a system variable, as the parser gives
	// them (ast.VarScope).
	Scope          ast.SetScope
	SpecifiedScope string
	// Args are a function's arguments, all literals.
	Args []ast.Expr
}

// Session evaluates a statement's session-dependent expressions in the
// client's session on the aggregator, all at one statement time.
type Session interface {
	// Value is the expression's value as a literal expression (see
	// Literal).
	Value(SessionRef) (ast.Expr, error)
}

// sessionFuncs are the functions whose value depends on the client's
// session or the statement's time and which MySQL evaluates once per
// statement. RAND() and UUID() are not among them: they have no session
// state a leaf would get wrong, and each call gives a new value anyway.
var sessionFuncs = map[string]bool{
	"now": true, "current_timestamp": true, "localtime": true, "localtimestamp": true, "sysdate": true,
	"curdate": true, "current_date": true, "curtime": true, "current_time": true,
	"utc_timestamp": true, "utc_date": true, "utc_time": true, "unix_timestamp": true,
	"database": true, "schema": true, "user": true, "current_user": true, "session_user": true, "system_user": true,
	"connection_id": true, "last_insert_id": true, "found_rows": true, "row_count": true,
}

// sessionRef classifies an expression: ok when it reads the session.
func sessionRef(e ast.Expr) (SessionRef, bool) {
	switch e := e.(type) {
	case *ast.ColName:
		if !strings.HasPrefix(e.Name.String(), "@") && !strings.HasPrefix(e.Qualifier.Name.String(), "@") {
			return SessionRef{}, false
		}
		name, scope, specified, err := ast.VarScopeForColName(e)
		if err != nil {
			return SessionRef{}, false
		}
		switch scope {
		case ast.SetScope_User:
			return SessionRef{Kind: UserVariable, Name: name.Name.String()}, true
		case ast.SetScope_Session, ast.SetScope_Global:
			return SessionRef{Kind: SystemVariable, Name: name.Name.String(), Scope: scope, SpecifiedScope: specified}, true
		}
	case *ast.FuncExpr:
		name := e.Name.Lowered()
		if !e.Qualifier.IsEmpty() || e.Distinct || e.Over != nil || !sessionFuncs[name] {
			return SessionRef{}, false
		}
		// UNIX_TIMESTAMP(x) and LAST_INSERT_ID(x) are something else
		if (name == "unix_timestamp" || name == "last_insert_id") && len(e.Exprs) > 0 {
			return SessionRef{}, false
		}
		r := SessionRef{Kind: SessionFunction, Name: name}
		for _, se := range e.Exprs {
			ae, ok := se.(*ast.AliasedExpr)
			if !ok || !isLiteral(ae.Expr) {
				return SessionRef{}, false
			}
			r.Args = append(r.Args, ae.Expr)
		}
		return r, true
	}
	return SessionRef{}, false
}

// sessionUse is what a statement does with the client's session.
type sessionUse struct {
	reads bool // it reads session-dependent expressions
	// aggregatorOnly: only the aggregator can run it, in the client's
	// session: SELECT … INTO (variables, or a file of this server),
	// SQL_CALC_FOUND_ROWS (which sets FOUND_ROWS()) or `@x := expr`
	aggregatorOnly bool
	// setsInsertID: LAST_INSERT_ID(expr) sets the session's value
	setsInsertID bool
}

func scanSession(stmt ast.SQLNode) sessionUse {
	var u sessionUse
	ast.Walk(func(n ast.SQLNode) (bool, error) {
		switch n := n.(type) {
		case *ast.Into:
			if n != nil && (len(n.Variables) > 0 || n.Outfile != "" || n.Dumpfile != "") {
				u.aggregatorOnly = true
			}
		case *ast.Select:
			if n.QueryOpts.SQLCalcFoundRows {
				u.aggregatorOnly = true
			}
		case *ast.FuncExpr:
			if n.Name.Lowered() == "last_insert_id" && len(n.Exprs) > 0 && n.Qualifier.IsEmpty() {
				u.setsInsertID = true
			}
			if n.Name.Lowered() == sqlcmd.AssignFunc && n.Qualifier.IsEmpty() {
				u.aggregatorOnly = true // `@x := expr`, which the node rewrote
			}
		}
		if e, ok := n.(ast.Expr); ok {
			if _, ok := sessionRef(e); ok {
				u.reads = true
				return false, nil
			}
		}
		return true, nil
	}, stmt)
	return u
}

// ReadsSession reports whether a statement reads or assigns the client's
// session (user or system variables, NOW(), LAST_INSERT_ID(), …): such a
// statement is planned per execution, never from a template.
func ReadsSession(stmt ast.SQLNode) bool {
	u := scanSession(stmt)
	return u.reads || u.aggregatorOnly || u.setsInsertID
}

// bindSession prepares a SELECT, INSERT, UPDATE or DELETE for planning:
// it replaces the session-dependent expressions by their values, or
// decides that the aggregator's engine runs the statement (done, with
// the plan).
func bindSession(in *Input) (p *Plan, done bool, err error) {
	switch in.Stmt.(type) {
	case *ast.Select, *ast.SetOp, *ast.ParenSelect, *ast.Insert, *ast.Update, *ast.Delete:
	default:
		return nil, false, nil // SET, SHOW, DDL, …: the aggregator runs them itself
	}
	u := scanSession(in.Stmt)
	if !u.reads && !u.aggregatorOnly && !u.setsInsertID {
		return nil, false, nil
	}
	sel, isSelect := in.Stmt.(ast.SelectStatement)
	// the aggregator's engine evaluates a SELECT that assigns, over the
	// rows of the partitions, in the client's own session
	aggregatorRuns := func(reason string) (*Plan, bool, error) {
		p, err := planSelect(Input{Stmt: sel, CurrentDB: in.CurrentDB, Catalog: in.Catalog}, sel)
		if err != nil {
			return nil, true, err
		}
		if p.Kind == Routed {
			p = &Plan{Kind: Gather, Database: p.Database}
		}
		if p.Kind == Gather {
			p.Reason = reason
		}
		return p, true, nil
	}
	if isSelect && (u.aggregatorOnly || u.setsInsertID) {
		return aggregatorRuns("the statement assigns session variables")
	}
	if u.aggregatorOnly {
		return nil, true, errorf(ErNotSupported, "INTO or assigning user variables in this statement is not supported on sharded tables")
	}
	in.setsInsertID = u.setsInsertID
	if !u.reads {
		return nil, false, nil
	}
	if in.Session == nil {
		if isSelect {
			return aggregatorRuns("the statement reads the client's session")
		}
		return nil, true, fmt.Errorf("planner: a statement reading the client's session needs Input.Session")
	}
	names, err := replaceSessionRefs(in.Stmt, in.Session)
	if err != nil {
		if isSelect {
			// the aggregator's engine reports the error as a server would
			return aggregatorRuns("the statement reads the client's session")
		}
		return nil, true, err
	}
	in.bound, in.columnNames = true, names
	return nil, false, nil
}

// replaceSessionRefs replaces every session-dependent expression under
// node by its value. A select expression that held one keeps the name
// the client's server would give its column: the text the client wrote,
// as an alias, or, for a name starting with @ (which the printer does not
// quote, so that the partition could not read the alias back), in names,
// by the column's position in the result (see Plan.ColumnNames).
func replaceSessionRefs(node ast.SQLNode, s Session) (names map[int]string, err error) {
	replaced := 0
	repl := func(e ast.Expr) ast.Expr {
		r, ok := sessionRef(e)
		if !ok || err != nil {
			return nil
		}
		lit, verr := s.Value(r)
		if verr != nil {
			err = verr
			return nil
		}
		replaced++
		return lit
	}
	// name is what the client's server calls a select expression's
	// column: the text the client wrote (the parser keeps it for all but
	// a column name, whose text is its name)
	name := func(ae *ast.AliasedExpr) string {
		if ae.InputExpression != "" {
			return ae.InputExpression
		}
		if _, ok := ae.Expr.(*ast.ColName); ok {
			return ast.String(ae.Expr)
		}
		return ""
	}
	aliased := func(ae *ast.AliasedExpr, walk func()) {
		before, n := replaced, name(ae)
		walk()
		if replaced > before && ae.As.IsEmpty() && n != "" && !strings.HasPrefix(n, "@") {
			ae.As = ast.NewColIdent(n)
		}
	}
	if sel, ok := node.(*ast.Select); ok {
		// a * stands for a number of columns the planner does not count:
		// a select expression after the last * is found from the end of
		// the result, one between two *s keeps the name its value gives
		firstStar, lastStar := len(sel.SelectExprs), -1
		for i, se := range sel.SelectExprs {
			if _, isStar := se.(*ast.StarExpr); isStar {
				firstStar, lastStar = min(firstStar, i), i
			}
		}
		for i, se := range sel.SelectExprs {
			ae, ok := se.(*ast.AliasedExpr)
			if !ok {
				continue
			}
			before, n := replaced, name(ae)
			aliased(ae, func() { replaceExprs(reflect.ValueOf(&ae.Expr).Elem(), repl, aliased) })
			if replaced == before || !ae.As.IsEmpty() || n == "" || firstStar < i && i < lastStar {
				continue
			}
			if names == nil {
				names = map[int]string{}
			}
			if i < firstStar {
				names[i] = n
			} else {
				names[i-len(sel.SelectExprs)] = n
			}
		}
	}
	replaceExprs(reflect.ValueOf(node), repl, aliased)
	return names, err
}

var exprType = reflect.TypeOf((*ast.Expr)(nil)).Elem()
var aliasedExprType = reflect.TypeOf(&ast.AliasedExpr{})

// replaceExprs walks a syntax tree and replaces each expression for which
// repl returns a replacement (the parser's Walk cannot replace nodes, and
// expressions sit in many kinds of fields and lists). aliased wraps the
// walk under each select expression.
func replaceExprs(v reflect.Value, repl func(ast.Expr) ast.Expr, aliased func(*ast.AliasedExpr, func())) {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		if v.Type() == exprType && v.CanSet() {
			if r := repl(v.Interface().(ast.Expr)); r != nil {
				v.Set(reflect.ValueOf(r))
				return
			}
		}
		e := v.Elem()
		if e.Kind() == reflect.Struct {
			// a struct held by value is not addressable: walk a copy
			if !v.CanSet() {
				return
			}
			cp := reflect.New(e.Type()).Elem()
			cp.Set(e)
			replaceExprs(cp, repl, aliased)
			v.Set(cp)
			return
		}
		replaceExprs(e, repl, aliased)
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if v.Type() == aliasedExprType {
			ae := v.Interface().(*ast.AliasedExpr)
			aliased(ae, func() { replaceExprs(v.Elem(), repl, aliased) })
			return
		}
		replaceExprs(v.Elem(), repl, aliased)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if t.Field(i).IsExported() {
				replaceExprs(v.Field(i), repl, aliased)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			replaceExprs(v.Index(i), repl, aliased)
		}
	}
}

// Literal is the SQL literal of a value the aggregator's engine computed
// with type t, written so that a leaf reading it gets the same value with
// the same type: numbers as numbers (a double with an exponent, so it
// stays a double), strings as strings, binary strings in hex, temporal
// values as CASTs to their type and precision.
func Literal(v interface{}, t sql.Type) (ast.Expr, error) {
	switch x := v.(type) {
	case nil:
		return &ast.NullVal{}, nil
	case bool:
		if x {
			return ast.NewIntVal([]byte("1")), nil
		}
		return ast.NewIntVal([]byte("0")), nil
	case int:
		return intLiteral(int64(x)), nil
	case int8:
		return intLiteral(int64(x)), nil
	case int16:
		return intLiteral(int64(x)), nil
	case int32:
		return intLiteral(int64(x)), nil
	case int64:
		return intLiteral(x), nil
	case uint:
		return ast.NewIntVal([]byte(strconv.FormatUint(uint64(x), 10))), nil
	case uint8:
		return ast.NewIntVal([]byte(strconv.FormatUint(uint64(x), 10))), nil
	case uint16:
		return ast.NewIntVal([]byte(strconv.FormatUint(uint64(x), 10))), nil
	case uint32:
		return ast.NewIntVal([]byte(strconv.FormatUint(uint64(x), 10))), nil
	case uint64:
		return ast.NewIntVal([]byte(strconv.FormatUint(x, 10))), nil
	case float32:
		return floatLiteral(float64(x))
	case float64:
		return floatLiteral(x)
	case decimal.Decimal:
		// the value's own scale: the engine computes with it (12.30 / 3
		// is 4.100000), whatever scale the type it gave the value says
		scale := int32(0)
		if x.Exponent() < 0 {
			scale = -x.Exponent()
		}
		return signed(x.Sign() < 0, x.Abs().StringFixed(scale), ast.FloatVal), nil
	case string:
		if types.IsBinaryType(t) {
			return ast.NewHexVal([]byte(fmt.Sprintf("%x", x))), nil
		}
		return ast.NewStrVal([]byte(x)), nil
	case []byte:
		if types.IsBinaryType(t) {
			return ast.NewHexVal([]byte(fmt.Sprintf("%x", x))), nil
		}
		return ast.NewStrVal(x), nil
	case time.Time:
		switch {
		case types.IsDateType(t):
			return castTo(x.Format("2006-01-02"), "date", 0), nil
		case types.IsTime(t):
			prec := 0
			if dt, ok := t.(sql.DatetimeType); ok {
				prec = dt.Precision()
			}
			return castTo(x.Format("2006-01-02 15:04:05.999999"), "datetime", prec), nil
		}
		// a time a user variable holds as something else: as MySQL keeps it
		return castTo(x.Format("2006-01-02 15:04:05.999999"), "datetime", 6), nil
	case types.Timespan:
		return castTo(x.String(), "time", 6), nil
	case sql.JSONWrapper:
		s, err := types.JsonToMySqlString(x)
		if err != nil {
			return nil, fmt.Errorf("planner: JSON value: %w", err)
		}
		return &ast.ConvertExpr{Name: "CAST", Expr: ast.NewStrVal([]byte(s)), Type: &ast.ConvertType{Type: "json"}}, nil
	}
	return nil, fmt.Errorf("planner: cannot write a %T value (%s) as a literal", v, t)
}

func intLiteral(i int64) ast.Expr {
	if i < 0 {
		return signed(true, strconv.FormatUint(uint64(-(i+1))+1, 10), ast.IntVal)
	}
	return ast.NewIntVal([]byte(strconv.FormatInt(i, 10)))
}

func floatLiteral(f float64) (ast.Expr, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("planner: %v has no SQL literal", f)
	}
	// the exponent keeps it a double (1.5 alone would be a DECIMAL)
	return signed(f < 0, strconv.FormatFloat(math.Abs(f), 'e', -1, 64), ast.FloatVal), nil
}

// signed is a number literal, negated when neg: the routing planner and
// the leaf read -5 as the unary minus of 5.
func signed(neg bool, digits string, typ ast.ValType) ast.Expr {
	v := &ast.SQLVal{Type: typ, Val: []byte(digits)}
	if neg {
		return &ast.UnaryExpr{Operator: ast.UMinusStr, Expr: v}
	}
	return v
}

func castTo(s, typ string, prec int) ast.Expr {
	ct := &ast.ConvertType{Type: typ}
	if prec > 0 {
		ct.Length = ast.NewIntVal([]byte(strconv.Itoa(prec)))
	}
	return &ast.ConvertExpr{Name: "CAST", Expr: ast.NewStrVal([]byte(s)), Type: ct}
}

// markSetsInsertID marks a plan whose statement assigns
// LAST_INSERT_ID(expr) and runs elsewhere than in the client's session:
// the executor reads the value back from the connections that ran it.
func markSetsInsertID(p *Plan) {
	switch p.Kind {
	case Routed, InsertSplit, Broadcast, ReferenceWrite:
		p.SetsInsertID = true
	}
}

// LiteralValue is the Go value of a literal expression (a number, a
// string, NULL, a negated number).
func LiteralValue(e ast.Expr) (interface{}, error) { return literal(e) }
