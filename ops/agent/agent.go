// Package agent is the Canopy Ops agent: one per host, it deploys,
// starts, stops and supervises the canopy nodes of its host and serves
// the Ops HTTP API (DESIGN.md §"Ops"). The first agent of a deployment is
// the primary: it keeps the deployment's metadata and journal and runs
// management operations, reaching nodes only through SQL and the other
// agents through their API.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/canopydb/canopy/ops/jobs"
	"github.com/canopydb/canopy/ops/metrics"
	"github.com/canopydb/canopy/ops/ui"
)

// Config is how an agent starts.
type Config struct {
	Home    string // its config, state and the nodes' homes
	Bind    string // its host: an IP address
	Port    int
	Exe     string // the canopy binary the nodes run
	Version string
	// StopTimeout: a node stopping gracefully gets this long before SIGKILL.
	StopTimeout time.Duration
	// MetricsInterval: how often the host and the nodes are sampled
	// (default 10 s); Retention: how long the primary keeps them.
	MetricsInterval time.Duration
	Retention       metrics.Retention
	// OpenUI lets anyone view the web interface (read-only) without
	// logging in.
	OpenUI bool
	// Follow, FollowSecret: a new agent follows this primary (host:port)
	// as it starts (the configuration file's AgentsServer)
	Follow, FollowSecret string
	// Security: TLS, mutual TLS and basic auth of the API (security.go)
	Security Security
	// Resubmit: how often a follower registers with its primary again
	// (ResubmitAgentIntervalMinutes; default 60 minutes). It registers
	// when it starts too, and whenever the primary does not know it.
	Resubmit time.Duration
	// SnapshotKeep, SnapshotKeepDays: a node keeps its newest
	// SnapshotKeep snapshots, none older than SnapshotKeepDays (0: no
	// limit); the newest always stays.
	SnapshotKeep, SnapshotKeepDays int
	// SnapshotDaily: every node of the host is snapshotted each day at
	// this time, HH:MM UTC ("": no schedule)
	SnapshotDaily string
	// Commands replace the built-in snapshot and transfer (hooks.go)
	Commands Commands
}

// Agent is a running agent.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	st     *state
	procs  map[string]*proc // nodes of this host by id
	events []event          // recent events, newest last
	latest []metrics.Sample // the last samples of this host and its nodes
	// newest: on the primary, the newest sample of every series by
	// source and metric
	newest map[string]metrics.Sample

	metrics *metrics.Store // the deployment's series (used on the primary)
	ui      *ui.Server     // the web interface, a client of this agent's API

	// ops serializes management operations on the primary
	ops sync.Mutex
	// cancels: the running jobs' cancel functions (job-cancel)
	cancels map[int]context.CancelFunc

	// seeds: the seeds this host is receiving, by id
	seeds   map[string]*seedRecv
	auditMu sync.Mutex

	http   *http.Client // calls to other agents, from this host's address
	srv    *http.Server
	ln     net.Listener
	ctx    context.Context // ends when the agent stops
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
}

type event struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

const maxEvents = 1000

// eventf records an event (caller holds a.mu).
func (a *Agent) eventf(format string, args ...any) {
	a.eventAt(time.Now(), fmt.Sprintf(format, args...))
}

