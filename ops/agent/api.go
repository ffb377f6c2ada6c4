package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Access levels of the API.
type access int

const (
	// open: /api/status and /api/hostname (and /metrics, served apart)
	open access = iota
	// local: this agent's token (its CLI, or its primary calling it)
	local
	// manage: management of the deployment: this agent's token, or on the
	// primary the deployment secret (a follower forwarding its CLI's call)
	manage
	// member: the deployment secret (agents registering with the primary)
	member
)

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, acc access, forward bool, f func(*http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !a.allowed(r, acc) {
				a.audit(r, "", http.StatusUnauthorized)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized: this call needs the agent's token (the CLI reads it from the agent home)"})
				return
			}
			if forward {
				if primary, secret, ok := a.primaryToForward(); ok {
					a.forward(w, r, primary, secret)
					return
				}
			}
			out, err := f(r)
			if err != nil {
				status := http.StatusInternalServerError
				var he *httpError
				if errors.As(err, &he) {
					status = he.status
				}
				if r.Method != "GET" {
					a.audit(r, a.credential(r), status, err.Error())
				}
				writeJSON(w, status, map[string]string{"error": err.Error()})
				return
			}
			if r.Method != "GET" {
				a.audit(r, a.credential(r), http.StatusOK)
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	h("GET /api/status", open, false, a.apiStatus)
	h("GET /api/hostname", open, false, a.apiHostname)
	h("GET /api/hosts", manage, true, a.apiHostFacts)
	h("GET /api/local/host", local, false, a.apiLocalHostFacts)
	h("POST /api/follow", local, false, a.apiFollow)
	h("POST /api/unfollow", local, false, a.apiUnfollow)
	h("POST /api/stop", local, false, a.apiStop)

	h("GET /api/agents", manage, true, a.apiAgents)
	h("GET /api/nodes", manage, true, a.apiNodes)
	h("POST /api/nodes", manage, true, a.apiDeploy)
	h("POST /api/nodes/{id}/config", manage, true, a.apiNodeConfig)
	h("POST /api/nodes/{id}/replace", manage, true, a.apiNodeReplace)
	h("POST /api/nodes/{id}/{action}", manage, true, a.apiNodeAction)
	h("POST /api/manual-control", manage, true, a.apiManualControl)
	h("GET /api/jobs", manage, true, a.apiJobs)
	h("GET /api/jobs/{id}", manage, true, a.apiJob)
	h("POST /api/jobs/{id}/retry", manage, true, a.apiJobRetry)
	h("POST /api/jobs/{id}/cancel", manage, true, a.apiJobCancel)
	h("POST /api/enable-high-availability", manage, true, a.apiEnableHA)
	h("GET /api/events", manage, true, a.apiEvents)
	h("GET /api/metrics", manage, true, a.apiMetrics)
	h("GET /api/metrics/latest", manage, true, a.apiMetricsLatest)
	h("POST /api/metrics/push", member, false, a.apiMetricsPush)
	mux.Handle("GET /metrics", a.prometheusHandler())
	h("GET /api/cluster", manage, true, a.apiCluster)
	h("GET /api/rebalance/{db}", manage, true, a.apiExplainRebalance)
	h("POST /api/rebalance/{db}", manage, true, a.apiRebalance)
	h("POST /api/ui/link", local, false, a.apiUILink)
	h("POST /api/ui/mysql-login", manage, true, a.apiMySQLLogin)
	h("POST /api/snapshots", manage, true, a.apiSnapshotCreate)
	h("GET /api/snapshots", manage, true, a.apiSnapshots)
	h("POST /api/snapshots/{id}/delete", manage, true, a.apiSnapshotDelete)
	h("POST /api/seeds", manage, true, a.apiSeed)
	h("GET /api/seeds", manage, true, a.apiSeeds)
	mux.Handle("/", a.ui.Handler())

	h("POST /api/agents/register", member, false, a.apiRegister)
	h("POST /api/agents/heartbeat", member, false, a.apiHeartbeat)
	h("POST /api/agents/unregister", member, false, a.apiUnregister)

	h("GET /api/local/nodes", local, false, a.apiLocalNodes)
	h("POST /api/local/nodes", local, false, a.apiLocalAdd)
	h("POST /api/local/nodes/{id}/config", local, false, a.apiLocalConfig)
	h("POST /api/local/nodes/{id}/{action}", local, false, a.apiLocalAction)
	h("POST /api/local/manual-control", local, false, a.apiLocalManualControl)
	h("POST /api/local/snapshots", local, false, a.apiLocalSnapshotCreate)
	h("GET /api/local/snapshots", local, false, a.apiLocalSnapshots)
	h("POST /api/local/snapshots/{id}/delete", local, false, a.apiLocalSnapshotDelete)
	h("POST /api/local/snapshots/{id}/grant", local, false, a.apiLocalSnapshotGrant)
	h("POST /api/local/snapshots/{id}/send", local, false, a.apiLocalSnapshotSend)
	h("GET /api/local/seed-check", local, false, a.apiLocalSeedCheck)
	h("POST /api/local/seeds", local, false, a.apiLocalSeedPull)
	h("GET /api/local/seeds", local, false, a.apiLocalSeeds)
	h("GET /api/local/seeds/{id}", local, false, a.apiLocalSeedStatus)
	h("POST /api/local/seeds/{id}/abort", local, false, a.apiLocalSeedAbort)
	h("POST /api/local/seeds/{id}/install", local, false, a.apiLocalSeedInstall)
	// a snapshot's files, to an agent holding a grant for it
	mux.HandleFunc("GET /api/transfer/{id}/file", a.transferFile)
	return a.cfg.Security.basicAuth(mux)
}

type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &httpError{http.StatusConflict, fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// bearer is the token a request presents: in X-Canopy-Token, or as a
// bearer token.
func bearer(r *http.Request) string {
	if t := r.Header.Get(tokenHeader); t != "" {
		return t
	}
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return t
	}
	return ""
}

func (a *Agent) allowed(r *http.Request, acc access) bool {
	if acc == open {
		return true
	}
	tok := bearer(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch acc {
	case local:
		return tokenOK(tok, a.st.Token)
	case manage:
		return tokenOK(tok, a.st.Token) || (a.st.Role == RolePrimary && tokenOK(tok, a.st.Secret))
	case member:
		return a.st.Role == RolePrimary && tokenOK(tok, a.st.Secret)
	}
	return false
}

// primaryToForward: on a follower, management calls go to the primary.
func (a *Agent) primaryToForward() (string, string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.Role != RoleFollower {
		return "", "", false
	}
	return a.st.Primary, a.st.Secret, true
}

func (a *Agent) forward(w http.ResponseWriter, r *http.Request, primary, secret string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, a.cfg.Security.Scheme()+"://"+primary+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	a.cfg.Security.authorize(req, secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("this agent follows the primary %s, which does not answer: %v", primary, err)})
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return badRequest("request body: %v", err)
	}
	return nil
}

