package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/sqlcmd"
)

// Command runs a cluster management statement of the manager's. The node
// routes them here; those that change the cluster, and SHOW REBALANCE
// STATUS and SHOW CLUSTER STATUS, only on the master aggregator (a child
// forwards them to it).
func (a *Manager) Command(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Command) (*sqltypes.Result, error) {
	switch cmd := cmd.(type) {
	case sqlcmd.ShowRebalanceStatus:
		db := cmd.Database
		if db == "" {
			db = a.currentDB(c.ConnectionID)
		}
		return a.showRebalanceStatus(db)
	case sqlcmd.AddLeaf, sqlcmd.RemoveLeaf, sqlcmd.AddAggregator, sqlcmd.RemoveAggregator, sqlcmd.AttachLeaf, sqlcmd.DetachLeaf:
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
	case sqlcmd.ShowClusterStatus:
		return a.showClusterStatus(), nil
	case sqlcmd.ClearOrphans:
		return a.clearOrphans(cmd.Explain)
	case sqlcmd.Rebalance:
		return a.rebalanceCommand(ctx, c, cmd)
	case sqlcmd.PartitionCommand:
		return okRows(a.partitionCommand(ctx, cmd))
	case sqlcmd.RaftMembers:
		return a.raftMembers()
	case sqlcmd.SetAsMaster:
		return okRows(a.setAsMaster(ctx))
	case sqlcmd.PromoteAggregator:
		return okRows(a.promoteAggregator(ctx, meta.Addr(cmd.Host, defaultPort(cmd.Port))))
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

func (a *Manager) currentDB(id uint32) string {
	if s := a.host.Session(id); s != nil {
		return s.GetCurrentDatabase()
	}
	return ""
}

func defaultPort(p int) int {
	if p == 0 {
		return 3306
	}
	return p
}

// joinCheck connects to a node about to join and checks that it is free
// (or already ours).
func (a *Manager) joinCheck(ctx context.Context, what string, node pool.Node) (member.NodeInfo, error) {
	p := a.pools.Get(node)
	ni, err := member.NodeStatus(ctx, p)
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

func (a *Manager) addLeaf(ctx context.Context, cmd sqlcmd.AddLeaf) error {
	node := a.NewLeafNode(cmd.Host, defaultPort(cmd.Port), cmd.User, cmd.Password)
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
	if err := a.SendJoin(ctx, node, "LEAF"); err != nil {
		return err
	}
	a.pools.Forget(node.Addr()) // its connections from before it joined are not cluster links
	err = a.Propose(meta.AddLeaf{Leaf: meta.Leaf{
		Host: node.Host, Port: node.Port, InternalPort: ni.InternalPort,
		User: node.User, Password: node.Password, Group: cmd.Group,
	}})
	if err != nil {
		return err
	}
	a.copies.WaitAllReplicated()
	return nil
}

func (a *Manager) removeLeaf(ctx context.Context, cmd sqlcmd.RemoveLeaf) error {
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
	if err := a.Propose(meta.RemoveLeaf{Addr: addr}); err != nil {
		return err
	}
	if lp, err := a.LeafPool(addr); err == nil {
		lp.Exec(ctx, fmt.Sprintf("CANOPY LEAVE CLUSTER '%s'", a.clusterID), 0)
	}
	a.pools.Forget(addr)
	a.reconcile()
	return nil
}

// drainLeaf moves every partition of an online leaf elsewhere
// (meta.PlanRemoveLeaf), each step recorded for SHOW REBALANCE STATUS.
func (a *Manager) drainLeaf(ctx context.Context, l meta.Leaf) error {
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

func (a *Manager) addAggregator(ctx context.Context, cmd sqlcmd.AddAggregator) error {
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
	if err := a.SendJoin(ctx, node, "AGGREGATOR '"+node.Addr()+"'"); err != nil {
		return err
	}
	// from now on it takes the cluster's accounts: reach it as the
	// internal account
	a.pools.Forget(node.Addr())
	if err := a.raft.AddFollower(node.Addr(), meta.Addr(node.Host, ni.InternalPort)); err != nil {
		return fmt.Errorf("add aggregator %s to the metadata group: %w", node.Addr(), err)
	}
	err = a.Propose(meta.AddAggregator{Aggregator: meta.Aggregator{
		Host: node.Host, Port: node.Port, InternalPort: ni.InternalPort, User: node.User, // reached as the internal account, no password kept
	}})
	if err != nil {
		return err
	}
	a.copies.WaitAllReplicated()
	return nil
}

func (a *Manager) removeAggregator(ctx context.Context, cmd sqlcmd.RemoveAggregator) error {
	addr := meta.Addr(cmd.Host, defaultPort(cmd.Port))
	if addr == a.self {
		return mysql.NewSQLError(1105, "HY000", "REMOVE AGGREGATOR removes child aggregators; '%s':%d is the master aggregator", cmd.Host, defaultPort(cmd.Port))
	}
	if _, ok := a.State().Aggregator(addr); !ok {
		return mysql.NewSQLError(1105, "HY000", "Aggregator '%s':%d is not part of the cluster", cmd.Host, defaultPort(cmd.Port))
	}
	ap, _ := a.AggregatorPool(addr)
	if err := a.Propose(meta.RemoveAggregator{Addr: addr}); err != nil {
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

// Result helpers (the query tier has the same).

func field(name string, t querypb.Type) *querypb.Field {
	f := &querypb.Field{Name: name, Type: t, Charset: 63, ColumnLength: 20}
	if t == querypb.Type_VARCHAR {
		f.Charset, f.ColumnLength = 33, 1024
	}
	return f
}

func str(s string) sqltypes.Value { return sqltypes.NewVarChar(s) }
func num(i int64) sqltypes.Value  { return sqltypes.NewInt64(i) }

func splitAddr(addr string) (string, int) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, 0
	}
	p, _ := strconv.Atoi(addr[i+1:])
	return strings.Trim(addr[:i], "[]"), p
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// sqlString is s as an SQL string literal.
func sqlString(s string) string {
	var b strings.Builder
	sqltypes.NewVarChar(s).EncodeSQL(&b)
	return b.String()
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
