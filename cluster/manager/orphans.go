package manager

import (
	"fmt"
	"strings"

	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/meta"
)

// SHOW CLUSTER STATUS and orphans (reference §1.14, §1.16): every
// database copy on every reachable leaf, from the leaf's own SHOW
// DATABASES EXTENDED, next to what the metadata makes of it
// (meta.CopyRole). An orphan is a partition database the metadata does not
// place on its leaf; CLEAR ORPHAN DATABASES drops the orphans whose
// partition has a master elsewhere (an orphan may be the last copy of a
// partition without master: it stays, for ATTACH LEAF to adopt).

// leafCopy is one database copy on a leaf.
type leafCopy struct {
	leafDatabase
	leaf      string
	metaRole  string
	partition meta.Partition
}

var clusterStatusFields = []*querypb.Field{
	field("Host", querypb.Type_VARCHAR), field("Port", querypb.Type_INT64), field("Database", querypb.Type_VARCHAR),
	field("Role", querypb.Type_VARCHAR), field("State", querypb.Type_VARCHAR), field("Position", querypb.Type_VARCHAR),
	field("Details", querypb.Type_VARCHAR),
}

// clusterCopies lists the copies of the cluster's databases on the leaves
// that answer, and the leaves that did not.
func (a *Manager) clusterCopies() ([]leafCopy, []string) {
	st := a.State()
	var out []leafCopy
	var unreachable []string
	for _, l := range st.Leaves {
		dbs, err := a.leafDatabases(l.Addr())
		if err != nil {
			unreachable = append(unreachable, l.Addr())
			continue
		}
		for _, d := range dbs {
			role, p, ok := meta.CopyRole(st, l.Addr(), d.name)
			if !ok {
				continue // not a database of the cluster
			}
			out = append(out, leafCopy{leafDatabase: d, leaf: l.Addr(), metaRole: role, partition: p})
		}
	}
	return out, unreachable
}

func (a *Manager) showClusterStatus() *sqltypes.Result {
	copies, unreachable := a.clusterCopies()
	res := &sqltypes.Result{Fields: clusterStatusFields}
	for _, c := range copies {
		role, details := c.metaRole, ""
		if c.metaRole == meta.RoleMaster || c.metaRole == meta.RoleReplica {
			leafRole := meta.RoleReplica
			if c.role == "master" {
				leafRole = meta.RoleMaster
			}
			if leafRole != c.metaRole {
				role, details = leafRole, "metadata role: "+c.metaRole
			}
		}
		if c.metaRole == meta.RoleOrphan && c.partition.Master == "" {
			if meta.MayTakeOver(c.partition, c.leaf) {
				details = "the partition has no master; this copy holds every acknowledged commit and takes over when its leaf is attached"
			} else {
				details = "the partition has no master; this copy may lack acknowledged commits, so it waits for " + quotedAddrs(c.partition.Candidates)
			}
		}
		h, p := splitAddr(c.leaf)
		res.Rows = append(res.Rows, []sqltypes.Value{str(h), num(int64(p)), str(c.name), str(role), str(c.state), str(c.position), str(details)})
	}
	// the partitions without master, and what they wait for
	st := a.State()
	for _, name := range st.DatabaseNames() {
		d := st.Database(name)
		for _, p := range d.Partitions {
			if p.Master != "" {
				continue
			}
			why := "no copy is known to hold every acknowledged commit; ATTACH PARTITION or REBALANCE PARTITIONS ... FORCE decides"
			if len(p.Candidates) > 0 {
				why = fmt.Sprintf("waiting for a copy on %s, which holds every acknowledged commit; ATTACH PARTITION %s:%d ON 'host':port takes another copy instead, losing what it lacks",
					quotedAddrs(p.Candidates), d.Name, p.Ordinal)
			}
			res.Rows = append(res.Rows, []sqltypes.Value{sqltypes.NULL, sqltypes.NULL, str(meta.PartitionName(d.Name, p.Ordinal)), str("No master"), str("waiting"), sqltypes.NULL, str(why)})
		}
	}
	for _, l := range unreachable {
		h, p := splitAddr(l)
		res.Rows = append(res.Rows, []sqltypes.Value{str(h), num(int64(p)), sqltypes.NULL, sqltypes.NULL, str("unreachable"), sqltypes.NULL, str("the leaf does not answer")})
	}
	return res
}

var orphanFields = []*querypb.Field{
	field("Host", querypb.Type_VARCHAR), field("Port", querypb.Type_INT64), field("Database", querypb.Type_VARCHAR),
	field("Action", querypb.Type_VARCHAR),
}

// clearOrphans drops (or, with explain, lists) the orphan copies.
func (a *Manager) clearOrphans(explain bool) (*sqltypes.Result, error) {
	a.ha.mu.Lock()
	defer a.ha.mu.Unlock()
	copies, _ := a.clusterCopies()
	res := &sqltypes.Result{Fields: orphanFields}
	dropped := 0
	for _, c := range copies {
		if c.metaRole != meta.RoleOrphan {
			continue
		}
		action := "DROP"
		if c.partition.Master == "" {
			action = "KEEP (the partition has no master: this may be its last copy; ATTACH LEAF adopts it)"
		}
		if !explain && action == "DROP" {
			if _, err := a.onLeaf(c.leaf, a.Fenced("CANOPY DROP PARTITION "+quoteIdent(c.name))); err != nil {
				return nil, fmt.Errorf("drop orphan %s on %s: %w", c.name, c.leaf, err)
			}
			a.log.Info("orphan partition database dropped", "leaf", c.leaf, "database", c.name)
			dropped++
		}
		h, p := splitAddr(c.leaf)
		res.Rows = append(res.Rows, []sqltypes.Value{str(h), num(int64(p)), str(c.name), str(action)})
	}
	if !explain {
		return &sqltypes.Result{RowsAffected: uint64(dropped)}, nil
	}
	return res, nil
}

// quotedAddrs prints leaf addresses as the seeds do, joined by "or".
func quotedAddrs(addrs []string) string {
	var q []string
	for _, a := range addrs {
		q = append(q, meta.QuotedAddr(a))
	}
	return strings.Join(q, " or ")
}
