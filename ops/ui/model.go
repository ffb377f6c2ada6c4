package ui

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// What the pages read from the agent's API (JSON of ops/agent; only the
// fields shown).

type apiNode struct {
	ID       string            `json:"id"`
	Host     string            `json:"host"`
	Port     int               `json:"port"`
	Role     string            `json:"role"`
	Group    int               `json:"group"`
	State    string            `json:"state"`
	PID      int               `json:"pid"`
	Version  string            `json:"version"`
	Uptime   string            `json:"uptime"`
	Failures int               `json:"failures_in_a_row"`
	Note     string            `json:"note"`
	Config   map[string]string `json:"config"`
}

func (n apiNode) Addr() string { return fmt.Sprintf("%s:%d", n.Host, n.Port) }

type apiAgent struct {
	Host     string    `json:"host"`
	Port     int       `json:"port"`
	Role     string    `json:"role"`
	State    string    `json:"state"`
	Version  string    `json:"version"`
	LastSeen time.Time `json:"last_seen"`
}

type apiStatus struct {
	Host          string `json:"host"`
	Role          string `json:"role"`
	Primary       string `json:"primary"`
	ManualControl bool   `json:"manual_control"`
}

type apiCluster struct {
	Master     string `json:"master"`
	Reachable  bool   `json:"reachable"`
	Error      string `json:"error"`
	Redundancy int    `json:"redundancy"`
	Leaves     []struct {
		Host      string  `json:"host"`
		Port      int     `json:"port"`
		Group     int     `json:"group"`
		PairHost  string  `json:"pair_host"`
		PairPort  int     `json:"pair_port"`
		State     string  `json:"state"`
		LatencyMs float64 `json:"latency_ms"`
	} `json:"leaves"`
	Aggregators []struct {
		Host   string `json:"host"`
		Port   int    `json:"port"`
		State  string `json:"state"`
		Master bool   `json:"master"`
	} `json:"aggregators"`
	Partitions []struct {
		Database string `json:"database"`
		Ordinal  int    `json:"ordinal"`
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Role     string `json:"role"`
		Locked   bool   `json:"locked"`
		Rows     *int64 `json:"rows"`
		Bytes    *int64 `json:"bytes"`
		Lag      *int64 `json:"lag"`
	} `json:"partitions"`
	Rebalance []struct {
		Database string `json:"database"`
		Action   string `json:"action"`
		Ordinal  int    `json:"ordinal"`
		Target   string `json:"target"`
		Phase    int    `json:"phase"`
		Status   string `json:"status"`
	} `json:"rebalance"`
}

type apiJob struct {
	ID      int               `json:"id"`
	Kind    string            `json:"kind"`
	Args    map[string]string `json:"args"`
	State   string            `json:"state"`
	Created time.Time         `json:"created"`
	Error   string            `json:"error"`
	Log     []struct {
		At   time.Time `json:"at"`
		Text string    `json:"text"`
	} `json:"log"`
	Steps []struct {
		Text  string `json:"text"`
		State string `json:"state"`
	} `json:"steps"`
}

type apiEvent struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// Model is what a page template gets.
type Model struct {
	Page      string
	Query     string // the events page's filter
	Nav       any
	CSRF      string
	ReadOnly  bool
	RefreshMs int
	Flash     string
	Errors    []string

	Status  apiStatus
	Agents  []apiAgent
	Nodes   []NodeRow
	Cluster apiCluster
	Jobs    []apiJob
	Job     *apiJob
	Events  []apiEvent
	Charts  []template.HTML

	Health    Health
	Databases []DatabaseMap
	Hosts     []HostRow
	// Compact: too many hosts or leaves for charts and grids: lists
	Compact bool
	// Plans: per database, what REBALANCE PARTITIONS would do now
	Plans []RebalancePlan
	// HAHosts, HAPlan: the enable-HA preview of the settings page
	HAHosts string
	HAPlan  []string
	// the snapshots page: every snapshot (newest first), the seeds being
	// received, the latest seed jobs, the hosts a seed can go to
	Snapshots []apiSnapshot
	Seeds     []apiSeed
	SeedJobs  []apiJob
	HostNames []string
}

