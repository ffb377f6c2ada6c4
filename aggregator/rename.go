package aggregator

import (
	"cmp"
	"context"
	"strings"

	"github.com/dolthub/vitess/go/mysql"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
)

// RENAME TABLE a TO b [, c TO d …] and ALTER TABLE a RENAME [TO] b of
// tables of distributed databases. The engine renames within the session's
// current database whatever database the names give (and without one
// refuses with 1046), so each partition renames on a connection whose
// current database is the partition, and this node's copy renames with
// the client's current database set to the distributed database. The
// metadata lists the tables under their new names once every node's copy
// has them (RenameTables carries the copy's position), all of a
// statement's renames in one change, so an aggregator, a child included,
// plans with the new names as soon as the statement returns and never
// with part of them.

// renamePair is one table a schema change renames.
type renamePair struct{ from, to ast.TableName }

// renamePairs lists the renames of a schema change: none for other
// statements. The tables of one statement must all stay in one
// distributed database (a move between databases would have to copy the
// rows to other partitions).
func renamePairs(stmt ast.Statement, cur string, st *meta.State) ([]renamePair, error) {
	var pairs []renamePair
	switch s := stmt.(type) {
	case *ast.DDL:
		if s.Action == ast.RenameStr {
			for i := range s.FromTables {
				if i < len(s.ToTables) {
					pairs = append(pairs, renamePair{s.FromTables[i], s.ToTables[i]})
				}
			}
		}
	case *ast.AlterTable:
		for _, x := range s.Statements {
			if x.Action == ast.RenameStr && len(x.ToTables) == 1 {
				pairs = append(pairs, renamePair{s.Table, x.ToTables[0]})
			}
		}
	}
	var dist, local bool
	var db *meta.Database
	for _, p := range pairs {
		from, to := cmp.Or(p.from.DbQualifier.String(), cur), cmp.Or(p.to.DbQualifier.String(), cur)
		if from == "" || to == "" {
			return nil, mysql.NewSQLError(1046, "3D000", "No database selected")
		}
		fd, td := st.Database(from), st.Database(to)
		if fd == nil && td == nil {
			local = true
			continue
		}
		if fd == nil || td == nil || fd != td {
			return nil, mysql.NewSQLError(1235, "42000",
				"Renaming %s.%s to %s.%s is not supported: a table of a distributed database stays in its database", from, p.from.Name, to, p.to.Name)
		}
		if db != nil && db != fd {
			return nil, mysql.NewSQLError(1235, "42000",
				"Renaming tables of several distributed databases ('%s', '%s') in one statement is not supported: rename them one database at a time", db.Name, fd.Name)
		}
		db, dist = fd, true
	}
	if dist && local {
		return nil, mysql.NewSQLError(1235, "42000",
			"Renaming tables of a distributed database together with tables of other databases is not supported: rename them in separate statements")
	}
	return pairs, nil
}

// renameOnLeaves runs a renaming schema change (rewritten for each
// partition) on every partition, in the partition's database. A
// statement that only renames is undone on the partitions where it ran
// when another fails, so the table keeps one name everywhere.
func (a *Aggregator) renameOnLeaves(ctx context.Context, d *meta.Database, stmt ast.Statement, pairs []renamePair, cur string) error {
	ms, err := masters(d)
	if err != nil {
		return err
	}
	stmt = leafRenames(stmt, d, pairs)
	ran, err := a.onLeavesWith(ctx, ms, func(p int) string { return renameTables(stmt, d, p, cur) }, inPartition(d))
	if err != nil && onlyRenames(stmt) {
		if uerr := a.renameUndo(ctx, ran, stmt, pairs, d, cur); uerr != nil {
			a.log.Warn("undoing a rename on the partitions where it ran", "database", d.Name, "err", uerr)
		}
	}
	return err
}

// renameUndo renames back on the partitions where a rename ran (ran: the
// leaf of each, "" where it did not): the same renames backwards, in
// reverse order.
func (a *Aggregator) renameUndo(ctx context.Context, ran []string, stmt ast.Statement, pairs []renamePair, d *meta.Database, cur string) error {
	undo := &ast.DDL{Action: ast.RenameStr}
	if r, ok := stmt.(*ast.DDL); ok {
		for i := len(r.FromTables) - 1; i >= 0; i-- {
			undo.FromTables = append(undo.FromTables, r.ToTables[i])
			undo.ToTables = append(undo.ToTables, r.FromTables[i])
		}
	} else {
		undo.FromTables, undo.ToTables = []ast.TableName{pairs[0].to}, []ast.TableName{pairs[0].from}
	}
	_, err := a.onLeavesWith(ctx, ran, func(p int) string { return renameTables(undo, d, p, cur) }, inPartition(d))
	return err
}

