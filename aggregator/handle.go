package aggregator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/privilege"
	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// maxRows bounds a result an aggregator holds in memory from one partition.
const maxRows = 1 << 26

// catalog answers the planner from the metadata and this node's copy of
// each database.
type catalog struct {
	a  *Aggregator
	st *meta.State
}

func (c catalog) Database(name string) *meta.Database { return c.st.Database(name) }

func (c catalog) Schema(db, table string) sql.Schema {
	s, ok := c.a.store.TableSchema(db, table)
	if !ok {
		return nil
	}
	return s
}

// session is an aggregator's state for one client connection.
type session struct {
	mu    sync.Mutex
	conns map[string]*pool.Conn // leaf → connection in an open transaction
	// savepoints the open transaction set, in order (savepoint.go)
	savepoints []string
	// refs: reference databases the open transaction wrote in this
	// node's engine (on the master aggregator)
	refs map[string]bool
	// master: on a child aggregator, the master aggregator whose
	// connection in conns holds the transaction's reference writes (its
	// part of the transaction, see referenceWrite); remote: the
	// reference databases written there
	master string
	remote map[string]bool
	id     uint32      // the client connection
	local  atomic.Bool // a schema change on this node's copy is running
	// settings are what its statements need on leaf connections; nil:
	// read them again (sessionvars.go)
	settings atomic.Pointer[clientSettings]
	// changing: a statement that may change the settings is running, so
	// settings read meanwhile are not kept (see changeSettings)
	changing atomic.Bool
}

func (a *Aggregator) session(id uint32) *session {
	if v, ok := a.sessions.Load(id); ok {
		return v.(*session)
	}
	v, _ := a.sessions.LoadOrStore(id, &session{conns: map[string]*pool.Conn{}, refs: map[string]bool{}, remote: map[string]bool{}, id: id})
	return v.(*session)
}

// ConnectionClosed ends what a client left open: the leaf parts of its
// transaction roll back, its saved settings go. A COM_RESET_CONNECTION,
// which gives the client a new session, ends it the same way.
func (a *Aggregator) ConnectionClosed(id uint32) {
	if v, ok := a.sessions.LoadAndDelete(id); ok {
		a.finish(v.(*session), "ROLLBACK")
	}
}

// inTransaction reports whether the client has a transaction open (BEGIN,
// or autocommit off).
// InternalSessions is where the ids of the sessions a node runs its own
// statements in (Host.RunInternal) start, far above the server's
// connection ids: they see this node's copies as stored here.
const InternalSessions = 1 << 31

// seesLocal reports whether a connection's statement works on this node's
// own copies of distributed databases.
func (a *Aggregator) seesLocal(id uint32) bool {
	if id >= InternalSessions {
		return true // the node's own work on its copies (Host.RunInternal)
	}
	v, ok := a.sessions.Load(id)
	return ok && v.(*session).local.Load()
}

func (a *Aggregator) inTransaction(id uint32) bool {
	s := a.host.Session(id)
	if s == nil {
		return false
	}
	if s.GetIgnoreAutoCommit() {
		return true
	}
	ctx := sql.NewContext(context.Background(), sql.WithSession(s))
	v, err := s.GetSessionVariable(ctx, "autocommit")
	if err != nil {
		return false
	}
	on, _ := sql.ConvertToBool(ctx, v)
	return !on
}

func (a *Aggregator) currentDB(id uint32) string {
	if s := a.host.Session(id); s != nil {
		return s.GetCurrentDatabase()
	}
	return ""
}