// eventAt records an event that happened at t (a cluster event read a
// moment later), in time order.
func (a *Agent) eventAt(t time.Time, text string) {
	i := len(a.events)
	for i > 0 && a.events[i-1].At.After(t) {
		i--
	}
	a.events = slices.Insert(a.events, i, event{At: t, Text: text})
	if len(a.events) > maxEvents {
		a.events = append([]event(nil), a.events[len(a.events)-maxEvents/2:]...)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start starts an agent: it loads (or creates) its state in the home,
// takes over the nodes of its host, and serves its API.
func Start(cfg Config, log *slog.Logger) (*Agent, error) {
	if net.ParseIP(cfg.Bind) == nil {
		return nil, fmt.Errorf("--bind %q: an agent's host is an IP address", cfg.Bind)
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = 10 * time.Second
	}
	if cfg.Resubmit == 0 {
		cfg.Resubmit = time.Hour
	}
	if _, err := time.Parse("15:04", cfg.SnapshotDaily); cfg.SnapshotDaily != "" && err != nil {
		return nil, fmt.Errorf("--snapshot-daily %q: HH:MM (UTC)", cfg.SnapshotDaily)
	}
	if cfg.Retention == (metrics.Retention{}) {
		cfg.Retention = metrics.DefaultRetention
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("agent home: %w", err)
	}
	st, err := loadState(cfg.Home)
	if err != nil {
		return nil, err
	}
	fresh := st == nil // a new home: the configuration's AgentsServer applies
	if st == nil {
		st = &state{Role: RolePrimary, Token: randomHex(24), Secret: randomHex(24), RootPassword: randomHex(16),
			Jobs: &jobs.Journal{}, AgentTokens: map[string]string{}}
	}
	if st.Host != "" && (st.Host != cfg.Bind || st.Port != cfg.Port) {
		return nil, fmt.Errorf("the agent home %s belongs to the agent of %s:%d; start it with --bind %s --port %d or use another --home",
			cfg.Home, st.Host, st.Port, st.Host, st.Port)
	}
	st.Host, st.Port = cfg.Bind, cfg.Port
	st.Security = cfg.Security // for the CLI: how to reach this agent
	// a new API token every start (seed 004): a follower registers it with
	// its primary as it starts; the CLI reads it from the home
	st.Token = randomHex(24)
	if st.GrantKey == "" {
		st.GrantKey = randomHex(32)
	}
	if st.Role == RolePrimary {
		if i, ok := st.agent(st.Host); ok {
			st.Agents[i].Port, st.Agents[i].Role, st.Agents[i].Version, st.Agents[i].LastSeen = st.Port, RolePrimary, cfg.Version, time.Now()
		} else {
			st.Agents = append(st.Agents, AgentInfo{Host: st.Host, Port: st.Port, Role: RolePrimary, Version: cfg.Version, LastSeen: time.Now()})
		}
		if n := st.Jobs.Interrupted(time.Now()); n > 0 {
			log.Warn("jobs interrupted by the agent's stop marked failed", "jobs", n)
		}
	}
	if err := st.save(cfg.Home); err != nil {
		return nil, fmt.Errorf("save agent state: %w", err)
	}
	ms, err := openMetrics(cfg.Home, cfg.Retention)
	if err != nil {
		return nil, err
	}
	serverTLS, err := cfg.Security.serverConfig()
	if err != nil {
		ms.Close()
		return nil, err
	}
	httpClient, err := cfg.Security.HTTPClient(cfg.Bind)
	if err != nil {
		ms.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port)))
	if err != nil {
		ms.Close()
		return nil, fmt.Errorf("agent port: %w", err)
	}
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	a := &Agent{cfg: cfg, log: log, st: st, procs: map[string]*proc{}, cancels: map[int]context.CancelFunc{}, seeds: map[string]*seedRecv{}, ln: ln, done: make(chan struct{}), http: httpClient, metrics: ms}
	for _, n := range st.Nodes {
		if n.Host == st.Host {
			p := &proc{spec: n}
			p.sup.Wanted = n.Wanted
			a.adopt(p)
			a.procs[n.ID] = p
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.ctx, a.cancel = ctx, cancel
	a.ui = ui.New(func(ctx context.Context, method, path string, in, out any) error {
		a.mu.Lock()
		tok := a.st.Token
		a.mu.Unlock()
		return a.client(a.Addr(), tok).Call(ctx, method, path, in, out)
	})
	a.ui.Open = cfg.OpenUI
	a.srv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.superviseLoop(ctx) }()
	go func() { defer a.wg.Done(); a.followLoop(ctx) }()
	go func() { defer a.wg.Done(); a.monitorLoop(ctx) }()
	if cfg.SnapshotDaily != "" {
		at, _ := time.Parse("15:04", cfg.SnapshotDaily) // checked above
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.dailySnapshots(ctx, time.Duration(at.Hour())*time.Hour+time.Duration(at.Minute())*time.Minute)
		}()
	}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("agent API", "err", err)
		}
	}()
	log.Info("canopy ops agent started", "addr", a.Addr(), "role", st.Role, "home", cfg.Home, "nodes", len(a.procs))
	if cfg.Follow != "" && fresh && cfg.Follow != a.Addr() {
		// the configuration file names a primary: a new agent follows it
		// (once: an agent that unfollowed stays a primary, and the
		// primary itself may share the file)
		fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.follow(fctx, cfg.Follow, cfg.FollowSecret)
		fcancel()
		if err != nil {
			a.Close(false)
			return nil, fmt.Errorf("follow %s (AgentsServer): %w", cfg.Follow, err)
		}
	}
	return a, nil
}

