package gmsfix

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

// IntegerModRuleID names IntegerMod among the analyzer's rules.
const IntegerModRuleID analyzer.RuleId = 9_010

// IntegerMod is an analyzer rule for `a % b` of two integers. GMS
// evaluates every % through decimal arithmetic and works out the
// expression's type anew on every row (which builds decimal types with
// big-integer powers): `GROUP BY k % 100` spent over half of a grouped
// scan there. The result keeps GMS's type and value (a DECIMAL of scale
// 0): only the arithmetic is done on int64. It runs after the
// aggregator's rules, which print the expression for the leaves as it
// was.
func IntegerMod(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.NodeWithOpaque(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		return transform.OneNodeExpressions(n, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
			return transform.Expr(e, func(e sql.Expression) (sql.Expression, transform.TreeIdentity, error) {
				m, ok := e.(*expression.Mod)
				if !ok || !signedInt(m.Left().Type()) || !signedInt(m.Right().Type()) {
					return e, transform.SameTree, nil
				}
				typ := m.Type()
				if !types.IsDecimal(typ) {
					return e, transform.SameTree, nil
				}
				return &intMod{Mod: m, typ: typ}, transform.NewTree, nil
			})
		})
	})
}

// signedInt: an integer type whose values fit an int64 (unsigned BIGINT
// does not).
func signedInt(t sql.Type) bool {
	return types.IsInteger(t) && t != types.Uint64
}

// intMod is a Mod of two integers, computed on int64.
type intMod struct {
	*expression.Mod
	typ sql.Type
}

func (m *intMod) Type() sql.Type { return m.typ }

// WithChildren keeps the int64 path: later rules (execution indexes)
// rebuild every expression.
func (m *intMod) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	e, err := m.Mod.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	nm := e.(*expression.Mod)
	if !signedInt(nm.Left().Type()) || !signedInt(nm.Right().Type()) {
		return nm, nil
	}
	return &intMod{Mod: nm, typ: nm.Type()}, nil
}

func (m *intMod) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	l, err := m.Left().Eval(ctx, row)
	if err != nil || l == nil {
		return nil, err
	}
	r, err := m.Right().Eval(ctx, row)
	if err != nil || r == nil {
		return nil, err
	}
	li, lok := asInt64(l)
	ri, rok := asInt64(r)
	if !lok || !rok || ri == 0 {
		return m.Mod.Eval(ctx, row) // GMS's conversions and warnings
	}
	return decimal.NewFromInt(li % ri), nil
}

func asInt64(v interface{}) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case int:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint8:
		return int64(x), true
	}
	return 0, false
}
