package planner

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"
	"github.com/shopspring/decimal"

	"github.com/canopydb/canopy/cluster/meta"
)

// fakeSession answers session references from fixed values, as the
// aggregator's engine would, and counts the evaluations.
type fakeSession struct{ calls int }

var errUnknownVar = errors.New("Unknown system variable 'nosuch'")

func (f *fakeSession) Value(r SessionRef) (ast.Expr, error) {
	f.calls++
	now := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	switch {
	case r.Kind == UserVariable:
		switch strings.ToLower(r.Name) {
		case "x":
			return Literal(int64(5), types.Int64)
		case "neg":
			return Literal(int64(-7), types.Int64)
		case "s":
			return Literal("it's", types.LongText)
		}
		return Literal(nil, types.Null)
	case r.Kind == SystemVariable && r.Name == "nosuch":
		return nil, errUnknownVar
	case r.Kind == SystemVariable:
		return Literal(fmt.Sprintf("%s:%s", r.Scope, r.Name), types.LongText)
	case r.Name == "now" && len(r.Args) == 1:
		return Literal(now, types.DatetimeMaxPrecision)
	case r.Name == "now", r.Name == "current_timestamp":
		return Literal(now.Truncate(time.Second), types.Datetime)
	case r.Name == "database":
		return Literal("test", types.LongText)
	case r.Name == "last_insert_id":
		return Literal(uint64(42), types.Uint64)
	}
	return nil, fmt.Errorf("unexpected %+v", r)
}

