package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/canopydb/canopy/ops/metrics"
)

// nodeHTTPOffset: the agent starts each node with --http-port at its
// MySQL port plus this (the node's own default), where it scrapes
// /metrics.
const nodeHTTPOffset = 20000

// monitorLoop samples the host and scrapes the nodes of this host every
// interval; the primary stores the samples, a follower sends them to it.
func (a *Agent) monitorLoop(ctx context.Context) {
	host, err := metrics.NewHostSampler(a.cfg.Bind, a.cfg.Home)
	if err != nil {
		a.log.Warn("no host metrics", "err", err)
	}
	nodes := map[string]*metrics.NodeSampler{}
	scrape := &http.Client{Timeout: 3 * time.Second}
	t := time.NewTicker(a.cfg.MetricsInterval)
	defer t.Stop()
	lastPrune := time.Time{}
	var watch clusterWatch // the primary records what the cluster did
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var samples []metrics.Sample
		if host != nil {
			samples = append(samples, host.Sample(now)...)
		}
		a.mu.Lock()
		type target struct{ id, url string }
		var targets []target
		for id, p := range a.procs {
			targets = append(targets, target{id, fmt.Sprintf("http://%s:%d/metrics", p.spec.Host, p.spec.Port+nodeHTTPOffset)})
		}
		role, primary, secret := a.st.Role, a.st.Primary, a.st.Secret
		a.mu.Unlock()
		seen := map[string]bool{}
		for _, tg := range targets {
			ns := nodes[tg.id]
			if ns == nil {
				ns = metrics.NewNodeSampler(tg.id, tg.url, scrape)
				nodes[tg.id] = ns
			}
			seen[tg.id] = true
			samples = append(samples, ns.Sample(ctx, now)...)
		}
		for id := range nodes {
			if !seen[id] {
				delete(nodes, id)
			}
		}
		a.mu.Lock()
		a.latest = samples
		a.noteLatestLocked(samples)
		a.mu.Unlock()
		if role == RoleFollower {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := a.client(primary, secret).Call(cctx, "POST", "/api/metrics/push", samples, nil)
			cancel()
			if err != nil {
				a.log.Debug("send metrics to the primary", "err", err)
			}
			continue
		}
		if err := a.metrics.Add(samples); err != nil {
			a.log.Warn("store metrics", "err", err)
		}
		a.watchCluster(ctx, &watch)
		if now.Sub(lastPrune) > time.Hour {
			if err := a.metrics.Prune(now); err != nil {
				a.log.Warn("prune metrics", "err", err)
			}
			lastPrune = now
		}
	}
}

func (a *Agent) apiMetricsPush(r *http.Request) (any, error) {
	var samples []metrics.Sample
	if err := decode(r, &samples); err != nil {
		return nil, err
	}
	// a follower speaks for its host and its nodes only
	from := remoteIP(r)
	a.mu.Lock()
	ok := map[string]bool{"host/" + from: true}
	for _, n := range a.st.Nodes {
		if n.Host == from {
			ok["node/"+n.ID] = true
		}
	}
	a.mu.Unlock()
	kept := samples[:0]
	for _, s := range samples {
		if ok[s.Source] {
			kept = append(kept, s)
		}
	}
	a.mu.Lock()
	a.noteLatestLocked(kept)
	a.mu.Unlock()
	return map[string]int{"stored": len(kept)}, a.metrics.Add(kept)
}

// MetricsReply is a series query's answer.
type MetricsReply struct {
	Source  string          `json:"source"`
	Metric  string          `json:"metric"`
	Rollups bool            `json:"rollups"`
	Points  []metrics.Point `json:"points"`
}

// apiMetrics: GET /api/metrics?source=host/IP|node/ID&metric=M[&from=&to=unix seconds][&rollups=1].
// Without a source and metric it lists the series and the store's size.
func (a *Agent) apiMetrics(r *http.Request) (any, error) {
	q := r.URL.Query()
	source, metric := q.Get("source"), q.Get("metric")
	if source == "" || metric == "" {
		series, err := a.metrics.Series()
		if err != nil {
			return nil, err
		}
		list := make([]map[string]string, 0, len(series))
		for _, s := range series {
			list = append(list, map[string]string{"source": s[0], "metric": s[1]})
		}
		return map[string]any{"series": list, "disk_bytes": a.metrics.DiskBytes(),
			"retention": map[string]string{"raw": a.cfg.Retention.Raw.String(), "rollups": a.cfg.Retention.Rollups.String()}}, nil
	}
	now := time.Now().Unix()
	from, to := now-3600, now
	if v := q.Get("from"); v != "" {
		f, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, badRequest("from: %v", err)
		}
		from = f
	}
	if v := q.Get("to"); v != "" {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, badRequest("to: %v", err)
		}
		to = t
	}
	rollups := q.Get("rollups") == "1" || q.Get("rollups") == "true" || to-from > int64(a.cfg.Retention.Raw/time.Second)
	pts, err := a.metrics.Query(source, metric, from, to, rollups)
	if err != nil {
		return nil, err
	}
	return MetricsReply{Source: source, Metric: metric, Rollups: rollups, Points: pts}, nil
}

// prometheusHandler serves this host's latest samples and its nodes' in
// the Prometheus text format (open, like a node's /metrics).
func (a *Agent) prometheusHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(latestCollector{a})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type latestCollector struct{ a *Agent }

func (latestCollector) Describe(chan<- *prometheus.Desc) {} // unchecked: the series vary

func (c latestCollector) Collect(ch chan<- prometheus.Metric) {
	c.a.mu.Lock()
	samples := append([]metrics.Sample(nil), c.a.latest...)
	roles := map[string]NodeSpec{}
	for id, p := range c.a.procs {
		roles[id] = p.spec
	}
	c.a.mu.Unlock()
	sort.Slice(samples, func(i, j int) bool { return samples[i].Source+samples[i].Metric < samples[j].Source+samples[j].Metric })
	for _, s := range samples {
		kind, id, _ := strings.Cut(s.Source, "/")
		switch kind {
		case "host":
			d := prometheus.NewDesc("canopy_ops_host_"+s.Metric, "Host "+s.Metric+" sampled by the Ops agent.", []string{"host"}, nil)
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, s.V, id)
		case "node":
			spec := roles[id]
			d := prometheus.NewDesc("canopy_ops_node_"+s.Metric, "Node "+s.Metric+" scraped by the Ops agent.", []string{"node", "host", "port", "role"}, nil)
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, s.V, id, spec.Host, strconv.Itoa(spec.Port), spec.Role)
		}
	}
}

func openMetrics(home string, ret metrics.Retention) (*metrics.Store, error) {
	return metrics.Open(filepath.Join(home, "metrics"), ret)
}

// noteLatestLocked keeps the newest value of every series the primary
// received (for the UI's tables; caller holds a.mu).
func (a *Agent) noteLatestLocked(samples []metrics.Sample) {
	if a.newest == nil {
		a.newest = map[string]metrics.Sample{}
	}
	for _, s := range samples {
		a.newest[s.Source+"\x00"+s.Metric] = s
	}
}

// apiMetricsLatest: the newest sample of every series, by source.
func (a *Agent) apiMetricsLatest(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]map[string]float64{}
	cut := time.Now().Add(-5 * a.cfg.MetricsInterval).Unix()
	for _, s := range a.newest {
		if s.T < cut {
			continue // a source that stopped reporting shows nothing
		}
		if out[s.Source] == nil {
			out[s.Source] = map[string]float64{}
		}
		out[s.Source][s.Metric] = s.V
	}
	return out, nil
}
