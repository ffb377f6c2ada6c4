package planner

import (
	"bytes"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
)

// FilterSQL renders a filter GMS pushes to a table (or a grouping or
// aggregate argument) as SQL a partition can evaluate: comparisons,
// arithmetic, AND/OR/NOT, IS NULL, IN, LIKE and BETWEEN over the table's
// columns and constants. ok is false for anything else; the aggregator
// then keeps the work for itself.
func FilterSQL(ctx *sql.Context, e sql.Expression, table string) (string, bool) {
	return exprSQL(ctx, e, func(f *expression.GetField) (string, bool) {
		return quote(f.Name()), strings.EqualFold(f.Table(), table)
	})
}

// JoinSQL renders an expression over several tables (by the names the
// plan uses for them) with qualified column names.
func JoinSQL(ctx *sql.Context, e sql.Expression, tables ...string) (string, bool) {
	return exprSQL(ctx, e, func(f *expression.GetField) (string, bool) {
		for _, t := range tables {
			if strings.EqualFold(f.Table(), t) {
				return quote(t) + "." + quote(f.Name()), true
			}
		}
		return "", false
	})
}

func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// column renders a column reference, or refuses it.
type column func(*expression.GetField) (string, bool)

func exprSQL(ctx *sql.Context, e sql.Expression, col column) (string, bool) {
	var b strings.Builder
	if !writeFilter(ctx, &b, e, col) {
		return "", false
	}
	return b.String(), true
}

func writeFilter(ctx *sql.Context, b *strings.Builder, e sql.Expression, table column) bool {
	bin := func(op string, l, r sql.Expression) bool {
		b.WriteByte('(')
		if !writeFilter(ctx, b, l, table) {
			return false
		}
		b.WriteString(" " + op + " ")
		if !writeFilter(ctx, b, r, table) {
			return false
		}
		b.WriteByte(')')
		return true
	}
	switch e := e.(type) {
	case *expression.GetField:
		text, ok := table(e)
		b.WriteString(text)
		return ok
	case *expression.Literal:
		return writeLiteral(ctx, b, e)
	case *expression.Equals:
		return bin("=", e.Left(), e.Right())
	case *expression.NullSafeEquals:
		return bin("<=>", e.Left(), e.Right())
	case *expression.GreaterThan:
		return bin(">", e.Left(), e.Right())
	case *expression.GreaterThanOrEqual:
		return bin(">=", e.Left(), e.Right())
	case *expression.LessThan:
		return bin("<", e.Left(), e.Right())
	case *expression.LessThanOrEqual:
		return bin("<=", e.Left(), e.Right())
	case *expression.Arithmetic:
		switch e.Op {
		case "+", "-", "*":
			return bin(e.Op, e.Left(), e.Right())
		}
		return false
	case *expression.Mod:
		return bin("%", e.Left(), e.Right())
	case *expression.Div:
		return bin("/", e.Left(), e.Right())
	case *expression.IntDiv:
		return bin("DIV", e.Left(), e.Right())
	case *expression.And:
		return bin("AND", e.LeftChild, e.RightChild)
	case *expression.Or:
		return bin("OR", e.LeftChild, e.RightChild)
	case *expression.Not:
		b.WriteString("(NOT ")
		if !writeFilter(ctx, b, e.Child, table) {
			return false
		}
		b.WriteByte(')')
		return true
	case *expression.IsNull:
		b.WriteByte('(')
		if !writeFilter(ctx, b, e.Child, table) {
			return false
		}
		b.WriteString(" IS NULL)")
		return true
	case *expression.Like:
		if e.Escape != nil {
			return false
		}
		return bin("LIKE", e.LeftChild, e.RightChild)
	case *expression.Between:
		b.WriteByte('(')
		if !writeFilter(ctx, b, e.Val, table) {
			return false
		}
		b.WriteString(" BETWEEN ")
		if !writeFilter(ctx, b, e.Lower, table) {
			return false
		}
		b.WriteString(" AND ")
		if !writeFilter(ctx, b, e.Upper, table) {
			return false
		}
		b.WriteByte(')')
		return true
	case *expression.InTuple, *expression.HashInTuple:
		// GMS turns an IN of constants into a HashInTuple before our rules
		in := e.(interface {
			Left() sql.Expression
			Right() sql.Expression
		})
		tuple, ok := in.Right().(expression.Tuple)
		if !ok {
			return false
		}
		b.WriteByte('(')
		if !writeFilter(ctx, b, in.Left(), table) {
			return false
		}
		b.WriteString(" IN (")
		for i, x := range tuple {
			if i > 0 {
				b.WriteString(", ")
			}
			if _, ok := x.(*expression.Literal); !ok || !writeFilter(ctx, b, x, table) {
				return false
			}
		}
		b.WriteString("))")
		return true
	}
	return false
}

func writeLiteral(ctx *sql.Context, b *strings.Builder, l *expression.Literal) bool {
	v := l.Value()
	if v == nil {
		b.WriteString("NULL")
		return true
	}
	if _, ok := v.(sql.JSONWrapper); ok {
		return false
	}
	sv, err := l.Type().SQL(ctx, nil, v)
	if err != nil {
		return false
	}
	var buf bytes.Buffer
	sv.EncodeSQL(&buf)
	b.Write(buf.Bytes())
	return true
}