// Handle runs a client statement when the aggregator must; handled false
// leaves it to the node's own SQL engine.
func (a *Aggregator) Handle(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) (bool, error) {
	if handled, err := a.handleText(ctx, c, query, func(res *sqltypes.Result) error { return callback(res, false) }); handled || err != nil {
		return true, err
	}
	switch cmd := sqlcmd.ParseClusterDDL(query).(type) {
	case sqlcmd.CreateDatabase:
		if err := a.authorizeDatabase(ctx, c, ast.AuthType_CREATE, cmd.Name); err != nil {
			return true, err
		}
		return true, a.sendOK(callback, a.createDatabase(ctx, c, query, cmd))
	case sqlcmd.SetClusterVariable:
		if err := a.authorizeGlobal(ctx, c, sql.PrivilegeType_Super, "SUPER"); err != nil {
			return true, err
		}
		return true, a.sendOK(callback, a.setVariable(ctx, c, query, cmd))
	}
	if ct, ok := sqlcmd.ParseCreateTable(query); ok {
		return true, a.sendOK(callback, a.createTable(ctx, c, query, ct))
	}
	stmt, err := a.parse(c.ConnectionID, query)
	if err != nil {
		return false, nil // the engine reports the syntax error
	}
	if isAccountStatement(stmt) && !a.IsMaster() {
		// the cluster's accounts change on the master, with this
		// client's privileges
		res, err := a.forwardToMaster(ctx, c, query)
		if err != nil {
			return true, err
		}
		return true, callback(res, false)
	}
	sess := a.session(c.ConnectionID)
	switch stmt.(type) {
	case *ast.Commit:
		if err := a.finish(sess, "COMMIT"); err != nil {
			a.endFailedCommit(ctx, c, sess)
			return true, err
		}
		err := a.host.RunLocal(ctx, c, query, callback)
		a.afterCommit(sess)
		return true, err
	case *ast.Rollback:
		a.finish(sess, "ROLLBACK")
		sess.refs = map[string]bool{}
		return false, nil
	case *ast.Savepoint, *ast.RollbackSavepoint, *ast.ReleaseSavepoint:
		if err := a.leafSavepoint(sess, c.ConnectionID, stmt); err != nil {
			return true, err
		}
		return false, nil // the engine's part, and its answer
	case *ast.Begin:
		// an open transaction commits first, as in MySQL
		if err := a.finish(sess, "COMMIT"); err != nil {
			a.endFailedCommit(ctx, c, sess)
			return true, err
		}
		a.afterCommit(sess)
		return false, nil
	}
	changes := changesSettings(stmt)
	// the privileges the statement needs, as the client wrote it (the
	// planner rewrites it for the partitions), checked before planning
	// says anything about the tables (which are sharded, say)
	if err := a.authorizeInfos(ctx, c, privilege.Collect(stmt)); err != nil {
		if s, ok := stmt.(*ast.DBDDL); ok {
			err = databaseDenied(ctx, a, c, err, s.DBName)
		}
		return true, err
	}
	if s, ok := stmt.(*ast.Show); ok {
		if handled, err := a.showCreate(ctx, c, s, query, callback); handled {
			return true, err
		}
	}
	st := a.State()
	eval := a.sessionEval(ctx, c)
	in := planner.Input{
		Stmt: stmt, CurrentDB: a.currentDB(c.ConnectionID), Catalog: catalog{a, st},
		NextAutoIncrement: a.nextAutoIncrement, Spread: a.spreadPartition,
		Session: eval,
	}
	if err := a.waitSchemas(ctx, planner.Databases(in)...); err != nil {
		return true, err
	}
	st = a.State()
	in.Catalog = catalog{a, st}
	if st, err = a.settleMetadata(ctx, &in, st); err != nil {
		return true, err
	}
	p, err := planner.Make(in)
	if err != nil {
		return true, sqlError(err)
	}
	if a.mastersOffline(st) && planOnOffline(st, p) && !a.inTransaction(c.ConnectionID) {
		st = a.waitFailover(ctx, st)
		in.Catalog = catalog{a, st}
		// Make rewrote the statement in place (the session's values
		// bound, partitions named): plan the client's text again
		if in.Stmt, err = a.parse(c.ConnectionID, query); err != nil {
			return true, err
		}
		stmt = in.Stmt
		if p, err = planner.Make(in); err != nil {
			return true, sqlError(err)
		}
	}
	if a.readsOwnReferenceWrites(sess, stmt, p) {
		if p.Bound {
			query = ast.String(stmt)
		}
		return true, a.runInMasterPart(ctx, c, p.Database, query, callback)
	}
	switch p.Kind {
	case planner.Local, planner.Gather:
		if changes {
			return true, a.changeSettings(ctx, c, sess, query, callback)
		}
		return false, nil
	case planner.DDL:
		return true, a.ddl(ctx, c, stmt, query, callback)
	case planner.ReferenceWrite:
		return true, a.referenceWrite(ctx, c, p, stmt, query, callback)
	}
	if p.SetsInsertID {
		if _, err := a.clientContext(ctx, c); err != nil { // its session receives the value
			return true, err
		}
	}
	res, err := a.execRoutes(ctx, c.ConnectionID, st, p, eval)
	if err != nil {
		return true, err
	}
	a.noteRouted(ctx, c, p, res)
	return true, callback(res, false)
}

