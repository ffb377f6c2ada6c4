package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/internal/nodeapi"
	"github.com/canopydb/canopy/sqlcmd"
)

// execCommand runs one of Canopy's own statements.
func (n *Node) execCommand(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.Command) (*sqltypes.Result, error) {
	agg := n.aggregator()
	switch cmd := cmd.(type) {
	case sqlcmd.ShowReplicationStatus:
		return n.showReplicationStatus(), nil
	case sqlcmd.ShowDatabasesExtended:
		return n.showDatabasesExtended(), nil
	case sqlcmd.PartitionStatus:
		return n.partitionStatus()
	case sqlcmd.Explain:
		if agg != nil {
			return agg.Explain(ctx, c, cmd.Query, func(q string) (sql.Node, error) { return n.analyze(c, q) })
		}
		return n.explain(c, cmd.Query)
	case sqlcmd.NodeStatus:
		return n.nodeStatus()
	case sqlcmd.Challenge:
		return n.challenge(c)
	case sqlcmd.Authenticate:
		return n.authenticate(c, cmd)
	case sqlcmd.Impersonate:
		return okResult(n.impersonate(ctx, c, cmd))
	case sqlcmd.SetPassword:
		return n.setPassword(ctx, c, query, cmd)
	case sqlcmd.AlterUserRequire:
		return n.alterUserRequire(ctx, c, query, cmd)
	case sqlcmd.JoinCluster:
		secret, err := n.joinSecret(c, cmd)
		if err != nil {
			return nil, err
		}
		return okResult(n.joinCluster(cmd, secret))
	case sqlcmd.LeaveCluster:
		return okResult(n.leaveCluster(cmd))
	case sqlcmd.DropCopy:
		return okResult(n.dropCopy(cmd.Database))
	case sqlcmd.PrepareTxn:
		sess := n.session(c.ConnectionID)
		if sess == nil {
			return nil, fmt.Errorf("prepare %s: no session", cmd.XID)
		}
		prepared, err := sess.PrepareSession(sql.NewContext(ctx, sql.WithSession(sess)), cmd.XID)
		if err != nil {
			return nil, err
		}
		if agg != nil {
			// the master aggregator's part of a child's transaction
			agg.SessionPrepared(c.ConnectionID)
		}
		failpoint.Hit("leaf-after-prepare")
		if !prepared {
			// nothing written: the part is over (sqlcmd.PrepareTxn)
			return &sqltypes.Result{RowsAffected: sqlcmd.PreparedNothing}, nil
		}
		return &sqltypes.Result{}, nil
	case sqlcmd.CommitPrepared:
		if n.store.IsPrepared(cmd.XID) {
			failpoint.Hit("leaf-before-commit-prepared")
		}
		if agg != nil {
			return okResult(agg.CommitPrepared(cmd.XID))
		}
		return okResult(n.store.CommitPrepared(cmd.XID))
	case sqlcmd.RollbackPrepared:
		return okResult(n.store.RollbackPrepared(cmd.XID))
	case sqlcmd.ShowPrepared:
		res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("XID"), intField("Age_ms"), intField("Keys")}}
		for _, p := range n.store.Prepared() {
			res.Rows = append(res.Rows, []sqltypes.Value{strValue(p.XID), intValue(time.Since(p.Since).Milliseconds()), intValue(int64(p.Keys))})
		}
		return res, nil
	case sqlcmd.Replicate:
		if err := n.fence(cmd.MasterEpoch); err != nil {
			return nil, err
		}
		return okResult(n.setReplication(cmd.Config))
	case sqlcmd.MasterAggregator:
		if cmd.Addr == "" {
			return n.showMaster()
		}
		return n.recordMaster(cmd.Addr, cmd.Epoch)
	case sqlcmd.PartitionRole:
		if err := n.fence(cmd.MasterEpoch); err != nil {
			return nil, err
		}
		switch cmd.Action {
		case "PROMOTE":
			return n.promotePartition(cmd.Database, cmd.Epoch, cmd.Incarnation)
		case "DEMOTE":
			return n.demotePartition(ctx, cmd.Database)
		default:
			return okResult(n.dropPartition(cmd.Database))
		}
	case sqlcmd.BootstrapAggregator:
		if agg == nil {
			return okResult(n.bootstrap(cmd))
		}
	case sqlcmd.BackupSnapshot:
		return n.backupSnapshot(cmd)
	case sqlcmd.BackupWrite:
		return n.backupWrite(cmd)
	case sqlcmd.BackupRelease:
		n.releaseBackup(cmd.Tag)
		return &sqltypes.Result{}, nil
	case sqlcmd.RestorePartition:
		return n.restorePartition(ctx, c, cmd)
	case sqlcmd.CommitGate:
		if agg == nil {
			return nil, errNotAggregator
		}
		if cmd.Close {
			return okResult(agg.CloseCommitGate(time.Duration(cmd.Millis) * time.Millisecond))
		}
		agg.OpenCommitGate()
		return &sqltypes.Result{}, nil
	}
	if agg == nil {
		return nil, errNotAggregator
	}
	return n.clusterCommand(ctx, c, query, cmd)
}

