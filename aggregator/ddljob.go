package aggregator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/failpoint"
)

// Schema changes that touch several nodes run as jobs recorded in the
// metadata (meta.DDLJob) before the first node is touched: an ALTER of a
// sharded table (and CREATE / DROP INDEX, which are ALTERs), CREATE
// TABLE and CREATE DATABASE.
//
// An alter job records the definition every partition has before
// (SHOW CREATE TABLE, which must agree on all of them), runs the change
// on one partition first and records the definition it makes (After),
// then on the others in parallel, then on the master aggregator's copy,
// and ends. A partition's own definition says where it is: Before, After,
// or in the middle (the engine applies an ALTER's clauses one at a time,
// so one that refused a clause may have made the ones before it).
//
//   - A change a partition refuses (a UNIQUE key over duplicates, say) is
//     undone on every partition that made any of it, by the ALTER
//     statements that take its definition back to Before
//     (convergeStatements), and the client gets the partition's error:
//     the table is unchanged everywhere, as MySQL leaves it.
//   - A change that drops a column cannot be undone without losing its
//     values: it only goes forward. It is first tried on an empty table
//     of the same definition (the changes that can fail on a table's rows
//     may not be combined with a DROP COLUMN), and a partition that does
//     not take it keeps the job running until it does.
//   - A master that dies leaves the job in the metadata; the next master
//     (or the same, restarted) takes it up (ddlJobLoop): forward when
//     every partition takes the change, else back.
//   - Until a table's job is finished, its other schema changes wait for
//     it (ddlWait), then fail with an error that names it; DROP TABLE and
//     DROP DATABASE cancel it. SHOW DDL JOBS lists the jobs.
//
// A CREATE TABLE or CREATE DATABASE job that a dying master left is rolled
// back: what it made on the leaves and in the copy is dropped (the client
// had no answer; it may create the table again).

// ddlWait bounds how long a schema change waits for another of the same
// table to finish.
const ddlWait = 5 * time.Second

// ddlLocks are the tables (db.table, lower case; db. for a database)
// whose schema change runs on this master: a job is driven by one
// goroutine at a time.
type ddlLocks struct {
	mu   sync.Mutex
	held map[string]bool
	// retry is when the job loop tries a job again after a failure
	retry map[uint64]jobRetry
}

type jobRetry struct {
	at       time.Time
	failures int
}

func jobKey(db, table string) string { return strings.ToLower(db) + "." + strings.ToLower(table) }

// tryLock takes the keys, all or none.
func (l *ddlLocks) tryLock(keys []string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = map[string]bool{}
	}
	for _, k := range keys {
		if l.held[k] {
			return false
		}
	}
	for _, k := range keys {
		l.held[k] = true
	}
	return true
}

func (l *ddlLocks) unlock(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.held, k)
	}
}

// failed notes a job's failure; the job loop waits longer after each.
func (l *ddlLocks) failed(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retry == nil {
		l.retry = map[uint64]jobRetry{}
	}
	r := l.retry[id]
	r.failures++
	r.at = time.Now().Add(min(time.Duration(1<<min(r.failures, 5))*time.Second, 30*time.Second))
	l.retry[id] = r
}

func (l *ddlLocks) due(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.retry[id]
	return !ok || time.Now().After(r.at)
}

func (l *ddlLocks) forget(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.retry, id)
}

