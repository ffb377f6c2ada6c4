// Package pool keeps connections from an aggregator to other nodes: a pool
// of vitess MySQL client connections per node. Rows arrive as
// sqltypes.Value, which the aggregator forwards to its clients without
// decoding them (deps.md §4). The pools of an aggregator belong to its
// member (package cluster/member), below the query tier and the cluster
// manager, which both use them.
package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	"github.com/dolthub/vitess/go/vt/vttls"
)

// Node is a node's address and credentials.
type Node struct {
	Host     string
	Port     int
	User     string
	Password string
	// TLS makes every connection TLS (the node's certificate is not
	// verified: Login authenticates the node where it matters).
	TLS bool
	// Login, when set, runs on every new connection before its first use
	// (the cluster link handshake); an error closes the connection.
	Login func(c *mysql.Conn) error
}

// Addr is host:port.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// Pools holds one pool per node.
type Pools struct {
	mu    sync.Mutex
	pools map[string]*Pool
	// retired are pools Forget dropped whose connections may still be in
	// use: Sever closes those too.
	retired  map[string][]*Pool
	maxIdle  int
	defaults *Settings
}

// New returns an empty set of pools. defaults are the node's defaults,
// which statements of no client (Pool.Exec) run with; nil leaves
// connections with whatever settings they hold.
func New(maxIdle int, defaults *Settings) *Pools {
	return &Pools{pools: make(map[string]*Pool), retired: make(map[string][]*Pool), maxIdle: maxIdle, defaults: defaults}
}

// Get returns the pool of a node, creating it (credentials are refreshed).
func (ps *Pools) Get(n Node) *Pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.pools[n.Addr()]
	if !ok {
		p = &Pool{node: n, maxIdle: ps.maxIdle, defaults: ps.defaults}
		ps.pools[n.Addr()] = p
	}
	return p
}

// Forget closes and drops a node's pool. Its connections in use stay
// open until released, or until Sever closes them.
func (ps *Pools) Forget(addr string) {
	p := ps.take(addr)
	if p == nil {
		return
	}
	p.Close()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	kept := ps.retired[addr][:0]
	for _, r := range ps.retired[addr] {
		if r.inUse() {
			kept = append(kept, r)
		}
	}
	ps.retired[addr] = append(kept, p)
}

func (p *Pool) inUse() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.busy) > 0
}

// take removes a node's pool from the set and returns it.
func (ps *Pools) take(addr string) *Pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.pools[addr]
	delete(ps.pools, addr)
	return p
}

// Sever drops a node's pool and closes its connections in use too: the
// node was declared failed, and statements waiting on it (a hung node
// never answers) end with an error instead of waiting for it to resume.
func (ps *Pools) Sever(addr string) {
	ps.mu.Lock()
	retired := ps.retired[addr]
	delete(ps.retired, addr)
	ps.mu.Unlock()
	for _, p := range retired {
		p.sever()
	}
	if p := ps.take(addr); p != nil {
		p.sever()
	}
}

// sever closes the pool and its connections in use.
func (p *Pool) sever() {
	p.Close()
	p.mu.Lock()
	p.severed = true // a connection still being dialed is closed when it arrives
	busy := make([]*Conn, 0, len(p.busy))
	for c := range p.busy {
		busy = append(busy, c)
	}
	p.mu.Unlock()
	for _, c := range busy {
		c.Conn.Conn.Close() // the socket: a read blocked on it fails at once
	}
}

// Open counts the open connections to a node.
func (ps *Pools) Open(addr string) int {
	ps.mu.Lock()
	p := ps.pools[addr]
	ps.mu.Unlock()
	if p == nil {
		return 0
	}
	return int(p.open.Load())
}

// Close closes every pool.
func (ps *Pools) Close() {
	ps.mu.Lock()
	all := ps.pools
	ps.pools = map[string]*Pool{}
	ps.mu.Unlock()
	for _, p := range all {
		p.Close()
	}
}

// Pool is the idle connections to one node.
type Pool struct {
	node     Node
	maxIdle  int
	defaults *Settings
	mu       sync.Mutex
	idle     []*mysql.Conn
	busy     map[*Conn]bool
	closed   bool
	severed  bool
	open     atomic.Int64
}

