package metrics

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// HostSampler measures a host from /proc: CPU, memory, the disk of a
// directory, network. Rates come from the previous sample.
type HostSampler struct {
	fs     procfs.FS
	source string
	dir    string // the disk measured is the one holding dir

	prevT          time.Time
	prevBusy       float64
	prevTotal      float64
	prevRx, prevTx uint64
}

// NewHostSampler samples the host ip, and the disk holding dir.
func NewHostSampler(ip, dir string) (*HostSampler, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("host metrics: %w", err)
	}
	return &HostSampler{fs: fs, source: "host/" + ip, dir: dir}, nil
}

// Sample measures the host now.
func (h *HostSampler) Sample(now time.Time) []Sample {
	var out []Sample
	add := func(m string, v float64) { out = append(out, Sample{Source: h.source, Metric: m, T: now.Unix(), V: v}) }
	first := h.prevT.IsZero()
	dt := now.Sub(h.prevT).Seconds()
	if st, err := h.fs.Stat(); err == nil {
		c := st.CPUTotal
		busy := c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
		total := busy + c.Idle + c.Iowait
		if !first && total > h.prevTotal {
			add("cpu_percent", 100*(busy-h.prevBusy)/(total-h.prevTotal))
		}
		h.prevBusy, h.prevTotal = busy, total
	}
	if mi, err := h.fs.Meminfo(); err == nil && mi.MemTotalBytes != nil && mi.MemAvailableBytes != nil {
		add("mem_total_bytes", float64(*mi.MemTotalBytes))
		add("mem_used_bytes", float64(*mi.MemTotalBytes-*mi.MemAvailableBytes))
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(h.dir, &fs); err == nil {
		total, free := float64(fs.Blocks)*float64(fs.Bsize), float64(fs.Bavail)*float64(fs.Bsize)
		add("disk_total_bytes", total)
		add("disk_free_bytes", free)
		add("disk_used_bytes", total-float64(fs.Bfree)*float64(fs.Bsize))
	}
	if nd, err := h.fs.NetDev(); err == nil {
		t := nd.Total()
		if !first && dt > 0 && t.RxBytes >= h.prevRx && t.TxBytes >= h.prevTx {
			add("net_rx_bytes_per_second", float64(t.RxBytes-h.prevRx)/dt)
			add("net_tx_bytes_per_second", float64(t.TxBytes-h.prevTx)/dt)
		}
		h.prevRx, h.prevTx = t.RxBytes, t.TxBytes
	}
	h.prevT = now
	return out
}

// NodeSampler scrapes one node's /metrics and turns its counters into
// rates.
type NodeSampler struct {
	source   string
	url      string
	client   *http.Client
	prevT    time.Time
	prev     map[string]float64
	prevHist map[string]Histogram
}

// NewNodeSampler scrapes the node id at url (its /metrics).
func NewNodeSampler(id, url string, client *http.Client) *NodeSampler {
	return &NodeSampler{source: "node/" + id, url: url, client: client}
}

// node metrics: the gauges kept as they are, the counters as rates
var (
	nodeGauges = map[string]string{
		"canopy_connections":            "connections",
		"process_resident_memory_bytes": "memory_bytes",
		"canopy_storage_disk_bytes":     "disk_bytes",
		"canopy_row_locks_held":         "row_locks",
	}
	nodeRates = map[string]string{
		"canopy_statements_total":       "queries_per_second",
		"canopy_statement_errors_total": "errors_per_second",
		"canopy_database_commits_total": "commits_per_second",
	}
	// the statement time histogram: its mean and 99th percentile over the
	// interval since the previous sample
	nodeLatency = "canopy_statement_duration_seconds"
)

// Sample scrapes the node; a node that does not answer is "up" 0.
func (n *NodeSampler) Sample(ctx context.Context, now time.Time) []Sample {
	var out []Sample
	add := func(m string, v float64) { out = append(out, Sample{Source: n.source, Metric: m, T: now.Unix(), V: v}) }
	vals, hists, err := Scrape(ctx, n.client, n.url)
	if err != nil {
		add("up", 0)
		n.prev, n.prevHist = nil, nil
		return out
	}
	add("up", 1)
	for name, m := range nodeGauges {
		if v, ok := vals[name]; ok {
			add(m, v)
		}
	}
	dt := now.Sub(n.prevT).Seconds()
	for name, m := range nodeRates {
		v, ok := vals[name]
		if !ok {
			continue
		}
		if p, had := n.prev[name]; had && dt > 0 && v >= p {
			add(m, (v-p)/dt)
		}
	}
	if h, ok := hists[nodeLatency]; ok {
		if p, had := n.prevHist[nodeLatency]; had {
			if d, ok := h.Sub(p); ok && d.Count > 0 {
				add("latency_ms", 1000*d.Sum/d.Count)
				add("latency_p99_ms", 1000*d.Quantile(0.99))
			}
		}
	}
	n.prev, n.prevHist, n.prevT = vals, hists, now
	return out
}

// Histogram is a scraped Prometheus histogram.
type Histogram struct {
	Count, Sum float64
	Buckets    []Bucket // by upper bound, cumulative counts
}

// Bucket is one bucket of a histogram.
type Bucket struct {
	UpperBound, Count float64
}

// Sub is what was observed between an earlier scrape p and h; false when
// the two do not line up (the node restarted, or its buckets changed).
func (h Histogram) Sub(p Histogram) (Histogram, bool) {
	if h.Count < p.Count || len(h.Buckets) != len(p.Buckets) {
		return Histogram{}, false
	}
	d := Histogram{Count: h.Count - p.Count, Sum: h.Sum - p.Sum, Buckets: make([]Bucket, len(h.Buckets))}
	for i, b := range h.Buckets {
		if b.UpperBound != p.Buckets[i].UpperBound || b.Count < p.Buckets[i].Count {
			return Histogram{}, false
		}
		d.Buckets[i] = Bucket{UpperBound: b.UpperBound, Count: b.Count - p.Buckets[i].Count}
	}
	return d, true
}

// Quantile estimates the q-quantile as Prometheus's histogram_quantile
// does: linearly within the bucket that holds it. Past the last finite
// bucket it answers that bucket's bound (the most that can be said).
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Buckets) == 0 {
		return 0
	}
	rank := q * h.Count
	lower, below := 0.0, 0.0
	for _, b := range h.Buckets {
		if b.Count >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lower
			}
			if b.Count == below {
				return b.UpperBound
			}
			return lower + (b.UpperBound-lower)*(rank-below)/(b.Count-below)
		}
		lower, below = b.UpperBound, b.Count
	}
	return lower
}

// Scrape reads a Prometheus text endpoint: each family's value, summed
// over its label sets (counters, gauges and untyped values), and its
// histograms (of one label set: the first).
func Scrape(ctx context.Context, client *http.Client, url string) (map[string]float64, map[string]Histogram, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", url, err)
	}
	out, hists := map[string]float64{}, map[string]Histogram{}
	for name, f := range fams {
		if f.GetType() == dto.MetricType_HISTOGRAM && len(f.GetMetric()) > 0 {
			ph := f.GetMetric()[0].GetHistogram()
			h := Histogram{Count: float64(ph.GetSampleCount()), Sum: ph.GetSampleSum()}
			for _, b := range ph.GetBucket() {
				h.Buckets = append(h.Buckets, Bucket{UpperBound: b.GetUpperBound(), Count: float64(b.GetCumulativeCount())})
			}
			hists[name] = h
			continue
		}
		var sum float64
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				sum += m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				sum += m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				sum += m.GetUntyped().GetValue()
			default:
				continue
			}
		}
		out[name] = sum
	}
	return out, hists, nil
}
