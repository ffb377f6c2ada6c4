package node

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// maxRestarts bounds how often a statement is run again after a write
// found its row changed by another transaction.
const maxRestarts = 32

// handler sits in front of GMS's MySQL handler. It answers Canopy's own
// statements, runs a statement again when the storage layer asks for it,
// and turns errors into MySQL's numbers, states and wording.
type handler struct {
	mysql.Handler
	n *Node
}

func (h *handler) ComQuery(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) error {
	_, err := h.run(ctx, c, query, "", withMySQLFields(callback))
	return err
}

func (h *handler) ComMultiQuery(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) (string, error) {
	first, rest := sqlcmd.SplitFirst(query)
	rest, err := h.run(ctx, c, first, rest, withMySQLFields(callback))
	if err != nil {
		// as in MySQL, the statements after one that failed do not run:
		// the server would go on with what it returns, and a client that
		// stops reading at the error would find their results later
		return "", err
	}
	return rest, nil
}

// bindQuery turns an executed prepared statement into SQL text with its
// arguments as literals, for the aggregator's planner and the point-select
// fast path.
func bindQuery(prepare *mysql.PrepareData) (string, bool) {
	parsed, ok := parsedStatement(prepare.PrepareStmt)
	if !ok {
		return "", false
	}
	vars := make(map[string]*querypb.BindVariable, len(prepare.BindVars))
	for k, v := range prepare.BindVars {
		if v == nil {
			v = sqltypes.NullBindVariable
		}
		vars[k] = v
	}
	q, err := parsed.GenerateQuery(vars, nil)
	return q, err == nil
}

// maxParsedStatements bounds parsedStatements; past it the cache starts
// over (clients with unbounded distinct statements gain nothing from it).
const maxParsedStatements = 4096

// parsedStatements caches prepared statements' texts made ready for
// binding: a statement an aggregator does not route by template was
// parsed again on every execution (a twentieth of a master aggregator's
// CPU under sysbench's writes). A ParsedQuery is read-only once made.
var parsedStatements struct {
	sync.RWMutex
	m map[string]*ast.ParsedQuery
}

func parsedStatement(text string) (*ast.ParsedQuery, bool) {
	parsedStatements.RLock()
	pq, ok := parsedStatements.m[text]
	parsedStatements.RUnlock()
	if ok {
		return pq, true
	}
	stmt, err := ast.Parse(text)
	if err != nil {
		return nil, false
	}
	pq = ast.NewParsedQuery(stmt)
	parsedStatements.Lock()
	if parsedStatements.m == nil || len(parsedStatements.m) >= maxParsedStatements {
		parsedStatements.m = make(map[string]*ast.ParsedQuery)
	}
	parsedStatements.m[text] = pq
	parsedStatements.Unlock()
	return pq, true
}

// run executes one statement; rest is what follows it in a multi-statement
// query. Canopy's own statements come first, then the aggregator's
// routing, then the SQL engine.
func (h *handler) run(ctx context.Context, c *mysql.Conn, query, rest string, callback mysql.ResultSpoolFn) (string, error) {
	more := rest != ""
	if more && strings.HasPrefix(query, sqlcmd.Silent) {
		// no result of its own: the next statement answers
		if _, err := h.run(ctx, c, query, "", discardResult); err != nil {
			return "", err
		}
		first, rest := sqlcmd.SplitFirst(rest)
		return h.run(ctx, c, first, rest, callback)
	}
	callback = fixingFields(callback)
	query, err := rewriteStatement(query)
	if err != nil {
		return rest, err
	}
	if cmd := sqlcmd.Parse(query); cmd != nil {
		return rest, h.command(ctx, c, query, cmd, more, callback)
	}
	if res, ok := h.n.showProcessList(ctx, c, query); ok {
		return rest, callback(res, more)
	}
	if err := h.n.checkSetGlobal(ctx, c, query); err != nil {
		return rest, err
	}
	if stmt := accountStatement(query); stmt != nil {
		if namesReservedAccount(stmt) {
			return rest, errReservedAccount
		}
		// every aggregator enforces the change before the client hears of it
		// (the engine has let go of its account tables by the time it answers)
		synced := func(res *sqltypes.Result, more bool) error {
			if err := h.n.afterAccountStatement(ctx, c, stmt); err != nil {
				return err
			}
			h.n.syncChildren()
			return callback(res, more)
		}
		return h.runSQL(ctx, c, query, rest, synced)
	}
	return h.runSQL(ctx, c, query, rest, callback)
}