type apiSnapshot struct {
	ID        string    `json:"id"`
	Node      string    `json:"node"`
	Host      string    `json:"host"`
	NodeAddr  string    `json:"node_addr"`
	Taken     time.Time `json:"taken"`
	TookMs    float64   `json:"took_ms"`
	Bytes     int64     `json:"bytes"`
	Files     int       `json:"files"`
	Databases []struct {
		Name string `json:"name"`
	} `json:"databases"`
}

type apiSeed struct {
	ID         string  `json:"id"`
	Snapshot   string  `json:"snapshot"`
	State      string  `json:"state"`
	Total      int64   `json:"total"`
	Done       int64   `json:"done"`
	Rate       float64 `json:"rate"`
	ETASeconds float64 `json:"eta_seconds"`
	Resumes    int     `json:"resumes"`
	Error      string  `json:"error"`
}

// Percent is how much of the seed has arrived.
func (s apiSeed) Percent() float64 {
	if s.Total == 0 {
		return 100
	}
	return 100 * float64(s.Done) / float64(s.Total)
}

// Job is the seed job's id (seeds are named seed-JOB).
func (s apiSeed) Job() string { return strings.TrimPrefix(s.ID, "seed-") }

// RebalancePlan is a database's EXPLAIN REBALANCE PARTITIONS.
type RebalancePlan struct {
	Database string
	Steps    []struct {
		Action  string `json:"action"`
		Ordinal int    `json:"ordinal"`
		Target  string `json:"target"`
		Phase   int    `json:"phase"`
	}
}

// chartedHosts and gridLeaves: up to these, the hosts page charts every
// host and a partition map is a grid of partitions × leaves.
const (
	chartedHosts = 12
	gridLeaves   = 16
)

// NodeRow is a node with what the cluster says of it and its newest
// metrics.
type NodeRow struct {
	apiNode
	ClusterState string // SHOW LEAVES / AGGREGATORS state
	Pair         string
	Memory       float64 // bytes
	Connections  float64
	QPS          float64
	HasMetrics   bool
}

// Health is the overview's summary.
type Health struct {
	NodesByState  map[string]int
	Leaves        int
	LeavesOnline  int
	Databases     int
	Partitions    int
	NoMaster      int
	NoReplica     int
	ManualControl bool
	Redundancy    int
}

// DatabaseMap is a database's partition map: ordinals × leaves (Grid),
// or per partition its master and replicas.
type DatabaseMap struct {
	Name       string
	Grid       bool
	Leaves     []string
	Partitions []MapRow
	Masters    map[string]int // per leaf (skew)
	Locked     int
	// MinMasters, MaxMasters: the skew of masters over the leaves
	MinMasters, MaxMasters int
	// HasStats: the leaves reported rows and sizes; Rows, Bytes are the
	// masters' totals, Skew the rows' spread over partitions (skew)
	HasStats    bool
	Rows, Bytes int64
	Skew        float64
}

// MapRow is one partition.
type MapRow struct {
	Ordinal  int
	Cells    []MapCell // per leaf (grids only)
	Master   string
	Replicas []string
	Locked   bool
	// Rows, Bytes: the master copy's; MaxLag: the most log records a
	// replica is behind; nil where unknown
	Rows, Bytes, MaxLag *int64
	copies              map[string]MapCell // by leaf
}

// MapCell is a partition's copy on a leaf: Role is Master, Slave or ""
// (none); Offline when its leaf is not online; Lag for a replica.
type MapCell struct {
	Role    string
	Offline bool
	Lag     *int64
}

// HostRow is a host with its agent and nodes.
type HostRow struct {
	apiAgent
	Nodes  []NodeRow
	Charts []template.HTML
}

func (s *Server) get(ctx context.Context, m *Model, path string, out any) {
	if err := s.fetch(ctx, "GET", path, nil, out); err != nil {
		m.Errors = append(m.Errors, fmt.Sprintf("%s: %v", path, err))
	}
}

