package agent

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/ops/jobs"
)

// DeployRequest deploys a node.
type DeployRequest struct {
	Role  string `json:"role"`
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Group int    `json:"group,omitempty"`
}

// JobReply is the answer of an operation: its job.
type JobReply struct {
	Job  *jobs.Job `json:"job"`
	Node *NodeSpec `json:"node,omitempty"`
}

// job runs an operation on the primary as a journaled job.
func (a *Agent) job(kind string, args map[string]string, run func(ctx context.Context, log func(string, ...any)) error) (*jobs.Job, error) {
	return a.stepJob(kind, args, nil, func(ctx context.Context, _ *jobs.Job, logf func(string, ...any)) error { return run(ctx, logf) })
}

// jobFunc is a job's work; ctx ends with job-cancel.
type jobFunc func(ctx context.Context, j *jobs.Job, logf func(string, ...any)) error

// stepJob runs a new job with steps (nil: none).
func (a *Agent) stepJob(kind string, args map[string]string, steps []jobs.Step, run jobFunc) (*jobs.Job, error) {
	a.ops.Lock()
	defer a.ops.Unlock()
	a.mu.Lock()
	j := a.st.Jobs.Add(kind, args, time.Now())
	j.Steps = steps
	j.Start(time.Now())
	a.saveLocked()
	a.mu.Unlock()
	return a.runJob(j, run)
}

// runJob runs a started job to its end (the caller holds a.ops).
func (a *Agent) runJob(j *jobs.Job, run jobFunc) (*jobs.Job, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.mu.Lock()
	a.cancels[j.ID] = cancel
	a.mu.Unlock()
	logf := func(format string, args ...any) {
		a.mu.Lock()
		j.Logf(time.Now(), format, args...)
		a.mu.Unlock()
	}
	err := run(ctx, j, logf)
	a.mu.Lock()
	delete(a.cancels, j.ID)
	if err != nil && ctx.Err() != nil {
		j.Logf(time.Now(), "stopped: %v", err)
		j.Cancel(time.Now())
		err = fmt.Errorf("job %d cancelled: %w", j.ID, err)
	} else {
		j.End(time.Now(), err)
	}
	a.eventf("job %d %s %s: %s", j.ID, j.Kind, formatArgs(j.Args), j.State)
	a.saveLocked()
	cp := *j
	cp.Steps = append([]jobs.Step(nil), j.Steps...)
	a.mu.Unlock()
	return &cp, err
}

// apiJobCancel stops a running job: its work ends at the next point that
// checks (a multi-step job at the next step; job-retry goes on from there).
func (a *Agent) apiJobCancel(r *http.Request) (any, error) {
	id, err := jobID(r)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	j, ok := a.st.Jobs.Get(id)
	if !ok {
		return nil, notFound("no job %d", id)
	}
	cancel, running := a.cancels[id]
	if !running {
		return nil, conflict("job %d is %s: nothing to cancel", id, j.State)
	}
	cancel()
	j.Logf(time.Now(), "cancel requested")
	return map[string]bool{"cancelling": true}, nil
}

func formatArgs(args map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(args) {
		parts = append(parts, k+"="+args[k])
	}
	return strings.Join(parts, " ")
}

func newNodeID() string { return strings.ToUpper(randomHex(5)) }

func (a *Agent) apiDeploy(r *http.Request) (any, error) {
	var req DeployRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	switch req.Role {
	case NodeMaster, NodeAggregator, NodeLeaf:
	default:
		return nil, badRequest("node-deploy: --role must be master, aggregator or leaf, not %q", req.Role)
	}
	if req.Port <= 0 || req.Port > 65535 {
		return nil, badRequest("node-deploy: --port %d is not a port", req.Port)
	}
	if req.Role == NodeLeaf && req.Group == 0 {
		req.Group = 1
	}
	if req.Group != 0 && (req.Role != NodeLeaf || req.Group > 2 || req.Group < 1) {
		return nil, badRequest("node-deploy: --availability-group is 1 or 2, for a leaf")
	}
	a.mu.Lock()
	if req.Host == "" {
		req.Host = a.st.Host
	}
	a.mu.Unlock()
	spec := NodeSpec{ID: newNodeID(), Host: req.Host, Port: req.Port, Role: req.Role, Group: req.Group, Wanted: true, Created: time.Now()}
	args := map[string]string{"role": req.Role, "host": req.Host, "port": strconv.Itoa(req.Port), "node": spec.ID}
	j, err := a.job("node-deploy", args, func(ctx context.Context, logf func(string, ...any)) error {
		return a.deploy(ctx, spec, logf)
	})
	if err != nil {
		return nil, err
	}
	return JobReply{Job: j, Node: &spec}, nil
}

