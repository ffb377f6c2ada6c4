package aggregator

import (
	"io"
	"sort"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"
)

// InfoSchema adds the cluster tables (LEAVES, AGGREGATORS,
// DISTRIBUTED_PARTITIONS) to a node's information_schema.
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
	rows   func(a *Aggregator) [][]sqltypes.Value
}

func col(table, name string, t sql.Type) *sql.Column {
	return &sql.Column{Name: name, Type: t, Source: table, Nullable: true}
}

var clusterTables = map[string]clusterTable{
	"leaves": {"LEAVES", sql.Schema{
		col("LEAVES", "HOST", types.LongText), col("LEAVES", "PORT", types.Int64), col("LEAVES", "AVAILABILITY_GROUP", types.Int64),
		col("LEAVES", "PAIR_HOST", types.LongText), col("LEAVES", "PAIR_PORT", types.Int64), col("LEAVES", "STATE", types.LongText),
		col("LEAVES", "OPENED_CONNECTIONS", types.Int64), col("LEAVES", "AVERAGE_ROUNDTRIP_LATENCY_MS", types.Float64),
	}, (*Aggregator).leafRows},
	"aggregators": {"AGGREGATORS", sql.Schema{
		col("AGGREGATORS", "HOST", types.LongText), col("AGGREGATORS", "PORT", types.Int64), col("AGGREGATORS", "STATE", types.LongText),
		col("AGGREGATORS", "OPENED_CONNECTIONS", types.Int64), col("AGGREGATORS", "AVERAGE_ROUNDTRIP_LATENCY_MS", types.Float64),
		col("AGGREGATORS", "MASTER_AGGREGATOR", types.Int64),
	}, (*Aggregator).aggregatorRows},
	"distributed_partitions": {"DISTRIBUTED_PARTITIONS", sql.Schema{
		col("DISTRIBUTED_PARTITIONS", "DATABASE_NAME", types.LongText), col("DISTRIBUTED_PARTITIONS", "ORDINAL", types.Int64),
		col("DISTRIBUTED_PARTITIONS", "HOST", types.LongText), col("DISTRIBUTED_PARTITIONS", "PORT", types.Int64),
		col("DISTRIBUTED_PARTITIONS", "ROLE", types.LongText), col("DISTRIBUTED_PARTITIONS", "LOCKED", types.Int64),
	}, func(a *Aggregator) [][]sqltypes.Value {
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
	}},
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
	for _, vals := range t.def.rows(t.a) {
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