// TestSessionRewrite: session-dependent expressions become literals
// before routing (so a variable can route a statement, and every
// partition of a split or broadcast statement gets the same NOW()), a
// select expression keeps its name, and statements that assign the
// session run on the aggregator.
func TestSessionRewrite(t *testing.T) {
	for _, c := range []struct {
		sql, want string
	}{
		{"SELECT * FROM t WHERE id = @x",
			"routed 3: select * from test_3.t where id = 5"},
		{"SELECT * FROM t WHERE id = @neg",
			"routed 5: select * from test_5.t where id = -7"},
		{"SELECT @x, v FROM t WHERE id = 5",
			"routed 3: select 5, v from test_3.t where id = 5 names=map[0:@x]"},
		{"SELECT NOW(), @x + 1 AS y, @@time_zone FROM t WHERE id = 5",
			"routed 3: select CAST('2026-01-02 03:04:05' as datetime) `NOW()`, 5 + 1 y, 'session:time_zone' from test_3.t where id = 5 names=map[2:@@time_zone]"},
		{"SELECT *, @x FROM t WHERE id = 5", // after a *: from the end
			"routed 3: select *, 5 from test_3.t where id = 5 names=map[-1:@x]"},
		{"SELECT @x, t.*, @@time_zone, v, t.*, @x FROM t WHERE id = 5", // between two *: its value's name
			"routed 3: select 5, t.*, 'session:time_zone', v, t.*, 5 from test_3.t where id = 5 names=map[-1:@x 0:@x]"},
		{"SELECT v, CONCAT(@s,   DATABASE()) FROM t WHERE id = 5 AND v = CONCAT(@s, DATABASE())",
			"routed 3: select v, CONCAT('it\\'s', 'test') `CONCAT(@s,   DATABASE())` from test_3.t where id = 5 and v = CONCAT('it\\'s', 'test')"},
		{"SELECT @@global.sql_mode, @@session.autocommit, DATABASE() FROM t WHERE id = 5",
			"routed 3: select 'global:sql_mode', 'session:autocommit', 'test' `DATABASE()` from test_3.t where id = 5 names=map[0:@@global.sql_mode 1:@@session.autocommit]"},
		{"INSERT INTO t VALUES (@x, @s), (7, NOW(6)), (8, NOW(6))",
			"insert split 0: insert into test_0.t(id, v) values (8, CAST('2026-01-02 03:04:05.678901' as datetime(6))); 3: insert into test_3.t(id, v) values (5, 'it\\'s'); 7: insert into test_7.t(id, v) values (7, CAST('2026-01-02 03:04:05.678901' as datetime(6)))"},
		{"UPDATE t SET v = @s WHERE id = @x",
			"routed 3: update test_3.t set v = 'it\\'s' where id = 5"},
		{"INSERT INTO t VALUES (5, 'a') ON DUPLICATE KEY UPDATE v = @s",
			"routed 3: insert into test_3.t(id, v) values (5, 'a') on duplicate key update v = 'it\\'s'"},
		{"UPDATE t SET v = CURRENT_TIMESTAMP WHERE v IS NULL",
			"broadcast 0: update test_0.t set v = CAST('2026-01-02 03:04:05' as datetime) where v is null"},
		{"DELETE FROM t WHERE v = @undefined",
			"broadcast 0: delete from test_0.t where v = null"},
		{"SELECT * FROM t WHERE id = LAST_INSERT_ID()",
			"routed 6: select * from test_6.t where id = 42"},
		// functions without session state, or whose arguments a leaf
		// evaluates (with the client's time_zone carried), stay
		{"SELECT RAND(), UUID(), UNIX_TIMESTAMP(v), FROM_UNIXTIME(id) FROM t WHERE id = 5",
			"routed 3: select RAND(), UUID(), UNIX_TIMESTAMP(v), FROM_UNIXTIME(id) from test_3.t where id = 5"},
		// assignments: the aggregator runs the SELECT; a write reads the
		// value back
		{"SELECT v INTO @y FROM t WHERE id = 5", "gather (the statement assigns session variables)"},
		{"SELECT LAST_INSERT_ID(v) FROM t WHERE id = 5", "gather (the statement assigns session variables)"},
		{"SELECT 1 INTO @y", "local"},
		{"SELECT SQL_CALC_FOUND_ROWS v FROM t WHERE id = 5 LIMIT 1", "gather (the statement assigns session variables)"},
		{"UPDATE t SET v = LAST_INSERT_ID(v + @x) WHERE id = 5",
			"routed 3: update test_3.t set v = LAST_INSERT_ID(v + 5) where id = 5 sets_insert_id"},
		{"UPDATE t SET v = LAST_INSERT_ID(v + 1)",
			"broadcast 0: update test_0.t set v = LAST_INSERT_ID(v + 1) sets_insert_id"},
		// what the session cannot answer: the aggregator's engine reports
		// it for a SELECT; a write fails with it
		{"SELECT @@nosuch FROM t WHERE id = 5", "gather (the statement reads the client's session)"},
		{"UPDATE t SET v = @@nosuch WHERE id = 5", "error: Unknown system variable 'nosuch'"},
		// nothing to replace: the client's text
		{"SELECT v FROM t WHERE id = 5", "routed 3: select v from test_3.t where id = 5"},
		{"SET @x = 1", "local"},
	} {
		stmt, err := ast.Parse(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		f := &fakeSession{}
		p, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog(), Session: f,
			NextAutoIncrement: func(string, string) (uint64, error) { return 1, nil }, Spread: func(int) int { return 0 }})
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = describe(p)
		}
		if got != c.want {
			t.Errorf("%s\n got: %s\nwant: %s", c.sql, got, c.want)
		}
	}
}

// describe renders a plan in one line (the first route of a broadcast).
func describe(p *Plan) string {
	var b strings.Builder
	b.WriteString(p.Kind.String())
	if p.Reason != "" && (p.Kind == Gather) {
		fmt.Fprintf(&b, " (%s)", p.Reason)
	}
	routes := p.Routes
	if p.Kind == Broadcast {
		routes = routes[:1]
	}
	for i, r := range routes {
		sep := " "
		if i > 0 {
			sep = "; "
		}
		fmt.Fprintf(&b, "%s%d: %s", sep, r.Partition, r.SQL)
	}
	if len(p.ColumnNames) > 0 {
		fmt.Fprintf(&b, " names=%v", p.ColumnNames)
	}
	if p.SetsInsertID {
		b.WriteString(" sets_insert_id")
	}
	return b.String()
}

