package aggregator

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sqlcmd"
)

// showCreate answers SHOW CREATE TABLE of a distributed table and SHOW
// CREATE DATABASE of a distributed database with what makes them come back
// distributed the same way when replayed through an aggregator (a dump):
// the shard key, REFERENCE, AUTO_INCREMENT above every row, the partition
// count. handled is false for everything else.
func (a *Aggregator) showCreate(ctx context.Context, c *mysql.Conn, s *ast.Show, query string, callback mysql.ResultSpoolFn) (bool, error) {
	switch strings.ToLower(s.Type) {
	case "create table":
		db := s.Table.DbQualifier.String()
		if db == "" {
			db = a.currentDB(c.ConnectionID)
		}
		d := a.State().Database(db)
		if d == nil {
			return false, nil
		}
		if err := a.waitSchemas(ctx, d.Name); err != nil {
			return true, err
		}
		d = a.State().Database(db)
		if d == nil {
			return false, nil
		}
		t := d.Table(s.Table.Name.String())
		if t == nil {
			return false, nil // a view, or no such table: the engine says
		}
		var autoInc uint64
		if t.AutoIncrement != "" && !t.Reference {
			max, err := a.maxAutoIncrement(ctx, d, t)
			if err != nil {
				return true, err
			}
			if max > 0 {
				autoInc = max + 1
			}
		}
		// the copy's definition as stored (the distributed view of a
		// sharded table has no indexes)
		res, err := a.collectLocal(ctx, c, query, true)
		if err != nil {
			return true, err
		}
		for _, row := range res.Rows {
			if len(row) < 2 {
				continue
			}
			text := sqlcmd.ShowCreateTable(row[1].ToString(), t.Reference, t.ShardKey, autoInc)
			row[1] = sqltypes.MakeTrusted(row[1].Type(), []byte(text))
		}
		return true, callback(res, false)
	case "create database", "create schema":
		d := a.State().Database(s.Database)
		if d == nil {
			return false, nil
		}
		res, err := a.collectLocal(ctx, c, query, false)
		if err != nil {
			return true, err
		}
		for _, row := range res.Rows {
			if len(row) < 2 {
				continue
			}
			text := sqlcmd.ShowCreateDatabase(row[1].ToString(), len(d.Partitions), d.Sync)
			row[1] = sqltypes.MakeTrusted(row[1].Type(), []byte(text))
		}
		return true, callback(res, false)
	}
	return false, nil
}

// collectLocal runs a statement in this node's engine and returns its
// whole result; local runs it on the stored tables (runSchemaLocal).
func (a *Aggregator) collectLocal(ctx context.Context, c *mysql.Conn, query string, local bool) (*sqltypes.Result, error) {
	out := &sqltypes.Result{}
	collect := func(res *sqltypes.Result, _ bool) error {
		if res == nil {
			return nil
		}
		if len(res.Fields) > 0 {
			out.Fields = res.Fields
		}
		out.Rows = append(out.Rows, res.Rows...)
		return nil
	}
	var err error
	if local {
		err = a.runSchemaLocal(ctx, c, query, collect)
	} else {
		err = a.host.RunLocal(ctx, c, query, collect)
	}
	return out, err
}

// maxAutoIncrement is the largest value of a sharded table's
// AUTO_INCREMENT column over its partitions (0 for none).
func (a *Aggregator) maxAutoIncrement(ctx context.Context, d *meta.Database, t *meta.Table) (uint64, error) {
	ms, err := masters(d)
	if err != nil {
		return 0, err
	}
	var max uint64
	for p, leaf := range ms {
		lp, err := a.LeafPool(leaf)
		if err != nil {
			return 0, leafError(leaf, err)
		}
		q := fmt.Sprintf("SELECT MAX(%s) FROM %s.%s", quoteIdent(t.AutoIncrement), quoteIdent(meta.PartitionName(d.Name, p)), quoteIdent(t.Name))
		res, err := lp.Exec(ctx, q, 1)
		if err != nil {
			return 0, leafError(leaf, err)
		}
		if len(res.Rows) == 1 && len(res.Rows[0]) == 1 && !res.Rows[0][0].IsNull() {
			// a negative or fractional value leaves the counter alone
			if v, err := strconv.ParseUint(res.Rows[0][0].ToString(), 10, 64); err == nil && v > max {
				max = v
			}
		}
	}
	return max, nil
}
