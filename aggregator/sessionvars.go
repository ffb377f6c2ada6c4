package aggregator

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/expression/function"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/storage"
)

// A client's session lives on the aggregator it is connected to; the
// statements the aggregator sends to leaves run on pooled connections
// shared by every client. Two mechanisms keep the client's session
// semantics:
//
//   - Values: what a statement reads from the session (user variables,
//     @@variables, NOW() and the other clock functions, LAST_INSERT_ID(),
//     DATABASE(), USER(), CONNECTION_ID(), …) is evaluated here, once per
//     statement, and written into the routed statement as literals
//     (planner/session.go; sessionEval below). Statements that assign
//     (SELECT … INTO @x) run on the aggregator; LAST_INSERT_ID(expr) on one
//     partition is read back. Nothing a client sets is ever sent to a leaf
//     as a user variable, so nothing leaks from one client to another.
//   - Settings: session variables that change how a leaf evaluates what it
//     gets (time_zone, sql_mode, …) are carried on the leaf connection. Each
//     pooled connection remembers the settings it holds (pool.Settings); a
//     statement whose client needs others sends SET in the same packet.
//     Clients on the defaults, the common case, send nothing extra.
//   - Time: columns a leaf fills from the clock (CURRENT_TIMESTAMP
//     defaults, ON UPDATE) take the statement's time, carried as the
//     timestamp setting of that statement (atTime).

// carriedVar is a session variable that leaf connections take from the
// client.
type carriedVar struct {
	name string
	// clientOnly: it is about the client's own text and results (their
	// character set, how many rows a SELECT returns), so statements the
	// client wrote carry it, while the queries the aggregator writes
	// itself (gathers, copies of rows) run with the node's default.
	clientOnly bool
}

// carriedVars, in the order a SET gives them (a character set before its
// collation): the variables whose client's value a leaf needs. Not
// autocommit (the aggregator runs the client's transactions on the
// leaves itself, BEGIN … COMMIT, two-phase across leaves), nor
// transaction_isolation (the storage has one isolation level, and MySQL
// refuses to change it inside a transaction, where statements set their
// settings), nor what GMS does not read (div_precision_increment,
// default_week_format, lc_time_names, character_set_client).
var carriedVars = []carriedVar{
	{"sql_mode", false},
	{"time_zone", false},
	{"group_concat_max_len", false},
	// the character set and collation of the statement's string literals
	{"character_set_connection", true},
	{"collation_connection", true},
	{"character_set_results", true},
	{"sql_select_limit", true},
	// the client's CLIENT_FOUND_ROWS, which a leaf session takes from it
	{storage.FoundRowsVar, true},
	// last: atTime replaces its DEFAULT by a statement's time
	{timestampVar, false},
}

const timestampVar = "timestamp"

// clientSettings is what a client's statements need on leaf connections.
type clientSettings struct {
	// client: statements the client wrote (routed, split, broadcast,
	// forwarded to the master aggregator) and the BEGIN and SAVEPOINT
	// that come with them
	client *pool.Settings
	// internal: queries the aggregator writes for them (gathers, rows an
	// INSERT … SELECT computed)
	internal *pool.Settings
	// ansiQuotes: sql_mode has ANSI_QUOTES, so "x" is an identifier
	ansiQuotes bool
}

// defaultSettings are the node's defaults: what a new connection holds,
// and what the aggregator's own statements run with (Start gives them to
// the pools).
var defaultSettings = func() *clientSettings {
	s := &pool.Settings{Set: settingsSet(nil)}
	return &clientSettings{client: s, internal: s}
}()

// settingsSet is the SET statement that gives a connection the values
// (name → SQL literal); every other carried variable goes to its default,
// whatever the connection's previous user set.
func settingsSet(values map[string]string) string {
	var b strings.Builder
	b.WriteString("SET SESSION ")
	for i, v := range carriedVars {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v.name)
		b.WriteString(" = ")
		if lit, ok := values[v.name]; ok {
			b.WriteString(lit)
		} else {
			b.WriteString("DEFAULT")
		}
	}
	return b.String()
}

// settingsOf is the settings of a client's statements, read from its
// session when it may have changed (see changeSettings).
func (a *Aggregator) settingsOf(sess *session, id uint32) *clientSettings {
	if cs := sess.settings.Load(); cs != nil {
		return cs
	}
	s := a.host.Session(id)
	if s == nil {
		return defaultSettings // the engine has not made the session yet: not cached
	}
	cs := readSettings(s)
	if !sess.changing.Load() {
		sess.settings.Store(cs)
	}
	return cs
}

