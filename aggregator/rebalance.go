package aggregator

import (
	"context"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sqlcmd"
)

// REBALANCE PARTITIONS and RESTORE REDUNDANCY (seed 003): the plan is
// meta.PlanRebalance / meta.PlanRestoreRedundancy of the current
// metadata; EXPLAIN shows it, the statement runs it phase by phase
// (runSteps) and SHOW REBALANCE STATUS follows it.

var explainRebalanceFields = []*querypb.Field{
	field("Action", querypb.Type_VARCHAR), field("Ordinal", querypb.Type_INT64), field("Target_Host", querypb.Type_VARCHAR),
	field("Target_Port", querypb.Type_INT64), field("Phase", querypb.Type_INT64), field("Estimated_Time_Remaining_Ms", querypb.Type_INT64),
}

func (a *Aggregator) rebalanceCommand(ctx context.Context, cmd sqlcmd.Rebalance) (*sqltypes.Result, error) {
	d := a.State().Database(cmd.Database)
	if d == nil {
		return nil, mysql.NewSQLError(1049, "42000", "Unknown database '%s'", cmd.Database)
	}
	if cmd.Force {
		return nil, mysql.NewSQLError(1235, "42000",
			"REBALANCE PARTITIONS ... FORCE (replacing lost partitions with empty ones) is not supported yet; bring the partitions' leaves back and run ATTACH LEAF")
	}
	if cmd.Explain {
		return a.explainRebalance(d.Name, cmd.RestoreOnly), nil
	}
	a.ha.mu.Lock()
	defer a.ha.mu.Unlock()
	steps := a.planRebalance(d.Name, cmd.RestoreOnly)
	if len(steps) == 0 {
		return &sqltypes.Result{}, nil
	}
	if err := a.runSteps(ctx, d.Name, steps); err != nil {
		what := "REBALANCE PARTITIONS"
		if cmd.RestoreOnly {
			what = "RESTORE REDUNDANCY"
		}
		return nil, mysql.NewSQLError(1105, "HY000",
			"%s ON %s stopped: %v. Every partition still has its master; SHOW REBALANCE STATUS ON %s shows what ran. Fix the cause and run it again",
			what, d.Name, err, d.Name)
	}
	a.log.Info("rebalance finished", "database", d.Name, "steps", len(steps))
	return &sqltypes.Result{RowsAffected: 1}, nil
}

func (a *Aggregator) planRebalance(db string, restoreOnly bool) []meta.Step {
	st := a.State()
	d := st.Database(db)
	if d == nil {
		return nil
	}
	if restoreOnly {
		return meta.PlanRestoreRedundancy(st, d)
	}
	return meta.PlanRebalance(st, d)
}

// Estimates for EXPLAIN: a copy replays the master's log (about two
// records a millisecond on loopback, measured in the HA test under load);
// a hand-over takes 30-120 ms; a drop a few.
const (
	copyBaseMs       = 100
	copyRecordsPerMs = 2
	promoteMs        = 100
	dropMs           = 10
)

func (a *Aggregator) explainRebalance(db string, restoreOnly bool) *sqltypes.Result {
	st := a.State()
	d := st.Database(db)
	steps := a.planRebalance(db, restoreOnly)
	// the log length of each partition, from its master
	lsns := map[string]uint64{}
	asked := map[string]bool{}
	for _, s := range steps {
		if s.Action != meta.ActionCopy || s.Ordinal >= len(d.Partitions) {
			continue
		}
		m := d.Partitions[s.Ordinal].Master
		if m == "" || asked[m] {
			continue
		}
		asked[m] = true
		if _, pos, err := a.leafCopies(m); err == nil {
			for name, lsn := range pos {
				lsns[name] = lsn
			}
		}
	}
	res := &sqltypes.Result{Fields: explainRebalanceFields}
	for _, s := range steps {
		est := int64(dropMs)
		switch s.Action {
		case meta.ActionCopy:
			est = copyBaseMs + int64(lsns[meta.PartitionName(db, s.Ordinal)])/copyRecordsPerMs
		case meta.ActionPromote:
			est = promoteMs
		}
		h, p := splitAddr(s.Target)
		res.Rows = append(res.Rows, []sqltypes.Value{str(s.Action), num(int64(s.Ordinal)), str(h), num(int64(p)), num(int64(s.Phase)), num(est)})
	}
	return res
}