func discardResult(*sqltypes.Result, bool) error { return nil }

// runSQL runs one statement of SQL: the aggregator's routing, else the
// SQL engine.
func (h *handler) runSQL(ctx context.Context, c *mysql.Conn, query, rest string, callback mysql.ResultSpoolFn) (string, error) {
	more := rest != ""
	if agg := h.n.aggregator(); agg != nil {
		var handled bool
		err := h.withRestarts(c, func() error {
			hctx, done := h.n.trackStatement(ctx, c, query)
			defer done()
			var err error
			handled, err = agg.Handle(hctx, c, query, func(res *sqltypes.Result, _ bool) error {
				return callback(res, more)
			})
			return err
		})
		if handled || err != nil {
			return rest, err
		}
	} else if cd, ok := sqlcmd.ParseClusterDDL(query).(sqlcmd.CreateDatabase); ok && cd.Partitions > 0 {
		return rest, errNotAggregator
	} else if handled, err := h.pointSelect(ctx, c, query, func(res *sqltypes.Result) error { return callback(res, more) }); handled {
		return rest, err
	}
	if rest == "" {
		return "", h.withRestarts(c, func() error {
			return h.Handler.ComQuery(ctx, c, query, callback)
		})
	}
	// GMS splits the statements again and reports what it left.
	var remainder string
	err := h.withRestarts(c, func() error {
		var err error
		remainder, err = h.Handler.ComMultiQuery(ctx, c, query+";"+rest, callback)
		return err
	})
	return remainder, err
}

func (h *handler) ComStmtExecute(ctx context.Context, c *mysql.Conn, prepare *mysql.PrepareData, callback func(*sqltypes.Result) error) error {
	send := callback
	spool := withMySQLFields(func(res *sqltypes.Result, _ bool) error { return send(res) })
	callback = func(res *sqltypes.Result) error { return spool(res, false) }
	if handled, err := h.executeOwn(ctx, c, prepare, callback); handled {
		return err
	}
	if query, ok := binaryParamsAsText(prepare); ok {
		_, err := h.run(ctx, c, query, "", func(res *sqltypes.Result, _ bool) error { return callback(res) })
		return err
	}
	if agg := h.n.aggregator(); agg != nil {
		var handled bool
		err := h.withRestarts(c, func() error {
			var err error
			handled, err = agg.HandlePrepared(ctx, c, prepare.PrepareStmt, prepare.BindVars, callback)
			return err
		})
		if handled || err != nil {
			return err
		}
		if query, ok := bindQuery(prepare); ok {
			var handled bool
			err := h.withRestarts(c, func() error {
				var err error
				handled, err = agg.Handle(ctx, c, query, func(res *sqltypes.Result, _ bool) error { return callback(res) })
				return err
			})
			if handled || err != nil {
				return err
			}
		}
	}
	if h.n.aggregator() == nil && looksLikeSelect(prepare.PrepareStmt) {
		if query, ok := bindQuery(prepare); ok {
			if handled, err := h.pointSelect(ctx, c, query, callback); handled {
				return err
			}
		}
	}
	return h.withRestarts(c, func() error {
		return h.Handler.ComStmtExecute(ctx, c, prepare, callback)
	})
}

func (h *handler) ComPrepare(ctx context.Context, c *mysql.Conn, query string, prepare *mysql.PrepareData) ([]*querypb.Field, error) {
	fields, err := h.prepare(ctx, c, query, prepare) // prepare.go
	return mysqlFields(fields), err
}

func (h *handler) ComInitDB(c *mysql.Conn, schemaName string) error {
	return translateError(h.Handler.ComInitDB(c, schemaName), schemaName)
}