// ddlGate admits a client's schema change of tables of db (none: of the
// database itself) on the master: it takes their locks and, unless the
// change drops them, finishes their unfinished jobs first (a job a
// master left behind is taken up before anything else changes the
// table). It waits up to ddlWait for a job running here, then fails with
// an error naming it. The returned function releases the locks.
func (a *Aggregator) ddlGate(ctx context.Context, db string, tables []string, drop bool) (func(), error) {
	keys := []string{jobKey(db, "")}
	if len(tables) > 0 {
		keys = keys[:0]
		for _, t := range tables {
			keys = append(keys, jobKey(db, t))
		}
	}
	sort.Strings(keys)
	keys = slices.Compact(keys)
	deadline := time.Now().Add(ddlWait)
	drove := map[uint64]bool{}
	for {
		if a.ddlJobs.tryLock(keys) {
			j := a.unfinishedJob(db, tables)
			if j == nil || drop {
				return func() { a.ddlJobs.unlock(keys) }, nil
			}
			if !drove[j.ID] {
				drove[j.ID] = true
				if err := a.driveJob(ctx, j.ID); err != nil {
					a.log.Warn("an unfinished schema change could not be finished", "job", j.ID, "err", err)
				}
				a.ddlJobs.unlock(keys)
				continue
			}
			a.ddlJobs.unlock(keys)
			return nil, busyError(j, db, tables)
		}
		if time.Now().After(deadline) {
			return nil, busyError(a.unfinishedJob(db, tables), db, tables)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// unfinishedJob is an unfinished job of one of the tables (none: of the
// database), nil if none.
func (a *Aggregator) unfinishedJob(db string, tables []string) *meta.DDLJob {
	st := a.State()
	if len(tables) == 0 {
		return st.UnfinishedDDL(db, "")
	}
	for _, t := range tables {
		if j := st.UnfinishedDDL(db, t); j != nil {
			return j
		}
	}
	return nil
}

// busyError is the error of a schema change that waited in vain.
func busyError(j *meta.DDLJob, db string, tables []string) error {
	what := fmt.Sprintf("Database '%s'", db)
	if len(tables) > 0 {
		what = fmt.Sprintf("Table '%s.%s'", db, tables[0])
	}
	if j == nil {
		return mysql.NewSQLError(1105, "HY000", "%s has an unfinished schema change running on the master aggregator; retry once it has returned", what)
	}
	if len(tables) > 0 && j.Table != "" {
		what = fmt.Sprintf("Table '%s.%s'", j.Database, j.Table)
	}
	why := ""
	if j.Error != "" {
		why = " (" + j.Error + ")"
	}
	return mysql.NewSQLError(1105, "HY000", "%s has an unfinished schema change: DDL job %d, %s, %s: %s%s; retry once SHOW DDL JOBS lists it as finished",
		what, j.ID, j.Kind, j.State, cmp.Or(j.Query, j.Statement), why)
}

// startJob records a job and returns its number.
func (a *Aggregator) startJob(j meta.DDLJob) (uint64, error) {
	j.Started = time.Now().UnixMilli()
	j.State = meta.DDLRunning
	for try := 0; ; try++ {
		j.ID = a.State().NextDDLJob + 1
		err := a.raft.Propose(meta.StartDDLJob{Job: j})
		if err == nil {
			return j.ID, nil
		}
		if errors.Is(err, meta.ErrDDLBusy) {
			return 0, busyError(a.unfinishedJob(j.Database, []string{j.Table}), j.Database, []string{j.Table})
		}
		if try >= 5 || !strings.Contains(err.Error(), "is taken") {
			return 0, err
		}
	}
}

func (a *Aggregator) updateJob(u meta.UpdateDDLJob) error { return a.raft.Propose(u) }

func (a *Aggregator) finishJob(id uint64, state string, cause error) error {
	f := meta.FinishDDLJob{ID: id, State: state, Finished: time.Now().UnixMilli()}
	if cause != nil {
		f.Error = cause.Error()
	}
	a.ddlJobs.forget(id)
	return a.Propose(f)
}

// driveJob takes a job on from where the metadata says it is; the
// caller holds its table's lock. The error is the one its client gets.
func (a *Aggregator) driveJob(ctx context.Context, id uint64) error {
	j := a.State().DDLJob(id)
	if j == nil || !j.Unfinished() {
		return nil
	}
	a.ownCopies(a.State(), true)
	switch j.Kind {
	case meta.DDLAlter:
		return a.driveAlter(ctx, *j)
	case meta.DDLCreateTable:
		return a.resumeCreateTable(ctx, *j)
	case meta.DDLCreateDatabase:
		return a.resumeCreateDatabase(ctx, *j)
	}
	return fmt.Errorf("DDL job %d: unknown kind %q", id, j.Kind)
}

// ddlJobLoop takes up, on the master, the jobs no client statement
// drives: those a master that died left, and those that failed for a
// while (a partition whose leaf was down), retried less and less often.
func (a *Aggregator) ddlJobLoop() {
	defer a.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		if !a.IsMaster() || failpoint.Enabled("ddl-jobs-paused") {
			continue
		}
		for _, j := range a.State().DDLJobs {
			if !j.Unfinished() || !a.ddlJobs.due(j.ID) {
				continue
			}
			keys := []string{jobKey(j.Database, j.Table)}
			if !a.ddlJobs.tryLock(keys) {
				continue // a client statement drives it
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			a.log.Info("taking up an unfinished schema change", "job", j.ID, "kind", j.Kind, "table", j.Database+"."+j.Table, "state", j.State)
			err := a.driveJob(ctx, j.ID)
			cancel()
			a.ddlJobs.unlock(keys)
			if x := a.State().DDLJob(j.ID); x != nil && x.Unfinished() {
				a.log.Warn("an unfinished schema change goes on later", "job", j.ID, "err", err)
				a.ddlJobs.failed(j.ID)
			}
		}
	}
}

// Alter jobs.

// alterClauses are the clauses of an ALTER.
func alterClauses(stmt ast.Statement) []*ast.DDL {
	switch s := stmt.(type) {
	case *ast.AlterTable:
		return s.Statements
	case *ast.DDL:
		return []*ast.DDL{s}
	}
	return nil
}

// isAlter reports whether a schema change alters one table in place
// (ALTER TABLE, CREATE INDEX, DROP INDEX): what runs as an alter job.
func isAlter(stmt ast.Statement) bool {
	switch s := stmt.(type) {
	case *ast.AlterTable:
		return true
	case *ast.DDL:
		return s.Action == ast.AlterStr && s.ViewSpec == nil && s.TriggerSpec == nil && s.ProcedureSpec == nil && s.EventSpec == nil
	}
	return false
}

// columnRenames are an ALTER's column renames, in order.
func columnRenames(stmt ast.Statement) [][2]string {
	var out [][2]string
	for _, cl := range alterClauses(stmt) {
		switch {
		case cl.ColumnAction == ast.RenameStr:
			out = append(out, [2]string{cl.Column.String(), cl.ToColumn.String()})
		case cl.ColumnAction == ast.ChangeStr && cl.TableSpec != nil && len(cl.TableSpec.Columns) == 1:
			if to := cl.TableSpec.Columns[0].Name.String(); !strings.EqualFold(to, cl.Column.String()) {
				out = append(out, [2]string{cl.Column.String(), to})
			}
		}
	}
	return out
}

func reversed(renames [][2]string) [][2]string {
	out := make([][2]string, 0, len(renames))
	for i := len(renames) - 1; i >= 0; i-- {
		out = append(out, [2]string{renames[i][1], renames[i][0]})
	}
	return out
}

// failsOnRows names a clause a table's rows can refuse ("" if none): a
// unique or primary key, a changed column, a check.
func failsOnRows(cl *ast.DDL) string {
	switch {
	case cl.IndexSpec != nil && cl.IndexSpec.Action == ast.CreateStr && (cl.IndexSpec.Type == ast.UniqueStr || cl.IndexSpec.Type == ast.PrimaryStr):
		return "a unique or primary key"
	case cl.ColumnAction == ast.ModifyStr || cl.ColumnAction == ast.ChangeStr:
		return "MODIFY or CHANGE COLUMN"
	case cl.ConstraintAction == ast.AddStr:
		return "a constraint"
	}
	return ""
}

// alterTable runs an ALTER of a sharded table as a job; the caller holds
// the table's lock.
func (a *Aggregator) alterTable(ctx context.Context, d *meta.Database, t *meta.Table, stmt ast.Statement, query string) error {
	q := qualifyAlter(stmt, d.Name)
	reversible, risky := true, ""
	for _, cl := range alterClauses(stmt) {
		if cl.ColumnAction == ast.DropStr {
			reversible = false
		}
		if why := failsOnRows(cl); why != "" && risky == "" {
			risky = why
		}
	}
	if !reversible && risky != "" {
		return mysql.NewSQLError(1235, "42000",
			"ALTER TABLE of a sharded table that drops a column cannot also add %s, which a partition's rows may refuse after other partitions dropped the column: run them as separate statements", risky)
	}
	ms, err := masters(d)
	if err != nil {
		return err
	}
	all := make([]int, len(ms))
	for i := range all {
		all[i] = i
	}
	defs, err := a.partitionDefs(ctx, d, t.Name, ms, all)
	if err != nil {
		return err
	}
	for p := range defs {
		if defs[p] != defs[0] {
			return mysql.NewSQLError(1105, "HY000",
				"The partitions of table '%s.%s' have different definitions (%s differs from %s); make them the same before changing the table",
				d.Name, t.Name, meta.PartitionName(d.Name, p), meta.PartitionName(d.Name, 0))
		}
	}
	if !reversible {
		// what only goes forward must not fail for its definition on a partition
		if err := a.tryOnScratch(ctx, defs[0], q); err != nil {
			return err
		}
	}
	id, err := a.startJob(meta.DDLJob{Kind: meta.DDLAlter, Database: d.Name, Table: t.Name, Statement: alterSQL(q), Query: query,
		Before: defs[0], Reversible: reversible, Partitions: len(ms)})
	if err != nil {
		return err
	}
	j := a.State().DDLJob(id)
	if j == nil {
		return fmt.Errorf("DDL job %d is not in the metadata", id)
	}
	err = a.driveAlter(ctx, *j)
	if x := a.State().DDLJob(id); x != nil && x.Unfinished() {
		a.ddlJobs.failed(id) // the job loop goes on with it
	}
	return err
}

// qualifyAlter is an ALTER with its table named in db.
func qualifyAlter(stmt ast.Statement, db string) ast.Statement {
	switch s := stmt.(type) {
	case *ast.AlterTable:
		x := *s
		x.Table.DbQualifier = ast.NewTableIdent(db)
		return &x
	case *ast.DDL:
		x := *s
		x.Table.DbQualifier = ast.NewTableIdent(db)
		return &x
	}
	return stmt
}

// retarget is an ALTER of another table.
func retarget(stmt ast.Statement, db, table string) ast.Statement {
	stmt = qualifyAlter(stmt, db)
	switch s := stmt.(type) {
	case *ast.AlterTable:
		s.Table.Name = ast.NewTableIdent(table)
	case *ast.DDL:
		s.Table.Name = ast.NewTableIdent(table)
	}
	return stmt
}

// tryOnScratch runs an ALTER on an empty table of definition def in this
// node's scratch database.
func (a *Aggregator) tryOnScratch(ctx context.Context, def string, stmt ast.Statement) error {
	name := fmt.Sprintf("ddl_%d", time.Now().UnixNano())
	first, rest, ok := strings.Cut(def, "\n")
	if !ok || !strings.HasPrefix(first, "CREATE TABLE ") {
		return fmt.Errorf("not a table definition: %.60q", def)
	}
	tbl := quoteIdent(ScratchDB) + "." + quoteIdent(name)
	if _, err := a.host.RunInternal(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(ScratchDB)); err != nil {
		return err
	}
	if _, err := a.host.RunInternal(ctx, "CREATE TABLE "+tbl+" (\n"+rest); err != nil {
		// a definition the engine does not take back as it printed it:
		// the partitions are the test then
		a.log.Warn("no scratch copy of a table to try a schema change on", "err", err)
		return nil
	}
	defer a.host.RunInternal(context.Background(), "DROP TABLE IF EXISTS "+tbl)
	_, err := a.host.RunInternal(ctx, alterSQL(retarget(stmt, ScratchDB, name)))
	return err
}

// partitionDefs reads the definition of a table on partitions parts
// (SHOW CREATE TABLE on their masters), indexed by ordinal.
func (a *Aggregator) partitionDefs(ctx context.Context, d *meta.Database, table string, ms []string, parts []int) ([]string, error) {
	defs := make([]string, len(ms))
	byLeaf := map[string][]int{}
	for _, p := range parts {
		byLeaf[ms[p]] = append(byLeaf[ms[p]], p)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(byLeaf))
	for leaf, ps := range byLeaf {
		wg.Add(1)
		go func(leaf string, ps []int) {
			defer wg.Done()
			lp, err := a.LeafPool(leaf)
			if err != nil {
				errs <- leafError(leaf, err)
				return
			}
			for _, p := range ps {
				res, err := lp.Exec(ctx, "SHOW CREATE TABLE "+quoteIdent(meta.PartitionName(d.Name, p))+"."+quoteIdent(table), 10)
				if err != nil {
					errs <- leafError(leaf, err)
					return
				}
				if len(res.Rows) != 1 || len(res.Rows[0]) < 2 {
					errs <- fmt.Errorf("SHOW CREATE TABLE of %s.%s: no definition", meta.PartitionName(d.Name, p), table)
					return
				}
				defs[p] = normalizeDef(res.Rows[0][1].ToString())
			}
		}(leaf, ps)
	}
	wg.Wait()
	close(errs)
	return defs, <-errs
}

// only is ms with the leaves of partitions not in parts blanked.
func only(ms []string, parts []int) []string {
	out := make([]string, len(ms))
	for _, p := range parts {
		out[p] = ms[p]
	}
	return out
}

// runAlter runs a job's ALTER on partitions parts.
func (a *Aggregator) runAlter(ctx context.Context, d *meta.Database, ms []string, table string, stmt ast.Statement, parts []int) error {
	_, err := a.onLeavesWith(ctx, only(ms, parts), func(p int) string {
		return alterSQL(retarget(stmt, meta.PartitionName(d.Name, p), table))
	}, execThenHit("ddl-partition-done"))
	return err
}

// alterSQL prints an ALTER for the engine to parse back. The parser's
// printer writes the column definition of an ADD, MODIFY or CHANGE
// COLUMN in parentheses, which MySQL's grammar (and the engine's) refuses
// for the last two and, with FIRST or AFTER, for the first: those
// clauses are printed here.
func alterSQL(stmt ast.Statement) string {
	s, ok := stmt.(*ast.AlterTable)
	if !ok || len(s.PartitionSpecs) > 0 {
		return ast.String(stmt)
	}
	head := ast.String(&ast.AlterTable{Table: s.Table})
	var b strings.Builder
	b.WriteString(head)
	for i, cl := range s.Statements {
		if i > 0 {
			b.WriteString(",")
		}
		if (cl.ColumnAction == ast.ModifyStr || cl.ColumnAction == ast.ChangeStr || cl.ColumnAction == ast.AddStr) &&
			cl.TableSpec != nil && len(cl.TableSpec.Columns) == 1 && len(cl.TableSpec.Indexes) == 0 && len(cl.TableSpec.Constraints) == 0 {
			order := ""
			if o := cl.ColumnOrder; o != nil {
				if o.First {
					order = " first"
				} else {
					order = " after " + ast.String(o.AfterColumn)
				}
			}
			if cl.ColumnAction == ast.ChangeStr {
				fmt.Fprintf(&b, " change column %s %s%s", ast.String(cl.Column), ast.String(cl.TableSpec.Columns[0]), order)
			} else {
				fmt.Fprintf(&b, " %s column %s%s", cl.ColumnAction, ast.String(cl.TableSpec.Columns[0]), order)
			}
			continue
		}
		b.WriteString(strings.TrimPrefix(ast.String(&ast.AlterTable{Table: s.Table, Statements: []*ast.DDL{cl}}), head))
	}
	return b.String()
}

// converge takes partition p of table from definition cur to target.
func (a *Aggregator) converge(ctx context.Context, d *meta.Database, ms []string, table string, p int, cur, target string, renames [][2]string) error {
	from, err := parseDef(cur)
	if err != nil {
		return err
	}
	to, err := parseDef(target)
	if err != nil {
		return err
	}
	stmts := convergeStatements(quoteIdent(meta.PartitionName(d.Name, p))+"."+quoteIdent(table), from, to, renames, true)
	lp, err := a.LeafPool(ms[p])
	if err != nil {
		return leafError(ms[p], err)
	}
	for _, q := range stmts {
		if _, err := lp.Exec(ctx, q, 0); err != nil {
			return fmt.Errorf("%s: %s: %w", meta.PartitionName(d.Name, p), q, leafError(ms[p], err))
		}
	}
	defs, err := a.partitionDefs(ctx, d, table, ms, []int{p})
	if err != nil {
		return err
	}
	if defs[p] != target {
		return fmt.Errorf("%s: the definition of %s is not the one it should have after %d statements:\n%s\nwant\n%s",
			meta.PartitionName(d.Name, p), table, len(stmts), defs[p], target)
	}
	a.log.Info("brought a partition's table to a schema change's definition", "partition", meta.PartitionName(d.Name, p), "table", table, "statements", len(stmts))
	return nil
}

// driveAlter takes an alter job on from where it is: forward, or back
// when it is rolling back or a partition refuses the change.
func (a *Aggregator) driveAlter(ctx context.Context, j meta.DDLJob) error {
	st := a.State()
	d := st.Database(j.Database)
	if d == nil || d.Table(j.Table) == nil {
		return a.finishJob(j.ID, meta.DDLCancelled, errors.New("its table is gone"))
	}
	stmt, err := ast.Parse(j.Statement)
	if err != nil {
		err = mysql.NewSQLError(1064, "42000", "You have an error in your SQL syntax; %v", err)
		a.finishJob(j.ID, meta.DDLRolledBack, err)
		return err
	}
	ms, err := masters(d)
	if err != nil {
		return err
	}
	if j.State == meta.DDLRollingBack {
		return a.rollbackAlter(ctx, j, d, ms, stmt, errors.New(j.Error))
	}
	if err := a.forwardAlter(ctx, &j, d, ms, stmt); err != nil {
		if !j.Reversible {
			a.updateJob(meta.UpdateDDLJob{ID: j.ID, Error: err.Error()})
			return mysql.NewSQLError(1105, "HY000",
				"The change of table '%s.%s' is not finished: %v. It only goes forward (it drops a column); DDL job %d goes on with it until every partition has it (SHOW DDL JOBS)",
				j.Database, j.Table, err, j.ID)
		}
		return a.rollbackAlter(ctx, j, d, ms, stmt, err)
	}
	return a.commitAlter(ctx, j, d, stmt)
}

// forwardAlter brings every partition to the changed definition.
func (a *Aggregator) forwardAlter(ctx context.Context, j *meta.DDLJob, d *meta.Database, ms []string, stmt ast.Statement) error {
	all := make([]int, len(ms))
	for i := range all {
		all[i] = i
	}
	defs, err := a.partitionDefs(ctx, d, j.Table, ms, all)
	if err != nil {
		return err
	}
	renames := columnRenames(stmt)
	// partitions in the middle of the change: back to where they were
	// (the change runs on them again), or, if it only goes forward, on
	// to where the others are
	strays := func() error {
		for p, def := range defs {
			switch {
			case def == j.Before || j.After != "" && def == j.After:
			case j.Reversible:
				if err := a.converge(ctx, d, ms, j.Table, p, def, j.Before, reversed(renames)); err != nil {
					return err
				}
				defs[p] = j.Before
			case j.After != "":
				if err := a.converge(ctx, d, ms, j.Table, p, def, j.After, renames); err != nil {
					return err
				}
				defs[p] = j.After
			}
		}
		return nil
	}
	if err := strays(); err != nil {
		return err
	}
	first := -1
	if j.After == "" {
		// one partition first: the definition it makes is the one every
		// partition must end with
		first = slices.Index(defs, j.Before)
		if first < 0 {
			return fmt.Errorf("no partition of %s.%s has the definition the change started from", j.Database, j.Table)
		}
		if err := a.runAlter(ctx, d, ms, j.Table, stmt, []int{first}); err != nil {
			return err
		}
		after, err := a.partitionDefs(ctx, d, j.Table, ms, []int{first})
		if err != nil {
			return err
		}
		j.After, defs[first] = after[first], after[first]
		if err := a.updateJob(meta.UpdateDDLJob{ID: j.ID, After: j.After, Done: []int{first}}); err != nil {
			return err
		}
		if failpoint.Fail("ddl-job-stall") {
			time.Sleep(10 * time.Second)
		}
		if err := strays(); err != nil {
			return err
		}
	}
	// the partitions still at the definition before; a change the
	// definitions do not show (AUTO_INCREMENT=, ENGINE=) runs again on
	// every partition but the first, which it leaves as they were
	var pending []int
	for p, def := range defs {
		if def == j.Before && (def != j.After || p != first) {
			pending = append(pending, p)
		}
	}
	if err := a.runAlter(ctx, d, ms, j.Table, stmt, pending); err != nil {
		return err
	}
	defs, err = a.partitionDefs(ctx, d, j.Table, ms, all)
	if err != nil {
		return err
	}
	for p, def := range defs {
		if def != j.After {
			return fmt.Errorf("%s has another definition of %s after the change than %s:\n%s\nwant\n%s",
				meta.PartitionName(d.Name, p), j.Table, meta.PartitionName(d.Name, slices.Index(defs, j.After)), def, j.After)
		}
	}
	return a.updateJob(meta.UpdateDDLJob{ID: j.ID, Done: all})
}

// rollbackAlter brings every partition back to the definition before the
// change; cause is why, which the client gets.
func (a *Aggregator) rollbackAlter(ctx context.Context, j meta.DDLJob, d *meta.Database, ms []string, stmt ast.Statement, cause error) error {
	// a client that went away (or KILLed the statement) has it undone all
	// the same
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if j.State != meta.DDLRollingBack {
		if err := a.updateJob(meta.UpdateDDLJob{ID: j.ID, State: meta.DDLRollingBack, Error: cause.Error()}); err != nil {
			a.log.Warn("recording a schema change's rollback", "job", j.ID, "err", err)
			return cause
		}
	}
	all := make([]int, len(ms))
	for i := range all {
		all[i] = i
	}
	defs, err := a.partitionDefs(ctx, d, j.Table, ms, all)
	if err != nil {
		a.log.Warn("rolling a schema change back: reading the partitions' definitions", "job", j.ID, "err", err)
		return cause
	}
	renames := reversed(columnRenames(stmt))
	for p, def := range defs {
		if def == j.Before {
			continue
		}
		if err := a.converge(ctx, d, ms, j.Table, p, def, j.Before, renames); err != nil {
			a.log.Warn("rolling a schema change back", "job", j.ID, "err", err)
			return cause
		}
	}
	if err := a.finishJob(j.ID, meta.DDLRolledBack, cause); err != nil {
		a.log.Warn("recording a schema change rolled back", "job", j.ID, "err", err)
	}
	return cause
}

// commitAlter makes the change in the master aggregator's copy of the
// database (every node's copy follows it), once every partition has it,
// and ends the job.
func (a *Aggregator) commitAlter(ctx context.Context, j meta.DDLJob, d *meta.Database, stmt ast.Statement) error {
	if err := a.alterCopy(ctx, j, stmt); err != nil {
		a.updateJob(meta.UpdateDDLJob{ID: j.ID, Error: "the master aggregator's copy: " + err.Error()})
		return mysql.NewSQLError(1105, "HY000", "The change of table '%s.%s' is on every partition but not yet in the master aggregator's copy (%v); DDL job %d goes on with it",
			j.Database, j.Table, err, j.ID)
	}
	a.waitReplicated(d.Name)
	if err := a.Propose(meta.SchemaChanged{Database: d.Name, LSN: a.copyLSN(d.Name)}); err != nil {
		return err
	}
	return a.finishJob(j.ID, meta.DDLDone, nil)
}

// copyDef reads the definition of a table of this node's copy.
func (a *Aggregator) copyDef(ctx context.Context, db, table string) (tableDef, error) {
	rows, err := a.host.RunInternal(ctx, "SHOW CREATE TABLE "+quoteIdent(db)+"."+quoteIdent(table))
	if err != nil {
		return tableDef{}, err
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return tableDef{}, fmt.Errorf("SHOW CREATE TABLE %s.%s: no definition", db, table)
	}
	s, _ := rows[0][1].(string)
	return parseDef(normalizeDef(s))
}

// alterCopy makes an alter job's change in this node's copy: the
// statement if the copy has the definition before, else the statements
// that bring it to the partitions' (an earlier try stopped in the middle).
func (a *Aggregator) alterCopy(ctx context.Context, j meta.DDLJob, stmt ast.Statement) error {
	before, err := parseDef(j.Before)
	if err != nil {
		return err
	}
	after, err := parseDef(j.After)
	if err != nil {
		return err
	}
	cur, err := a.copyDef(ctx, j.Database, j.Table)
	if err != nil {
		return err
	}
	switch {
	case sameShape(cur, after):
		return nil
	case sameShape(cur, before):
		// the statement, as the partitions ran it: what it makes of the
		// copy is the definition every aggregator plans with
		_, err := a.host.RunInternal(ctx, j.Statement)
		if err == nil {
			if now, rerr := a.copyDef(ctx, j.Database, j.Table); rerr == nil && !sameShape(now, after) {
				a.log.Warn("a schema change made another definition in the master aggregator's copy than on the partitions",
					"job", j.ID, "table", j.Database+"."+j.Table)
			}
		}
		return err
	default:
		for _, q := range convergeStatements(quoteIdent(j.Database)+"."+quoteIdent(j.Table), cur, after, columnRenames(stmt), false) {
			if _, err := a.host.RunInternal(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	if cur, err = a.copyDef(ctx, j.Database, j.Table); err != nil {
		return err
	}
	if !sameShape(cur, after) {
		return fmt.Errorf("the copy's definition differs from the partitions' after the change")
	}
	return nil
}

// CREATE TABLE and CREATE DATABASE jobs.

// undoCreateTable drops what a CREATE TABLE made: the table on every
// partition (sharded) and in this node's copy.
func (a *Aggregator) undoCreateTable(ctx context.Context, j meta.DDLJob, cause error) error {
	d := a.State().Database(j.Database)
	if d == nil {
		return a.finishJob(j.ID, meta.DDLCancelled, errors.New("its database is gone"))
	}
	if j.Sharding == nil || !j.Sharding.Reference {
		ms, err := masters(d)
		if err != nil {
			return err
		}
		if _, err := a.onLeaves(ctx, ms, func(p int) string {
			return "DROP TABLE IF EXISTS " + quoteIdent(meta.PartitionName(d.Name, p)) + "." + quoteIdent(j.Table)
		}); err != nil {
			return err
		}
	}
	if _, err := a.host.RunInternal(ctx, "DROP TABLE IF EXISTS "+quoteIdent(d.Name)+"."+quoteIdent(j.Table)); err != nil {
		return err
	}
	return a.finishJob(j.ID, meta.DDLRolledBack, cause)
}

func (a *Aggregator) resumeCreateTable(ctx context.Context, j meta.DDLJob) error {
	if d := a.State().Database(j.Database); d != nil && d.Table(j.Table) != nil {
		return a.finishJob(j.ID, meta.DDLDone, nil) // listed: the master died after that
	}
	return a.undoCreateTable(ctx, j, errors.New("the master aggregator stopped before the table was listed"))
}

// undoCreateDatabase drops what a CREATE DATABASE made: its partitions
// on the leaves and this node's copy, which no metadata lists.
func (a *Aggregator) undoCreateDatabase(ctx context.Context, j meta.DDLJob, made []string, cause error) error {
	if _, err := a.onLeaves(ctx, made, func(p int) string {
		return "DROP DATABASE IF EXISTS " + quoteIdent(meta.PartitionName(j.Database, p))
	}); err != nil {
		return err
	}
	if a.State().Database(j.Database) == nil {
		if _, err := a.host.RunInternal(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(j.Database)); err != nil {
			return err
		}
	}
	return a.finishJob(j.ID, meta.DDLRolledBack, cause)
}

func (a *Aggregator) resumeCreateDatabase(ctx context.Context, j meta.DDLJob) error {
	if a.State().Database(j.Database) != nil {
		return a.finishJob(j.ID, meta.DDLDone, nil)
	}
	// which partitions it made is not known: all of them, if there
	return a.undoCreateDatabase(ctx, j, j.Masters, errors.New("the master aggregator stopped before the database was listed"))
}

// SHOW DDL JOBS.

var ddlJobFields = []*querypb.Field{
	field("Job_ID", querypb.Type_INT64), field("Database", querypb.Type_VARCHAR), field("Table", querypb.Type_VARCHAR),
	field("Kind", querypb.Type_VARCHAR), field("State", querypb.Type_VARCHAR), field("Progress", querypb.Type_VARCHAR),
	field("Statement", querypb.Type_VARCHAR), field("Error", querypb.Type_VARCHAR),
	field("Started", querypb.Type_DATETIME), field("Finished", querypb.Type_DATETIME),
}

// showDDLJobs lists the jobs in the metadata, the latest first.
func (a *Aggregator) showDDLJobs() *sqltypes.Result {
	res := &sqltypes.Result{Fields: ddlJobFields}
	jobs := a.State().DDLJobs
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		progress := sqltypes.NULL
		if j.Partitions > 0 {
			progress = str(fmt.Sprintf("%d/%d", len(j.Done), j.Partitions))
		}
		opt := func(s string) sqltypes.Value {
			if s == "" {
				return sqltypes.NULL
			}
			return str(s)
		}
		when := func(ms int64) sqltypes.Value {
			if ms == 0 {
				return sqltypes.NULL
			}
			return sqltypes.MakeTrusted(querypb.Type_DATETIME, []byte(time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")))
		}
		res.Rows = append(res.Rows, []sqltypes.Value{num(int64(j.ID)), str(j.Database), opt(j.Table), str(j.Kind), str(j.State),
			progress, str(cmp.Or(j.Query, j.Statement)), opt(j.Error), when(j.Started), when(j.Finished)})
	}
	return res
}
