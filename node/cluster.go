package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/aggregator"
	"github.com/canopydb/canopy/cluster/manager"
	"github.com/canopydb/canopy/cluster/member"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/linkauth"
	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// membership is the node's place in a cluster, kept in its store.
type membership struct {
	Role      string `json:"role"` // "leaf" or "aggregator"
	ClusterID string `json:"cluster_id"`
	Self      string `json:"self,omitempty"` // an aggregator's address (its raft id)
	// Secret (hex) authenticates the links between the cluster's nodes:
	// made when the cluster is founded, given to a node as it joins.
	Secret string `json:"secret,omitempty"`
}

const membershipKey = "membership"

func (n *Node) membership() (membership, error) {
	var m membership
	v, ok, err := n.store.GetLocal(membershipKey)
	if err != nil || !ok {
		return m, err
	}
	return m, json.Unmarshal(v, &m)
}

func (n *Node) setMembership(m *membership) error {
	if m == nil {
		return n.store.SetLocal(membershipKey, nil)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return n.store.SetLocal(membershipKey, b)
}

func newClusterID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// setSecret makes a hex secret the one the node's links use ("": none).
func (n *Node) setSecret(secret string) error {
	if secret == "" {
		n.secret.Store(nil)
		return nil
	}
	b, err := hex.DecodeString(secret)
	if err != nil || len(b) < 16 {
		return mysql.NewSQLError(1105, "HY000", "bad cluster secret")
	}
	n.secret.Store(&b)
	return nil
}

// clusterSecret is the cluster secret, or nil in no cluster.
func (n *Node) clusterSecret() []byte {
	if p := n.secret.Load(); p != nil {
		return *p
	}
	return nil
}

// aggregatorTier is what runs on a node that is an aggregator: its
// membership in the cluster (package cluster/member: the raft member and
// metadata, the connections to the other nodes, the heartbeats) below
// the query tier (package aggregator) and the cluster manager (package
// cluster/manager). Neither of those two imports the other: the node
// wires them (each reaches the other through an interface of its own)
// and routes the cluster statements (clusterCommand).
type aggregatorTier struct {
	member *member.Member
	agg    *aggregator.Aggregator
	mgr    *manager.Manager
}

// startAggregatorTier starts the three parts in order: the member's raft
// asks the manager (CheckCluster) before it stands for election; the
// manager reconciles the query tier's copies, and the query tier's loops
// call the manager's Reconcile.
func (n *Node) startAggregatorTier(clusterID string, bootstrap bool) (*aggregatorTier, error) {
	mb := member.New(n, clusterID, aggregator.PoolDefaults())
	mgr := manager.New(mb, n)
	log := mb.Log()
	err := mb.Start(bootstrap, member.Hooks{
		Check: mgr.CheckCluster,
		Applied: func(st *meta.State) {
			if err := aggregator.PublishVariables(st); err != nil {
				log.Warn("cluster variables", "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	a := aggregator.New(n, mb, mgr)
	mgr.Start(a)
	a.Start()
	return &aggregatorTier{member: mb, agg: a, mgr: mgr}, nil
}

// close stops an aggregator's parts: a master first hands its role over
// (the next master is there at once); then the manager stops (its
// reconcile drives the query tier's copies), then the query tier (the
// streams of its copies), and the member last (heartbeats, connections,
// raft).
func (t *aggregatorTier) close() {
	t.member.HandOff()
	t.mgr.Close()
	t.agg.Close()
	t.member.Close()
}

// aggregator returns the node's aggregator, or nil on a leaf.
func (n *Node) aggregator() *aggregator.Aggregator {
	if t := n.agg.Load(); t != nil {
		return t.agg
	}
	return nil
}

// startAggregator makes this node an aggregator of cluster id; joining:
// it was added a moment ago.
func (n *Node) startAggregator(m membership, bootstrap bool, joining bool) error {
	if n.aggregator() != nil {
		return fmt.Errorf("this node is already an aggregator")
	}
	n.self = m.Self
	t, err := n.startAggregatorTier(m.ClusterID, bootstrap)
	if err != nil {
		return err
	}
	n.agg.Store(t)
	if err := n.users.useCluster(); err != nil {
		n.agg.Store(nil)
		t.close()
		return err
	}
	n.log.Info("aggregator started", "cluster", m.ClusterID, "self", m.Self, "bootstrap", bootstrap)
	return nil
}

// Host methods for the aggregator.

func (n *Node) Store() *storage.Store { return n.store }
func (n *Node) DataDir() string       { return n.cfg.DataDir }

// Self is the MySQL address other nodes use for this node.
func (n *Node) Self() (string, int) {
	if n.self != "" {
		h, p, err := net.SplitHostPort(n.self)
		if err == nil {
			port, _ := strconv.Atoi(p)
			return h, port
		}
	}
	return n.cfg.AdvertiseHost, n.cfg.Port
}

func (n *Node) InternalAddr() string {
	h, _ := n.Self()
	return net.JoinHostPort(h, strconv.Itoa(n.cfg.AdvertiseInternalPort))
}

func (n *Node) RaftListener() net.Listener { return n.mux.Listen(mux.TagRaft) }

func (n *Node) Session(id uint32) *storage.Session { return n.session(id) }

func (n *Node) ClusterSecret() []byte { return n.clusterSecret() }
func (n *Node) Dialer() mux.Dialer    { return n.dialer }
func (n *Node) NodeTLS() bool         { return n.cfg.NodeTLS }
func (n *Node) UsersChanged()         { n.users.changed() }

func (n *Node) SQLContext(ctx context.Context, c *mysql.Conn) (*sql.Context, error) {
	return n.sqlContext(ctx, c)
}

// RunLocal runs one statement of a client in this node's engine.
func (n *Node) RunLocal(ctx context.Context, c *mysql.Conn, query string, callback mysql.ResultSpoolFn) error {
	return n.gms.ComQuery(ctx, c, query, callback)
}

// internalConnID numbers the sessions of RunInternal.
var internalConnID atomic.Uint32

func init() { internalConnID.Store(aggregator.InternalSessions) }

// RunInternal runs one statement in this node's engine as the node
// itself (the cluster's internal account), in a session of its own: the
// master aggregator's work on its copies of distributed databases when
// no client statement runs it (a schema change finished after a restart).
func (n *Node) RunInternal(ctx context.Context, query string) ([]sql.Row, error) {
	base := sql.NewBaseSessionWithClientServer(net.JoinHostPort(n.cfg.AdvertiseHost, strconv.Itoa(n.cfg.Port)),
		sql.Client{Address: "localhost", User: linkauth.InternalUser}, internalConnID.Add(1))
	s := storage.NewSession(base, n.store)
	sctx := storage.NewContext(ctx, sql.WithSession(s))
	_, iter, _, err := n.engine.Query(sctx, query)
	if err != nil {
		return nil, err
	}
	return sql.RowIterToRows(sctx, iter)
}

// analyze plans a statement in the engine for a client's session.
// The engine makes a connection's session on its first statement, which
// may be this one.
func (n *Node) analyze(c *mysql.Conn, query string) (sql.Node, error) {
	ctx, err := n.server.SessionManager().NewContextWithQuery(context.Background(), c, query)
	if err != nil {
		return nil, fmt.Errorf("session for connection %d: %w", c.ConnectionID, err)
	}
	return n.engine.AnalyzeQuery(ctx, query)
}

// Node-level cluster statements: they change what the node is.

func (n *Node) nodeStatus() (*sqltypes.Result, error) {
	m, err := n.membership()
	if err != nil {
		return nil, err
	}
	role := m.Role
	var raftIndex int64
	if a := n.aggregator(); a != nil {
		raftIndex = int64(a.RaftIndex())
		if a.IsMaster() {
			role = "master aggregator"
		}
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{
		varcharField("Role"), varcharField("Cluster_ID"), intField("Port"), intField("Internal_Port"), intField("Raft_Index"),
	}}
	res.Rows = [][]sqltypes.Value{{strValue(role), strValue(m.ClusterID), intValue(int64(n.cfg.Port)),
		intValue(int64(n.cfg.AdvertiseInternalPort)), intValue(raftIndex)}}
	return res, nil
}

func (n *Node) joinCluster(cmd sqlcmd.JoinCluster, secret string) error {
	m, err := n.membership()
	if err != nil {
		return err
	}
	if m.ClusterID != "" && m.ClusterID != cmd.ClusterID {
		return mysql.NewSQLError(1105, "HY000", "This node belongs to cluster %s", m.ClusterID)
	}
	if m.Role != "" && m.Role != cmd.Role {
		return mysql.NewSQLError(1105, "HY000", "This node is already a %s of cluster %s", m.Role, m.ClusterID)
	}
	if m.Secret != "" && m.Secret != secret {
		return mysql.NewSQLError(1105, "HY000", "This node holds another secret of cluster %s", m.ClusterID)
	}
	m = membership{Role: cmd.Role, ClusterID: cmd.ClusterID, Self: cmd.Self, Secret: secret}
	if err := n.setSecret(m.Secret); err != nil {
		return err
	}
	if err := n.setMembership(&m); err != nil {
		return err
	}
	if cmd.Role == "aggregator" && n.aggregator() == nil {
		return n.startAggregator(m, false, true)
	}
	if cmd.Role == "leaf" {
		n.enableFencing()
	}
	return nil
}

func (n *Node) leaveCluster(cmd sqlcmd.LeaveCluster) error {
	m, err := n.membership()
	if err != nil || m.ClusterID == "" {
		return err
	}
	if m.ClusterID != cmd.ClusterID {
		return mysql.NewSQLError(1105, "HY000", "This node belongs to cluster %s, not %s", m.ClusterID, cmd.ClusterID)
	}
	if t := n.agg.Load(); t != nil {
		n.agg.Store(nil)
		t.close()
		n.self = ""
	}
	if err := n.setMembership(nil); err != nil {
		return err
	}
	n.secret.Store(nil)
	return n.users.useLocal()
}

func (n *Node) bootstrap(cmd sqlcmd.BootstrapAggregator) error {
	m, err := n.membership()
	if err != nil {
		return err
	}
	if m.ClusterID != "" {
		return mysql.NewSQLError(1105, "HY000", "This node is already joined to cluster %s as %s", m.ClusterID, m.Role)
	}
	port := cmd.Port
	if port == 0 {
		port = n.cfg.Port
	}
	m = membership{Role: "aggregator", ClusterID: newClusterID(), Self: net.JoinHostPort(cmd.Host, strconv.Itoa(port)), Secret: newSecret()}
	if err := n.setMembership(&m); err != nil {
		return err
	}
	if err := n.setSecret(m.Secret); err != nil {
		return err
	}
	if err := n.startAggregator(m, true, false); err != nil {
		n.setMembership(nil)
		n.secret.Store(nil)
		return err
	}
	return nil
}

func (n *Node) dropCopy(db string) error {
	if !n.store.HasDatabase(db) {
		return nil
	}
	if !n.store.IsReplica(db) {
		return mysql.NewSQLError(1105, "HY000", "Database %s is not a copy of a distributed database here", db)
	}
	return n.store.DropDatabase(db)
}

func (n *Node) Engine() *sqle.Engine { return n.engine }
func (n *Node) Log() *slog.Logger    { return n.log }
