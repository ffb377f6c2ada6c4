package aggregator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"

	"github.com/canopydb/canopy/aggregator/pool"
)

// HeartbeatInterval: every aggregator sends CANOPY PING to every other
// node this often; the round trips feed SHOW LEAVES and SHOW AGGREGATORS,
// and the answers carry the node's incarnation (fencing.go).
const HeartbeatInterval = 150 * time.Millisecond

const rttSamples = 20

type heartbeats struct {
	a     *Aggregator
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
	// fencing (fencing.go): the node's incarnation as last read (0:
	// unknown), whether its masters are to be confirmed again, and when
	// that was last asked for
	incarnation   uint64
	reconfirm     bool
	reconfirmedAt time.Time
}

func newHeartbeats(a *Aggregator) *heartbeats {
	return &heartbeats{a: a, nodes: make(map[string]*beat)}
}

type target struct {
	addr string
	node pool.Node // CANOPY PING needs no cluster link: no Login
}

func (h *heartbeats) targets() []target {
	st := h.a.State()
	var out []target
	for _, l := range st.Leaves {
		n := h.a.leafNode(l)
		n.Login = nil
		out = append(out, target{l.Addr(), n})
	}
	for _, ag := range st.Aggregators {
		if ag.Addr() != h.a.self {
			out = append(out, target{ag.Addr(), h.a.aggregatorNode(ag)})
		}
	}
	return out
}

func (h *heartbeats) run() {
	defer h.a.wg.Done()
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.a.stop:
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

func (h *heartbeats) probe(t target, b *beat) {
	h.mu.Lock()
	conn := b.conn
	h.mu.Unlock()
	start := time.Now()
	var err error
	var res *sqltypes.Result
	if conn == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err = pool.Connect(ctx, t.node)
		cancel()
		start = time.Now()
	}
	if err == nil {
		conn.Conn.SetDeadline(time.Now().Add(time.Second))
		res, err = conn.ExecuteFetch("CANOPY PING", 1, false)
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
			h.a.pools.Forget(t.addr)
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
	b.noteIncarnation(res)
}

// latency is the average round trip to a node in milliseconds, or false
// when it does not answer.
func (h *heartbeats) latency(addr string) (float64, bool) {
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

// down reports whether the last heartbeat to a node failed (a node not
// probed yet is not down).
func (h *heartbeats) down(addr string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.nodes[addr]
	return b != nil && b.failures > 0
}

// health is what failure detection knows of a node.
type health struct {
	known        bool // probed at least once
	failures     int
	failingSince time.Time
	refused      bool
	okStreak     int
}

func (h *heartbeats) health(addr string) health {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.nodes[addr]
	if b == nil {
		return health{}
	}
	return health{true, b.failures, b.failingSince, b.refused, b.okStreak}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}

func (h *heartbeats) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.nodes {
		if b.conn != nil {
			b.conn.Close()
		}
	}
	h.nodes = map[string]*beat{}
}
