package aggregator

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/privilege"
)

// maxTemplates bounds the template cache; past it the cache starts over
// (clients with unbounded distinct statements gain nothing from it).
const maxTemplates = 4096

// templates caches planned templates per current database and statement
// text (with ? or :vN placeholders). An entry is valid for the metadata
// state it was planned against.
type templates struct {
	mu   sync.RWMutex
	m    map[templateKey]*templateEntry
	runs atomic.Uint64 // executions routed by a template
}

// TemplateRuns counts the statements routed from a cached template.
func (a *Aggregator) TemplateRuns() uint64 { return a.templates.runs.Load() }

type templateKey struct {
	db, query string
	text      bool // normalized from a text query (its ? were literals)
}

type templateEntry struct {
	st   *meta.State
	tpl  *planner.Template     // nil: the statement is not a template
	auth []ast.AuthInformation // the privileges it needs
}

func (t *templates) get(k templateKey, st *meta.State) (*templateEntry, bool) {
	t.mu.RLock()
	e, ok := t.m[k]
	t.mu.RUnlock()
	return e, ok && e.st == st
}

func (t *templates) put(k templateKey, e *templateEntry) {
	t.mu.Lock()
	if t.m == nil || len(t.m) >= maxTemplates {
		t.m = make(map[templateKey]*templateEntry)
	}
	t.m[k] = e
	t.mu.Unlock()
}

// HandlePrepared runs an executed prepared statement whose plan is a
// routed template: the statement was planned once, so an execution costs
// a hash and a forward. handled false leaves it to the general path.
func (a *Aggregator) HandlePrepared(ctx context.Context, c *mysql.Conn, stmt string, vars map[string]*querypb.BindVariable, callback func(*sqltypes.Result) error) (bool, error) {
	return a.runTemplate(ctx, c, templateKey{query: stmt}, vars, func() (ast.Statement, error) { return ast.Parse(stmt) }, callback)
}

// handleText runs a text query through the template of its normalized
// form (literals taken out), when it has one.
func (a *Aggregator) handleText(ctx context.Context, c *mysql.Conn, query string, callback func(*sqltypes.Result) error) (bool, error) {
	text, vars, ok := normalize(query)
	if !ok {
		return false, nil
	}
	return a.runTemplate(ctx, c, templateKey{query: text, text: true}, vars, func() (ast.Statement, error) {
		stmt, err := ast.Parse(text)
		if err == nil && !valuesOnly(stmt) {
			err = errNotTemplate
		}
		return stmt, err
	}, callback)
}

// runTemplate looks up (or plans) the template of a statement and runs it
// with the given values.
func (a *Aggregator) runTemplate(ctx context.Context, c *mysql.Conn, key templateKey, vars map[string]*querypb.BindVariable,
	parse func() (ast.Statement, error), callback func(*sqltypes.Result) error) (bool, error) {
	if a.seesLocal(c.ConnectionID) || a.settingsFor(c.ConnectionID).ansiQuotes {
		return false, nil // ANSI_QUOTES: the text is parsed with the client's sql_mode, not normalized
	}
	st := a.State()
	if a.mastersOffline(st) {
		return false, nil // a failover is under way: the general path waits it out where needed
	}
	key.db = a.currentDB(c.ConnectionID)
	e, ok := a.templates.get(key, st)
	if !ok {
		e = &templateEntry{st: st}
		if stmt, err := parse(); err == nil {
			in := planner.Input{Stmt: stmt, CurrentDB: key.db, Catalog: catalog{a, st}}
			if err := a.waitSchemas(ctx, planner.Databases(in)...); err != nil {
				return true, err
			}
			e.auth = privilege.Collect(stmt) // before planning rewrites it
			e.tpl, _ = planner.MakeTemplate(in)
		}
		a.templates.put(key, e)
	}
	if e.tpl == nil {
		return false, nil
	}
	d := st.Database(e.tpl.Database)
	if d == nil || len(d.Partitions) != e.tpl.Partitions() {
		return false, nil
	}
	p, query, ok := e.tpl.Route(vars)
	if !ok {
		return false, nil
	}
	if err := a.authorizeInfos(ctx, c, e.auth); err != nil {
		return true, err
	}
	plan := &planner.Plan{Kind: planner.Routed, Database: d.Name, Routes: []planner.Route{{Partition: p, SQL: query}}}
	a.templates.runs.Add(1)
	res, err := a.execRoutes(ctx, c.ConnectionID, st, plan, nil)
	if err != nil {
		return true, err
	}
	a.noteRouted(ctx, c, plan, res)
	return true, callback(res)
}
