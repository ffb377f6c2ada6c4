package aggregator

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/aggregator/pool"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sqlcmd"
)

// Command runs a cluster management statement.
func (a *Aggregator) Command(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.Command) (*sqltypes.Result, error) {
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
	case sqlcmd.ShowRebalanceStatus:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		db := cmd.Database
		if db == "" {
			db = a.currentDB(c.ConnectionID)
		}
		return a.showRebalanceStatus(db)
	case sqlcmd.AddLeaf, sqlcmd.RemoveLeaf, sqlcmd.AddAggregator, sqlcmd.RemoveAggregator, sqlcmd.AttachLeaf, sqlcmd.DetachLeaf:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		var err error
		switch cmd := cmd.(type) {
		case sqlcmd.AddLeaf:
			err = a.addLeaf(ctx, cmd)
		case sqlcmd.RemoveLeaf:
			err = a.removeLeaf(ctx, cmd)
		case sqlcmd.AddAggregator:
			err = a.addAggregator(ctx, cmd)
		case sqlcmd.RemoveAggregator:
			err = a.removeAggregator(ctx, cmd)
		case sqlcmd.AttachLeaf:
			err = a.attachCommand(ctx, cmd)
		case sqlcmd.DetachLeaf:
			err = a.detachCommand(cmd)
		}
		if err != nil {
			return nil, err
		}
		return &sqltypes.Result{RowsAffected: 1}, nil
	case sqlcmd.ShowDDLJobs:
		return a.showDDLJobs(), nil
	case sqlcmd.ShowClusterStatus:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		return a.showClusterStatus(), nil
	case sqlcmd.ClearOrphans:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		return a.clearOrphans(cmd.Explain)
	case sqlcmd.Rebalance:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		return a.rebalanceCommand(ctx, c, cmd)
	case sqlcmd.PartitionCommand:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		return okRows(a.partitionCommand(ctx, cmd))
	case sqlcmd.RaftMembers:
		return a.raftMembers()
	case sqlcmd.SetAsMaster:
		return okRows(a.setAsMaster(ctx))
	case sqlcmd.PromoteAggregator:
		if !a.IsMaster() {
			return a.forwardToMaster(ctx, c, query)
		}
		return okRows(a.promoteAggregator(ctx, meta.Addr(cmd.Host, defaultPort(cmd.Port))))
	case sqlcmd.BootstrapAggregator:
		return nil, mysql.NewSQLError(1105, "HY000", "This node is already an aggregator of cluster %s", a.clusterID)
	}
	return nil, fmt.Errorf("statement %T is not supported on aggregators", cmd)
}

// okRows is the result of a cluster command that changed one thing.
func okRows(err error) (*sqltypes.Result, error) {
	if err != nil {
		return nil, err
	}
	return &sqltypes.Result{RowsAffected: 1}, nil
}

// NodeInfo is what CANOPY NODE STATUS reports of a node.
type NodeInfo struct {
	Role         string
	ClusterID    string
	InternalPort int
	RaftIndex    uint64 // metadata applied (aggregators)
}