// Connect opens one connection to a node, outside any pool, and runs its
// Login.
func Connect(ctx context.Context, n Node) (*mysql.Conn, error) {
	params := &mysql.ConnParams{Host: n.Host, Port: n.Port, Uname: n.User, Pass: n.Password}
	if n.TLS {
		params.SslMode = vttls.Required
	}
	c, err := mysql.Connect(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, n.Addr(), err)
	}
	if n.Login != nil {
		if dl, ok := ctx.Deadline(); ok {
			c.Conn.SetDeadline(dl)
		}
		err := n.Login(c)
		c.Conn.SetDeadline(time.Time{})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", n.Addr(), err)
		}
	}
	return c, nil
}

// Conn is a borrowed connection; give it back with Release.
type Conn struct {
	*mysql.Conn
	pool   *Pool
	broken bool
	// deadline: acquireFor set the connection's deadline
	deadline bool
	// stopKill unregisters the KILL QUERY sent when the borrower's context
	// ends (see watch)
	stopKill func() bool
}

// ErrUnreachable wraps failures to connect to a node.
var ErrUnreachable = errors.New("node unreachable")

// Acquire borrows a connection, dialing a new one when none is idle.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		bc := &Conn{Conn: c, pool: p}
		p.markBusy(bc)
		p.mu.Unlock()
		bc.watch(ctx)
		return bc, nil
	}
	p.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := Connect(dctx, p.node)
	if err != nil {
		return nil, err
	}
	c.Conn = &coalescingConn{Conn: c.Conn}
	p.mu.Lock()
	if p.severed {
		p.mu.Unlock()
		c.Close()
		return nil, fmt.Errorf("%w: %s: its connections were severed (failed node)", ErrUnreachable, p.node.Addr())
	}
	p.open.Add(1)
	bc := &Conn{Conn: c, pool: p}
	p.markBusy(bc)
	p.mu.Unlock()
	bc.watch(ctx)
	return bc, nil
}

// killKey marks a context whose end is a KILL QUERY (see Killable).
type killKey struct{}

// Killable marks a statement's context as one that ends only when the
// statement is killed (a context that also ends when the statement ends
// would kill the leaf connections a transaction keeps).
func Killable(ctx context.Context) context.Context { return context.WithValue(ctx, killKey{}, true) }

// watch stops the leaf's work when a Killable context of the borrower
// ends (a client's KILL QUERY on the aggregator) while the connection is
// borrowed: KILL QUERY of the connection's id on another connection to
// the node. A connection that may have been killed is not reused (a late
// KILL would hit its next statement).
func (c *Conn) watch(ctx context.Context) {
	if ctx.Done() == nil || ctx.Value(killKey{}) == nil {
		return
	}
	c.stopKill = context.AfterFunc(ctx, func() {
		kctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		k, err := Connect(kctx, c.pool.node)
		if err != nil {
			return
		}
		defer k.Close()
		k.ExecuteFetch(fmt.Sprintf("KILL QUERY %d", c.ID()), 0, false)
	})
}

func (p *Pool) markBusy(c *Conn) {
	if p.busy == nil {
		p.busy = map[*Conn]bool{}
	}
	p.busy[c] = true
}

// Release returns the connection; a broken one is closed.
func (c *Conn) Release() {
	if c.stopKill != nil && !c.stopKill() {
		c.broken = true // killed, or about to be
	}
	p := c.pool
	p.mu.Lock()
	delete(p.busy, c)
	p.mu.Unlock()
	if c.broken || c.IsClosed() {
		c.Close()
		p.open.Add(-1)
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		p.open.Add(-1)
		return
	}
	p.idle = append(p.idle, c.Conn)
	p.mu.Unlock()
}

// Exec runs one statement and returns its whole result. A connection that
// failed below SQL (I/O) is marked broken.
func (c *Conn) Exec(query string, maxRows int) (*sqltypes.Result, error) {
	res, err := c.ExecuteFetch(query, maxRows, true)
	return res, c.Check(err) // a node that restarted broke them all
}

// Check marks the connection broken when err is not an SQL error (the
// connection failed below SQL) and returns err.
func (c *Conn) Check(err error) error {
	if err != nil && !isSQLError(err) {
		c.broken = true
		c.pool.dropIdle()
	}
	return err
}

func isSQLError(err error) bool {
	var se *mysql.SQLError
	if !errors.As(err, &se) {
		return false
	}
	return se.Num < 2000 || se.Num >= 3000 // client errors (CR_*) are 2000-2999
}

// dropIdle closes the idle connections (the pool stays usable).
func (p *Pool) dropIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
		p.open.Add(-1)
	}
}

// Close closes the idle connections; connections in use close when
// released.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.dropIdle()
}