// TestSessionPlansOnce: a statement is evaluated in the session only when
// it reads it, and templates never hold session values.
func TestSessionPlansOnce(t *testing.T) {
	f := &fakeSession{}
	stmt, _ := ast.Parse("SELECT v FROM t WHERE id = 5")
	if _, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog(), Session: f}); err != nil || f.calls != 0 {
		t.Errorf("a statement without session references evaluated %d (%v)", f.calls, err)
	}
	stmt, _ = ast.Parse("SELECT v, NOW(), NOW() FROM t WHERE id = @x")
	if _, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog(), Session: f}); err != nil || f.calls != 3 {
		t.Errorf("evaluated %d, want 3 (%v)", f.calls, err)
	}
	for _, q := range []string{"SELECT v FROM t WHERE id = ? AND v > @x", "UPDATE t SET v = NOW() WHERE id = ?", "SELECT v INTO @y FROM t WHERE id = ?"} {
		stmt, _ := ast.Parse(q)
		if _, ok := MakeTemplate(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog()}); ok {
			t.Errorf("%s: made a template", q)
		}
	}
	// without a session, a SELECT that reads it is the aggregator's, a
	// write is refused
	stmt, _ = ast.Parse("SELECT v FROM t WHERE id = @x")
	if p, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog()}); err != nil || p.Kind != Gather {
		t.Errorf("SELECT without session: %v %v", p, err)
	}
	stmt, _ = ast.Parse("DELETE FROM t WHERE id = @x")
	if _, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog()}); err == nil {
		t.Error("DELETE reading the session planned without one")
	}
}

// TestLiteral: values written as literals a leaf reads back with the
// same value and type.
func TestLiteral(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678900000, time.UTC)
	j, _, _ := types.JSON.Convert(sql.NewEmptyContext(), `{"a": [1, "x"]}`)
	for _, c := range []struct {
		v    interface{}
		t    sql.Type
		want string
	}{
		{nil, types.Null, "null"},
		{int64(42), types.Int64, "42"},
		{int8(-3), types.Int8, "-3"},
		{int64(-9223372036854775808), types.Int64, "-9223372036854775808"},
		{uint64(18446744073709551615), types.Uint64, "18446744073709551615"},
		{true, types.Boolean, "1"},
		{1.5, types.Float64, "1.5e+00"},
		{-0.25, types.Float64, "-2.5e-01"},
		{decimal.RequireFromString("12.30"), types.MustCreateDecimalType(3, 1), "12.30"},
		{decimal.RequireFromString("-0.5"), types.MustCreateDecimalType(2, 1), "-0.5"},
		{decimal.RequireFromString("7"), types.MustCreateDecimalType(1, 0), "7"},
		{"it's \\ ok", types.LongText, `'it\'s \\ ok'`},
		{"", types.LongText, "''"},
		{[]byte{0, 255}, types.LongBlob, "X'00ff'"},
		{"\x01", types.LongBlob, "X'01'"},
		{at, types.Datetime, "CAST('2026-01-02 03:04:05.6789' as datetime)"},
		{at, types.DatetimeMaxPrecision, "CAST('2026-01-02 03:04:05.6789' as datetime(6))"},
		{at, types.Date, "CAST('2026-01-02' as date)"},
		{at, types.LongText, "CAST('2026-01-02 03:04:05.6789' as datetime(6))"},
		{types.Timespan(3723000001), types.Time, "CAST('01:02:03.000001' as time(6))"},
		{j, types.JSON, `CAST('{\"a\": [1, \"x\"]}' as json)`},
	} {
		e, err := Literal(c.v, c.t)
		if err != nil {
			t.Errorf("%v (%s): %v", c.v, c.t, err)
			continue
		}
		got := ast.String(e)
		if got != c.want {
			t.Errorf("%#v (%s): %s, want %s", c.v, c.t, got, c.want)
		}
		// what a leaf parses, and the planner routes by for numbers
		if _, err := ast.Parse("SELECT " + got); err != nil {
			t.Errorf("%s does not parse: %v", got, err)
		}
	}
	for _, bad := range []interface{}{struct{}{}} {
		if _, err := Literal(bad, types.Int64); err == nil {
			t.Errorf("%#v: no error", bad)
		}
	}
}