// settingsFor is settingsOf by connection id (its session state is looked
// up, not made, when it exists: this runs on the fast path).
func (a *Aggregator) settingsFor(id uint32) *clientSettings {
	if v, ok := a.sessions.Load(id); ok {
		return a.settingsOf(v.(*session), id)
	}
	return a.settingsOf(a.session(id), id)
}

// changesSettings reports whether a statement may change the client's
// settings: a SET of system variables (one of user variables only
// changes none), a CALL or an EXECUTE (a procedure or a prepared
// statement may run such a SET).
func changesSettings(stmt ast.Statement) bool {
	switch s := stmt.(type) {
	case *ast.Set:
		for _, e := range s.Exprs {
			if e.Scope != ast.SetScope_User {
				return true
			}
		}
	case *ast.Call, *ast.Execute:
		return true
	}
	return false
}

// changeSettings runs, in the engine, a statement that may change the
// client's settings. Settings read while it runs are not kept: a SET
// that reads a sharded table gathers rows before it assigns, and a
// procedure may read tables and then SET, so what a gather reads is the
// settings before the statement. They are read again after it.
func (a *Aggregator) changeSettings(ctx context.Context, c *mysql.Conn, sess *session, query string, callback mysql.ResultSpoolFn) error {
	sess.changing.Store(true)
	sess.settings.Store(nil)
	defer func() {
		sess.settings.Store(nil)
		sess.changing.Store(false)
	}()
	return a.host.RunLocal(ctx, c, query, callback)
}

// readSettings reads the carried variables of a session. A variable a
// leaf connection on the defaults already holds stays out, so a client
// that changed nothing needs no SET. Such a connection holds the leaf's
// global values: a new connection starts with them, and SET … = DEFAULT
// gives the global value, not the variable's own default, in GMS as in
// MySQL. Nothing sets globals of these variables on a leaf, so they are
// the variables' own defaults, which is what a value is compared with
// here. Not with this aggregator's global values: SET GLOBAL here changes
// what this aggregator's sessions start with, not what leaves hold, so a
// client whose value came from such a global must carry it.
func readSettings(s *storage.Session) *clientSettings {
	ctx := sql.NewContext(context.Background(), sql.WithSession(s))
	client, internal := map[string]string{}, map[string]string{}
	for _, v := range carriedVars {
		if v.name == storage.FoundRowsVar {
			// a capability of the client's connection, not a variable it set
			if s.Client().Capabilities&mysql.CapabilityClientFoundRows != 0 {
				client[v.name] = "1"
			}
			continue
		}
		val, err := s.GetSessionVariable(ctx, v.name)
		if err != nil {
			continue
		}
		sv, _, ok := sql.SystemVariables.GetGlobal(v.name)
		if !ok {
			continue
		}
		lit, def := settingLiteral(val), settingLiteral(sv.GetDefault())
		same := strings.EqualFold(lit, def)
		if _, isSet := sv.GetType().(sql.SetType); isSet {
			same = sortedSet(lit) == sortedSet(def)
		}
		if same {
			continue
		}
		client[v.name] = lit
		if !v.clientOnly {
			internal[v.name] = lit
		}
	}
	cs := &clientSettings{ansiQuotes: sql.LoadSqlMode(ctx).AnsiQuotes()}
	cs.client = makeSettings(client)
	cs.internal = makeSettings(internal)
	return cs
}

func makeSettings(values map[string]string) *pool.Settings {
	if len(values) == 0 {
		return defaultSettings.client
	}
	var key []string
	for _, v := range carriedVars {
		if lit, ok := values[v.name]; ok {
			key = append(key, v.name+"="+lit)
		}
	}
	return &pool.Settings{Key: strings.Join(key, ", "), Set: settingsSet(values)}
}

// settingLiteral is a session variable's value as SET takes it.
func settingLiteral(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return ast.String(ast.NewStrVal([]byte(x)))
	case bool:
		if x {
			return "1"
		}
		return "0"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 64)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return ast.String(ast.NewStrVal([]byte(fmt.Sprint(v))))
}

