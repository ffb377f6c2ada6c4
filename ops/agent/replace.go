package agent

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/canopydb/canopy/ops/jobs"
)

// node-replace: a leaf moves to another host, or a dead or broken leaf is
// rebuilt there. The old leaf leaves the cluster first (REMOVE LEAF moves
// a live leaf's partitions to the others; a dead one's have failed over
// to its pair already), its process and data are removed, then a new leaf
// joins in its availability group (so it pairs with the old one's pair:
// leaves pair as they are added), and every database is rebalanced: the
// new leaf takes its share of masters and the replicas its pair's
// partitions lack, copied from their masters by the cluster (COPY
// PARTITION: a snapshot of the partition, then its log).

const kindReplace = "node-replace"

// ReplaceRequest asks for a leaf's replacement.
type ReplaceRequest struct {
	Target   string `json:"target"`
	Port     int    `json:"port,omitempty"` // default: the old leaf's
	PlanOnly bool   `json:"plan_only,omitempty"`
	// Seed: the new leaf starts from a snapshot of the old leaf's pair
	// (seed 004's seeding), so that its copies catch up from the
	// snapshot's positions instead of being copied whole
	Seed bool `json:"seed,omitempty"`
}

// ReplaceReply is the plan, and the job that ran it.
type ReplaceReply struct {
	Plan []string  `json:"plan"`
	Job  *jobs.Job `json:"job,omitempty"`
}

func (a *Agent) apiNodeReplace(r *http.Request) (any, error) {
	var req ReplaceRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	old, err := a.nodeSpec(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if old.Role != NodeLeaf {
		return nil, badRequest("node-replace: node %s is a %s; only leaves are replaced so (deploy another aggregator instead)", old.ID, old.Role)
	}
	if req.Target == "" {
		return nil, badRequest("node-replace: --target HOST is required")
	}
	if req.Port == 0 {
		req.Port = old.Port
	}
	if req.Target == old.Host && req.Port == old.Port {
		return nil, badRequest("node-replace: the target is the leaf itself")
	}
	a.mu.Lock()
	_, hasAgent := a.st.agent(req.Target)
	for _, n := range a.st.Nodes {
		if n.Host == req.Target && n.Port == req.Port {
			a.mu.Unlock()
			return nil, conflict("node %s already uses %s:%d", n.ID, req.Target, req.Port)
		}
	}
	a.mu.Unlock()
	if !hasAgent {
		return nil, badRequest("no agent on host %s: run `canopy ops agent-follow` there first", req.Target)
	}
	ma, err := a.masterRoot()
	if err != nil {
		return nil, err
	}
	defer ma.Close()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var redundancy int
	if err := ma.QueryRowContext(ctx, "SELECT @@GLOBAL.redundancy_level").Scan(&redundancy); err != nil {
		return nil, fmt.Errorf("the master aggregator: %w", err)
	}
	var state string
	if err := ma.QueryRowContext(ctx, "SELECT STATE FROM information_schema.LEAVES WHERE HOST = ? AND PORT = ?", old.Host, old.Port).Scan(&state); err != nil {
		if err == sql.ErrNoRows {
			return nil, conflict("leaf %s is not in the cluster", old.Addr())
		}
		return nil, err
	}
	var masterless int
	if err := ma.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT DATABASE_NAME, ORDINAL FROM information_schema.DISTRIBUTED_PARTITIONS GROUP BY 1, 2 HAVING SUM(ROLE = 'Master') = 0) x").Scan(&masterless); err != nil {
		return nil, err
	}
	if state != "online" && redundancy < 2 {
		return nil, conflict("leaf %s is %s and redundancy is 1: its partitions have no other copy. Bring it back (node-start %s) and replace it then; replacing it now would lose their rows", old.Addr(), state, old.ID)
	}
	if masterless > 0 {
		return nil, conflict("%d partitions have no master now: wait for the failover to finish (SHOW PARTITIONS), then replace the leaf", masterless)
	}
	var pair NodeSpec
	if req.Seed {
		var ph string
		var pp int
		if err := ma.QueryRowContext(ctx, "SELECT COALESCE(PAIR_HOST, ''), COALESCE(PAIR_PORT, 0) FROM information_schema.LEAVES WHERE HOST = ? AND PORT = ?", old.Host, old.Port).Scan(&ph, &pp); err != nil {
			return nil, err
		}
		a.mu.Lock()
		for _, n := range a.st.Nodes {
			if n.Host == ph && n.Port == pp {
				pair = n
			}
		}
		a.mu.Unlock()
		if pair.ID == "" {
			return nil, conflict("--seed: leaf %s has no pair this deployment runs (the pair holds its partitions' copies): replace it without --seed", old.Addr())
		}
	}
	spec := NodeSpec{ID: newNodeID(), Host: req.Target, Port: req.Port, Role: NodeLeaf, Group: old.Group, Wanted: true, Created: time.Now()}
	deployStep := fmt.Sprintf("deploy leaf %s on %s in availability group %d", spec.ID, spec.Addr(), spec.Group)
	if req.Seed {
		deployStep = fmt.Sprintf("seed %s from a snapshot of the pair %s (node %s), then ADD LEAF it into availability group %d", spec.Addr(), pair.Addr(), pair.ID, spec.Group)
	}
	plan := []string{
		fmt.Sprintf("REMOVE LEAF '%s':%d (the leaf is %s)", old.Host, old.Port, state),
		fmt.Sprintf("stop node %s on %s and remove its data", old.ID, old.Host),
		deployStep,
		"REBALANCE PARTITIONS on every database",
		fmt.Sprintf("check: SHOW LEAVES lists %s, not %s; every partition has a master and %d copies", spec.Addr(), old.Addr(), redundancy),
	}
	if req.PlanOnly {
		return ReplaceReply{Plan: plan}, nil
	}
	var steps []jobs.Step
	for _, p := range plan {
		steps = append(steps, jobs.Step{Text: p, State: jobs.Queued})
	}
	args := map[string]string{"node": old.ID, "from": old.Addr(), "to": spec.Addr(), "new_node": spec.ID}
	j, err := a.stepJob(kindReplace, args, steps, func(ctx context.Context, j *jobs.Job, logf func(string, ...any)) error {
		return a.runReplace(ctx, j, old, spec, pair, redundancy, logf)
	})
	if err != nil {
		return nil, fmt.Errorf("%w (job %d: job-logs %d)", err, j.ID, j.ID)
	}
	return ReplaceReply{Plan: plan, Job: j}, nil
}