func (a *Agent) apiUILink(r *http.Request) (any, error) {
	var req struct {
		Page string `json:"page"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return map[string]string{"url": a.UILink(req.Page)}, nil
}

// remoteIP is the address a request came from.
func remoteIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return h
}

// Status is the open description of an agent.
type Status struct {
	Host          string `json:"host"`
	Port          int    `json:"port"`
	Role          string `json:"role"`
	Primary       string `json:"primary,omitempty"`
	Version       string `json:"version"`
	Nodes         int    `json:"nodes"`
	ManualControl bool   `json:"manual_control"`
}

func (a *Agent) apiStatus(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{Host: a.st.Host, Port: a.st.Port, Role: a.st.Role, Primary: a.st.Primary, Version: a.cfg.Version,
		Nodes: len(a.procs), ManualControl: a.st.ManualControl}, nil
}

// FollowRequest asks an agent to follow a primary.
type FollowRequest struct {
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Secret string `json:"secret"`
}

type registerRequest struct {
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Token   string `json:"token"`
	Version string `json:"version"`
}

type registerReply struct {
	RootPassword  string `json:"root_password"`
	ManualControl bool   `json:"manual_control"`
}

func (a *Agent) apiFollow(r *http.Request) (any, error) {
	var req FollowRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Host == "" || req.Secret == "" {
		return nil, badRequest("follow: give the primary's --host and the deployment --secret (`canopy ops agent-secret` on the primary prints it)")
	}
	if req.Port == 0 {
		req.Port = 9000
	}
	primary := net.JoinHostPort(req.Host, strconv.Itoa(req.Port))
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.follow(ctx, primary, req.Secret); err != nil {
		return nil, err
	}
	return map[string]string{"primary": primary}, nil
}

// follow makes this agent a follower of primary.
func (a *Agent) follow(ctx context.Context, primary, secret string) error {
	a.mu.Lock()
	switch {
	case a.st.Role == RoleFollower:
		cur := a.st.Primary
		a.mu.Unlock()
		return conflict("this agent already follows %s: run agent-unfollow first", cur)
	case len(a.st.Agents) > 1:
		a.mu.Unlock()
		return conflict("this agent is the primary of %d other agents: it cannot follow another", len(a.st.Agents)-1)
	case len(a.st.Nodes) > 0:
		a.mu.Unlock()
		return conflict("this agent manages %d nodes: delete them before it follows another primary", len(a.st.Nodes))
	case primary == net.JoinHostPort(a.st.Host, strconv.Itoa(a.st.Port)):
		a.mu.Unlock()
		return badRequest("an agent cannot follow itself")
	}
	a.mu.Unlock()
	reply, err := a.register(ctx, primary, secret)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Role, a.st.Primary, a.st.Secret = RoleFollower, primary, secret
	a.st.RootPassword, a.st.ManualControl = reply.RootPassword, reply.ManualControl
	a.st.Agents, a.st.AgentTokens = nil, map[string]string{}
	a.eventf("now following the primary %s", primary)
	a.log.Info("following a primary", "primary", primary)
	return a.saveLocked()
}

func (a *Agent) apiUnfollow(r *http.Request) (any, error) {
	a.mu.Lock()
	if a.st.Role != RoleFollower {
		a.mu.Unlock()
		return nil, conflict("this agent is a primary: it follows no one")
	}
	if len(a.st.Nodes) > 0 {
		n := len(a.st.Nodes)
		a.mu.Unlock()
		return nil, conflict("this agent runs %d nodes of the deployment: delete them (node-delete) before it unfollows", n)
	}
	primary, secret := a.st.Primary, a.st.Secret
	host := a.st.Host
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.client(primary, secret).Call(ctx, "POST", "/api/agents/unregister", map[string]string{"host": host}, nil); err != nil {
		a.log.Warn("unregister from the primary", "primary", primary, "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Role, a.st.Primary = RolePrimary, ""
	a.st.Secret, a.st.RootPassword = randomHex(24), randomHex(16)
	a.st.Agents = []AgentInfo{{Host: a.st.Host, Port: a.st.Port, Role: RolePrimary, Version: a.cfg.Version, LastSeen: time.Now()}}
	a.eventf("stopped following %s: a primary of its own now", primary)
	return map[string]string{"role": RolePrimary}, a.saveLocked()
}

func (a *Agent) apiStop(r *http.Request) (any, error) {
	var req struct {
		StopNodes bool `json:"stop_nodes"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // the answer goes out first
		a.Close(req.StopNodes)
	}()
	return map[string]bool{"stopping": true}, nil
}

