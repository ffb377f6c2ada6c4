package sqlcmd

// Access is who may run a command.
type Access int

const (
	// AccessChecked: the command checks the privileges it needs itself
	// (EXPLAIN of a query, SET PASSWORD, ALTER USER).
	AccessChecked Access = iota
	// AccessProcess: reads cluster state; PROCESS or SUPER.
	AccessProcess
	// AccessSuper: changes the cluster; SUPER.
	AccessSuper
	// AccessLink: node-to-node; only a cluster link (an aggregator that
	// proved it knows the cluster secret), or SUPER on a node in no
	// cluster (which is how ADD LEAF reaches a new node).
	AccessLink
	// AccessLinkRead: node diagnostics; a cluster link, or PROCESS or
	// SUPER.
	AccessLinkRead
)

// AccessOf says who may run a command.
func AccessOf(c Command) Access {
	switch c.(type) {
	case Explain, SetPassword, AlterUserRequire, Challenge, Authenticate:
		return AccessChecked
	case ShowLeaves, ShowAggregators, ShowPartitions, ShowRebalanceStatus, ShowClusterStatus, ShowDDLJobs,
		ShowDatabasesExtended, ShowReplicationStatus:
		return AccessProcess
	case ClearOrphans:
		if c.(ClearOrphans).Explain {
			return AccessProcess
		}
		return AccessSuper
	case Rebalance:
		if c.(Rebalance).Explain {
			return AccessProcess
		}
		return AccessSuper
	case Backup, Restore:
		return AccessSuper
	case ShowBackupStatus:
		return AccessProcess
	case BootstrapAggregator, AddLeaf, RemoveLeaf, AddAggregator, RemoveAggregator, SetAsMaster,
		PromoteAggregator, SetClusterVariable, PartitionCommand, AttachLeaf, DetachLeaf:
		return AccessSuper
	case CreateDatabase:
		return AccessChecked // CREATE on the database, as MySQL
	case NodeStatus, RaftMembers, ShowPrepared, PartitionStatus:
		return AccessLinkRead
	case MasterAggregator:
		if c.(MasterAggregator).Addr == "" {
			return AccessLinkRead
		}
		return AccessLink
	}
	// JoinCluster, LeaveCluster, DropCopy, PrepareTxn, CommitPrepared,
	// RollbackPrepared, Replicate, PartitionRole, Impersonate, and any
	// command added later: links only until someone decides otherwise
	return AccessLink
}