// clusterCommand runs a cluster statement on an aggregator: the dispatch
// above the query tier (package aggregator) and the cluster manager
// (package cluster/manager). The manager's statements that change the
// cluster, or show what only the master knows, run on the master
// aggregator: a child forwards them there.
func (n *Node) clusterCommand(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.Command) (*sqltypes.Result, error) {
	t := n.agg.Load()
	if t == nil {
		return nil, errNotAggregator
	}
	agg, mgr := t.agg, t.mgr
	switch cmd.(type) {
	case sqlcmd.ShowRebalanceStatus, sqlcmd.AddLeaf, sqlcmd.RemoveLeaf, sqlcmd.AddAggregator, sqlcmd.RemoveAggregator,
		sqlcmd.AttachLeaf, sqlcmd.DetachLeaf, sqlcmd.ShowClusterStatus, sqlcmd.ClearOrphans, sqlcmd.Rebalance,
		sqlcmd.PartitionCommand, sqlcmd.PromoteAggregator:
		if !agg.IsMaster() {
			return agg.Forward(ctx, c, query)
		}
		return mgr.Command(ctx, c, cmd)
	case sqlcmd.RaftMembers, sqlcmd.SetAsMaster:
		return mgr.Command(ctx, c, cmd)
	case sqlcmd.Backup, sqlcmd.Restore, sqlcmd.ShowBackupStatus:
		// the master aggregator runs backups (it knows every partition
		// and closes every aggregator's commit gate)
		if !agg.IsMaster() {
			return agg.Forward(ctx, c, query)
		}
		return agg.BackupCommand(ctx, c, cmd)
	}
	return agg.Command(c, cmd)
}

var errNotAggregator = mysql.NewSQLError(1105, "HY000",
	"This node is not an aggregator; run cluster statements on the master aggregator (or BOOTSTRAP AGGREGATOR to found a cluster here)")

func okResult(err error) (*sqltypes.Result, error) {
	if err != nil {
		return nil, err
	}
	return &sqltypes.Result{}, nil
}

// showReplicationStatus lists the streams this node ships: per database
// and target (an internal address), sync or async, connected or not (and
// for how long not), the position the target confirmed, and the last
// error.
func (n *Node) showReplicationStatus() *sqltypes.Result {
	res := &sqltypes.Result{Fields: []*querypb.Field{
		varcharField("Database"), varcharField("Target"), varcharField("Mode"), varcharField("State"),
		intField("Acked_LSN"), intField("Down_Ms"), varcharField("Last_Error"),
	}}
	statuses := n.hub.Statuses()
	if a := n.aggregator(); a != nil {
		statuses = append(statuses, a.ReplicationStatuses()...)
	}
	for _, st := range statuses {
		mode, state := "async", "connected"
		if st.Sync {
			mode = "sync"
		}
		if !st.Connected {
			state = "disconnected"
		}
		res.Rows = append(res.Rows, []sqltypes.Value{strValue(st.Database), strValue(st.Target), strValue(mode), strValue(state),
			uintValue(st.Acked), intValue(st.DownFor.Milliseconds()), strValue(st.Error)})
	}
	return res
}