// apiRegister (primary): an agent joins the deployment.
func (a *Agent) apiRegister(r *http.Request) (any, error) {
	var req registerRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if net.ParseIP(req.Host) == nil || req.Port <= 0 || req.Token == "" {
		return nil, badRequest("register: host (an IP address), port and token required")
	}
	// a host is its address: an agent speaks for the host it calls from
	if from := remoteIP(r); !net.ParseIP(from).Equal(net.ParseIP(req.Host)) {
		return nil, badRequest("register: the agent of %s must call from that address (the call came from %s)", req.Host, r.RemoteAddr)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Host == a.st.Host {
		return nil, conflict("host %s already runs the primary agent: one agent per host", req.Host)
	}
	if i, ok := a.st.agent(req.Host); ok && a.st.Agents[i].Port != req.Port {
		return nil, conflict("host %s already runs an agent (port %d): one agent per host", req.Host, a.st.Agents[i].Port)
	} else if ok {
		a.st.Agents[i].LastSeen, a.st.Agents[i].Version = time.Now(), req.Version
	} else {
		a.st.Agents = append(a.st.Agents, AgentInfo{Host: req.Host, Port: req.Port, Role: RoleFollower, Version: req.Version, LastSeen: time.Now()})
	}
	a.st.AgentTokens[net.JoinHostPort(req.Host, strconv.Itoa(req.Port))] = req.Token
	a.eventf("agent %s:%d follows this primary", req.Host, req.Port)
	return registerReply{RootPassword: a.st.RootPassword, ManualControl: a.st.ManualControl}, a.saveLocked()
}

func (a *Agent) apiHeartbeat(r *http.Request) (any, error) {
	var req struct {
		Host string `json:"host"`
		Port int    `json:"port"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.st.agent(req.Host)
	if ok {
		a.st.Agents[i].LastSeen = time.Now()
	}
	return map[string]any{"known": ok, "manual_control": a.st.ManualControl}, nil
}

func (a *Agent) apiUnregister(r *http.Request) (any, error) {
	var req struct {
		Host string `json:"host"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.st.Nodes {
		if n.Host == req.Host {
			return nil, conflict("host %s runs node %s: delete its nodes first", req.Host, n.ID)
		}
	}
	i, ok := a.st.agent(req.Host)
	if !ok {
		return nil, notFound("no agent on host %s", req.Host)
	}
	delete(a.st.AgentTokens, a.st.Agents[i].Addr())
	a.st.Agents = append(a.st.Agents[:i], a.st.Agents[i+1:]...)
	a.eventf("agent of %s left the deployment", req.Host)
	return map[string]bool{"ok": true}, a.saveLocked()
}

// AgentRow is an agent as agent-list shows it.
type AgentRow struct {
	AgentInfo
	State string `json:"state"` // online, or unreachable when silent
}

func (a *Agent) apiAgents(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AgentRow
	for _, ag := range a.st.Agents {
		row := AgentRow{AgentInfo: ag, State: "online"}
		if ag.Role != RolePrimary && time.Since(ag.LastSeen) > 10*time.Second {
			row.State = "unreachable"
		}
		out = append(out, row)
	}
	return out, nil
}

// register gives the primary this agent's address, version and token.
func (a *Agent) register(ctx context.Context, primary, secret string) (registerReply, error) {
	a.mu.Lock()
	reg := registerRequest{Host: a.st.Host, Port: a.st.Port, Token: a.st.Token, Version: a.cfg.Version}
	a.mu.Unlock()
	var reply registerReply
	if err := a.client(primary, secret).Call(ctx, "POST", "/api/agents/register", reg, &reply); err != nil {
		return reply, fmt.Errorf("register with the primary %s: %w", primary, err)
	}
	return reply, nil
}

// followLoop: a follower beats to its primary every 2 s and takes the
// deployment's manual control from it. It registers (its token is new at
// every start) when it starts, every --resubmit interval, and whenever
// the primary does not know it.
func (a *Agent) followLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	warned := false
	var registered time.Time
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		a.mu.Lock()
		role, primary, secret, host, port := a.st.Role, a.st.Primary, a.st.Secret, a.st.Host, a.st.Port
		a.mu.Unlock()
		if role != RoleFollower {
			continue
		}
		if time.Since(registered) > a.cfg.Resubmit {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := a.register(cctx, primary, secret)
			cancel()
			if err != nil {
				a.log.Warn("registering with the primary", "err", err)
			} else {
				registered = time.Now()
			}
		}
		var reply struct {
			Known         bool `json:"known"`
			ManualControl bool `json:"manual_control"`
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := a.client(primary, secret).Call(cctx, "POST", "/api/agents/heartbeat", map[string]any{"host": host, "port": port}, &reply)
		cancel()
		if err != nil {
			if !warned {
				a.log.Warn("the primary agent does not answer; the nodes here keep running and are supervised as before", "primary", primary, "err", err)
				warned = true
			}
			continue
		}
		warned = false
		a.mu.Lock()
		if a.st.ManualControl != reply.ManualControl {
			a.st.ManualControl = reply.ManualControl
			a.saveLocked()
		}
		a.mu.Unlock()
		if !reply.Known {
			registered = time.Time{} // register again at the next beat
		}
	}
}
