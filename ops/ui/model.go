package ui

import (
	"context"
	"fmt"
	"html/template"
	"net/url"
	"sort"
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
}

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
	Name    string
	Grid    bool
	Leaves  []string
	Rows    []MapRow
	Masters map[string]int // per leaf (skew)
	Locked  int
	// MinMasters, MaxMasters: the skew of masters over the leaves
	MinMasters, MaxMasters int
}

// MapRow is one partition.
type MapRow struct {
	Ordinal  int
	Cells    []string // per leaf: Master, Slave or "" (grids only)
	Master   string
	Replicas []string
	Locked   bool
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
	needCluster := page != "events" && page != "settings"
	if needCluster {
		s.get(ctx, m, "/api/cluster", &m.Cluster)
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

// chart draws the last 30 minutes of a series.
func (s *Server) chart(ctx context.Context, title, unit, source, metric string) template.HTML {
	now := time.Now().Unix()
	var reply struct {
		Points []Point `json:"points"`
	}
	path := fmt.Sprintf("/api/metrics?source=%s&metric=%s&from=%d&to=%d", url.QueryEscape(source), url.QueryEscape(metric), now-1800, now)
	s.fetch(ctx, "GET", path, nil, &reply)
	return lineChart(title, unit, []Series{{Name: metric, Points: reply.Points}})
}

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
	byDB := map[string]*DatabaseMap{}
	type cell struct {
		o    int
		leaf string
	}
	roles := map[string]map[cell]string{}
	ordinals := map[string]map[int]bool{}
	locked := map[string]map[int]bool{}
	for _, p := range c.Partitions {
		d := byDB[p.Database]
		if d == nil {
			d = &DatabaseMap{Name: p.Database, Masters: map[string]int{}}
			byDB[p.Database] = d
			roles[p.Database] = map[cell]string{}
			ordinals[p.Database] = map[int]bool{}
			locked[p.Database] = map[int]bool{}
		}
		leaf := fmt.Sprintf("%s:%d", p.Host, p.Port)
		roles[p.Database][cell{p.Ordinal, leaf}] = p.Role
		ordinals[p.Database][p.Ordinal] = true
		if p.Locked {
			locked[p.Database][p.Ordinal] = true
		}
		if p.Role == "Master" {
			d.Masters[leaf]++
		}
	}
	var leaves []string
	for _, l := range c.Leaves {
		leaves = append(leaves, fmt.Sprintf("%s:%d", l.Host, l.Port))
	}
	copies := map[string]map[int][]string{} // db → ordinal → replicas
	masterOf := map[string]map[int]string{}
	for _, p := range c.Partitions {
		if p.Role == "Master" {
			if masterOf[p.Database] == nil {
				masterOf[p.Database] = map[int]string{}
			}
			masterOf[p.Database][p.Ordinal] = fmt.Sprintf("%s:%d", p.Host, p.Port)
		} else {
			if copies[p.Database] == nil {
				copies[p.Database] = map[int][]string{}
			}
			copies[p.Database][p.Ordinal] = append(copies[p.Database][p.Ordinal], fmt.Sprintf("%s:%d", p.Host, p.Port))
		}
	}
	var out []DatabaseMap
	for _, name := range sortedKeys(byDB) {
		d := byDB[name]
		d.Leaves, d.Grid = leaves, len(leaves) <= gridLeaves
		d.MinMasters = -1
		for _, l := range leaves {
			n := d.Masters[l]
			d.MaxMasters = max(d.MaxMasters, n)
			if d.MinMasters < 0 || n < d.MinMasters {
				d.MinMasters = n
			}
		}
		var ords []int
		for o := range ordinals[name] {
			ords = append(ords, o)
		}
		sort.Ints(ords)
		for _, o := range ords {
			r := MapRow{Ordinal: o, Locked: locked[name][o], Replicas: copies[name][o], Master: masterOf[name][o]}
			if d.Grid {
				for _, l := range leaves {
					r.Cells = append(r.Cells, roles[name][cell{o, l}])
				}
			}
			if r.Locked {
				d.Locked++
			}
			d.Rows = append(d.Rows, r)
		}
		out = append(out, *d)
	}
	return out
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