// sendOK answers a statement without result set.
func (a *Aggregator) sendOK(callback mysql.ResultSpoolFn, err error) error {
	if err != nil {
		return err
	}
	return callback(&sqltypes.Result{}, false)
}

// sqlError turns planner errors into MySQL errors.
func sqlError(err error) error {
	var pe *planner.Error
	if errors.As(err, &pe) {
		state := "HY000"
		switch pe.Num {
		case planner.ErNotSupported:
			state = "42000"
		case 1136:
			state = "21S01"
		}
		return mysql.NewSQLError(pe.Num, state, "%s", pe.Msg)
	}
	return err
}

// errNoMaster is the seeds' error for a partition without master.
func errNoMaster(db string, ordinal int) error {
	return mysql.NewSQLError(1777, "HY000", "Partition %s:%d has no master instance.", db, ordinal)
}

// leafError names the leaf an error came from, as SingleStore does, unless
// it is the leaf's own SQL error (passed through as is).
func leafError(leaf string, err error) error {
	var se *mysql.SQLError
	if errors.As(err, &se) && (se.Num < 2000 || se.Num >= 3000) {
		return se
	}
	return mysql.NewSQLError(1735, "HY000", "Leaf Error (%s): %v", leaf, err)
}

// routeLeaf is the leaf that runs a partition's statement.
func routeLeaf(st *meta.State, db string, ordinal int) (string, error) {
	d := st.Database(db)
	if d == nil || ordinal >= len(d.Partitions) {
		return "", fmt.Errorf("unknown partition %s:%d", db, ordinal)
	}
	if m := d.Partitions[ordinal].Master; m != "" {
		return m, nil
	}
	return "", errNoMaster(d.Name, ordinal)
}

// cutoverWait bounds how long an autocommit statement waits for a moving
// partition's new master (a hand-over takes tens to hundreds of ms).
const cutoverWait = 5 * time.Second

// execAutocommit runs an autocommit statement on the one partition of p,
// starting on leaf (with ids, giving and reading back LAST_INSERT_ID() in
// the same packet). A master handing its role over, or just turned into a
// replica, refuses the commit whole (error 1290, nothing applied), so the
// statement runs again on the master the metadata names next: writes to a
// moving partition wait for the cutover instead of failing. It returns
// the leaf that answered.
func (a *Aggregator) execAutocommit(ctx context.Context, leaf string, p *planner.Plan, settings *pool.Settings, ids *leafInsertIDs) (*sqltypes.Result, string, error) {
	deadline := time.Now().Add(cutoverWait)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		lp, err := a.LeafPool(leaf)
		if err != nil {
			return nil, leaf, err
		}
		res, err := ids.execOn(ctx, lp, settings, p.Routes[0].SQL)
		var se *mysql.SQLError
		if err == nil || !errors.As(err, &se) || se.Num != mysql.EROptionPreventsStatement || time.Now().After(deadline) {
			return res, leaf, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, leaf, err
		}
		if leaf, err = routeLeaf(a.State(), p.Database, p.Routes[0].Partition); err != nil {
			return nil, leaf, err
		}
	}
}