// ComResetConnection gives the client a new session, as GMS does, once
// the aggregator has ended its part of the old one (saved settings, the
// leaf parts of an open transaction), which would otherwise outlive it.
func (h *handler) ComResetConnection(c *mysql.Conn) error {
	if agg := h.n.aggregator(); agg != nil {
		agg.ConnectionClosed(c.ConnectionID)
	}
	return h.Handler.ComResetConnection(c)
}

func (h *handler) ConnectionClosed(c *mysql.Conn) {
	if agg := h.n.aggregator(); agg != nil {
		agg.ConnectionClosed(c.ConnectionID)
	}
	h.Handler.ConnectionClosed(c)
	h.n.sessions.Delete(c.ConnectionID)
	h.n.conns.Delete(c.ConnectionID)
	h.n.forgetPrepared(c.ConnectionID)
}

func (h *handler) currentDB(c *mysql.Conn) string {
	if s := h.n.session(c.ConnectionID); s != nil {
		return s.GetCurrentDatabase()
	}
	return ""
}

// withRestarts runs one statement, again if a write found its row changed
// after the statement read it (the retry holds the row lock, so it makes
// progress), and translates the final error.
func (h *handler) withRestarts(c *mysql.Conn, run func() error) error {
	h.n.inflight.Add(1)
	defer h.n.inflight.Done()
	// A node shutting down runs nothing new. An aggregator's statement
	// that found no aggregator (Close dropped it after closing done) would
	// otherwise run on its local copy of the databases, which has no rows,
	// and acknowledge writes that go nowhere.
	select {
	case <-h.n.done:
		return errShutdown
	default:
	}
	start := time.Now()
	defer func() { h.n.metrics.latency.Observe(time.Since(start).Seconds()) }()
	var err error
	for attempt := 0; ; attempt++ {
		h.n.metrics.statements.Inc()
		err = run()
		if err == nil || !storage.IsRestartable(err) {
			break
		}
		if s := h.n.session(c.ConnectionID); s != nil {
			s.StatementFailed()
		}
		if attempt == maxRestarts {
			err = storage.ErrDeadlock
			break
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
	if err == nil {
		return nil
	}
	h.n.metrics.queryErrors.Inc()
	err = translateError(err, h.currentDB(c))
	se, _ := err.(*mysql.SQLError)
	if se != nil && se.Num == mysql.ERDupEntry {
		if s := h.n.session(c.ConnectionID); s != nil {
			if msg := s.TakeDuplicateEntry(); msg != "" {
				se.Message = boundMessage(msg)
			}
		}
	}
	if se != nil && se.Num == mysql.ERLockDeadlock {
		// MySQL rolls back the whole transaction of a deadlock victim.
		if s := h.n.session(c.ConnectionID); s != nil {
			s.AbortTransaction()
		}
	}
	return err
}

// command answers one of Canopy's own statements.
func (h *handler) command(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.Command, more bool, callback mysql.ResultSpoolFn) error {
	if s := h.n.session(c.ConnectionID); s != nil {
		s.ClearWarnings() // a command's warnings are its own
	}
	if err := h.n.authorizeCommand(ctx, c, cmd); err != nil {
		h.n.metrics.queryErrors.Inc()
		return err
	}
	res, err := h.n.execCommand(ctx, c, query, cmd)
	if err != nil {
		h.n.metrics.queryErrors.Inc()
		return translateError(err, h.currentDB(c))
	}
	return callback(res, more)
}

// Result building helpers for custom statements.

func varcharField(name string) *querypb.Field {
	return &querypb.Field{Name: name, Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: 1024}
}

func intField(name string) *querypb.Field {
	return &querypb.Field{Name: name, Type: querypb.Type_INT64, Charset: 63, ColumnLength: 20}
}

func strValue(s string) sqltypes.Value { return sqltypes.NewVarChar(s) }

func intValue(i int64) sqltypes.Value { return sqltypes.NewInt64(i) }

func uintValue(u uint64) sqltypes.Value { return sqltypes.NewInt64(int64(u)) }