// runReplace runs the steps; pair is the seed's source ("": no seed).
func (a *Agent) runReplace(ctx context.Context, j *jobs.Job, old, spec, pair NodeSpec, redundancy int, logf func(string, ...any)) error {
	ma, err := a.masterRoot()
	if err != nil {
		return err
	}
	defer ma.Close()
	steps := []func() error{
		func() error {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
			defer cancel()
			_, err := ma.ExecContext(cctx, fmt.Sprintf("REMOVE LEAF '%s':%d", old.Host, old.Port))
			return err
		},
		func() error {
			err := a.onHost(ctx, old.Host, "POST", "/api/local/nodes/"+old.ID+"/delete", map[string]bool{"remove_data": true}, nil)
			if err != nil {
				logf("the agent of %s did not remove node %s (%v): its record is dropped; remove %s there by hand", old.Host, old.ID, err, "nodes/"+old.ID)
			}
			a.forgetNode(old.ID)
			return nil
		},
		func() error {
			if pair.ID == "" {
				return a.deploy(ctx, spec, logf)
			}
			return a.seedLeaf(ctx, ma, pair, spec, logf)
		},
		func() error {
			rows, err := queryMaps(ctx, ma, "SELECT DISTINCT DATABASE_NAME FROM information_schema.DISTRIBUTED_PARTITIONS")
			if err != nil {
				return err
			}
			for _, r := range rows {
				db := r["DATABASE_NAME"]
				done := make(chan struct{})
				go a.logRebalance(ma, db, logf, done)
				_, err := ma.ExecContext(ctx, "REBALANCE PARTITIONS ON "+quoteIdent(db))
				close(done)
				if err != nil {
					return fmt.Errorf("REBALANCE PARTITIONS ON %s: %w", db, err)
				}
				logf("REBALANCE PARTITIONS ON %s: done", db)
			}
			return nil
		},
		func() error {
			var newThere, oldThere int
			if err := ma.QueryRowContext(ctx, "SELECT SUM(HOST = ? AND PORT = ?), SUM(HOST = ? AND PORT = ?) FROM information_schema.LEAVES",
				spec.Host, spec.Port, old.Host, old.Port).Scan(&newThere, &oldThere); err != nil {
				return err
			}
			if newThere != 1 || oldThere != 0 {
				return fmt.Errorf("SHOW LEAVES: the new leaf %d times, the old one %d times", newThere, oldThere)
			}
			var short int
			if err := ma.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT DATABASE_NAME, ORDINAL FROM information_schema.DISTRIBUTED_PARTITIONS GROUP BY 1, 2 HAVING SUM(ROLE = 'Master') <> 1 OR COUNT(*) < ?) x", redundancy).Scan(&short); err != nil {
				return err
			}
			if short > 0 {
				return fmt.Errorf("%d partitions lack a master or a copy", short)
			}
			logf("SHOW LEAVES lists %s and not %s; every partition has a master and %d copies", spec.Addr(), old.Addr(), redundancy)
			return nil
		},
	}
	for i := j.NextStep(); i < len(j.Steps); i = j.NextStep() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before step %d/%d: %w", i+1, len(j.Steps), err)
		}
		a.mu.Lock()
		j.Steps[i].State = jobs.Running
		a.mu.Unlock()
		logf("step %d/%d: %s", i+1, len(j.Steps), j.Steps[i].Text)
		err := steps[i]()
		a.mu.Lock()
		j.StepEnded(time.Now(), i, err)
		a.saveLocked()
		a.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// masterRoot opens the master aggregator as root.
