package aggregator

import (
	"context"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"

	"github.com/canopydb/canopy/cluster/meta"
)

// InfoSchema adds the cluster tables (LEAVES, AGGREGATORS,
// DISTRIBUTED_PARTITIONS, TABLE_STATISTICS, MV_EVENTS) to a node's
// information_schema.
type InfoSchema struct {
	sql.Database
	agg func() *Aggregator
}

// NewInfoSchema wraps GMS's information_schema.
func NewInfoSchema(inner sql.Database, agg func() *Aggregator) *InfoSchema {
	return &InfoSchema{Database: inner, agg: agg}
}

type clusterTable struct {
	name   string
	schema sql.Schema
	rows   func(a *Aggregator, ctx *sql.Context) [][]sqltypes.Value
	// process: rows only for PROCESS or SUPER (every database's tables
	// and sizes, the cluster's events), as SHOW CLUSTER STATUS; others see
	// none, as MySQL's information_schema hides what a user may not see
	process bool
}

func col(table, name string, t sql.Type) *sql.Column {
	return &sql.Column{Name: name, Type: t, Source: table, Nullable: true}
}

var clusterTables = map[string]clusterTable{
	"leaves": {"LEAVES", sql.Schema{
		col("LEAVES", "HOST", types.LongText), col("LEAVES", "PORT", types.Int64), col("LEAVES", "AVAILABILITY_GROUP", types.Int64),
		col("LEAVES", "PAIR_HOST", types.LongText), col("LEAVES", "PAIR_PORT", types.Int64), col("LEAVES", "STATE", types.LongText),
		col("LEAVES", "OPENED_CONNECTIONS", types.Int64), col("LEAVES", "AVERAGE_ROUNDTRIP_LATENCY_MS", types.Float64),
	}, func(a *Aggregator, _ *sql.Context) [][]sqltypes.Value { return a.leafRows() }, false},
	"aggregators": {"AGGREGATORS", sql.Schema{
		col("AGGREGATORS", "HOST", types.LongText), col("AGGREGATORS", "PORT", types.Int64), col("AGGREGATORS", "STATE", types.LongText),
		col("AGGREGATORS", "OPENED_CONNECTIONS", types.Int64), col("AGGREGATORS", "AVERAGE_ROUNDTRIP_LATENCY_MS", types.Float64),
		col("AGGREGATORS", "MASTER_AGGREGATOR", types.Int64),
	}, func(a *Aggregator, _ *sql.Context) [][]sqltypes.Value { return a.aggregatorRows() }, false},
	"distributed_partitions": {"DISTRIBUTED_PARTITIONS", sql.Schema{
		col("DISTRIBUTED_PARTITIONS", "DATABASE_NAME", types.LongText), col("DISTRIBUTED_PARTITIONS", "ORDINAL", types.Int64),
		col("DISTRIBUTED_PARTITIONS", "HOST", types.LongText), col("DISTRIBUTED_PARTITIONS", "PORT", types.Int64),
		col("DISTRIBUTED_PARTITIONS", "ROLE", types.LongText), col("DISTRIBUTED_PARTITIONS", "LOCKED", types.Int64),
	}, func(a *Aggregator, _ *sql.Context) [][]sqltypes.Value {
		st := a.State()
		var out [][]sqltypes.Value
		for _, name := range st.DatabaseNames() {
			for _, r := range partitionRows(st.Database(name)) {
				if r[1].IsNull() {
					continue // no instance: no row
				}
				out = append(out, append([]sqltypes.Value{str(name)}, r...))
			}
		}
		return out
	}, false},
	"table_statistics": {"TABLE_STATISTICS", sql.Schema{
		col("TABLE_STATISTICS", "DATABASE_NAME", types.LongText), col("TABLE_STATISTICS", "TABLE_NAME", types.LongText),
		col("TABLE_STATISTICS", "ORDINAL", types.Int64), col("TABLE_STATISTICS", "HOST", types.LongText),
		col("TABLE_STATISTICS", "PORT", types.Int64), col("TABLE_STATISTICS", "PARTITION_TYPE", types.LongText),
		col("TABLE_STATISTICS", "ROWS", types.Int64), col("TABLE_STATISTICS", "DATA_LENGTH", types.Int64),
	}, (*Aggregator).tableStatistics, true},
	"mv_events": {"MV_EVENTS", sql.Schema{
		col("MV_EVENTS", "ID", types.Int64), col("MV_EVENTS", "ORIGIN_NODE", types.LongText),
		col("MV_EVENTS", "EVENT_TIME", types.DatetimeMaxPrecision), col("MV_EVENTS", "SEVERITY", types.LongText),
		col("MV_EVENTS", "EVENT_TYPE", types.LongText), col("MV_EVENTS", "DETAILS", types.LongText),
	}, func(a *Aggregator, _ *sql.Context) [][]sqltypes.Value {
		// what this aggregator's cluster manager did and saw: on the
		// master aggregator, the cluster's failovers, attaches, rebalances
		var out [][]sqltypes.Value
		for _, e := range a.Events().Since(0) {
			out = append(out, []sqltypes.Value{num(int64(e.ID)), str(a.self), str(e.Time.UTC().Format("2006-01-02 15:04:05.000000")),
				str(e.Severity), str(e.Type), str(e.Details)})
		}
		return out
	}, true},
}