func nodeStatus(ctx context.Context, p *pool.Pool) (NodeInfo, error) {
	res, err := p.Exec(ctx, "CANOPY NODE STATUS", 10)
	if err != nil {
		return NodeInfo{}, err
	}
	if len(res.Rows) != 1 {
		return NodeInfo{}, fmt.Errorf("no status")
	}
	var ni NodeInfo
	for i, f := range res.Fields {
		v := res.Rows[0][i].ToString()
		switch f.Name {
		case "Role":
			ni.Role = v
		case "Cluster_ID":
			ni.ClusterID = v
		case "Internal_Port":
			ni.InternalPort, _ = strconv.Atoi(v)
		case "Raft_Index":
			ni.RaftIndex, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return ni, nil
}

func defaultPort(p int) int {
	if p == 0 {
		return 3306
	}
	return p
}

// joinCheck connects to a node about to join and checks that it is free
// (or already ours).
func (a *Aggregator) joinCheck(ctx context.Context, what string, node pool.Node) (NodeInfo, error) {
	p := a.pools.Get(node)
	ni, err := nodeStatus(ctx, p)
	if err != nil {
		a.pools.Forget(node.Addr())
		return ni, mysql.NewSQLError(2003, "HY000",
			"Cannot add %s '%s':%d: %v. Check that a canopy node runs there and that the host, port, user (it needs SUPER) and password are right",
			what, node.Host, node.Port, err)
	}
	if ni.ClusterID != "" && ni.ClusterID != a.clusterID {
		return ni, mysql.NewSQLError(1105, "HY000",
			"Cannot add %s '%s':%d: it belongs to another cluster (%s). Remove it from that cluster first", what, node.Host, node.Port, ni.ClusterID)
	}
	return ni, nil
}

func (a *Aggregator) addLeaf(ctx context.Context, cmd sqlcmd.AddLeaf) error {
	node := a.newLeafNode(cmd.Host, defaultPort(cmd.Port), cmd.User, cmd.Password)
	st := a.State()
	if _, ok := st.Leaf(node.Addr()); ok {
		return mysql.NewSQLError(1105, "HY000", "Leaf '%s':%d is already in the cluster", node.Host, node.Port)
	}
	if _, ok := st.Aggregator(node.Addr()); ok || node.Addr() == a.self {
		return mysql.NewSQLError(1105, "HY000", "Cannot add leaf '%s':%d: it is an aggregator of this cluster", node.Host, node.Port)
	}
	if cmd.Group != 0 && (cmd.Group < 1 || cmd.Group > 2) {
		return mysql.NewSQLError(1105, "HY000", "Availability group %d does not exist: groups are 1 and 2", cmd.Group)
	}
	ni, err := a.joinCheck(ctx, "leaf", node)
	if err != nil {
		return err
	}
	if ni.Role == "aggregator" || ni.Role == "master aggregator" {
		return mysql.NewSQLError(1105, "HY000", "Cannot add leaf '%s':%d: it is an aggregator", node.Host, node.Port)
	}
	if err := a.sendJoin(ctx, node, "LEAF"); err != nil {
		return err
	}
	a.pools.Forget(node.Addr()) // its connections from before it joined are not cluster links
	err = a.propose(meta.AddLeaf{Leaf: meta.Leaf{
		Host: node.Host, Port: node.Port, InternalPort: ni.InternalPort,
		User: node.User, Password: node.Password, Group: cmd.Group,
	}})
	if err != nil {
		return err
	}
	a.waitAllReplicated()
	return nil
}

func (a *Aggregator) removeLeaf(ctx context.Context, cmd sqlcmd.RemoveLeaf) error {
	addr := meta.Addr(cmd.Host, defaultPort(cmd.Port))
	st := a.State()
	l, ok := st.Leaf(addr)
	if !ok {
		return mysql.NewSQLError(1105, "HY000", "Leaf '%s':%d is not part of the cluster", cmd.Host, defaultPort(cmd.Port))
	}
	if err := a.drainLeaf(ctx, l); err != nil {
		return err
	}
	// nothing of the cluster's is left on it
	if err := a.leafDown([]string{addr}, meta.LeafDetached); err != nil {
		return err
	}
	if err := a.propose(meta.RemoveLeaf{Addr: addr}); err != nil {
		return err
	}
	if lp, err := a.leafPool(addr); err == nil {
		lp.Exec(ctx, fmt.Sprintf("CANOPY LEAVE CLUSTER '%s'", a.clusterID), 0)
	}
	a.pools.Forget(addr)
	a.reconcile()
	return nil
}

// drainLeaf moves every partition of an online leaf elsewhere
// (meta.PlanRemoveLeaf), each step recorded for SHOW REBALANCE STATUS.
func (a *Aggregator) drainLeaf(ctx context.Context, l meta.Leaf) error {
	a.ha.mu.Lock()
	defer a.ha.mu.Unlock()
	st := a.State()
	addr := l.Addr()
	for _, name := range st.DatabaseNames() {
		d := st.Database(name)
		steps := meta.PlanRemoveLeaf(st, d, addr)
		for _, p := range d.Partitions {
			moved := slices.ContainsFunc(steps, func(s meta.Step) bool { return s.Ordinal == p.Ordinal && s.Action == meta.ActionPromote })
			if l.State == meta.LeafOnline && p.Master == addr && !moved {
				return mysql.NewSQLError(1105, "HY000",
					"Leaf %s holds the master of %s:%d and no other leaf is online to take it: add a leaf, or bring one back, then run REMOVE LEAF again",
					meta.QuotedAddr(addr), name, p.Ordinal)
			}
		}
		if l.State != meta.LeafOnline || len(steps) == 0 {
			continue // an offline leaf's copies are already out of service
		}
		if err := a.runSteps(ctx, meta.JobRemove, addr, name, steps); err != nil {
			return mysql.NewSQLError(1105, "HY000",
				"REMOVE LEAF %s stopped moving its partitions of %s: %v. Every partition still has its master; SHOW REBALANCE STATUS ON %s shows what ran. Fix the cause and run it again",
				meta.QuotedAddr(addr), name, err, name)
		}
	}
	return nil
}

func (a *Aggregator) addAggregator(ctx context.Context, cmd sqlcmd.AddAggregator) error {
	node := pool.Node{Host: cmd.Host, Port: defaultPort(cmd.Port), User: cmd.User, Password: cmd.Password, TLS: a.host.NodeTLS()}
	st := a.State()
	if _, ok := st.Aggregator(node.Addr()); ok || node.Addr() == a.self {
		return mysql.NewSQLError(1105, "HY000", "Aggregator '%s':%d is already in the cluster", node.Host, node.Port)
	}
	if _, ok := st.Leaf(node.Addr()); ok {
		return mysql.NewSQLError(1105, "HY000", "Cannot add aggregator '%s':%d: it is a leaf of this cluster", node.Host, node.Port)
	}
	ni, err := a.joinCheck(ctx, "aggregator", node)
	if err != nil {
		return err
	}
	if ni.Role == "leaf" && ni.ClusterID == a.clusterID {
		return mysql.NewSQLError(1105, "HY000", "Cannot add aggregator '%s':%d: it is a leaf of this cluster", node.Host, node.Port)
	}
	if err := a.sendJoin(ctx, node, "AGGREGATOR '"+node.Addr()+"'"); err != nil {
		return err
	}
	// from now on it takes the cluster's accounts: reach it as the
	// internal account
	a.pools.Forget(node.Addr())
	if err := a.raft.AddFollower(node.Addr(), meta.Addr(node.Host, ni.InternalPort)); err != nil {
		return fmt.Errorf("add aggregator %s to the metadata group: %w", node.Addr(), err)
	}
	err = a.propose(meta.AddAggregator{Aggregator: meta.Aggregator{
		Host: node.Host, Port: node.Port, InternalPort: ni.InternalPort, User: node.User, // reached as the internal account, no password kept
	}})
	if err != nil {
		return err
	}
	a.waitAllReplicated()
	return nil
}

func (a *Aggregator) removeAggregator(ctx context.Context, cmd sqlcmd.RemoveAggregator) error {
	addr := meta.Addr(cmd.Host, defaultPort(cmd.Port))
	if addr == a.self {
		return mysql.NewSQLError(1105, "HY000", "REMOVE AGGREGATOR removes child aggregators; '%s':%d is the master aggregator", cmd.Host, defaultPort(cmd.Port))
	}
	if _, ok := a.State().Aggregator(addr); !ok {
		return mysql.NewSQLError(1105, "HY000", "Aggregator '%s':%d is not part of the cluster", cmd.Host, defaultPort(cmd.Port))
	}
	ap, _ := a.aggregatorPool(addr)
	if err := a.propose(meta.RemoveAggregator{Addr: addr}); err != nil {
		return err
	}
	if err := a.raft.RemoveMember(addr); err != nil {
		a.log.Warn("removing aggregator from the metadata group", "aggregator", addr, "err", err)
	}
	if ap != nil {
		ap.Exec(ctx, fmt.Sprintf("CANOPY LEAVE CLUSTER '%s'", a.clusterID), 0)
	}
	a.pools.Forget(addr)
	a.reconcile()
	return nil
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
		lat, ok := a.beats.latency(l.Addr())
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
		lat, ok := a.beats.latency(ag.Addr())
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