func (s *Server) model(ctx context.Context, page string, q url.Values) *Model {
	m := &Model{Flash: q.Get("flash")}
	s.get(ctx, m, "/api/status", &m.Status)
	needCluster := page != "events" && page != "settings" && page != "snapshots"
	if needCluster {
		path := "/api/cluster"
		if page == "databases" {
			path += "?detail=1" // rows, sizes, lag: asks every leaf
		}
		s.get(ctx, m, path, &m.Cluster)
		if m.Cluster.Error != "" {
			m.Errors = append(m.Errors, m.Cluster.Error)
		}
	}
	var nodes []apiNode
	if page != "events" {
		s.get(ctx, m, "/api/nodes", &nodes)
	}
	m.Nodes = s.joinNodes(nodes, m.Cluster)
	if page == "nodes" {
		var latest map[string]map[string]float64
		s.get(ctx, m, "/api/metrics/latest", &latest)
		for i, n := range m.Nodes {
			if l, ok := latest["node/"+n.ID]; ok {
				m.Nodes[i].HasMetrics = true
				m.Nodes[i].Memory, m.Nodes[i].Connections, m.Nodes[i].QPS = l["memory_bytes"], l["connections"], l["queries_per_second"]
			}
		}
	}
	switch page {
	case "overview":
		m.Health = health(m)
		s.get(ctx, m, "/api/events", &m.Events)
		if len(m.Events) > 10 {
			m.Events = m.Events[len(m.Events)-10:]
		}
		reverse(m.Events)
		for _, n := range m.Nodes {
			if n.Role == "master" {
				m.Charts = append(m.Charts,
					s.chart(ctx, "Queries per second (master aggregator)", "q/s", "node/"+n.ID, "queries_per_second"),
					s.chart(ctx, "Statement latency (master aggregator)", "ms", "node/"+n.ID, "latency_ms", "latency_p99_ms"),
					s.chart(ctx, "Connections (master aggregator)", "", "node/"+n.ID, "connections"))
			}
		}
	case "hosts":
		s.get(ctx, m, "/api/agents", &m.Agents)
		// charts for every host of a small deployment; a large one lists
		// the hosts and charts the one picked (?host=)
		picked := q.Get("host")
		m.Compact = len(m.Agents) > chartedHosts && picked == ""
		for _, a := range m.Agents {
			if picked != "" && a.Host != picked {
				continue
			}
			h := HostRow{apiAgent: a}
			for _, n := range m.Nodes {
				if n.Host == a.Host {
					h.Nodes = append(h.Nodes, n)
				}
			}
			if m.Compact {
				m.Hosts = append(m.Hosts, h)
				continue
			}
			h.Charts = []template.HTML{
				s.chart(ctx, "CPU "+a.Host, "%", "host/"+a.Host, "cpu_percent"),
				s.chart(ctx, "Memory used "+a.Host, "bytes", "host/"+a.Host, "mem_used_bytes"),
				s.chart(ctx, "Disk free "+a.Host, "bytes", "host/"+a.Host, "disk_free_bytes"),
				s.chart(ctx, "Network received "+a.Host, "bytes/s", "host/"+a.Host, "net_rx_bytes_per_second"),
			}
			m.Hosts = append(m.Hosts, h)
		}
	case "databases":
		m.Databases = databaseMaps(m.Cluster)
	case "rebalance":
		dbs := map[string]bool{}
		for _, p := range m.Cluster.Partitions {
			dbs[p.Database] = true
		}
		for _, name := range sortedKeys(dbs) {
			p := RebalancePlan{Database: name}
			s.get(ctx, m, "/api/rebalance/"+url.PathEscape(name), &p.Steps)
			m.Plans = append(m.Plans, p)
		}
	case "settings":
		if h := q.Get("ha_hosts"); h != "" {
			m.HAHosts = h
			var reply struct {
				Plan []string `json:"plan"`
			}
			if err := s.fetch(ctx, "POST", "/api/enable-high-availability", map[string]any{"hosts": splitHosts(h), "plan_only": true}, &reply); err != nil {
				m.Errors = append(m.Errors, "enable high availability: "+err.Error())
			}
			m.HAPlan = reply.Plan
		}
	case "snapshots":
		s.get(ctx, m, "/api/snapshots", &m.Snapshots)
		reverse(m.Snapshots)
		s.get(ctx, m, "/api/seeds", &m.Seeds)
		var js []apiJob
		s.get(ctx, m, "/api/jobs", &js)
		for i := len(js) - 1; i >= 0 && len(m.SeedJobs) < 20; i-- {
			if js[i].Kind == "seed" {
				m.SeedJobs = append(m.SeedJobs, js[i])
			}
		}
		s.get(ctx, m, "/api/agents", &m.Agents)
		for _, a := range m.Agents {
			m.HostNames = append(m.HostNames, a.Host)
		}
	case "events":
		m.Query = q.Get("q")
		s.get(ctx, m, "/api/events", &m.Events)
		reverse(m.Events)
		s.get(ctx, m, "/api/jobs", &m.Jobs)
		reverse(m.Jobs)
		if m.Query != "" {
			m.Events, m.Jobs = filterEvents(m.Events, m.Query), filterJobs(m.Jobs, m.Query)
		}
		if id, err := strconv.Atoi(q.Get("job")); err == nil {
			var j apiJob
			s.get(ctx, m, "/api/jobs/"+strconv.Itoa(id), &j)
			m.Job = &j
		}
	}
	return m
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// chart draws the last 30 minutes of a source's series, one line per
// metric.
func (s *Server) chart(ctx context.Context, title, unit, source string, metrics ...string) template.HTML {
	now := time.Now().Unix()
	var series []Series
	for _, metric := range metrics {
		var reply struct {
			Points []Point `json:"points"`
		}
		path := fmt.Sprintf("/api/metrics?source=%s&metric=%s&from=%d&to=%d", url.QueryEscape(source), url.QueryEscape(metric), now-1800, now)
		s.fetch(ctx, "GET", path, nil, &reply)
		name := metric
		if l, ok := seriesLabels[metric]; ok {
			name = l
		}
		series = append(series, Series{Name: name, Points: reply.Points})
	}
	return lineChart(title, unit, series)
}

// seriesLabels name a chart's lines where the metric's name says too much.
var seriesLabels = map[string]string{"latency_ms": "mean", "latency_p99_ms": "p99"}

func (s *Server) joinNodes(nodes []apiNode, c apiCluster) []NodeRow {
	state := map[string]string{}
	pair := map[string]string{}
	for _, l := range c.Leaves {
		k := fmt.Sprintf("%s:%d", l.Host, l.Port)
		state[k] = l.State
		if l.PairHost != "" {
			pair[k] = fmt.Sprintf("%s:%d", l.PairHost, l.PairPort)
		}
	}
	for _, a := range c.Aggregators {
		state[fmt.Sprintf("%s:%d", a.Host, a.Port)] = a.State
	}
	var out []NodeRow
	for _, n := range nodes {
		r := NodeRow{apiNode: n, ClusterState: state[n.Addr()], Pair: pair[n.Addr()]}
		if r.ClusterState == "" {
			r.ClusterState = "-"
		}
		out = append(out, r)
	}
	return out
}

func health(m *Model) Health {
	h := Health{NodesByState: map[string]int{}, ManualControl: m.Status.ManualControl, Redundancy: m.Cluster.Redundancy}
	for _, n := range m.Nodes {
		h.NodesByState[n.State]++
	}
	for _, l := range m.Cluster.Leaves {
		h.Leaves++
		if l.State == "online" {
			h.LeavesOnline++
		}
	}
	type key struct {
		db string
		o  int
	}
	masters, replicas := map[key]int{}, map[key]int{}
	dbs := map[string]bool{}
	for _, p := range m.Cluster.Partitions {
		k := key{p.Database, p.Ordinal}
		dbs[p.Database] = true
		if p.Role == "Master" {
			masters[k]++
		} else {
			replicas[k]++
		}
		if _, ok := masters[k]; !ok {
			masters[k] += 0
		}
	}
	h.Databases, h.Partitions = len(dbs), len(masters)
	for k, n := range masters {
		if n == 0 {
			h.NoMaster++
		}
		if replicas[k] == 0 && m.Cluster.Redundancy >= 2 {
			h.NoReplica++
		}
	}
	return h
}

func databaseMaps(c apiCluster) []DatabaseMap {
	var leaves []string
	offline := map[string]bool{}
	for _, l := range c.Leaves {
		addr := fmt.Sprintf("%s:%d", l.Host, l.Port)
		leaves = append(leaves, addr)
		offline[addr] = l.State != "online"
	}
	byDB := map[string]*DatabaseMap{}
	rows := map[string]map[int]*MapRow{}
	for _, p := range c.Partitions {
		d := byDB[p.Database]
		if d == nil {
			d = &DatabaseMap{Name: p.Database, Masters: map[string]int{}, Leaves: leaves, Grid: len(leaves) <= gridLeaves}
			byDB[p.Database], rows[p.Database] = d, map[int]*MapRow{}
		}
		r := rows[p.Database][p.Ordinal]
		if r == nil {
			r = &MapRow{Ordinal: p.Ordinal, copies: map[string]MapCell{}}
			rows[p.Database][p.Ordinal] = r
		}
		leaf := fmt.Sprintf("%s:%d", p.Host, p.Port)
		r.Locked = r.Locked || p.Locked
		r.copies[leaf] = MapCell{Role: p.Role, Offline: offline[leaf], Lag: p.Lag}
		if p.Role == "Master" {
			r.Master, r.Rows, r.Bytes = leaf, p.Rows, p.Bytes
			d.Masters[leaf]++
		} else {
			r.Replicas = append(r.Replicas, leaf)
			if p.Lag != nil && (r.MaxLag == nil || *p.Lag > *r.MaxLag) {
				r.MaxLag = p.Lag
			}
		}
	}
	var out []DatabaseMap
	for _, name := range sortedKeys(byDB) {
		d := byDB[name]
		d.MinMasters = -1
		for _, l := range leaves {
			n := d.Masters[l]
			d.MaxMasters = max(d.MaxMasters, n)
			if d.MinMasters < 0 || n < d.MinMasters {
				d.MinMasters = n
			}
		}
		var perPartition []float64
		for _, o := range sortedKeys(rows[name]) {
			r := rows[name][o]
			if d.Grid {
				for _, l := range leaves {
					r.Cells = append(r.Cells, r.copies[l])
				}
			}
			if r.Locked {
				d.Locked++
			}
			if r.Rows != nil {
				d.HasStats = true
				d.Rows += *r.Rows
				d.Bytes += *r.Bytes
				perPartition = append(perPartition, float64(*r.Rows))
			}
			d.Partitions = append(d.Partitions, *r)
		}
		d.Skew = skew(perPartition)
		out = append(out, *d)
	}
	return out
}

// skew is how unevenly rows spread over partitions, in percent: their
// standard deviation over their mean (SingleStore's measure; 0 is even).
func skew(rows []float64) float64 {
	if len(rows) == 0 {
		return 0
	}
	var sum float64
	for _, r := range rows {
		sum += r
	}
	mean := sum / float64(len(rows))
	if mean == 0 {
		return 0
	}
	var sq float64
	for _, r := range rows {
		sq += (r - mean) * (r - mean)
	}
	return 100 * math.Sqrt(sq/float64(len(rows))) / mean
}

func filterEvents(evs []apiEvent, q string) []apiEvent {
	q = strings.ToLower(q)
	var out []apiEvent
	for _, e := range evs {
		if strings.Contains(strings.ToLower(e.Text), q) {
			out = append(out, e)
		}
	}
	return out
}

func filterJobs(js []apiJob, q string) []apiJob {
	q = strings.ToLower(q)
	var out []apiJob
	for _, j := range js {
		text := strings.ToLower(j.Kind + " " + j.State + " " + j.Error)
		for k, v := range j.Args {
			text += " " + strings.ToLower(k+"="+v)
		}
		if strings.Contains(text, q) {
			out = append(out, j)
		}
	}
	return out
}

func splitHosts(s string) []string {
	var out []string
	for _, h := range strings.Split(s, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}
