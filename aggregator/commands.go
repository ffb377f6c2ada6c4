package aggregator

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sqlcmd"
)

// Command runs a cluster statement of the query tier's: those that show
// the metadata and what the heartbeats measure. The node routes the
// cluster manager's to package cluster/manager.
func (a *Aggregator) Command(c *mysql.Conn, cmd sqlcmd.Command) (*sqltypes.Result, error) {
	switch cmd := cmd.(type) {
	case sqlcmd.ShowLeaves:
		return a.showLeaves(), nil
	case sqlcmd.ShowAggregators:
		return a.showAggregators(), nil
	case sqlcmd.ShowPartitions:
		db := cmd.Database
		if db == "" {
			db = a.currentDB(c.ConnectionID)
		}
		return a.showPartitions(db)
	case sqlcmd.ShowDDLJobs:
		return a.showDDLJobs(), nil
	case sqlcmd.BootstrapAggregator:
		return nil, mysql.NewSQLError(1105, "HY000", "This node is already an aggregator of cluster %s", a.ClusterID())
	}
	return nil, fmt.Errorf("statement %T is not supported on aggregators", cmd)
}

// Result helpers.

func field(name string, t querypb.Type) *querypb.Field {
	f := &querypb.Field{Name: name, Type: t, Charset: 63, ColumnLength: 20}
	if t == querypb.Type_VARCHAR {
		f.Charset, f.ColumnLength = 33, 1024
	}
	return f
}

func str(s string) sqltypes.Value { return sqltypes.NewVarChar(s) }
func num(i int64) sqltypes.Value  { return sqltypes.NewInt64(i) }
func nullable(ok bool, v sqltypes.Value) sqltypes.Value {
	if !ok {
		return sqltypes.NULL
	}
	return v
}

func latencyValue(ms float64, ok bool) sqltypes.Value {
	return nullable(ok, sqltypes.MakeTrusted(querypb.Type_DECIMAL, []byte(strconv.FormatFloat(ms, 'f', 3, 64))))
}

// leafRows and aggregatorRows feed SHOW LEAVES/AGGREGATORS and their
// information_schema tables.
func (a *Aggregator) leafRows() [][]sqltypes.Value {
	var out [][]sqltypes.Value
	for _, l := range a.State().Leaves {
		lat, ok := a.beats.Latency(l.Addr())
		out = append(out, []sqltypes.Value{
			str(l.Host), num(int64(l.Port)), num(int64(l.Group)),
			nullable(l.PairHost != "", str(l.PairHost)), nullable(l.PairHost != "", num(int64(l.PairPort))),
			str(l.State), num(int64(a.pools.Open(l.Addr()))), latencyValue(lat, ok),
		})
	}
	return out
}

var leafFields = []*querypb.Field{
	field("Host", querypb.Type_VARCHAR), field("Port", querypb.Type_INT64), field("Availability_Group", querypb.Type_INT64),
	field("Pair_Host", querypb.Type_VARCHAR), field("Pair_Port", querypb.Type_INT64), field("State", querypb.Type_VARCHAR),
	field("Opened_Connections", querypb.Type_INT64), field("Average_Roundtrip_Latency_ms", querypb.Type_DECIMAL),
}

func (a *Aggregator) showLeaves() *sqltypes.Result {
	return &sqltypes.Result{Fields: leafFields, Rows: a.leafRows()}
}

var aggregatorFields = []*querypb.Field{
	field("Host", querypb.Type_VARCHAR), field("Port", querypb.Type_INT64), field("State", querypb.Type_VARCHAR),
	field("Opened_Connections", querypb.Type_INT64), field("Average_Roundtrip_Latency_ms", querypb.Type_DECIMAL),
	field("Master_Aggregator", querypb.Type_INT64),
}

func (a *Aggregator) aggregatorRows() [][]sqltypes.Value {
	master := a.raft.Leader()
	var out [][]sqltypes.Value
	for _, ag := range a.State().Aggregators {
		self := ag.Addr() == a.self
		lat, ok := a.beats.Latency(ag.Addr())
		state := "online"
		if !self && !ok {
			state = "offline"
		}
		isMaster := int64(0)
		if ag.Addr() == master {
			isMaster = 1
		}
		out = append(out, []sqltypes.Value{
			str(ag.Host), num(int64(ag.Port)), str(state), num(int64(a.pools.Open(ag.Addr()))),
			latencyValue(lat, ok && !self), num(isMaster),
		})
	}
	return out
}

func (a *Aggregator) showAggregators() *sqltypes.Result {
	return &sqltypes.Result{Fields: aggregatorFields, Rows: a.aggregatorRows()}
}

var partitionFields = []*querypb.Field{
	field("Ordinal", querypb.Type_INT64), field("Host", querypb.Type_VARCHAR), field("Port", querypb.Type_INT64),
	field("Role", querypb.Type_VARCHAR), field("Locked", querypb.Type_INT64),
}

// partitionRows lists each partition's instances; a partition without
// master is one row of NULLs, as in the seeds.
func partitionRows(d *meta.Database) [][]sqltypes.Value {
	var out [][]sqltypes.Value
	for _, p := range d.Partitions {
		locked := int64(0)
		if p.Locked {
			locked = 1
		}
		if p.Master == "" {
			out = append(out, []sqltypes.Value{num(int64(p.Ordinal)), sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL})
		} else {
			h, port := splitAddr(p.Master)
			out = append(out, []sqltypes.Value{num(int64(p.Ordinal)), str(h), num(int64(port)), str("Master"), num(locked)})
		}
		for _, r := range p.Replicas {
			h, port := splitAddr(r)
			out = append(out, []sqltypes.Value{num(int64(p.Ordinal)), str(h), num(int64(port)), str("Slave"), num(locked)})
		}
	}
	return out
}

func (a *Aggregator) showPartitions(db string) (*sqltypes.Result, error) {
	if db == "" {
		return nil, mysql.NewSQLError(1046, "3D000", "No database selected")
	}
	d := a.State().Database(db)
	if d == nil {
		return nil, mysql.NewSQLError(1049, "42000", "Unknown database '%s'", db)
	}
	return &sqltypes.Result{Fields: partitionFields, Rows: partitionRows(d)}, nil
}

func splitAddr(addr string) (string, int) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, 0
	}
	p, _ := strconv.Atoi(addr[i+1:])
	return strings.Trim(addr[:i], "[]"), p
}
