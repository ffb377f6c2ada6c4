package manager

import (
	"context"
	"slices"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sqlcmd"
)

// partitionCommand runs a low-level partition command (COPY, PROMOTE,
// ATTACH, DETACH, DROP PARTITION) as a one- or two-step plan, recorded
// for SHOW REBALANCE STATUS like the plans of the high-level commands.
// Each checks first that it keeps every partition with its master and
// never drops the last copy, and says what to do instead.
func (a *Manager) partitionCommand(ctx context.Context, cmd sqlcmd.PartitionCommand) error {
	a.ha.mu.Lock()
	defer a.ha.mu.Unlock()
	st := a.State()
	d := st.Database(cmd.Database)
	if d == nil {
		return mysql.NewSQLError(1049, "42000", "Unknown database '%s'", cmd.Database)
	}
	if cmd.Ordinal >= len(d.Partitions) {
		return mysql.NewSQLError(1105, "HY000", "Database %s has no partition %d (it has %d)", d.Name, cmd.Ordinal, len(d.Partitions))
	}
	leaf := meta.Addr(cmd.Host, defaultPort(cmd.Port))
	l, ok := st.Leaf(leaf)
	if !ok {
		return mysql.NewSQLError(1105, "HY000", "Leaf %s is not part of the cluster", meta.QuotedAddr(leaf))
	}
	if l.State != meta.LeafOnline || a.beats.Down(leaf) {
		return mysql.NewSQLError(1105, "HY000", "Leaf %s is %s; partition commands need it online", meta.QuotedAddr(leaf), l.State)
	}
	p := d.Partitions[cmd.Ordinal]
	part := meta.PartitionName(d.Name, cmd.Ordinal)
	isReplica := slices.Contains(p.Replicas, leaf)
	step := meta.Step{DB: d.Name, Ordinal: cmd.Ordinal, Target: leaf, Phase: 1}
	var steps []meta.Step
	switch cmd.Action {
	case "COPY":
		if p.Master == "" {
			return mysql.NewSQLError(1777, "HY000", "Partition %s:%d has no master instance.", d.Name, cmd.Ordinal)
		}
		if p.Master == leaf || isReplica {
			return mysql.NewSQLError(1105, "HY000", "Leaf %s already holds partition %s", meta.QuotedAddr(leaf), part)
		}
		step.Action = meta.ActionCopy
		steps = append(steps, step)
	case "PROMOTE":
		if p.Master == leaf {
			return nil
		}
		if !isReplica {
			return mysql.NewSQLError(1105, "HY000", "Leaf %s holds no replica of partition %s to promote; COPY PARTITION it there first", meta.QuotedAddr(leaf), part)
		}
		if p.Master == "" {
			// the failed master's replica takes over, as failover would
			steps = append(steps, meta.Step{Action: meta.ActionAttach, DB: d.Name, Ordinal: cmd.Ordinal, Target: leaf, Phase: 1, AsMaster: true})
			break
		}
		step.Action = meta.ActionPromote
		steps = append(steps, step)
		if cmd.WithDrop {
			steps = append(steps, meta.Step{Action: meta.ActionDrop, DB: d.Name, Ordinal: cmd.Ordinal, Target: p.Master, Phase: 2})
		}
	case "ATTACH":
		if p.Master == leaf || isReplica {
			return nil
		}
		copies, _, err := a.leafCopies(leaf)
		if err != nil {
			return err
		}
		c, ok := copies[part]
		switch {
		case !ok:
			return mysql.NewSQLError(1105, "HY000", "Leaf %s holds no copy of partition %s; COPY PARTITION makes one", meta.QuotedAddr(leaf), part)
		case p.Master == "":
			step.Action, step.AsMaster = meta.ActionAttach, true
		case !c.Replica:
			return mysql.NewSQLError(1105, "HY000",
				"The copy of %s on %s took writes of its own while partition %s:%d has its master on %s: it cannot follow that master. "+
					"DROP PARTITION it, or, to keep it as the partition instead, DETACH PARTITION %s:%d on the master first",
				part, meta.QuotedAddr(leaf), d.Name, cmd.Ordinal, meta.QuotedAddr(p.Master), d.Name, cmd.Ordinal)
		default:
			step.Action = meta.ActionAttach
		}
		steps = append(steps, step)
	case "DETACH":
		if p.Master != leaf && !isReplica {
			return nil
		}
		change := func(q *meta.Partition) error {
			q.Replicas = slices.DeleteFunc(q.Replicas, func(r string) bool { return r == leaf })
			if q.Master == leaf {
				q.Master = ""
			}
			return nil
		}
		if p.Master == leaf && len(p.Replicas) > 0 {
			return mysql.NewSQLError(1105, "HY000",
				"Leaf %s holds the master of %s; PROMOTE PARTITION %s:%d ON a replica first, then detach the old master",
				meta.QuotedAddr(leaf), part, d.Name, cmd.Ordinal)
		}
		// the copy stays on the leaf as an orphan (SHOW CLUSTER STATUS);
		// a detached master leaves the partition without one until it is
		// attached again
		return a.updatePartition(d.Name, cmd.Ordinal, change)
	case "DROP":
		if p.Master == leaf {
			return mysql.NewSQLError(1105, "HY000",
				"Leaf %s holds the master of %s; PROMOTE PARTITION %s:%d ON a replica first, or DETACH PARTITION it to keep its data",
				meta.QuotedAddr(leaf), part, d.Name, cmd.Ordinal)
		}
		if !isReplica && p.Master == "" {
			copies, _, err := a.leafCopies(leaf)
			if err == nil {
				if _, ok := copies[part]; ok {
					return mysql.NewSQLError(1105, "HY000",
						"Partition %s:%d has no master, and the copy on %s may be its last: ATTACH PARTITION it instead",
						d.Name, cmd.Ordinal, meta.QuotedAddr(leaf))
				}
			}
		}
		step.Action = meta.ActionDrop
		steps = append(steps, step)
	default:
		return mysql.NewSQLError(1105, "HY000", "Unknown partition command %s", cmd.Action)
	}
	if err := a.runSteps(ctx, meta.JobCommand, "", d.Name, steps); err != nil {
		return mysql.NewSQLError(1105, "HY000", "%s PARTITION %s:%d failed: %v", cmd.Action, d.Name, cmd.Ordinal, err)
	}
	return nil
}