func (a *Agent) deploy(ctx context.Context, spec NodeSpec, logf func(string, ...any)) error {
	a.mu.Lock()
	if _, ok := a.st.agent(spec.Host); !ok {
		a.mu.Unlock()
		return badRequest("no agent on host %s: run `canopy ops agent-follow --host %s` there first", spec.Host, a.st.Host)
	}
	for _, n := range a.st.Nodes {
		if n.Host == spec.Host && n.Port == spec.Port {
			a.mu.Unlock()
			return conflict("node %s already uses %s", n.ID, n.Addr())
		}
	}
	master, hasMaster := a.st.master()
	pw := a.st.RootPassword
	a.mu.Unlock()
	switch {
	case spec.Role == NodeMaster && hasMaster:
		return conflict("the deployment has a master aggregator already (%s, node %s)", master.Addr(), master.ID)
	case spec.Role != NodeMaster && !hasMaster:
		return conflict("deploy the master aggregator first (node-deploy --role master)")
	}
	logf("starting %s node %s on %s", spec.Role, spec.ID, spec.Addr())
	if err := a.onHost(ctx, spec.Host, "POST", "/api/local/nodes", spec, nil); err != nil {
		return fmt.Errorf("start the node on %s: %w", spec.Host, err)
	}
	a.mu.Lock()
	a.st.Nodes = append(a.st.Nodes, spec)
	a.saveLocked()
	a.mu.Unlock()
	undo := func(cause error) error {
		logf("removing node %s again: %v", spec.ID, cause)
		if err := a.onHost(context.Background(), spec.Host, "POST", "/api/local/nodes/"+spec.ID+"/delete", map[string]bool{"remove_data": true}, nil); err != nil {
			logf("could not remove it: %v", err)
		}
		a.forgetNode(spec.ID)
		return cause
	}
	db, err := rootDB(spec.Addr(), pw)
	if err != nil {
		return undo(err)
	}
	defer db.Close()
	if err := waitSQL(ctx, db, 60*time.Second); err != nil {
		return undo(fmt.Errorf("node %s does not answer SQL (see %s): %w", spec.Addr(), NodeLog(a.cfg.Home, spec.ID), err))
	}
	logf("node %s answers SQL", spec.Addr())
	var q string
	switch spec.Role {
	case NodeLeaf:
		q = fmt.Sprintf("ADD LEAF root:'%s'@'%s':%d INTO GROUP %d", pw, spec.Host, spec.Port, spec.Group)
	case NodeAggregator:
		q = fmt.Sprintf("ADD AGGREGATOR root:'%s'@'%s':%d", pw, spec.Host, spec.Port)
	default:
		return nil
	}
	ma, err := rootDB(master.Addr(), pw)
	if err != nil {
		return undo(err)
	}
	defer ma.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := ma.ExecContext(cctx, q); err != nil {
		return undo(fmt.Errorf("join the cluster through the master aggregator %s: %w", master.Addr(), err))
	}
	logf("joined the cluster: %s", strings.Replace(q, pw, "…", 1))
	return nil
}

// jobID is the job id of a request's path.
func jobID(r *http.Request) (int, error) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		return 0, badRequest("job id %q", r.PathValue("id"))
	}
	return id, nil
}

// nodeSpec is the deployment's node id.
func (a *Agent) nodeSpec(id string) (NodeSpec, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.st.node(id)
	if !ok {
		return NodeSpec{}, notFound("no node %s (node-list shows the ids)", id)
	}
	return a.st.Nodes[i], nil
}

func (a *Agent) forgetNode(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i, ok := a.st.node(id); ok {
		a.st.Nodes = append(a.st.Nodes[:i], a.st.Nodes[i+1:]...)
		a.saveLocked()
	}
}

// rootDB opens a connection pool to a node as the deployment's root.
func rootDB(addr, password string) (*sql.DB, error) { return accountDB(addr, "root", password) }

// accountDB opens a connection pool to a node as a MySQL account.
func accountDB(addr, user, password string) (*sql.DB, error) {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr = user, password, "tcp", addr
	c.Timeout, c.ReadTimeout, c.WriteTimeout = 5*time.Second, 5*time.Minute, time.Minute
	c.TLSConfig = "preferred"
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	return db, nil
}

