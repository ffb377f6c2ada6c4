package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/canopydb/canopy/ops/deploy"
	"github.com/canopydb/canopy/ops/jobs"
)

// HARequest asks for enable-high-availability (PlanOnly: its plan).
type HARequest struct {
	Hosts    []string `json:"hosts"`
	PlanOnly bool     `json:"plan_only"`
}

// HAReply is the plan, and the job when it ran.
type HAReply struct {
	Plan []string  `json:"plan"`
	Job  *jobs.Job `json:"job,omitempty"`
}

const kindEnableHA = "enable-high-availability"

func (a *Agent) apiEnableHA(r *http.Request) (any, error) {
	var req HARequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	in, err := a.haInput(r.Context(), req.Hosts)
	if err != nil {
		return nil, err
	}
	plan, err := deploy.PlanHA(in)
	if err != nil {
		return nil, conflict("%v", err)
	}
	reply := HAReply{}
	var steps []jobs.Step
	for _, s := range plan {
		reply.Plan = append(reply.Plan, s.String())
		data, _ := json.Marshal(s)
		steps = append(steps, jobs.Step{Text: s.String(), Data: data, State: jobs.Queued})
	}
	if req.PlanOnly {
		return reply, nil
	}
	j, err := a.stepJob(kindEnableHA, map[string]string{"hosts": strings.Join(req.Hosts, ",")}, steps, a.runHASteps)
	reply.Job = j
	if err != nil {
		return nil, fmt.Errorf("%w (job %d: job-logs %d; fix the cause and job-retry %d)", err, j.ID, j.ID, j.ID)
	}
	return reply, nil
}

