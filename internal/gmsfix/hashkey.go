// Package gmsfix holds analyzer rules that work around behaviour of
// go-mysql-server v0.20 that gives wrong answers.
package gmsfix

import (
	"fmt"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/shopspring/decimal"
)

// HashKeysRuleID names ComparableHashKeys among the analyzer's rules.
const HashKeysRuleID analyzer.RuleId = 9_000

// ComparableHashKeys is an analyzer rule for hash joins whose key is a
// DECIMAL or a temporal value. GMS converts both sides' keys to the probe
// key's type and uses the Go values as map keys; a decimal.Decimal holds
// a pointer and a time.Time a location, so equal values from the two
// sides are different map keys and matching rows are lost (`ON a.g =
// b.y % 6` joined almost nothing). The keys are rewritten to a canonical
// string of the converted value.
func ComparableHashKeys(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		h, ok := n.(*plan.HashLookup)
		if !ok {
			return n, transform.SameTree, nil
		}
		t := h.LeftProbeKey.Type()
		if !types.IsDecimal(t) && !types.IsTime(t) {
			return n, transform.SameTree, nil
		}
		nh, err := h.WithExpressions(&canonicalKey{child: h.RightEntryKey, as: t}, &canonicalKey{child: h.LeftProbeKey, as: t})
		if err != nil {
			return nil, transform.SameTree, err
		}
		return nh, transform.NewTree, nil
	})
}

// canonicalKey is a hash join key as a string equal for equal values.
type canonicalKey struct {
	child sql.Expression
	as    sql.Type // the type both sides' keys are compared in
}

var _ sql.Expression = (*canonicalKey)(nil)

func (k *canonicalKey) Eval(ctx *sql.Context, row sql.Row) (interface{}, error) {
	v, err := k.child.Eval(ctx, row)
	if err != nil || v == nil {
		return nil, err
	}
	v, _, err = k.as.Convert(ctx, v)
	if err != nil || v == nil {
		return nil, nil // not a value of the compared type: matches nothing
	}
	switch v := v.(type) {
	case decimal.Decimal:
		return v.String(), nil
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano), nil
	}
	return fmt.Sprint(v), nil
}

func (k *canonicalKey) Type() sql.Type             { return types.LongText }
func (k *canonicalKey) IsNullable() bool           { return k.child.IsNullable() }
func (k *canonicalKey) Resolved() bool             { return k.child.Resolved() }
func (k *canonicalKey) Children() []sql.Expression { return []sql.Expression{k.child} }
func (k *canonicalKey) String() string             { return k.child.String() }
func (k *canonicalKey) WithChildren(c ...sql.Expression) (sql.Expression, error) {
	if len(c) != 1 {
		return nil, sql.ErrInvalidChildrenNumber.New(k, len(c), 1)
	}
	return &canonicalKey{child: c[0], as: k.as}, nil
}