func waitSQL(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := db.PingContext(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// onHost calls the local API of the agent of host (this agent directly).
func (a *Agent) onHost(ctx context.Context, host, method, path string, in, out any) error {
	a.mu.Lock()
	self := host == a.st.Host
	var addr, token string
	if i, ok := a.st.agent(host); ok {
		addr = a.st.Agents[i].Addr()
		token = a.st.AgentTokens[addr]
	}
	if self {
		addr, token = net.JoinHostPort(a.st.Host, strconv.Itoa(a.st.Port)), a.st.Token
	}
	a.mu.Unlock()
	if addr == "" {
		return notFound("no agent on host %s", host)
	}
	return a.client(addr, token).Call(ctx, method, path, in, out)
}

func (a *Agent) apiNodes(r *http.Request) (any, error) {
	role := r.URL.Query().Get("role")
	a.mu.Lock()
	specs := append([]NodeSpec(nil), a.st.Nodes...)
	hosts := map[string]bool{}
	for _, n := range specs {
		hosts[n.Host] = true
	}
	a.mu.Unlock()
	live := map[string]NodeStatus{}
	for h := range hosts {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		var st []NodeStatus
		if err := a.onHost(ctx, h, "GET", "/api/local/nodes", nil, &st); err == nil {
			for _, s := range st {
				live[s.ID] = s
			}
		}
		cancel()
	}
	out := []NodeStatus{}
	for _, n := range specs {
		if role != "" && n.Role != role {
			continue
		}
		s, ok := live[n.ID]
		if !ok {
			s = NodeStatus{NodeSpec: n, State: "unknown", Note: "its agent does not answer"}
		}
		s.NodeSpec = n
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if ri, rj := roleOrder[out[i].Role], roleOrder[out[j].Role]; ri != rj {
			return ri < rj
		}
		return out[i].Addr() < out[j].Addr()
	})
	return out, nil
}

var roleOrder = map[string]int{NodeMaster: 0, NodeAggregator: 1, NodeLeaf: 2, NodeStandalone: 3}

func (a *Agent) apiNodeAction(r *http.Request) (any, error) {
	id, action := r.PathValue("id"), r.PathValue("action")
	var req struct {
		RemoveData bool `json:"remove_data"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	spec, err := a.nodeSpec(id)
	if err != nil {
		return nil, err
	}
	switch action {
	case "start", "stop", "restart":
	case "delete":
		return a.job("node-delete", map[string]string{"node": id}, func(ctx context.Context, logf func(string, ...any)) error {
			return a.deleteNode(ctx, spec, req.RemoveData, logf)
		})
	default:
		return nil, notFound("no node action %q", action)
	}
	return a.job("node-"+action, map[string]string{"node": id}, func(ctx context.Context, logf func(string, ...any)) error {
		a.mu.Lock()
		if i, ok := a.st.node(id); ok {
			a.st.Nodes[i].Wanted = action != "stop"
			a.saveLocked()
		}
		a.mu.Unlock()
		logf("%s node %s on %s", action, id, spec.Addr())
		return a.onHost(ctx, spec.Host, "POST", "/api/local/nodes/"+id+"/"+action, nil, nil)
	})
}

func (a *Agent) deleteNode(ctx context.Context, spec NodeSpec, removeData bool, logf func(string, ...any)) error {
	a.mu.Lock()
	master, _ := a.st.master()
	others := len(a.st.Nodes) - 1
	pw := a.st.RootPassword
	a.mu.Unlock()
	if spec.Role == NodeMaster && others > 0 {
		return conflict("node %s is the master aggregator: delete the other %d nodes first", spec.ID, others)
	}
	if spec.Role == NodeLeaf || spec.Role == NodeAggregator {
		ma, err := rootDB(master.Addr(), pw)
		if err != nil {
			return err
		}
		defer ma.Close()
		q := fmt.Sprintf("REMOVE LEAF '%s':%d", spec.Host, spec.Port)
		table := "LEAVES"
		if spec.Role == NodeAggregator {
			q = fmt.Sprintf("REMOVE AGGREGATOR '%s':%d", spec.Host, spec.Port)
			table = "AGGREGATORS"
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		var member int
		if err := ma.QueryRowContext(cctx, "SELECT COUNT(*) FROM information_schema."+table+" WHERE HOST = ? AND PORT = ?", spec.Host, spec.Port).Scan(&member); err != nil {
			return fmt.Errorf("ask the master aggregator %s whether node %s is in the cluster: %w", master.Addr(), spec.ID, err)
		}
		if member == 0 {
			logf("node %s is not in the cluster", spec.ID)
		} else if _, err := ma.ExecContext(cctx, q); err != nil {
			return fmt.Errorf("remove node %s from the cluster (%s): %w", spec.ID, q, err)
		} else {
			logf("%s: done", q)
		}
	}
	if err := a.onHost(ctx, spec.Host, "POST", "/api/local/nodes/"+spec.ID+"/delete", map[string]bool{"remove_data": removeData}, nil); err != nil {
		return fmt.Errorf("stop node %s on %s: %w", spec.ID, spec.Host, err)
	}
	if removeData {
		logf("node %s stopped, its data removed", spec.ID)
	} else {
		logf("node %s stopped; its data stays in %s on %s", spec.ID, "nodes/"+spec.ID, spec.Host)
	}
	a.forgetNode(spec.ID)
	return nil
}

func (a *Agent) apiManualControl(r *http.Request) (any, error) {
	var req struct {
		Enable bool `json:"enable"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return a.job("cluster-manual-control", map[string]string{"enable": strconv.FormatBool(req.Enable)}, func(ctx context.Context, logf func(string, ...any)) error {
		a.mu.Lock()
		a.st.ManualControl = req.Enable
		err := a.saveLocked()
		var followers []string
		for _, ag := range a.st.Agents {
			if ag.Host != a.st.Host {
				followers = append(followers, ag.Host)
			}
		}
		a.mu.Unlock()
		if err != nil {
			return err
		}
		for _, h := range followers {
			if err := a.onHost(ctx, h, "POST", "/api/local/manual-control", map[string]bool{"enable": req.Enable}, nil); err != nil {
				logf("agent of %s not told now (it learns it with its next heartbeat): %v", h, err)
			}
		}
		logf("manual control %s", map[bool]string{true: "on: no automatic restarts", false: "off"}[req.Enable])
		return nil
	})
}

func (a *Agent) apiJobs(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]jobs.Job, 0, len(a.st.Jobs.Jobs))
	for _, j := range a.st.Jobs.Jobs {
		c := *j
		c.Log = nil
		out = append(out, c)
	}
	return out, nil
}