// tableStatistics is information_schema.TABLE_STATISTICS: every sharded
// table's committed rows and bytes on disk in each copy of each partition,
// asked of every leaf at once. A leaf that does not answer has no rows
// here (LEAVES says why).
func (a *Aggregator) tableStatistics(ctx *sql.Context) [][]sqltypes.Value {
	type copyOf struct {
		db      string
		ordinal int
		role    string
	}
	st := a.State()
	byLeaf := map[string]map[string]copyOf{} // leaf → partition database → copy
	add := func(leaf, db string, ordinal int, role string) {
		if byLeaf[leaf] == nil {
			byLeaf[leaf] = map[string]copyOf{}
		}
		byLeaf[leaf][strings.ToLower(meta.PartitionName(db, ordinal))] = copyOf{db, ordinal, role}
	}
	for _, name := range st.DatabaseNames() {
		d := st.Database(name)
		for _, p := range d.Partitions {
			if p.Master != "" {
				add(p.Master, d.Name, p.Ordinal, "Master")
			}
			for _, r := range p.Replicas {
				add(r, d.Name, p.Ordinal, "Slave")
			}
		}
	}
	leaves := make([]string, 0, len(byLeaf))
	for l := range byLeaf {
		leaves = append(leaves, l)
	}
	sort.Strings(leaves)
	answers := make([]*sqltypes.Result, len(leaves))
	var wg sync.WaitGroup
	for i, leaf := range leaves {
		names := make([]string, 0, len(byLeaf[leaf]))
		for n := range byLeaf[leaf] {
			names = append(names, sqlString(n))
		}
		sort.Strings(names)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lp, err := a.LeafPool(leaf)
			if err != nil {
				return
			}
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			answers[i], _ = lp.Exec(qctx, "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ("+
				strings.Join(names, ", ")+") ORDER BY TABLE_SCHEMA, TABLE_NAME", 1<<20)
		}()
	}
	wg.Wait()
	var out [][]sqltypes.Value
	for i, leaf := range leaves {
		if answers[i] == nil {
			continue
		}
		h, port := splitAddr(leaf)
		for _, r := range answers[i].Rows {
			c, ok := byLeaf[leaf][strings.ToLower(r[0].ToString())]
			if !ok {
				continue
			}
			out = append(out, []sqltypes.Value{str(c.db), r[1], num(int64(c.ordinal)), str(h), num(int64(port)), str(c.role), r[2], r[3]})
		}
	}
	return out
}

func (i *InfoSchema) GetTableInsensitive(ctx *sql.Context, name string) (sql.Table, bool, error) {
	if a := i.agg(); a != nil {
		if t, ok := clusterTables[strings.ToLower(name)]; ok {
			return &virtualTable{def: t, a: a}, true, nil
		}
	}
	return i.Database.GetTableInsensitive(ctx, name)
}

func (i *InfoSchema) GetTableNames(ctx *sql.Context) ([]string, error) {
	names, err := i.Database.GetTableNames(ctx)
	if err != nil || i.agg() == nil {
		return names, err
	}
	for _, t := range clusterTables {
		names = append(names, t.name)
	}
	sort.Strings(names)
	return names, nil
}

type virtualTable struct {
	def clusterTable
	a   *Aggregator
}

func (t *virtualTable) Name() string               { return t.def.name }
func (t *virtualTable) String() string             { return t.def.name }
func (t *virtualTable) Schema() sql.Schema         { return t.def.schema }
func (t *virtualTable) Collation() sql.CollationID { return sql.Collation_Default }
func (t *virtualTable) Partitions(*sql.Context) (sql.PartitionIter, error) {
	return &onePartition{}, nil
}

func (t *virtualTable) PartitionRows(ctx *sql.Context, _ sql.Partition) (sql.RowIter, error) {
	var rows []sql.Row
	if t.def.process && !t.a.mayProcess(ctx) {
		return &sliceIter{}, nil
	}
	for _, vals := range t.def.rows(t.a, ctx) {
		row, err := fromSQL(ctx, t.def.schema, vals)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return &sliceIter{rows: rows}, nil
}

type sliceIter struct {
	rows []sql.Row
	i    int
}

func (s *sliceIter) Next(*sql.Context) (sql.Row, error) {
	if s.i >= len(s.rows) {
		return nil, io.EOF
	}
	s.i++
	return s.rows[s.i-1], nil
}

func (s *sliceIter) Close(*sql.Context) error { return nil }

// mayProcess reports whether the session's user holds PROCESS or SUPER.
func (a *Aggregator) mayProcess(ctx *sql.Context) bool {
	db := a.host.Engine().Analyzer.Catalog.MySQLDb
	for _, p := range []sql.PrivilegeType{sql.PrivilegeType_Process, sql.PrivilegeType_Super} {
		if db.UserHasPrivileges(ctx, sql.NewPrivilegedOperation(sql.PrivilegeCheckSubject{}, p)) {
			return true
		}
	}
	return false
}