// inPartition runs a partition's statement with the partition as the
// connection's current database, in one packet: the engine renames
// within the current database whatever database the names give.
func inPartition(d *meta.Database) leafExec {
	return func(c *pool.Conn, p int, query string) error {
		_, err := c.ExecMulti(nil, []string{"USE " + quoteIdent(meta.PartitionName(d.Name, p)), query}, 0)
		return err
	}
}

// onlyRenames reports whether a schema change does nothing but rename.
func onlyRenames(stmt ast.Statement) bool {
	switch s := stmt.(type) {
	case *ast.DDL:
		return s.Action == ast.RenameStr
	case *ast.AlterTable:
		for _, x := range s.Statements {
			if x.Action != ast.RenameStr {
				return false
			}
		}
		return len(s.Statements) > 0
	}
	return false
}

// renameLocal runs a renaming schema change on this node's copy of d, in
// the client's session with d as its current database for the time of
// the statement.
func (a *Aggregator) renameLocal(ctx context.Context, c *mysql.Conn, d *meta.Database, query string, callback mysql.ResultSpoolFn) error {
	sctx, err := a.clientContext(ctx, c)
	if err != nil {
		return err
	}
	s := sctx.Session
	prev := s.GetCurrentDatabase()
	s.SetCurrentDatabase(d.Name)
	defer s.SetCurrentDatabase(prev)
	return a.runSchemaLocal(ctx, c, query, callback)
}

// renameMetadata lists the renamed tables of d under their new names, in
// one metadata change (other aggregators never plan with a part of the
// statement); the copy of d at position lsn has them. Renames of names
// the metadata does not list (views) are left out, following the names
// through the statement's chain of renames.
func (a *Aggregator) renameMetadata(d *meta.Database, pairs []renamePair, lsn uint64) error {
	x := a.State().Database(d.Name)
	if x == nil {
		return nil
	}
	listed := map[string]bool{}
	for _, t := range x.Tables {
		listed[strings.ToLower(t.Name)] = true
	}
	var renames []meta.Rename
	for _, p := range pairs {
		from, to := p.from.Name.String(), p.to.Name.String()
		if !listed[strings.ToLower(from)] || strings.EqualFold(from, to) {
			continue
		}
		delete(listed, strings.ToLower(from))
		listed[strings.ToLower(to)] = true
		renames = append(renames, meta.Rename{From: from, To: to})
	}
	if len(renames) == 0 {
		return nil
	}
	return a.Propose(meta.RenameTables{Database: d.Name, Renames: renames, LSN: lsn})
}

// checkRenames refuses, before anything is renamed, a rename the copy
// would refuse after the partitions had done it: a new name that is
// taken (by a table, or a name an earlier rename of the statement gave).
func (a *Aggregator) checkRenames(d *meta.Database, pairs []renamePair) error {
	if d == nil || len(pairs) == 0 {
		return nil
	}
	gone, added := map[string]bool{}, map[string]bool{}
	taken := func(name string) bool {
		l := strings.ToLower(name)
		if added[l] {
			return true
		}
		return !gone[l] && (d.Table(name) != nil || a.store.HasTable(d.Name, name))
	}
	for _, p := range pairs {
		from, to := p.from.Name.String(), p.to.Name.String()
		if !strings.EqualFold(from, to) && taken(to) {
			return mysql.NewSQLError(1050, "42S01", "Table '%s' already exists", to)
		}
		gone[strings.ToLower(from)], added[strings.ToLower(from)] = true, false
		added[strings.ToLower(to)], gone[strings.ToLower(to)] = true, false
	}
	return nil
}

// leafRenames is the part of a RENAME TABLE the partitions run: the
// renames of sharded tables (followed through a chain of renames),
// reference tables and views being only in the copies.
func leafRenames(stmt ast.Statement, d *meta.Database, pairs []renamePair) ast.Statement {
	r, ok := stmt.(*ast.DDL)
	if !ok || r.Action != ast.RenameStr {
		return stmt // ALTER TABLE names one table, sharded since it runs on leaves
	}
	sharded := map[string]bool{}
	for _, t := range d.Tables {
		if !t.Reference {
			sharded[strings.ToLower(t.Name)] = true
		}
	}
	out := &ast.DDL{Action: ast.RenameStr}
	for _, p := range pairs {
		from, to := strings.ToLower(p.from.Name.String()), strings.ToLower(p.to.Name.String())
		if sharded[from] {
			delete(sharded, from)
			sharded[to] = true
			out.FromTables = append(out.FromTables, p.from)
			out.ToTables = append(out.ToTables, p.to)
		}
	}
	return out
}