// Addr is the agent's API address.
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// UILink is a one-time login link to a page of the web interface.
func (a *Agent) UILink(page string) string {
	return a.cfg.Security.Scheme() + "://" + a.Addr() + a.ui.Link(page)
}

// Done is closed once the agent stopped (Close, or agent-stop).
func (a *Agent) Done() <-chan struct{} { return a.done }

// Close stops the agent; with stopNodes, its nodes too (gracefully).
// Nodes otherwise keep running: the next start of the agent adopts them.
func (a *Agent) Close(stopNodes bool) error {
	select {
	case <-a.done:
		return nil
	default:
	}
	a.cancel()
	a.wg.Wait()
	if stopNodes {
		a.mu.Lock()
		var ps []*proc
		for _, p := range a.procs {
			ps = append(ps, p)
		}
		a.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Add(1)
			go func() { defer wg.Done(); a.stopProc(p, a.cfg.StopTimeout) }()
		}
		wg.Wait()
	}
	// the port closes last: a caller waiting for it to close (agent-stop)
	// knows the nodes have stopped
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.srv.Shutdown(ctx)
	cancel()
	a.mu.Lock()
	err := a.st.save(a.cfg.Home)
	a.mu.Unlock()
	if cerr := a.metrics.Close(); err == nil {
		err = cerr
	}
	close(a.done)
	return err
}

// saveLocked persists the state (caller holds a.mu).
func (a *Agent) saveLocked() error {
	if err := a.st.save(a.cfg.Home); err != nil {
		a.log.Error("save agent state", "err", err)
		return fmt.Errorf("save agent state: %w", err)
	}
	return nil
}

// Credentials are what the CLI reads from an agent's home to talk to it.
type Credentials struct {
	Addr         string
	Token        string
	Secret       string
	RootPassword string
	Security     Security
}

// ReadCredentials reads the address and token of the agent whose home is
// dir (the file is readable only by the agent's user).
func ReadCredentials(dir string) (Credentials, error) {
	st, err := loadState(dir)
	if err != nil {
		return Credentials{}, err
	}
	if st == nil {
		return Credentials{}, fmt.Errorf("no agent state in %s: start one with `canopy ops start --home %s`, or point --home (or CANOPY_OPS_HOME) at the agent's home", dir, dir)
	}
	return Credentials{Addr: net.JoinHostPort(st.Host, strconv.Itoa(st.Port)), Token: st.Token, Secret: st.Secret, RootPassword: st.RootPassword,
		Security: st.Security}, nil
}

// client calls another agent from this host.
func (a *Agent) client(addr, token string) *Client {
	return &Client{Addr: addr, Token: token, HTTP: a.http, Sec: a.cfg.Security}
}

// tokenOK compares a presented token with the expected one in constant
// time; an empty expected token matches nothing.
func tokenOK(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// HomeDefault is the agent home when none is given.
const HomeDefault = "/var/lib/canopy-ops"

// Home resolves the agent home of a CLI call: the flag, else
// CANOPY_OPS_HOME, else the default.
func Home(flag string) string {
	if flag != "" {
		return flag
	}
	if h := os.Getenv("CANOPY_OPS_HOME"); h != "" {
		return h
	}
	return HomeDefault
}

// NodeLog is the path of a node's log under an agent home.
func NodeLog(home, id string) string { return filepath.Join(home, "nodes", id, "node.log") }
