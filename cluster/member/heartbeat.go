package member

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/cluster/pool"
)

// HeartbeatInterval: every aggregator sends SELECT 1 to every other node
// this often; the round trips feed SHOW LEAVES and SHOW AGGREGATORS.
const HeartbeatInterval = 150 * time.Millisecond

const rttSamples = 20

// Heartbeats measure the other nodes: round trips for SHOW LEAVES and
// SHOW AGGREGATORS, failures for failure detection (package
// cluster/manager) and for the query tier, which does not wait on a node
// that is down.
type Heartbeats struct {
	m     *Member
	mu    sync.Mutex
	nodes map[string]*beat
}

type beat struct {
	conn      *mysql.Conn
	rtts      []time.Duration
	lastOK    time.Time
	failures  int
	reachable bool
	probing   bool
	// failure detection: when the current run of failures began, whether
	// the last one was a refused connection, successes in a row
	failingSince time.Time
	refused      bool
	okStreak     int
}

func newHeartbeats(m *Member) *Heartbeats {
	return &Heartbeats{m: m, nodes: make(map[string]*beat)}
}

type target struct {
	addr string
	node pool.Node // SELECT 1 needs no cluster link: no Login
}

func (h *Heartbeats) targets() []target {
	st := h.m.State()
	var out []target
	for _, l := range st.Leaves {
		n := h.m.LeafNode(l)
		n.Login = nil
		out = append(out, target{l.Addr(), n})
	}
	for _, ag := range st.Aggregators {
		if ag.Addr() != h.m.self {
			out = append(out, target{ag.Addr(), h.m.AggregatorNode(ag)})
		}
	}
	return out
}

func (h *Heartbeats) run() {
	defer h.m.wg.Done()
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.m.stop:
			return
		case <-tick.C:
		}
		ts := h.targets()
		live := map[string]bool{}
		h.mu.Lock()
		for _, t := range ts {
			live[t.addr] = true
			b := h.nodes[t.addr]
			if b == nil {
				b = &beat{}
				h.nodes[t.addr] = b
			}
			if b.probing {
				continue // a hung node does not hold up the others' heartbeats
			}
			b.probing = true
			go h.probe(t, b)
		}
		for addr, b := range h.nodes {
			if !live[addr] {
				if b.conn != nil {
					b.conn.Close()
				}
				delete(h.nodes, addr)
			}
		}
		h.mu.Unlock()
	}
}

func (h *Heartbeats) probe(t target, b *beat) {
	h.mu.Lock()
	conn := b.conn
	h.mu.Unlock()
	start := time.Now()
	var err error
	if conn == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err = pool.Connect(ctx, t.node)
		cancel()
		start = time.Now()
	}
	if err == nil {
		conn.Conn.SetDeadline(time.Now().Add(time.Second))
		_, err = conn.ExecuteFetch("SELECT 1", 1, false)
		conn.Conn.SetDeadline(time.Time{})
	}
	rtt := time.Since(start)
	h.mu.Lock()
	defer h.mu.Unlock()
	b.probing = false
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		if b.reachable {
			// pooled connections to a node that went away are dead too
			h.m.pools.Forget(t.addr)
		}
		if b.failures == 0 {
			b.failingSince = start
		}
		b.conn = nil
		b.failures++
		b.reachable = false
		b.refused = isRefused(err)
		b.okStreak = 0
		return
	}
	b.conn = conn
	b.failures = 0
	b.okStreak++
	b.reachable = true
	b.lastOK = time.Now()
	b.rtts = append(b.rtts, rtt)
	if len(b.rtts) > rttSamples {
		b.rtts = b.rtts[1:]
	}
}

// Latency is the average round trip to a node in milliseconds, or false
// when it does not answer.
func (h *Heartbeats) Latency(addr string) (float64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.nodes[addr]
	if b == nil || !b.reachable || len(b.rtts) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, r := range b.rtts {
		sum += r
	}
	return float64(sum.Microseconds()) / float64(len(b.rtts)) / 1000, true
}

// Down reports whether the last heartbeat to a node failed (a node not
// probed yet is not down).
func (h *Heartbeats) Down(addr string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.nodes[addr]
	return b != nil && b.failures > 0
}

// Health is what failure detection knows of a node.
type Health struct {
	Known        bool // probed at least once
	Failures     int
	FailingSince time.Time
	Refused      bool
	OKStreak     int
}

// Health is what the heartbeats know of a node.
func (h *Heartbeats) Health(addr string) Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.nodes[addr]
	if b == nil {
		return Health{}
	}
	return Health{true, b.failures, b.failingSince, b.refused, b.okStreak}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}

func (h *Heartbeats) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.nodes {
		if b.conn != nil {
			b.conn.Close()
		}
	}
	h.nodes = map[string]*beat{}
}