// showDatabasesExtended lists every database with its partition log
// position, role and state, as in 003_00509c68988978d3.txt.
func (n *Node) showDatabasesExtended() *sqltypes.Result {
	res := &sqltypes.Result{Fields: []*querypb.Field{
		varcharField("Database"), intField("Commits"), varcharField("Role"), varcharField("State"),
		varcharField("Position"), varcharField("Details"), intField("AsyncSlaves"), intField("SyncSlaves"),
	}}
	res.Rows = append(res.Rows, []sqltypes.Value{strValue("information_schema"),
		sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL, sqltypes.NULL})
	counts := n.replicaCounts()
	for _, d := range n.store.DatabaseInfos() {
		role, state := "master", "online"
		switch {
		case d.Deposed:
			state = "fenced" // a newer master exists: it takes no writes until it is dropped
		case d.Suspect:
			state = "suspect" // paused since it was confirmed: no writes until the master aggregator confirms it
		}
		if d.Replica {
			role, state = "async slave", "replicating"
			if n.receiver.Sync(d.Name) {
				role = "sync slave"
			}
			if n.store.SnapshotPending(d.Name) {
				state = "provisioning" // a snapshot is being installed: nothing usable yet
			}
		}
		c := counts[d.Name]
		res.Rows = append(res.Rows, []sqltypes.Value{
			strValue(d.Name), uintValue(d.Commits), strValue(role), strValue(state),
			strValue(d.Pos.String()), strValue(""), intValue(c[0]), intValue(c[1]),
		})
	}
	return res
}

// explain shows the plan GMS chose for a statement, one operator per row,
// in a single EXPLAIN column as SingleStore prints plans.
func (n *Node) explain(c *mysql.Conn, query string) (*sqltypes.Result, error) {
	plan, err := n.analyze(c, query)
	if err != nil {
		return nil, err
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("EXPLAIN")}}
	for _, line := range strings.Split(strings.TrimRight(plan.String(), "\n"), "\n") {
		res.Rows = append(res.Rows, []sqltypes.Value{strValue(line)})
	}
	return res, nil
}

// partitionStatus answers CANOPY PARTITION STATUS: the node's copies and
// the streams it ships, typed (internal/nodeapi), for the master
// aggregator's control calls.
func (n *Node) partitionStatus() (*sqltypes.Result, error) {
	st := nodeapi.Status{Incarnation: n.store.Incarnation(), Suspect: n.store.SuspectCount()}
	for _, d := range n.store.DatabaseInfos() {
		c := nodeapi.Copy{Database: d.Name, Replica: d.Replica, Term: d.Pos.Term, LSN: d.Pos.LSN, Commits: d.Commits, Suspect: d.Suspect, Deposed: d.Deposed}
		if d.Replica {
			c.Sync = n.receiver.Sync(d.Name)
			c.Pending = n.store.SnapshotPending(d.Name)
		}
		st.Copies = append(st.Copies, c)
	}
	for _, s := range n.hub.Statuses() {
		st.Streams = append(st.Streams, nodeapi.Stream{Database: s.Database, Target: s.Target, Sync: s.Sync, Connected: s.Connected,
			AckedLSN: s.Acked, DownMs: s.DownFor.Milliseconds(), Error: s.Error})
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return &sqltypes.Result{Fields: []*querypb.Field{varcharField("Status")}, Rows: [][]sqltypes.Value{{strValue(string(b))}}}, nil
}
