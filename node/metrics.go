package node

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg         *prometheus.Registry
	statements  prometheus.Counter
	queryErrors prometheus.Counter
	fastPath    prometheus.Counter
	// client statements' time in this node, from receipt to the last row
	// sent: what an operator reads as query latency
	latency prometheus.Histogram
	// commits durable here that a synchronous replica did not confirm
	unconfirmedCommits prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		statements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_statements_total", Help: "Statements run by the SQL engine (after the first of a multi-statement query)."}),
		queryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_statement_errors_total", Help: "Statements that returned an error to the client."}),
		fastPath: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_point_selects_total", Help: "Primary-key point selects answered without the SQL engine."}),
		unconfirmedCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_unconfirmed_commits_total", Help: "Commits of synchronous partitions whose replica did not confirm them (the client got an error)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "canopy_statement_duration_seconds", Help: "Time of client statements in this node, to the last row sent.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18)}), // 50 µs to 6.5 s
	}
	templates := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "canopy_routed_templates_total", Help: "Statements an aggregator routed from a cached plan template."},
		func() float64 {
			if a := n.aggregator(); a != nil {
				return float64(a.TemplateRuns())
			}
			return 0
		})
	gathered := func(name, help string, pick func(rows, bytes uint64) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			if a := n.aggregator(); a != nil {
				return float64(pick(a.Gathered()))
			}
			return 0
		})
	}
	m.reg.MustRegister(
		gathered("canopy_gathered_rows_total", "Rows partitions sent this aggregator for gathered queries.",
			func(r, _ uint64) uint64 { return r }),
		gathered("canopy_gathered_bytes_total", "Value bytes partitions sent this aggregator for gathered queries.",
			func(_, b uint64) uint64 { return b }))
	shuffled := func(name, help string, pick func(broadcast, repartition uint64) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			if a := n.aggregator(); a != nil {
				return float64(pick(a.ShuffledJoins()))
			}
			return 0
		})
	}
	m.reg.MustRegister(
		shuffled("canopy_broadcast_joins_total", "Joins run by copying one side to every leaf.",
			func(b, _ uint64) uint64 { return b }),
		shuffled("canopy_repartition_joins_total", "Joins run by repartitioning both sides by the join key.",
			func(_, r uint64) uint64 { return r }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "canopy_lookup_joins_total",
			Help: "Joins run by looking a small side's keys up in the other side's partitions."}, func() float64 {
			if a := n.aggregator(); a != nil {
				return float64(a.LookupJoins())
			}
			return 0
		}))
	received := func(name, help string, pick func(count, bytes uint64) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			if n.receiver == nil {
				return 0
			}
			return float64(pick(n.receiver.Snapshots()))
		})
	}
	m.reg.MustRegister(
		received("canopy_snapshots_received_total", "Copies of databases provisioned here from a snapshot of their source.",
			func(c, _ uint64) uint64 { return c }),
		received("canopy_snapshot_bytes_received_total", "Bytes of the snapshots installed here.",
			func(_, b uint64) uint64 { return b }))
	m.reg.MustRegister(m.statements, m.queryErrors, m.fastPath, m.latency, m.unconfirmedCommits, templates, &storeCollector{n: n},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// storeCollector reports the store's state at scrape time.
type storeCollector struct{ n *Node }

var (
	descCommits = prometheus.NewDesc("canopy_database_commits_total",
		"Committed write transactions of a database (its partition log length).", []string{"database"}, nil)
	descLSN = prometheus.NewDesc("canopy_database_log_position",
		"Log sequence number of the last committed transaction of a database.", []string{"database"}, nil)
	descConns = prometheus.NewDesc("canopy_connections", "Open client connections.", nil, nil)
	descDisk  = prometheus.NewDesc("canopy_storage_disk_bytes", "Bytes of the store on disk.", nil, nil)
	descLocks = prometheus.NewDesc("canopy_row_locks_held", "Row locks held by open transactions.", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCommits
	ch <- descLSN
	ch <- descConns
	ch <- descDisk
	ch <- descLocks
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.n.store.DatabaseInfos() {
		ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(d.Commits), d.Name)
		ch <- prometheus.MustNewConstMetric(descLSN, prometheus.GaugeValue, float64(d.Pos.LSN), d.Name)
	}
	conns := 0
	c.n.sessions.Range(func(any, any) bool { conns++; return true })
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(conns))
	ch <- prometheus.MustNewConstMetric(descDisk, prometheus.GaugeValue, float64(c.n.store.DB().Metrics().DiskSpaceUsage()))
	ch <- prometheus.MustNewConstMetric(descLocks, prometheus.GaugeValue, float64(c.n.store.LocksHeld()))
}

func (n *Node) startHTTP() error {
	// /metrics and /healthz are open and read-only; /admin needs the
	// admin token; profiles only with
	// --pprof (they reveal memory contents and cost CPU on request)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	// changes data: the admin token (adminAllowed)
	mux.HandleFunc("POST /admin/snapshot", n.handleSnapshot)
	if n.cfg.PProf {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	addr := net.JoinHostPort(n.cfg.Bind, strconv.Itoa(n.cfg.HTTPPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (HTTP): %w", addr, err)
	}
	n.http = &http.Server{Handler: mux}
	go n.http.Serve(ln)
	return nil
}