// execRoutes runs a routed, split or broadcast plan. Outside a transaction
// a statement on several leaves runs in one transaction per leaf, all
// committed once all succeeded (all rolled back otherwise); inside a
// transaction it runs on the transaction's connections. Each leaf gets
// one packet: its settings, BEGIN or a SAVEPOINT, and its statements.
// eval (nil for templates) gives the statement's time to plans whose
// leaves fill columns from the clock.
func (a *Aggregator) execRoutes(ctx context.Context, connID uint32, st *meta.State, p *planner.Plan, eval *sessionEval) (*sqltypes.Result, error) {
	byLeaf := map[string][]planner.Route{}
	var leaves []string
	for _, r := range p.Routes {
		leaf, err := routeLeaf(st, p.Database, r.Partition)
		if err != nil {
			return nil, err
		}
		if _, ok := byLeaf[leaf]; !ok {
			leaves = append(leaves, leaf)
		}
		byLeaf[leaf] = append(byLeaf[leaf], r)
	}
	sort.Strings(leaves)
	inTxn := a.inTransaction(connID)
	sess := a.session(connID)
	settings := a.settingsOf(sess, connID).client
	if p.StatementTime {
		settings = atTime(settings, eval.time())
	}
	ids := a.leafInsertIDs(connID, p, len(leaves))
	if len(p.Routes) == 1 {
		leaf := leaves[0]
		var res *sqltypes.Result
		var err error
		if inTxn {
			var c *pool.Conn
			if c, err = a.txnConn(ctx, sess, leaf); err == nil {
				res, err = ids.exec(c, settings, p.Routes[0].SQL)
			}
		} else {
			res, leaf, err = a.execAutocommit(ctx, leaf, p, settings, ids)
		}
		if err != nil {
			return nil, leafError(leaf, err)
		}
		ids.record()
		fixResult(res, p)
		return res, nil
	}
	// several leaves (or several partitions of one leaf)
	type out struct {
		res []*sqltypes.Result
		err error
	}
	results := make([]out, len(leaves))
	conns := make([]*pool.Conn, len(leaves))
	var wg sync.WaitGroup
	for i, leaf := range leaves {
		wg.Add(1)
		go func(i int, leaf string) {
			defer wg.Done()
			routes := byLeaf[leaf]
			queries := make([]string, 0, len(routes)+3)
			var c *pool.Conn
			var err error
			if inTxn {
				c, err = a.txnConn(ctx, sess, leaf)
				queries = append(queries, "SAVEPOINT canopy_statement")
			} else {
				var lp *pool.Pool
				if lp, err = a.LeafPool(leaf); err == nil {
					c, err = lp.Acquire(ctx)
				}
				queries = append(queries, "BEGIN")
			}
			conns[i] = c
			if err != nil {
				results[i].err = leafError(leaf, err)
				return
			}
			if ids != nil {
				queries = append(queries, setInsertIDQuery(ids.cur))
			}
			first := len(queries)
			for _, r := range routes {
				queries = append(queries, r.SQL)
			}
			if ids != nil {
				queries = append(queries, readInsertIDQuery)
			}
			// the leaf stops at a statement that fails; the part is rolled
			// back below
			res, err := c.ExecMulti(settings, queries, maxRows)
			if err == nil && ids != nil {
				err = ids.note(i, res[len(res)-1])
			}
			if err != nil {
				results[i].err = leafError(leaf, err)
				return
			}
			results[i].res = res[first : first+len(routes)]
		}(i, leaf)
	}
	wg.Wait()
	var firstErr error
	for _, r := range results {
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	// finish: commit (atomically across leaves) or roll back each leaf's part
	if !inTxn && firstErr == nil {
		own := map[string]*pool.Conn{}
		for i, c := range conns {
			own[leaves[i]] = c
		}
		firstErr = a.commitLeaves(own, nil)
	}
	for i, c := range conns {
		if c == nil {
			continue
		}
		var err error
		switch {
		case inTxn && firstErr != nil:
			_, err = c.Exec("ROLLBACK TO SAVEPOINT canopy_statement", 0)
		case inTxn:
			_, err = c.Exec("RELEASE SAVEPOINT canopy_statement", 0)
		case firstErr != nil:
			_, err = c.Exec("ROLLBACK", 0)
		}
		if err != nil && firstErr == nil {
			firstErr = leafError(leaves[i], err)
		}
		if !inTxn {
			c.Release()
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	ids.record()
	total := &sqltypes.Result{}
	var matched, changed uint64
	for _, r := range results {
		for _, res := range r.res {
			total.RowsAffected += res.RowsAffected
			if total.InsertID == 0 {
				total.InsertID = res.InsertID
			}
			m, ch := parseUpdateInfo(res.Info)
			matched += m
			changed += ch
		}
	}
	if p.Kind == planner.Broadcast && strings.HasPrefix(strings.ToLower(strings.TrimSpace(p.Routes[0].SQL)), "update") {
		total.Info = fmt.Sprintf("Rows matched: %d  Changed: %d  Warnings: 0", matched, changed)
	}
	fixResult(total, p)
	return total, nil
}

var updateInfo = regexp.MustCompile(`Rows matched: (\d+)\s+Changed: (\d+)`)

func parseUpdateInfo(info string) (uint64, uint64) {
	m := updateInfo.FindStringSubmatch(info)
	if m == nil {
		return 0, 0
	}
	a, _ := strconv.ParseUint(m[1], 10, 64)
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return a, b
}

// fixResult shows the database a client named, not the partition, and the
// AUTO_INCREMENT value the aggregator generated.
func fixResult(res *sqltypes.Result, p *planner.Plan) {
	if p.InsertID != 0 {
		res.InsertID = p.InsertID
	}
	prefix := p.Database + "_"
	for i, f := range res.Fields {
		if strings.HasPrefix(f.Database, prefix) {
			f.Database = p.Database
		}
		if len(p.ColumnNames) == 0 {
			continue
		}
		// a value the aggregator filled in (@x): the client's text names it
		if name, ok := p.ColumnNames[i]; ok {
			f.Name = name
		} else if name, ok := p.ColumnNames[i-len(res.Fields)]; ok {
			f.Name = name
		}
	}
}

// endFailedCommit ends a transaction whose commit failed, as MySQL does:
// it is rolled back (finish already ended the leaf parts) and the client
// is out of it. Left open, the client's next autocommit statements would
// run inside it and never commit.
func (a *Aggregator) endFailedCommit(ctx context.Context, c *mysql.Conn, sess *session) {
	sess.refs = map[string]bool{}
	discard := func(*sqltypes.Result, bool) error { return nil }
	if err := a.host.RunLocal(ctx, c, "ROLLBACK", discard); err != nil {
		a.log.Warn("rolling back after a failed commit", "err", err)
	}
}

// txnConn is the connection of a client's open transaction to a leaf,
// beginning the leaf's part of the transaction on first use.
func (a *Aggregator) txnConn(ctx context.Context, s *session, leaf string) (*pool.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[leaf]; ok {
		return c, nil
	}
	lp, err := a.LeafPool(leaf)
	if err != nil {
		return nil, err
	}
	c, err := lp.Acquire(ctx)
	if err != nil {
		return nil, leafError(leaf, err)
	}
	if err := beginLeafPart(s, c); err != nil {
		c.Release()
		return nil, leafError(leaf, err)
	}
	s.conns[leaf] = c
	return c, nil
}

// finish ends the leaf parts of a client's transaction with COMMIT
// (atomic across leaves: see commitLeaves) or ROLLBACK. The parts are the
// leaves' and, on a child aggregator, the master aggregator's (reference
// writes); on the master, reference writes are in this node's engine, and
// a COMMIT with leaf parts too makes them a participant of the same
// two-phase commit (the engine's own COMMIT then has nothing left to do).
func (a *Aggregator) finish(s *session, how string) error {
	s.mu.Lock()
	conns := s.conns
	s.conns = map[string]*pool.Conn{}
	s.savepoints = nil
	s.master = ""
	s.remote = map[string]bool{}
	s.mu.Unlock()
	if len(conns) == 0 {
		return nil
	}
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	if how == "COMMIT" {
		var local *storage.Session
		if len(s.refs) > 0 {
			local = a.host.Session(s.id)
		}
		if len(s.refs) == 0 || local != nil {
			return a.commitLeaves(conns, local)
		}
	}
	var firstErr error
	if how == "COMMIT" {
		// the session's engine part is gone: commit none of it
		how = "ROLLBACK"
		firstErr = mysql.NewSQLError(1180, "HY000", "Distributed transaction rolled back: the session's reference-table writes are gone")
	}
	for l, c := range conns {
		if _, err := c.Exec(how, 0); err != nil && firstErr == nil {
			firstErr = leafError(l, err)
		}
	}
	return firstErr
}

// SessionPrepared: a connection's engine transaction was prepared (CANOPY
// PREPARE), as the master aggregator's part of a child's transaction. Its
// reference writes are in doubt now, under the child's decision; the leaf
// parts this session opened for the statements' reads end.
func (a *Aggregator) SessionPrepared(connID uint32) {
	v, ok := a.sessions.Load(connID)
	if !ok {
		return
	}
	sess := v.(*session)
	sess.refs = map[string]bool{}
	a.finish(sess, "ROLLBACK")
}

// afterCommit makes reference writes of a committed transaction reach
// every node before the client hears of it.
func (a *Aggregator) afterCommit(s *session) {
	for db := range s.refs {
		a.waitReplicated(db)
	}
	s.refs = map[string]bool{}
}

// referenceWrite runs a write to reference tables on the master aggregator,
// which copies it to every node: a child aggregator forwards it.
func (a *Aggregator) referenceWrite(ctx context.Context, c *mysql.Conn, p *planner.Plan, stmt ast.Statement, query string, callback mysql.ResultSpoolFn) error {
	db := p.Database
	if !a.IsMaster() {
		// the master runs it in another session: it gets the values this
		// client's session gave (sessionvars.go), and gives back the
		// LAST_INSERT_ID() it leaves
		if p.Bound {
			query = ast.String(stmt)
		}
		if _, ins := stmt.(*ast.Insert); ins || p.SetsInsertID {
			ctx = context.WithValue(ctx, forwardInsertIDKey{}, true)
		}
		if a.inTransaction(c.ConnectionID) {
			// in the client's transaction: its part on the master
			return a.runInMasterPart(ctx, c, db, query, callback)
		}
		res, err := a.forwardToMaster(ctx, c, query)
		if err != nil {
			return err
		}
		return callback(res, false)
	}
	if a.store.IsReplica(db) {
		a.ownCopies(a.State(), true) // a master elected a moment ago has not taken them over yet
	}
	if err := a.host.RunLocal(ctx, c, query, callback); err != nil {
		return err
	}
	if a.inTransaction(c.ConnectionID) {
		a.session(c.ConnectionID).refs[db] = true
		return nil
	}
	a.waitReplicated(db)
	return nil
}

// runInMasterPart runs a statement of a child's client transaction that
// writes (or reads what the transaction wrote to) reference tables of db
// in the transaction's part on the master aggregator: a connection to the
// master kept with the leaf parts, begun on first use. The master runs it
// in that connection's open transaction, so it commits or rolls back with
// the rest: the part is one more participant of the commit (finish,
// commitLeaves), ROLLBACK and savepoints reach it as they reach leaves.
func (a *Aggregator) runInMasterPart(ctx context.Context, c *mysql.Conn, db, query string, callback mysql.ResultSpoolFn) error {
	sctx, err := a.clientContext(ctx, c)
	if err != nil {
		return err
	}
	account := sctx.Session.Client()
	sess := a.session(c.ConnectionID)
	mc, err := a.masterPart(ctx, sess)
	if err != nil {
		return err
	}
	res, idx, err := a.runAs(ctx, mc, &account, c.ConnectionID, query)
	if err != nil {
		return err
	}
	sess.mu.Lock()
	sess.remote[db] = true
	sess.mu.Unlock()
	a.waitApplied(idx)
	return callback(res, false)
}

// acquireMaster takes a connection to the master aggregator (master, ""
// when none is known), or says why there is none.
func (a *Aggregator) acquireMaster(ctx context.Context, master string) (*pool.Conn, error) {
	if v := a.raft.Held(); master == "" && v != nil {
		return nil, heldError(v)
	}
	if master == "" {
		return nil, mysql.NewSQLError(1105, "HY000", "No master aggregator is reachable: DDL and writes to reference tables need it. "+
			"Restart the master aggregator, or if it is lost, run AGGREGATOR SET AS MASTER on a child aggregator")
	}
	mp, err := a.AggregatorPool(master)
	if err != nil {
		return nil, err
	}
	c, err := mp.Acquire(ctx)
	if err != nil {
		return nil, mysql.NewSQLError(1105, "HY000", "The master aggregator %s is unreachable (%v): DDL and writes to reference tables need it. "+
			"Restart it, or if it is lost, run AGGREGATOR SET AS MASTER on a child aggregator", master, err)
	}
	return c, nil
}

// heldError explains why an aggregator that holds (runs no raft) cannot
// run what needs the master.
func heldError(v *cluster.Verdict) error {
	if v.Replaced {
		return mysql.NewSQLError(1105, "HY000",
			"This aggregator was replaced as master by %s (master epoch %d) while it was away; it does not answer, and this one rejoins it as a child once it does. "+
				"DDL and writes to reference tables need the master aggregator. If %s is lost for good, AGGREGATOR SET AS MASTER here takes over again (what it changed since is lost)",
			v.By, v.Epoch, v.By)
	}
	return mysql.NewSQLError(1105, "HY000",
		"This aggregator was the master aggregator and has heard from no leaf and no other aggregator since it restarted: it does not take over again until one answers (another may have become master meanwhile). "+
			"If the rest of the cluster is lost for good, AGGREGATOR SET AS MASTER here takes over by force")
}

// masterPart is the connection of a client's open transaction to the
// master aggregator, beginning the master's part on first use. The
// transaction's part stays with the master it began on: if another
// aggregator became master since, the statement fails (the old master's
// copy no longer takes writes, so the part could not commit).
func (a *Aggregator) masterPart(ctx context.Context, s *session) (*pool.Conn, error) {
	if a.raft.Leader() == "" {
		a.raft.WaitLeader(5 * time.Second) // an election may be under way
	}
	master := a.raft.Leader()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.master != "" {
		if s.master != master {
			return nil, mysql.NewSQLError(1180, "HY000", "The master aggregator changed from %s to %s during the transaction; "+
				"its writes to reference tables cannot commit: roll it back and run it again", s.master, master)
		}
		return s.conns[s.master], nil
	}
	c, err := a.acquireMaster(ctx, master)
	if err != nil {
		return nil, err
	}
	if err := beginLeafPart(s, c); err != nil {
		c.Release()
		return nil, leafError(master, err)
	}
	s.conns[master] = c
	s.master = master
	return c, nil
}

// readsOwnReferenceWrites reports whether a statement planned Local on a
// child aggregator reads reference tables its client's open transaction
// wrote on the master aggregator: the child's copy does not have those
// writes, so the statement runs in the transaction's part on the master.
func (a *Aggregator) readsOwnReferenceWrites(sess *session, stmt ast.Statement, p *planner.Plan) bool {
	if p.Kind != planner.Local || p.Database == "" {
		return false
	}
	sess.mu.Lock()
	written := sess.remote[p.Database]
	sess.mu.Unlock()
	if !written {
		return false
	}
	switch s := stmt.(type) {
	case *ast.Select:
		return s.Into == nil // SELECT … INTO sets the client's variables, here
	case *ast.SetOp, *ast.ParenSelect:
		return true
	}
	return false
}

// Forward runs a client's statement on the master aggregator, with the
// client's privileges and current database.
func (a *Aggregator) Forward(ctx context.Context, c *mysql.Conn, query string) (*sqltypes.Result, error) {
	return a.forwardToMaster(ctx, c, query)
}

// runAs runs a forwarded statement on a link to the master with the
// client's privileges and in the client's current database, none
// included (the master checks the client's account, not the link's; a
// statement of this aggregator's own, account nil, runs with the link's,
// in no database: IMPERSONATE NONE leaves a link in none), under the
// client's settings. One packet carries CANOPY IMPERSONATE, the client's
// LAST_INSERT_ID() (when the statement may change it, forwardInsertIDKey),
// the statement, the value read back, CANOPY IMPERSONATE NONE, and CANOPY
// NODE STATUS, whose metadata index it returns (0: not known).
func (a *Aggregator) runAs(ctx context.Context, c *pool.Conn, account *sql.Client, connID uint32, query string) (*sqltypes.Result, uint64, error) {
	queries := make([]string, 0, 6)
	if account != nil {
		// hex: no quoting or escaping can turn one account into another
		hx := func(s string) string { return "'" + hex.EncodeToString([]byte(s)) + "'" }
		queries = append(queries, "CANOPY IMPERSONATE "+hx(account.User)+" "+hx(account.Address)+" "+hx(a.currentDB(connID)))
	}
	var settings *pool.Settings
	var s sql.Session
	if connID != 0 {
		settings = a.settingsFor(connID).client
		if ss := a.host.Session(connID); ss != nil && ctx.Value(forwardInsertIDKey{}) != nil {
			s = ss
			queries = append(queries, setInsertIDQuery(s.GetLastQueryInfoInt(sql.LastInsertId)))
		}
	}
	stmt := len(queries)
	// the statements after it must not end up in a trailing ; or comment
	queries = append(queries, strings.TrimRightFunc(query, func(r rune) bool { return r == ';' || unicode.IsSpace(r) }))
	if s != nil {
		queries = append(queries, readInsertIDQuery)
	}
	none := len(queries)
	if account != nil {
		queries = append(queries, "CANOPY IMPERSONATE NONE")
	}
	status := len(queries)
	queries = append(queries, "CANOPY NODE STATUS")
	results, err := c.ExecMulti(settings, queries, maxRows)
	if account != nil && len(results) <= none {
		// the master stopped before IMPERSONATE NONE (a statement failed)
		if _, err := c.Exec("CANOPY IMPERSONATE NONE", 0); err != nil {
			c.Close() // never hand a connection acting as a client back to the pool
		}
	}
	if len(results) <= stmt {
		return nil, 0, err // the statement failed, or did not run
	}
	if s != nil {
		// the statement ran (and committed): a failure to read the value
		// back leaves the client's value as it was, not the statement failed
		if len(results) > stmt+1 {
			if id, rerr := insertIDOf(results[stmt+1]); rerr == nil {
				s.SetLastQueryInfoInt(sql.LastInsertId, id)
			} else {
				a.log.Warn("reading LAST_INSERT_ID() back from the master aggregator", "err", rerr)
			}
		} else {
			a.log.Warn("reading LAST_INSERT_ID() back from the master aggregator", "err", err)
		}
	}
	var idx uint64
	if len(results) > status && len(results[status].Rows) == 1 {
		row := results[status].Rows[0]
		idx, _ = strconv.ParseUint(row[len(row)-1].ToString(), 10, 64)
	}
	return results[stmt], idx, nil
}

// forwardToMaster runs a statement on the master aggregator, as its
// client, and waits until this aggregator has applied the metadata
// changes it made.
func (a *Aggregator) forwardToMaster(ctx context.Context, client *mysql.Conn, query string) (*sqltypes.Result, error) {
	var connID uint32
	var account *sql.Client
	if client != nil {
		connID = client.ConnectionID
		sctx, err := a.clientContext(ctx, client)
		if err != nil {
			return nil, err
		}
		acct := sctx.Session.Client()
		account = &acct
	}
	if a.raft.Leader() == "" && a.raft.Held() == nil {
		a.raft.WaitLeader(5 * time.Second) // an election may be under way
	}
	c, err := a.acquireMaster(ctx, a.raft.Leader())
	if err != nil {
		return nil, err
	}
	defer c.Release()
	res, idx, err := a.runAs(ctx, c, account, connID, query)
	if err != nil {
		return nil, err
	}
	a.waitApplied(idx) // catch up with the master's metadata
	return res, nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
