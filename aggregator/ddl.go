package aggregator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/sqlcmd"
)

// Schema changes run on the master aggregator: on every partition of a
// sharded table, and on the master's copy of the database, which
// replication carries to every other node. A child aggregator forwards
// them. The metadata change is committed last (first, for drops), so that
// no aggregator routes to a table that is not there yet.

func (a *Aggregator) discard(*sqltypes.Result, bool) error { return nil }

// copyLSN is the position of this node's copy of a database.
func (a *Aggregator) copyLSN(db string) uint64 {
	pos, _ := a.store.Position(db)
	return pos.LSN
}

// waitSchemas waits until this node's copy of each database named has the
// master's latest schema change (a child aggregator, or any node just
// restarted, may receive the metadata before the definitions). Copies of
// other databases do not hold the statement up: one that lags (its
// master gone before it caught up) would otherwise fail every statement.
func (a *Aggregator) waitSchemas(ctx context.Context, dbs ...string) error {
	idx := a.RaftIndex()
	if a.schemasAt.Load() == idx {
		return nil
	}
	st := a.State()
	m := a.lagging.Load()
	if m == nil || m.idx != idx {
		m = &laggingMemo{idx: idx}
		for _, name := range st.DatabaseNames() {
			if d := st.Database(name); a.copyLSN(d.Name) < d.SchemaLSN {
				m.dbs = append(m.dbs, d.Name)
			}
		}
		a.lagging.Store(m)
	}
	deadline := time.Now().Add(5 * time.Second)
	current := true
	for _, name := range m.dbs {
		d := st.Database(name)
		if d == nil || a.copyLSN(d.Name) >= d.SchemaLSN {
			continue
		}
		if !slices.ContainsFunc(dbs, func(x string) bool { return strings.EqualFold(x, d.Name) }) {
			current = false
			continue
		}
		for a.copyLSN(d.Name) < d.SchemaLSN {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return mysql.NewSQLError(1105, "HY000",
					"This aggregator's copy of database '%s' is behind the master aggregator's schema (position %d of %d); it is catching up, retry shortly",
					d.Name, a.copyLSN(d.Name), d.SchemaLSN)
			}
			select {
			case <-a.store.CommitSignal(d.Name):
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if current {
		a.schemasAt.Store(idx)
	}
	return nil
}

// laggingMemo lists the databases whose copy was behind the metadata's
// schema position at raft index idx, so that while one lags a statement
// checks those only.
type laggingMemo struct {
	idx uint64
	dbs []string
}

// waitApplied waits until this aggregator has applied metadata index idx.
func (a *Aggregator) waitApplied(idx uint64) {
	deadline := time.Now().Add(5 * time.Second)
	for a.raft.AppliedIndex() < idx && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// forwarded runs DDL on the master when this aggregator is a child; done
// reports that it was.
func (a *Aggregator) forwarded(ctx context.Context, c *mysql.Conn, query string) (bool, error) {
	if a.IsMaster() {
		a.ownCopies(a.State(), true) // a master elected a moment ago may not have taken them over yet
		return false, nil
	}
	_, err := a.forwardToMaster(ctx, c, query)
	return true, err
}

func (a *Aggregator) createDatabase(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.CreateDatabase) error {
	if done, err := a.forwarded(ctx, c, query); done {
		return err
	}
	unlock, err := a.ddlGate(ctx, cmd.Name, nil, false)
	if err != nil {
		return err
	}
	defer unlock()
	st := a.State()
	if st.Database(cmd.Name) != nil || a.store.HasDatabase(cmd.Name) {
		if cmd.IfNotExists {
			return nil
		}
		return mysql.NewSQLError(1007, "HY000", "Can't create database '%s'; database exists", cmd.Name)
	}
	existing := st.DatabaseNames()
	for _, d := range a.store.DatabaseInfos() {
		existing = append(existing, d.Name)
	}
	if why := meta.DatabaseNameConflict(cmd.Name, existing); why != "" {
		return mysql.NewSQLError(1102, "42000", "Incorrect database name '%s': %s. Choose another name", cmd.Name, why)
	}
	leaves := st.OnlineLeaves()
	if len(leaves) == 0 {
		return mysql.NewSQLError(1772, "HY000",
			"Can't create database '%s': the cluster has no online leaves. Add one with ADD LEAF user@'host':port", cmd.Name)
	}
	n := cmd.Partitions
	if n == 0 {
		per := 8
		fmt.Sscan(st.Variable("default_partitions_per_leaf"), &per)
		n = per * len(leaves)
	}
	masters := meta.PlacePartitions(leaves, n)
	var replicas [][]string
	if st.Redundancy() == 2 {
		pairs := st.Pairs()
		if len(pairs) == 0 {
			return mysql.NewSQLError(1772, "HY000",
				"Can't create database '%s': redundancy_level is 2 and no online leaf has an online pair. Add leaves to availability group 2 with ADD LEAF user@'host':port INTO GROUP 2", cmd.Name)
		}
		masters, replicas = meta.PlaceRedundant(pairs, n)
	}
	// a job in the metadata first: a master that dies before the database
	// is listed leaves a record of what it made, which the next undoes
	id, err := a.startJob(meta.DDLJob{Kind: meta.DDLCreateDatabase, Database: cmd.Name, Statement: query, Masters: masters, Replicas: replicas})
	if err != nil {
		return err
	}
	job := *a.State().DDLJob(id)
	created, err := a.onLeaves(ctx, masters, func(p int) string {
		return "CREATE DATABASE " + quoteIdent(meta.PartitionName(cmd.Name, p))
	})
	if err != nil {
		undo(func(ctx context.Context) error { return a.undoCreateDatabase(ctx, job, created, err) })
		return mysql.NewSQLError(1772, "HY000", "CREATE PARTITION DATABASE for operation 'CREATE DATABASE' failed: %v", err)
	}
	if err := a.runLocal(ctx, c, "CREATE DATABASE "+quoteIdent(cmd.Name)); err != nil {
		undo(func(ctx context.Context) error { return a.undoCreateDatabase(ctx, job, created, err) })
		return err
	}
	failpoint.Hit("create-database-before-listing")
	if err := a.Propose(meta.CreateDatabase{Name: cmd.Name, Masters: masters, Replicas: replicas, Sync: cmd.Sync, LSN: a.copyLSN(cmd.Name)}); err != nil {
		return err
	}
	if err := a.finishJob(id, meta.DDLDone, nil); err != nil {
		return err
	}
	// every aggregator and leaf holds a copy (for reference tables): a
	// client may use db on any of them once this returns
	a.waitReplicated(cmd.Name)
	if len(replicas) > 0 {
		// the database is usable once every replica exists
		a.cluster.Reconcile()
		a.cluster.WaitPartitionsReplicated(ctx, a.State().Database(cmd.Name))
	}
	return nil
}

// onLeaves runs a statement for each partition on its leaf, leaves in
// parallel, each on a pooled connection under the node's defaults, and
// returns the leaves (per ordinal, "" when skipped) where it succeeded.
func (a *Aggregator) onLeaves(ctx context.Context, masters []string, stmt func(p int) string) ([]string, error) {
	return a.onLeavesWith(ctx, masters, stmt, nil)
}

// leafExec runs the statement of partition p on c, a connection of the
// partition's leaf that the statements of its partitions share and that
// is closed afterwards (leafExec may change its state, such as its
// current database).
type leafExec func(c *pool.Conn, p int, query string) error

// onLeavesWith is onLeaves with each leaf's statements run by exec (nil:
// on pooled connections).
func (a *Aggregator) onLeavesWith(ctx context.Context, masters []string, stmt func(p int) string, exec leafExec) ([]string, error) {
	done := make([]string, len(masters))
	byLeaf := map[string][]int{}
	for p, m := range masters {
		if m != "" {
			byLeaf[m] = append(byLeaf[m], p)
		}
	}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for leaf, parts := range byLeaf {
		wg.Add(1)
		go func(leaf string, parts []int) {
			defer wg.Done()
			err := a.onLeafParts(ctx, leaf, parts, stmt, exec, func(p int) {
				mu.Lock()
				done[p] = leaf
				mu.Unlock()
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(leaf, parts)
	}
	wg.Wait()
	return done, firstErr
}

// onLeafParts runs the statements of a leaf's partitions in turn, stopping at
// the first that fails; ran notes each that succeeded.
func (a *Aggregator) onLeafParts(ctx context.Context, leaf string, parts []int, stmt func(p int) string, exec leafExec, ran func(p int)) error {
	lp, err := a.LeafPool(leaf)
	if err != nil {
		return leafError(leaf, err)
	}
	if exec == nil {
		for _, p := range parts {
			if _, err := lp.Exec(ctx, stmt(p), 0); err != nil {
				return leafError(leaf, err)
			}
			ran(p)
		}
		return nil
	}
	c, err := lp.Acquire(ctx)
	if err != nil {
		return leafError(leaf, err)
	}
	defer func() {
		c.Close() // not back to the pool: exec may have changed it
		c.Release()
	}()
	for _, p := range parts {
		if err := exec(c, p, stmt(p)); err != nil {
			return leafError(leaf, err)
		}
		ran(p)
	}
	return nil
}

// execThenHit runs a partition's statement, then crashes the process if
// the failpoint is armed (a master aggregator dying in the middle of a
// schema change's fan-out).
func execThenHit(point string) leafExec {
	return func(c *pool.Conn, p int, query string) error {
		_, err := c.Exec(query, 0)
		if err == nil {
			failpoint.Hit(point)
		}
		return err
	}
}

func masters(d *meta.Database) ([]string, error) {
	out := make([]string, len(d.Partitions))
	for i, p := range d.Partitions {
		if p.Master == "" {
			return nil, errNoMaster(d.Name, i)
		}
		out[i] = p.Master
	}
	return out, nil
}

// runLocal runs a statement in this node's engine for a client, keeping
// its result to ourselves.
func (a *Aggregator) runLocal(ctx context.Context, c *mysql.Conn, query string) error {
	return a.runSchemaLocal(ctx, c, query, a.discard)
}

// runSchemaLocal runs a schema change on this node's copy of a database:
// its tables are seen as stored here, not as distributed tables (the copy
// of a sharded table holds its definition, no rows).
func (a *Aggregator) runSchemaLocal(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) error {
	s := a.session(c.ConnectionID)
	s.local.Store(true)
	defer s.local.Store(false)
	return a.host.RunLocal(ctx, c, query, callback)
}

func (a *Aggregator) dropDatabase(ctx context.Context, c *mysql.Conn, query string, s *ast.DBDDL) error {
	if done, err := a.forwarded(ctx, c, query); done {
		return err
	}
	d := a.State().Database(s.DBName)
	if d == nil {
		if s.IfExists {
			return nil
		}
		if a.store.HasDatabase(s.DBName) {
			return a.runLocal(ctx, c, query)
		}
		return mysql.NewSQLError(1008, "HY000", "Can't drop database '%s'; database doesn't exist", s.DBName)
	}
	if err := a.Propose(meta.DropDatabase{Name: d.Name}); err != nil {
		return err
	}
	a.cluster.Reconcile() // stop replicating it
	ms := make([]string, len(d.Partitions))
	rs := make([]string, len(d.Partitions))
	for i, p := range d.Partitions {
		ms[i] = p.Master
		if len(p.Replicas) > 0 {
			rs[i] = p.Replicas[0]
		}
	}
	for _, leaves := range [][]string{ms, rs} {
		if _, err := a.onLeaves(ctx, leaves, func(p int) string {
			return a.Fenced("CANOPY DROP PARTITION " + quoteIdent(meta.PartitionName(d.Name, p)))
		}); err != nil {
			a.log.Warn("dropping partitions", "database", d.Name, "err", err)
		}
	}
	if err := a.runLocal(ctx, c, "DROP DATABASE IF EXISTS "+quoteIdent(d.Name)); err != nil {
		return err
	}
	// every other node drops its copy
	st := a.State()
	drop := "DROP DATABASE IF EXISTS " + quoteIdent(d.Name)
	for _, l := range st.Leaves {
		if lp, err := a.LeafPool(l.Addr()); err == nil {
			lp.Exec(ctx, drop, 0)
		}
	}
	for _, ag := range st.Aggregators {
		if ag.Addr() != a.self {
			if ap, err := a.AggregatorPool(ag.Addr()); err == nil {
				ap.Exec(ctx, "CANOPY DROP COPY "+quoteIdent(d.Name), 0)
			}
		}
	}
	return nil
}

// createTable creates a sharded or reference table.
func (a *Aggregator) createTable(ctx context.Context, c *mysql.Conn, query string, ct sqlcmd.CreateTable) error {
	parsed, err := ast.Parse(ct.SQL)
	if err != nil {
		return mysql.NewSQLError(1064, "42000", "You have an error in your SQL syntax; %v", err)
	}
	ddl, ok := parsed.(*ast.DDL)
	if !ok || ddl.Action != ast.CreateStr {
		return mysql.NewSQLError(1064, "42000", "You have an error in your SQL syntax near CREATE TABLE")
	}
	if err := a.authorize(ctx, c, ddl); err != nil {
		return err
	}
	if ddl.OptLike != nil {
		// the copy's definition shows the source's: MySQL wants SELECT on it
		for _, src := range ddl.OptLike.LikeTables {
			info := ast.AuthInformation{AuthType: ast.AuthType_SELECT, TargetType: ast.AuthTargetType_SingleTableIdentifier,
				TargetNames: []string{src.DbQualifier.String(), src.Name.String()}}
			if err := a.authorizeInfos(ctx, c, []ast.AuthInformation{info}); err != nil {
				return err
			}
		}
	}
	db := ddl.Table.DbQualifier.String()
	if db == "" {
		db = a.currentDB(c.ConnectionID)
	}
	if db == "" {
		return mysql.NewSQLError(1046, "3D000", "No database selected")
	}
	st := a.State()
	d := st.Database(db)
	if d == nil {
		if !a.store.HasDatabase(db) {
			return mysql.NewSQLError(1049, "42000", "Unknown database '%s'", db)
		}
		return a.runLocal(ctx, c, query) // a database of this node only
	}
	if ddl.Temporary {
		return mysql.NewSQLError(1235, "42000", "CREATE TEMPORARY TABLE is not supported on aggregators")
	}
	if done, err := a.forwarded(ctx, c, query); done {
		return err
	}
	name := ddl.Table.Name.String()
	unlock, err := a.ddlGate(ctx, d.Name, []string{name}, false)
	if err != nil {
		return err
	}
	defer unlock()
	if d = a.State().Database(d.Name); d == nil {
		return mysql.NewSQLError(1049, "42000", "Unknown database '%s'", db)
	}
	if d.Table(name) != nil || a.store.HasTable(d.Name, name) {
		if ddl.IfNotExists {
			return nil
		}
		return mysql.NewSQLError(1050, "42S01", "Table '%s' already exists", name)
	}
	t := meta.Table{Name: name, Reference: ct.Reference}
	switch {
	case ddl.OptSelect != nil:
		return mysql.NewSQLError(1235, "42000", "CREATE TABLE … SELECT is not supported on aggregators yet: create the table, then INSERT … SELECT")
	case ddl.OptLike != nil:
		if len(ddl.OptLike.LikeTables) != 1 {
			return mysql.NewSQLError(1064, "42000", "CREATE TABLE … LIKE names one table")
		}
		src := d.Table(ddl.OptLike.LikeTables[0].Name.String())
		if src == nil {
			return mysql.NewSQLError(1146, "42S02", "Table '%s.%s' doesn't exist", d.Name, ddl.OptLike.LikeTables[0].Name.String())
		}
		t.Reference, t.ShardKey, t.AutoIncrement = src.Reference, src.ShardKey, src.AutoIncrement
	default:
		if err := shardTable(&t, ddl.TableSpec, ct); err != nil {
			return err
		}
	}
	defer a.markCreating(d.Name, name)()
	ddl.Table.DbQualifier = ast.NewTableIdent(d.Name)
	local := ast.String(ddl)
	// a job in the metadata first: a master that dies before the table is
	// listed leaves a record of it, and the next drops what it made
	id, err := a.startJob(meta.DDLJob{Kind: meta.DDLCreateTable, Database: d.Name, Table: name, Statement: local, Query: query, Sharding: &t})
	if err != nil {
		return err
	}
	job := *a.State().DDLJob(id)
	if err := a.runLocal(ctx, c, local); err != nil {
		undo(func(ctx context.Context) error { return a.undoCreateTable(ctx, job, err) })
		return err
	}
	if !t.Reference {
		ms, err := masters(d)
		if err == nil {
			_, err = a.onLeaves(ctx, ms, func(p int) string {
				part := ast.NewTableIdent(meta.PartitionName(d.Name, p))
				x := *ddl
				x.Table.DbQualifier = part
				if x.OptLike != nil {
					like := ast.OptLike{LikeTables: append([]ast.TableName(nil), x.OptLike.LikeTables...)}
					for i := range like.LikeTables {
						like.LikeTables[i].DbQualifier = part
					}
					x.OptLike = &like
				}
				return ast.String(&x)
			})
		}
		if err != nil {
			undo(func(ctx context.Context) error { return a.undoCreateTable(ctx, job, err) })
			return err
		}
	}
	a.waitReplicated(d.Name)
	failpoint.Hit("create-table-before-listing")
	if err := a.Propose(meta.CreateTable{Database: d.Name, Table: t, LSN: a.copyLSN(d.Name)}); err != nil {
		return err
	}
	return a.finishJob(id, meta.DDLDone, nil)
}

// undo runs the undoing of a failed schema change, which goes on even
// when the client's statement was cancelled, within a minute.
func undo(f func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f(ctx)
}

// shardTable decides a new table's shard key and checks the seeds' rule
// that every unique key contains it; AUTO_INCREMENT columns of sharded
// tables become BIGINT (aggregators hand out 64-bit values).
func shardTable(t *meta.Table, spec *ast.TableSpec, ct sqlcmd.CreateTable) error {
	if spec == nil {
		return nil
	}
	var pk []string
	var uniques []struct {
		name string
		cols []string
	}
	for _, col := range spec.Columns {
		switch col.Type.KeyOpt {
		case 1: // PRIMARY KEY
			pk = []string{col.Name.String()}
		case 3, 4: // UNIQUE [KEY]
			uniques = append(uniques, struct {
				name string
				cols []string
			}{col.Name.String(), []string{col.Name.String()}})
		}
		if col.Type.Autoincrement {
			t.AutoIncrement = col.Name.String()
			if !t.Reference {
				switch strings.ToLower(col.Type.Type) {
				case "int", "integer", "mediumint", "smallint", "tinyint":
					col.Type.Type = "bigint"
				}
			}
		}
		if col.Type.ForeignKeyDef != nil && !t.Reference {
			return mysql.NewSQLError(1235, "42000", "FOREIGN KEY is not supported on sharded tables")
		}
	}
	for _, idx := range spec.Indexes {
		var cols []string
		for _, c := range idx.Columns {
			cols = append(cols, c.Column.String())
		}
		switch {
		case idx.Info.Primary:
			pk = cols
		case idx.Info.Unique:
			uniques = append(uniques, struct {
				name string
				cols []string
			}{idx.Info.Name.String(), cols})
		}
	}
	for _, o := range spec.TableOpts {
		if strings.EqualFold(o.Name, "AUTO_INCREMENT") && t.AutoIncrement != "" && !t.Reference {
			n, err := strconv.ParseUint(o.Value, 10, 64)
			if err != nil {
				return mysql.NewSQLError(1064, "42000", "You have an error in your SQL syntax; AUTO_INCREMENT=%s is not a number", o.Value)
			}
			t.AutoIncrementStart = n
		}
	}
	for _, c := range spec.Constraints {
		if _, ok := c.Details.(*ast.ForeignKeyDefinition); ok && !t.Reference {
			return mysql.NewSQLError(1235, "42000", "FOREIGN KEY is not supported on sharded tables")
		}
	}
	if t.Reference {
		return nil
	}
	switch {
	case ct.HasShardKey:
		t.ShardKey = ct.ShardKey
	case len(pk) > 0:
		t.ShardKey = pk
	case len(uniques) > 0:
		// No primary key: the unique key MySQL would make the clustered
		// key (the first one of NOT NULL columns, else the first) is the
		// shard key, as the primary key would be, so that
		// CREATE TABLE t (id SERIAL, …) is usable. A unique key must
		// hold the shard key in any case; spreading rows would leave
		// none usable.
		t.ShardKey = uniques[0].cols
		for _, u := range uniques {
			if notNull(spec, u.cols) {
				t.ShardKey = u.cols
				break
			}
		}
	}
	for _, k := range t.ShardKey {
		found := false
		for _, col := range spec.Columns {
			found = found || strings.EqualFold(col.Name.String(), k)
		}
		if !found {
			return mysql.NewSQLError(1072, "42000", "Key column '%s' doesn't exist in table", k)
		}
	}
	if pk != nil {
		uniques = append(uniques, struct {
			name string
			cols []string
		}{"PRIMARY", pk})
	}
	for _, u := range uniques {
		if len(t.ShardKey) == 0 {
			return mysql.NewSQLError(1744, "HY000",
				"The unique key named: '%s' must contain all columns specified in the shard key; a table without shard key cannot have unique keys", u.name)
		}
		for _, k := range t.ShardKey {
			has := false
			for _, c := range u.cols {
				has = has || strings.EqualFold(c, k)
			}
			if !has {
				return mysql.NewSQLError(1744, "HY000", "The unique key named: '%s' must contain all columns specified in the shard key", u.name)
			}
		}
	}
	return nil
}

// notNull reports whether every column of cols is declared NOT NULL.
func notNull(spec *ast.TableSpec, cols []string) bool {
	for _, name := range cols {
		found := false
		for _, col := range spec.Columns {
			if strings.EqualFold(col.Name.String(), name) {
				found = bool(col.Type.NotNull)
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ddl runs every other schema change.
func (a *Aggregator) ddl(ctx context.Context, c *mysql.Conn, stmt ast.Statement, query string, callback mysql.ResultSpoolFn) error {
	if s, ok := stmt.(*ast.DBDDL); ok && s.Action == ast.DropStr {
		return a.sendOK(callback, a.dropDatabase(ctx, c, query, s))
	}
	tables := ddlTables(stmt)
	st := a.State()
	cur := a.currentDB(c.ConnectionID)
	var d *meta.Database
	var sharded []string
	for _, tn := range tables {
		db := tn.DbQualifier.String()
		if db == "" {
			db = cur
		}
		if x := st.Database(db); x != nil {
			d = x
			if t := x.Table(tn.Name.String()); t != nil && !t.Reference {
				sharded = append(sharded, t.Name)
			}
		}
	}
	if d == nil {
		if _, ok := stmt.(*ast.DBDDL); ok || len(tables) == 0 {
			if done, err := a.forwarded(ctx, c, query); done {
				return a.sendOK(callback, err)
			}
		}
		return a.runSchemaLocal(ctx, c, query, callback)
	}
	if done, err := a.forwarded(ctx, c, query); done {
		return a.sendOK(callback, err)
	}
	if ddl, ok := stmt.(*ast.DDL); ok && ddl.TriggerSpec != nil && len(sharded) > 0 {
		return mysql.NewSQLError(1235, "42000", "Triggers on sharded tables are not supported")
	}
	if err := checkAlter(stmt, d, st); err != nil {
		return err
	}
	pairs, err := renamePairs(stmt, cur, st)
	if err == nil {
		err = a.checkRenames(d, pairs)
	}
	if err != nil {
		return err
	}
	drop, isDrop := stmt.(*ast.DDL)
	isDrop = isDrop && drop.Action == ast.DropStr && drop.ViewSpec == nil && drop.TriggerSpec == nil && drop.ProcedureSpec == nil
	// one schema change of a table at a time, after its unfinished job
	var names []string
	for _, tn := range tables {
		if strings.EqualFold(cmp.Or(tn.DbQualifier.String(), cur), d.Name) {
			names = append(names, tn.Name.String())
		}
	}
	for _, p := range pairs {
		names = append(names, p.to.Name.String())
	}
	if len(names) > 0 {
		unlock, err := a.ddlGate(ctx, d.Name, names, isDrop)
		if err != nil {
			return err
		}
		defer unlock()
		if d = a.State().Database(d.Name); d == nil {
			return mysql.NewSQLError(1049, "42000", "Unknown database '%s'", cur)
		}
	}
	if len(sharded) == 1 && len(pairs) == 0 && !isDrop && isAlter(stmt) && d.Table(sharded[0]) != nil {
		if err := a.alterTable(ctx, d, d.Table(sharded[0]), stmt, query); err != nil {
			return err
		}
		return a.sendOK(callback, nil)
	}
	if isDrop {
		for _, name := range sharded {
			if err := a.Propose(meta.DropTable{Database: d.Name, Name: name}); err != nil {
				return err
			}
		}
		for _, tn := range tables {
			if t := d.Table(tn.Name.String()); t != nil && t.Reference {
				if err := a.Propose(meta.DropTable{Database: d.Name, Name: t.Name}); err != nil {
					return err
				}
			}
		}
	}
	if len(sharded) > 0 && len(pairs) > 0 {
		if err := a.renameOnLeaves(ctx, d, stmt, pairs, cur); err != nil {
			return err
		}
	} else if len(sharded) > 0 {
		ms, err := masters(d)
		if err != nil {
			return err
		}
		if _, err := a.onLeavesWith(ctx, ms, func(p int) string {
			return renameTables(stmt, d, p, cur)
		}, execThenHit("ddl-partition-done")); err != nil {
			return err
		}
	}
	if isDrop {
		// a table the copy holds and the metadata never listed was left by
		// an interrupted CREATE TABLE, which may have made it on leaves too
		for _, tn := range tables {
			x, name := st.Database(cmp.Or(tn.DbQualifier.String(), cur)), tn.Name.String()
			if x == nil || x.Table(name) != nil || !a.store.HasTable(x.Name, name) {
				continue
			}
			if a.creating(x.Name, name) {
				return mysql.NewSQLError(1105, "HY000", "Table '%s.%s' is being created; retry once CREATE TABLE has returned", x.Name, name)
			}
			ms, err := masters(x)
			if err != nil {
				return err
			}
			if _, err := a.onLeaves(ctx, ms, func(p int) string {
				return "DROP TABLE IF EXISTS " + quoteIdent(meta.PartitionName(x.Name, p)) + "." + quoteIdent(name)
			}); err != nil {
				return err
			}
		}
	}
	if len(pairs) > 0 {
		err = a.renameLocal(ctx, c, d, query, callback)
	} else {
		err = a.runSchemaLocal(ctx, c, query, callback)
	}
	if err != nil {
		return err
	}
	a.waitReplicated(d.Name)
	// renamed tables are listed under their new names with the position
	// of the copy that has them, so no aggregator plans with a name its
	// copy lacks
	if err := a.renameMetadata(d, pairs, a.copyLSN(d.Name)); err != nil {
		return err
	}
	return a.Propose(meta.SchemaChanged{Database: d.Name, LSN: a.copyLSN(d.Name)})
}

// ddlTables are the tables a schema change names.
func ddlTables(stmt ast.Statement) []ast.TableName {
	switch s := stmt.(type) {
	case *ast.AlterTable:
		return []ast.TableName{s.Table}
	case *ast.DDL:
		if s.ViewSpec != nil || s.ProcedureSpec != nil || s.EventSpec != nil {
			return nil
		}
		var out []ast.TableName
		if !s.Table.IsEmpty() {
			out = append(out, s.Table)
		}
		out = append(out, s.FromTables...)
		return out
	}
	return nil
}

// renameTables rewrites a schema change for partition p.
func renameTables(stmt ast.Statement, d *meta.Database, p int, cur string) string {
	part := ast.NewTableIdent(meta.PartitionName(d.Name, p))
	fix := func(tn ast.TableName) ast.TableName {
		db := tn.DbQualifier.String()
		if db == "" {
			db = cur
		}
		if strings.EqualFold(db, d.Name) && !tn.IsEmpty() {
			tn.DbQualifier = part
		}
		return tn
	}
	switch s := stmt.(type) {
	case *ast.AlterTable:
		x := *s
		x.Table = fix(x.Table)
		return ast.String(&x)
	case *ast.DDL:
		x := *s
		x.Table = fix(x.Table)
		x.FromTables = append(ast.TableNames(nil), s.FromTables...)
		for i := range x.FromTables {
			x.FromTables[i] = fix(x.FromTables[i])
		}
		x.ToTables = append(ast.TableNames(nil), s.ToTables...)
		for i := range x.ToTables {
			x.ToTables[i] = fix(x.ToTables[i])
		}
		return ast.String(&x)
	}
	return ast.String(stmt)
}

// checkAlter refuses schema changes that would break sharding: dropping,
// renaming or retyping a shard key column, and unique keys without it.
func checkAlter(stmt ast.Statement, d *meta.Database, st *meta.State) error {
	var table ast.TableName
	var parts []*ast.DDL
	switch s := stmt.(type) {
	case *ast.AlterTable:
		table, parts = s.Table, s.Statements
	case *ast.DDL:
		if s.Action == ast.AlterStr || s.IndexSpec != nil {
			table, parts = s.Table, []*ast.DDL{s}
		}
	}
	t := d.Table(table.Name.String())
	if t == nil || t.Reference {
		return nil
	}
	isKey := func(col string) bool {
		for _, k := range t.ShardKey {
			if strings.EqualFold(k, col) {
				return true
			}
		}
		return false
	}
	for _, p := range parts {
		if p.ColumnAction != "" && isKey(p.Column.String()) {
			return mysql.NewSQLError(1235, "42000", "Changing shard key column '%s' of table '%s' is not supported", p.Column.String(), t.Name)
		}
		if p.IndexSpec != nil && (p.IndexSpec.Type == ast.UniqueStr || p.IndexSpec.Type == "primary") && p.IndexSpec.Action == ast.CreateStr {
			var cols []string
			for _, c := range p.IndexSpec.Columns {
				cols = append(cols, c.Column.String())
			}
			for _, k := range t.ShardKey {
				has := false
				for _, c := range cols {
					has = has || strings.EqualFold(c, k)
				}
				if !has || len(t.ShardKey) == 0 {
					return mysql.NewSQLError(1744, "HY000", "The unique key named: '%s' must contain all columns specified in the shard key", p.IndexSpec.ToName.String())
				}
			}
		}
	}
	return nil
}

func (a *Aggregator) setVariable(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.SetClusterVariable) error {
	if !a.IsMaster() {
		_, err := a.forwardToMaster(ctx, c, query)
		return err
	}
	v := strings.Trim(cmd.Value, "'\"")
	switch cmd.Name {
	case "redundancy_level":
		if v != "1" && v != "2" {
			return mysql.NewSQLError(1231, "42000", "Variable 'redundancy_level' can't be set to the value of '%s'", v)
		}
	case "default_partitions_per_leaf":
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxPartitionsPerLeaf {
			return mysql.NewSQLError(1231, "42000", "Variable 'default_partitions_per_leaf' can't be set to the value of '%s'", v)
		}
	case "leaf_failure_timeout_ms", "leaf_refused_timeout_ms":
		min := 300
		if cmd.Name == "leaf_refused_timeout_ms" {
			min = 150
		}
		if n, err := strconv.Atoi(v); err != nil || n < min || n > 3_600_000 {
			return mysql.NewSQLError(1231, "42000", "Variable '%s' can't be set to the value of '%s' (milliseconds, at least %d)", cmd.Name, v, min)
		}
	case "copy_bandwidth_mb_per_sec":
		if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 1_000_000 {
			return mysql.NewSQLError(1231, "42000", "Variable 'copy_bandwidth_mb_per_sec' can't be set to the value of '%s' (MB/s, 0 for no cap)", v)
		}
	case "auto_attach", "leaf_failure_detection":
		switch strings.ToLower(v) {
		case "on", "1", "true":
			v = "ON"
		case "off", "0", "false":
			v = "OFF"
		default:
			return mysql.NewSQLError(1231, "42000", "Variable '%s' can't be set to the value of '%s'", cmd.Name, v)
		}
	}
	return a.Propose(meta.SetVariable{Name: cmd.Name, Value: v})
}

// sortedKeys is a helper for deterministic output.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