// sortedSet is a SET type's literal with its members in one order, for
// comparing values.
func sortedSet(lit string) string {
	parts := strings.Split(strings.ToUpper(strings.Trim(lit, "'")), ",")
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// atTime is s with the time fixed at t (SET timestamp) for one statement:
// the leaves fill CURRENT_TIMESTAMP defaults and ON UPDATE columns with
// it, on every partition, as the NOW() values the aggregator bound have
// it (Plan.StatementTime). A client that fixed the time itself carries
// its own already. The key is the statement's own: the next user of the
// connection sets its settings, the timestamp back to DEFAULT among them.
func atTime(s *pool.Settings, t time.Time) *pool.Settings {
	const unfixed = timestampVar + " = DEFAULT" // last of every SET
	if !strings.HasSuffix(s.Set, unfixed) {
		return s
	}
	lit := strconv.FormatInt(t.Unix(), 10) + "." + fmt.Sprintf("%06d", t.Nanosecond()/1000)
	key := timestampVar + "=" + lit
	if s.Key != "" {
		key = s.Key + ", " + key
	}
	return &pool.Settings{Key: key, Set: strings.TrimSuffix(s.Set, "DEFAULT") + lit}
}

// parse parses a client's statement as its sql_mode has it: with
// ANSI_QUOTES, "x" names a column, as it does for the engine.
func (a *Aggregator) parse(id uint32, query string) (ast.Statement, error) {
	if a.settingsFor(id).ansiQuotes {
		return ast.ParseWithOptions(context.Background(), query, ast.ParserOptions{AnsiQuotes: true})
	}
	return ast.Parse(query)
}

// functions are the engine's built-in functions, for evaluating the ones
// that read the session.
var functions = function.NewRegistry()

// sessionEval evaluates a statement's session-dependent expressions in
// the client's engine session (planner.Session). Its context, made on
// first use, fixes the statement's time: every NOW() of the statement,
// on every partition, is the same.
type sessionEval struct {
	a    *Aggregator
	ctx  context.Context
	c    *mysql.Conn
	sctx *sql.Context
}

func (a *Aggregator) sessionEval(ctx context.Context, c *mysql.Conn) *sessionEval {
	return &sessionEval{a: a, ctx: ctx, c: c}
}

func (e *sessionEval) context() (*sql.Context, error) {
	if e.sctx == nil {
		sctx, err := e.a.clientContext(e.ctx, e.c)
		if err != nil {
			return nil, fmt.Errorf("session of connection %d: %w", e.c.ConnectionID, err)
		}
		e.sctx = sctx
	}
	return e.sctx, nil
}

// Value implements planner.Session.
func (e *sessionEval) Value(r planner.SessionRef) (ast.Expr, error) {
	ctx, err := e.context()
	if err != nil {
		return nil, err
	}
	var x sql.Expression
	switch r.Kind {
	case planner.UserVariable:
		t, v, err := ctx.GetUserVariable(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		return planner.Literal(v, t)
	case planner.SystemVariable:
		sv, _, ok := sql.SystemVariables.GetGlobal(r.Name)
		if !ok {
			return nil, sql.ErrUnknownSystemVariable.New(r.Name)
		}
		scope := sv.GetSessionScope()
		if r.Scope == ast.SetScope_Global {
			scope = sql.GetMysqlScope(sql.SystemVariableScope_Global)
		}
		x = expression.NewSystemVar(r.Name, scope, r.SpecifiedScope)
	case planner.SessionFunction:
		f, ok := functions.Function(ctx, r.Name)
		if !ok {
			return nil, sql.ErrFunctionNotFound.New(r.Name)
		}
		args := make([]sql.Expression, len(r.Args))
		for i, arg := range r.Args {
			v, err := planner.LiteralValue(arg)
			if err != nil {
				return nil, err
			}
			args[i] = expression.NewLiteral(v, types.ApproximateTypeFromValue(v))
		}
		if x, err = f.NewInstance(args); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown session reference %v", r.Kind)
	}
	v, err := x.Eval(ctx, nil)
	if err != nil {
		return nil, err
	}
	return planner.Literal(v, x.Type())
}

// time is the statement's time: the one its NOW() values have.
func (e *sessionEval) time() time.Time {
	if e == nil {
		return time.Now()
	}
	ctx, err := e.context()
	if err != nil {
		return time.Now()
	}
	return ctx.QueryTime()
}

// noteRouted records in the client's session what a statement the leaves
// ran changes in it, as the engine would have: LAST_INSERT_ID() after
// AUTO_INCREMENT values the aggregator generated, ROW_COUNT() and
// FOUND_ROWS().
func (a *Aggregator) noteRouted(ctx context.Context, c *mysql.Conn, p *planner.Plan, res *sqltypes.Result) {
	var s sql.Session
	if ss := a.host.Session(c.ConnectionID); ss != nil {
		s = ss
	} else {
		if p.InsertID == 0 {
			return // a session made later starts with these values
		}
		sctx, err := a.clientContext(ctx, c)
		if err != nil {
			a.log.Warn("recording LAST_INSERT_ID", "err", err)
			return
		}
		s = sctx.Session
	}
	set := func(key string, v int64) {
		if s.GetLastQueryInfoInt(key) != v { // a store boxes the value: skip it on the fast path
			s.SetLastQueryInfoInt(key, v)
		}
	}
	if p.InsertID != 0 {
		set(sql.LastInsertId, int64(p.InsertID))
	}
	if len(res.Fields) > 0 {
		set(sql.RowCount, -1)
		set(sql.FoundRows, int64(len(res.Rows)))
	} else {
		set(sql.RowCount, int64(res.RowsAffected))
	}
}

// readInsertIDQuery reads a connection's LAST_INSERT_ID() back.
const readInsertIDQuery = "SELECT LAST_INSERT_ID()"

// setInsertIDQuery gives a connection the value id as its
// LAST_INSERT_ID().
func setInsertIDQuery(id int64) string {
	return "SELECT LAST_INSERT_ID(" + strconv.FormatInt(id, 10) + ")"
}

// leafInsertIDs follows LAST_INSERT_ID(expr) through a statement the
// leaves run (p.SetsInsertID): each leaf connection first takes the
// client's value (a statement that matches no row leaves it as it was),
// and after the statement the value is read back, both in the packet of
// the statement. The client's session ends with the value a leaf changed
// it to; when several did, the order of rows across partitions is not
// defined, so any of them is the last.
type leafInsertIDs struct {
	a   *Aggregator
	s   sql.Session
	cur int64
	got []*int64 // by leaf
}

// leafInsertIDs is nil (doing nothing) unless the plan sets the value.
func (a *Aggregator) leafInsertIDs(connID uint32, p *planner.Plan, leaves int) *leafInsertIDs {
	if !p.SetsInsertID {
		return nil
	}
	s := a.host.Session(connID)
	if s == nil {
		return nil
	}
	return &leafInsertIDs{a: a, s: s, cur: s.GetLastQueryInfoInt(sql.LastInsertId), got: make([]*int64, leaves)}
}

// around is query with the statements that give a connection the
// client's value before and read it back after.
func (l *leafInsertIDs) around(query string) []string {
	return []string{setInsertIDQuery(l.cur), query, readInsertIDQuery}
}

// exec runs one statement on a connection (nil l: as it is), with the
// client's value given and read back in the same packet.
func (l *leafInsertIDs) exec(c *pool.Conn, s *pool.Settings, query string) (*sqltypes.Result, error) {
	if l == nil {
		return c.ExecWith(s, query, maxRows)
	}
	results, err := c.ExecMulti(s, l.around(query), maxRows)
	return l.take(results, err)
}

// execOn is exec on a connection borrowed from a pool.
func (l *leafInsertIDs) execOn(ctx context.Context, lp *pool.Pool, s *pool.Settings, query string) (*sqltypes.Result, error) {
	if l == nil {
		return lp.ExecWith(ctx, s, query, maxRows)
	}
	results, err := lp.ExecMulti(ctx, s, l.around(query), maxRows)
	return l.take(results, err)
}

// take picks the statement's result out of around's results. Once the
// statement ran (and, outside a transaction, committed), it succeeded:
// a failure to read the value back only leaves the client's value as it
// was.
func (l *leafInsertIDs) take(results []*sqltypes.Result, err error) (*sqltypes.Result, error) {
	switch {
	case len(results) == 3:
		if err := l.note(0, results[2]); err != nil {
			l.a.log.Warn("reading LAST_INSERT_ID() back from a leaf", "err", err)
		}
		return results[1], nil
	case len(results) == 2:
		l.a.log.Warn("reading LAST_INSERT_ID() back from a leaf", "err", err)
		return results[1], nil
	}
	return nil, err
}

// note records the value a leaf's connection read back.
func (l *leafInsertIDs) note(leaf int, res *sqltypes.Result) error {
	id, err := insertIDOf(res)
	if err == nil && id != l.cur {
		l.got[leaf] = &id
	}
	return err
}

// record gives the client's session the value, once the statement
// succeeded.
func (l *leafInsertIDs) record() {
	if l == nil {
		return
	}
	for _, id := range l.got {
		if id != nil {
			l.s.SetLastQueryInfoInt(sql.LastInsertId, *id)
		}
	}
}

// insertIDOf is the value of readInsertIDQuery's result; the session
// keeps it signed, LAST_INSERT_ID() shows it unsigned.
func insertIDOf(res *sqltypes.Result) (int64, error) {
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, fmt.Errorf("LAST_INSERT_ID() returned %d rows", len(res.Rows))
	}
	id, err := strconv.ParseUint(res.Rows[0][0].ToString(), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("LAST_INSERT_ID() returned %q: %w", res.Rows[0][0].ToString(), err)
	}
	return int64(id), nil
}

// forwardInsertIDKey marks, in a forwarded statement's context, that it
// may set LAST_INSERT_ID() (an INSERT into a reference table, or
// LAST_INSERT_ID(expr)): the master's value is brought back.
type forwardInsertIDKey struct{}
