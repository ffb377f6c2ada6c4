package node

import (
	"strings"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/aggregator"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/storage"
)

// leafGuard is a connection's storage guard: on a leaf of a cluster only
// the cluster's own links (aggregators) change its partitions, its copies
// of distributed databases and its scratch database. A row a client wrote
// there directly would sit in whatever partition it named, and a dropped
// partition would be gone for every query. Clients may still read them
// (to look into a leaf). Storage checks the guard wherever a write can
// come from (storage.Guard): a statement, a trigger, a procedure.
type leafGuard struct {
	n      *Node
	connID uint32
}

var _ storage.Guard = leafGuard{}

func (g leafGuard) Active() bool {
	n := g.n
	return n.clusterSecret() != nil && n.aggregator() == nil && !failpoint.Enabled("client-internal-access") && !n.isLinkID(g.connID)
}

func (g leafGuard) Check(db string) error {
	owner, part, ok := g.n.clusterDatabase(db)
	switch {
	case !ok:
		return nil
	case part >= 0:
		return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
			"The database '%s' is partition %d of the distributed database '%s': clients change it through an aggregator", db, part, owner)
	case owner == "":
		return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
			"The database '%s' holds rows the cluster ships for joins: clients do not change it", db)
	}
	return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
		"The database '%s' is this leaf's copy of a distributed database: clients change it through an aggregator", db)
}

// clusterDatabase reports whether a database of this node belongs to the
// cluster: a copy of a distributed database (ordinal -1), one of its
// partitions, or the scratch database (owner ""). Copies are replicas of
// the master aggregator's database, and partitions are named after them.
func (n *Node) clusterDatabase(name string) (owner string, ordinal int, ok bool) {
	if name == "" {
		return "", 0, false
	}
	if strings.EqualFold(name, aggregator.ScratchDB) {
		return "", -1, true
	}
	if db, ord, isPart := meta.PartitionOf(name); isPart && n.store.HasDatabase(db) && n.store.IsReplica(db) {
		return db, ord, true
	}
	if n.store.HasDatabase(name) && n.store.IsReplica(name) {
		return name, -1, true
	}
	return "", 0, false
}