func (a *Agent) apiJob(r *http.Request) (any, error) {
	id, err := jobID(r)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	j, ok := a.st.Jobs.Get(id)
	if !ok {
		return nil, notFound("no job %d", id)
	}
	return j, nil
}

func (a *Agent) apiEvents(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]event{}, a.events...), nil
}

// the local API: the nodes of this host

func (a *Agent) apiLocalNodes(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []NodeStatus{}
	for _, p := range a.procs {
		out = append(out, a.statusOf(p))
	}
	return out, nil
}

func (a *Agent) apiLocalAdd(r *http.Request) (any, error) {
	var spec NodeSpec
	if err := decode(r, &spec); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if spec.Host != a.st.Host {
		return nil, badRequest("node %s is for host %s; this agent runs the nodes of %s", spec.ID, spec.Host, a.st.Host)
	}
	if _, ok := a.procs[spec.ID]; ok {
		return nil, conflict("node %s exists here", spec.ID)
	}
	if _, err := os.Stat(a.nodeDir(spec.ID)); err == nil {
		return nil, conflict("%s exists: another node's home", a.nodeDir(spec.ID))
	}
	p := &proc{spec: spec}
	p.sup.Wanted = true
	if err := a.startProc(p); err != nil {
		os.RemoveAll(a.nodeDir(spec.ID))
		return nil, err
	}
	a.procs[spec.ID] = p
	if a.st.Role == RoleFollower {
		a.st.Nodes = append(a.st.Nodes, spec)
	}
	a.saveLocked()
	return a.statusOf(p), nil
}

func (a *Agent) apiLocalAction(r *http.Request) (any, error) {
	id, action := r.PathValue("id"), r.PathValue("action")
	var req struct {
		RemoveData bool `json:"remove_data"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	p, ok := a.procs[id]
	a.mu.Unlock()
	if !ok {
		return nil, notFound("%s: %v", id, errNoNode)
	}
	switch action {
	case "stop", "restart", "delete":
		a.stopProc(p, a.cfg.StopTimeout)
	case "start":
	default:
		return nil, notFound("no node action %q", action)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if action == "delete" {
		delete(a.procs, id)
		if i, ok := a.st.node(id); ok && a.st.Role == RoleFollower {
			a.st.Nodes = append(a.st.Nodes[:i], a.st.Nodes[i+1:]...)
		}
		if req.RemoveData {
			os.RemoveAll(a.nodeDir(id))
		}
		return map[string]bool{"ok": true}, a.saveLocked()
	}
	want := action != "stop"
	p.sup.Wanted = want
	p.spec.Wanted = want
	if i, ok := a.st.node(id); ok {
		a.st.Nodes[i].Wanted = want
	}
	if want && p.pid == 0 {
		// an operator's start is not automatic: it runs now, even under
		// manual control, and forgets the backoff
		p.sup.Failures = 0
		if err := a.startProc(p); err != nil {
			return nil, err
		}
	}
	return a.statusOf(p), a.saveLocked()
}

func (a *Agent) apiLocalManualControl(r *http.Request) (any, error) {
	var req struct {
		Enable bool `json:"enable"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.ManualControl = req.Enable
	return map[string]bool{"manual_control": req.Enable}, a.saveLocked()
}

// ConfigRequest changes a node's configuration key.
type ConfigRequest struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Restart bool   `json:"restart"`
}