// TestUpsertShardKey: ON DUPLICATE KEY UPDATE may assign a shard key
// column only its own value.
func TestUpsertShardKey(t *testing.T) {
	for _, c := range []struct {
		sql string
		ok  bool
	}{
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE v = 'b'", true},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE id = VALUES(id)", true},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE id = id, v = VALUES(v)", true},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE id = (t.id)", true},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE t.id = test.t.id", true},
		{"INSERT INTO t VALUES (6, 'a') AS new ON DUPLICATE KEY UPDATE id = new.id", true},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE id = 1000", false},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE id = id + 1", false},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE ID = VALUES(v)", false},
		{"INSERT INTO t VALUES (6, 'a') ON DUPLICATE KEY UPDATE id = other.t.id", false},
		{"INSERT INTO t VALUES (6, 'a') AS new(x, y) ON DUPLICATE KEY UPDATE id = new.x", false}, // conservative
		{"INSERT INTO t SELECT id + 1, v FROM t ON DUPLICATE KEY UPDATE id = 5", false},
		{"INSERT INTO u VALUES (1, 'x', 3) ON DUPLICATE KEY UPDATE b = VALUES(b), c = 4", true},
		{"INSERT INTO u VALUES (1, 'x', 3) ON DUPLICATE KEY UPDATE b = VALUES(a)", false},
		{"INSERT INTO ref VALUES (1, 'x') ON DUPLICATE KEY UPDATE id = 9", true}, // one copy everywhere
		{"REPLACE INTO t VALUES (6, 'a')", true},
	} {
		stmt, err := ast.Parse(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		_, err = Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog(),
			NextAutoIncrement: func(string, string) (uint64, error) { return 1, nil }, Spread: func(int) int { return 0 }})
		var pe *Error
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.sql, err)
		case !c.ok && (!errors.As(err, &pe) || pe.Num != ErNotSupported || !strings.Contains(pe.Msg, "UPDATE of shard key column")):
			t.Errorf("%s: got %v, want the shard key error", c.sql, err)
		}
	}
}

// TestStatementTime: a statement whose leaves fill columns from the
// clock carries its time when it runs on several partitions, or on one
// with values bound at that time; others do not pay for it.
func TestStatementTime(t *testing.T) {
	cat := newCatalog()
	now := &sql.ColumnDefaultValue{Literal: false} // as the engine makes CURRENT_TIMESTAMP: an expression
	cat.dbs["test"].Tables["ts"] = &meta.Table{Name: "ts", ShardKey: []string{"id"}}
	cat.schemas["test.ts"] = sql.Schema{
		{Name: "id", Type: types.Int64},
		{Name: "v", Type: types.Int64, Nullable: true},
		{Name: "at", Type: types.Datetime, Nullable: true, Default: now, OnUpdate: now},
	}
	for q, want := range map[string]bool{
		"INSERT INTO ts (id, v) VALUES (1, 1), (2, 2), (3, 3)":                       true, // split
		"INSERT INTO ts (id, v) VALUES (1, 1)":                                       false,
		"INSERT INTO ts (id, v) VALUES (1, @x)":                                      true, // bound
		"UPDATE ts SET v = 1":                                                        true, // broadcast
		"UPDATE ts SET v = 1 WHERE id = 1":                                           false,
		"UPDATE ts SET v = @x WHERE id = 1":                                          true,
		"INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')":                  false, // no such column
		"UPDATE t SET v = 'a'":                                                       false,
		"INSERT INTO ts (id, v) VALUES (1, 1), (2, 2) ON DUPLICATE KEY UPDATE v = 3": true,
	} {
		stmt, err := ast.Parse(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		p, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: cat, Session: &fakeSession{},
			NextAutoIncrement: func(string, string) (uint64, error) { return 1, nil }, Spread: func(int) int { return 0 }})
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if p.StatementTime != want {
			t.Errorf("%s: StatementTime %v, want %v (%s)", q, p.StatementTime, want, describe(p))
		}
	}
}