func (a *Agent) masterRoot() (*sql.DB, error) {
	db, _, err := a.masterDB()
	return db, err
}

// seedLeaf seeds the new leaf from a snapshot of pair and adds it to the
// cluster: its partitions arrive as replicas at the snapshot's positions
// (node.adoptSeed), and the rebalance after it catches them up.
func (a *Agent) seedLeaf(ctx context.Context, ma *sql.DB, pair, spec NodeSpec, logf func(string, ...any)) error {
	seed := a.startSeed(pair, SeedRequest{Source: pair.ID, Target: spec.Host, Port: spec.Port, StallMinutes: 5, LeafGroup: spec.Group})
	logf("seed job %d: %s to %s:%d", seed.ID, pair.Addr(), spec.Host, spec.Port)
	for {
		a.mu.Lock()
		j, _ := a.st.Jobs.Get(seed.ID)
		state, jerr := j.State, j.Error
		a.mu.Unlock()
		if state.Done() {
			if state != jobs.Finished {
				return fmt.Errorf("seed job %d %s: %s (job-logs %d)", seed.ID, state, jerr, seed.ID)
			}
			break
		}
		select {
		case <-ctx.Done():
			a.mu.Lock()
			if cancel, ok := a.cancels[seed.ID]; ok {
				cancel() // the seed cleans up after itself
			}
			a.mu.Unlock()
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	var node NodeSpec
	a.mu.Lock()
	for _, n := range a.st.Nodes {
		if n.Host == spec.Host && n.Port == spec.Port {
			node = n
		}
	}
	pw := a.st.RootPassword
	a.mu.Unlock()
	if node.ID == "" {
		return fmt.Errorf("the seeded node on %s is not in the deployment", spec.Addr())
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	q := fmt.Sprintf("ADD LEAF root:'%s'@'%s':%d INTO GROUP %d", pw, node.Host, node.Port, spec.Group)
	if _, err := ma.ExecContext(cctx, q); err != nil {
		return fmt.Errorf("join the seeded leaf %s: %w", node.Addr(), err)
	}
	logf("joined the cluster: %s (node %s)", strings.Replace(q, pw, "…", 1), node.ID)
	return nil
}