// ConfigReply says what a config change did.
type ConfigReply struct {
	Job             *jobs.Job `json:"job"`
	Applied         bool      `json:"applied"`          // the node runs with it now
	RestartRequired bool      `json:"restart_required"` // it takes effect at the next start
	Restarted       bool      `json:"restarted"`
}

var configKey = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// sqlValue is a value for SET GLOBAL: a number as it is, else a string.
func sqlValue(v string) string {
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// apiNodeConfig: node-update-config. A key that is a flag of `canopy
// node` takes effect at the next start; any other key is a global
// variable, set on the node at once (and again after every start).
func (a *Agent) apiNodeConfig(r *http.Request) (any, error) {
	id := r.PathValue("id")
	var req ConfigRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if !configKey.MatchString(req.Key) {
		return nil, badRequest("node-update-config: --key %q is not a flag or variable name", req.Key)
	}
	spec, err := a.nodeSpec(id)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	pw := a.st.RootPassword
	a.mu.Unlock()
	var reply ConfigReply
	j, err := a.job("node-update-config", map[string]string{"node": id, "key": req.Key}, func(ctx context.Context, logf func(string, ...any)) error {
		flag := nodeFlags[req.Key]
		if !flag {
			db, err := rootDB(spec.Addr(), pw)
			if err != nil {
				return err
			}
			defer db.Close()
			q := fmt.Sprintf("SET GLOBAL %s = %s", req.Key, sqlValue(req.Value))
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = db.ExecContext(cctx, q)
			cancel()
			if err != nil {
				return fmt.Errorf("%s on node %s: %w (nothing changed)", q, id, err)
			}
			logf("%s: applied", q)
			reply.Applied = true
		} else {
			reply.RestartRequired = !req.Restart
			logf("--%s=%s: takes effect when the node starts next", req.Key, req.Value)
		}
		if spec.Config == nil {
			spec.Config = map[string]string{}
		}
		spec.Config[req.Key] = req.Value
		if err := a.onHost(ctx, spec.Host, "POST", "/api/local/nodes/"+id+"/config", spec.Config, nil); err != nil {
			return fmt.Errorf("tell the agent of %s: %w", spec.Host, err)
		}
		a.mu.Lock()
		if i, ok := a.st.node(id); ok {
			a.st.Nodes[i].Config = spec.Config
		}
		err := a.saveLocked()
		a.mu.Unlock()
		if err != nil {
			return err
		}
		if flag && req.Restart {
			logf("restarting node %s", id)
			if err := a.onHost(ctx, spec.Host, "POST", "/api/local/nodes/"+id+"/restart", nil, nil); err != nil {
				return err
			}
			reply.Restarted = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	reply.Job = j
	return reply, nil
}

func (a *Agent) apiLocalConfig(r *http.Request) (any, error) {
	var cfg map[string]string
	if err := decode(r, &cfg); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.procs[r.PathValue("id")]
	if !ok {
		return nil, notFound("%s: %v", r.PathValue("id"), errNoNode)
	}
	p.spec.Config = cfg
	if i, ok := a.st.node(p.spec.ID); ok {
		a.st.Nodes[i].Config = cfg
	}
	return map[string]bool{"ok": true}, a.saveLocked()
}

// applyGlobals sets a node's configured global variables once it answers
// SQL after a start.
func (a *Agent) applyGlobals(spec NodeSpec, pw string) {
	var qs []string
	for _, k := range sortedKeys(spec.Config) {
		if !nodeFlags[k] {
			qs = append(qs, fmt.Sprintf("SET GLOBAL %s = %s", k, sqlValue(spec.Config[k])))
		}
	}
	if len(qs) == 0 {
		return
	}
	db, err := rootDB(spec.Addr(), pw)
	if err != nil {
		return
	}
	defer db.Close()
	if err := waitSQL(context.Background(), db, time.Minute); err != nil {
		a.log.Warn("node config not applied: the node does not answer", "node", spec.ID, "err", err)
		return
	}
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			a.log.Warn("node config not applied", "node", spec.ID, "statement", q, "err", err)
		}
	}
}