// haInput gathers the deployment's state for the planner: the leaves, the
// redundancy and the databases from the master aggregator, the disks from
// the metrics.
func (a *Agent) haInput(ctx context.Context, hosts []string) (deploy.HAInput, error) {
	a.mu.Lock()
	in := deploy.HAInput{NewHosts: hosts, Agents: map[string]bool{}, FreeDisk: map[string]float64{}, Used: map[string]bool{}}
	for _, ag := range a.st.Agents {
		in.Agents[ag.Host] = true
	}
	var leafIDs []string
	for _, n := range a.st.Nodes {
		in.Used[n.Addr()] = true
		if n.Role == NodeLeaf {
			in.Leaves = append(in.Leaves, deploy.Leaf{ID: n.ID, Host: n.Host, Port: n.Port, Group: n.Group})
			leafIDs = append(leafIDs, n.ID)
		}
	}
	master, ok := a.st.master()
	pw := a.st.RootPassword
	a.mu.Unlock()
	if !ok {
		return in, conflict("no master aggregator: deploy one first")
	}
	since := time.Now().Add(-5 * time.Minute).Unix()
	last := func(source, metric string) (float64, bool) {
		pts, err := a.metrics.Query(source, metric, since, time.Now().Unix(), false)
		if err != nil || len(pts) == 0 {
			return 0, false
		}
		return pts[len(pts)-1].V, true
	}
	for _, h := range hosts {
		if v, ok := last("host/"+h, "disk_free_bytes"); ok {
			in.FreeDisk[h] = v
		}
	}
	for _, id := range leafIDs {
		if v, ok := last("node/"+id, "disk_bytes"); ok {
			in.NeedDisk = max(in.NeedDisk, v)
		}
	}
	db, err := rootDB(master.Addr(), pw)
	if err != nil {
		return in, err
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.QueryRowContext(cctx, "SELECT @@GLOBAL.redundancy_level").Scan(&in.Redundancy); err != nil {
		return in, fmt.Errorf("ask the master aggregator %s: %w", master.Addr(), err)
	}
	rows, err := db.QueryContext(cctx, "SELECT DISTINCT DATABASE_NAME FROM information_schema.DISTRIBUTED_PARTITIONS")
	if err != nil {
		return in, fmt.Errorf("ask the master aggregator %s: %w", master.Addr(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return in, err
		}
		in.Databases = append(in.Databases, name)
	}
	return in, rows.Err()
}

// runHASteps runs an enable-HA job from its first unfinished step.
func (a *Agent) runHASteps(ctx context.Context, j *jobs.Job, logf func(string, ...any)) error {
	a.mu.Lock()
	master, ok := a.st.master()
	pw := a.st.RootPassword
	a.mu.Unlock()
	if !ok {
		return conflict("no master aggregator")
	}
	ma, err := rootDB(master.Addr(), pw)
	if err != nil {
		return err
	}
	defer ma.Close()
	for i := j.NextStep(); i < len(j.Steps); i = j.NextStep() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before step %d/%d: %w", i+1, len(j.Steps), err)
		}
		var s deploy.Step
		a.mu.Lock()
		data := j.Steps[i].Data
		j.Steps[i].State = jobs.Running
		a.mu.Unlock()
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		logf("step %d/%d: %s", i+1, len(j.Steps), s)
		err := a.runHAStep(ctx, ma, s, logf)
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

func (a *Agent) runHAStep(ctx context.Context, ma *sql.DB, s deploy.Step, logf func(string, ...any)) error {
	switch s.Action {
	case deploy.SetRedundancy:
		_, err := ma.ExecContext(ctx, "SET GLOBAL redundancy_level = 2")
		return err
	case deploy.DeployLeaf:
		a.mu.Lock()
		for _, n := range a.st.Nodes {
			if n.Host == s.Host && n.Port == s.Port && n.Role == NodeLeaf && n.Group == s.Group {
				a.mu.Unlock()
				logf("leaf %s is there already (node %s)", n.Addr(), n.ID)
				return nil
			}
		}
		a.mu.Unlock()
		spec := NodeSpec{ID: newNodeID(), Host: s.Host, Port: s.Port, Role: NodeLeaf, Group: s.Group, Wanted: true, Created: time.Now()}
		return a.deploy(ctx, spec, logf)
	case deploy.Rebalance:
		done := make(chan struct{})
		go a.logRebalance(ma, s.Database, logf, done)
		_, err := ma.ExecContext(ctx, "REBALANCE PARTITIONS ON "+quoteIdent(s.Database))
		close(done)
		return err
	}
	return fmt.Errorf("unknown step %q", s.Action)
}

// logRebalance logs the progress of a rebalance (SHOW REBALANCE STATUS,
// read by column name) every 2 s until done.
func (a *Agent) logRebalance(ma *sql.DB, db string, logf func(string, ...any), done chan struct{}) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		counts, err := rebalanceStatus(ma, db)
		if err != nil || counts == "" || counts == last {
			continue
		}
		last = counts
		logf("REBALANCE PARTITIONS ON %s: %s", db, counts)
	}
}

func rebalanceStatus(ma *sql.DB, db string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rows, err := queryMaps(ctx, ma, "SHOW REBALANCE STATUS ON "+quoteIdent(db))
	if err != nil || len(rows) == 0 {
		return "", err
	}
	n := map[string]int{}
	for _, r := range rows {
		n[r["Status"]]++
	}
	var parts []string
	for _, k := range sortedKeys(n) {
		parts = append(parts, strconv.Itoa(n[k])+" "+k)
	}
	return fmt.Sprintf("%d steps: %s", len(rows), strings.Join(parts, ", ")), nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// apiJobRetry runs a failed multi-step job again from the step that
// failed.
func (a *Agent) apiJobRetry(r *http.Request) (any, error) {
	id, err := jobID(r)
	if err != nil {
		return nil, err
	}
	a.ops.Lock()
	defer a.ops.Unlock()
	a.mu.Lock()
	j, ok := a.st.Jobs.Get(id)
	if !ok {
		a.mu.Unlock()
		return nil, notFound("no job %d", id)
	}
	if j.Kind != kindEnableHA {
		a.mu.Unlock()
		return nil, conflict("job %d (%s) has no steps to retry: run the operation again", id, j.Kind)
	}
	if err := j.Retry(time.Now()); err != nil {
		a.mu.Unlock()
		return nil, conflict("%v", err)
	}
	a.saveLocked()
	a.mu.Unlock()
	return a.runJob(j, a.runHASteps)
}
