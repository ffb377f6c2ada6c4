// Package mux shares a node's internal port between protocols: the dialer
// sends one tag byte, and the listener hands the connection to the
// protocol registered for that tag (raft, replication streams, …).
package mux

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Tags of the protocols on the internal port.
const (
	TagRaft        byte = 'R'
	TagReplication byte = 'L'
)

// Mux accepts connections and routes them by tag.
type Mux struct {
	ln  net.Listener
	log *slog.Logger

	mu        sync.Mutex
	listeners map[byte]*listener
	closed    bool
}

// New starts routing connections accepted on ln.
func New(ln net.Listener, log *slog.Logger) *Mux {
	m := &Mux{ln: ln, log: log, listeners: make(map[byte]*listener)}
	go m.serve()
	return m
}

// Addr is the internal address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Listen returns the listener for one tag; after that listener is closed,
// the next Listen makes a new one (an aggregator stopped and started
// again in the same process).
func (m *Mux) Listen(tag byte) net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.listeners[tag]; ok {
		return l
	}
	l := &listener{m: m, tag: tag, conns: make(chan net.Conn, 16), done: make(chan struct{})}
	m.listeners[tag] = l
	return l
}

// Close stops accepting and closes every tag listener.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	for _, l := range m.listeners {
		l.closeOnce.Do(func() { close(l.done) })
	}
	m.mu.Unlock()
	return m.ln.Close()
}

func (m *Mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				m.log.Warn("internal port accept", "err", err)
			}
			return
		}
		go m.route(c)
	}
}

func (m *Mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var tag [1]byte
	if _, err := io.ReadFull(c, tag[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	m.mu.Lock()
	l := m.listeners[tag[0]]
	m.mu.Unlock()
	if l == nil {
		m.log.Warn("internal port: connection for an unknown protocol", "tag", string(tag[:]), "from", c.RemoteAddr())
		c.Close()
		return
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

type listener struct {
	m         *Mux
	tag       byte
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	l.m.mu.Lock()
	if l.m.listeners[l.tag] == l {
		delete(l.m.listeners, l.tag)
	}
	l.m.mu.Unlock()
	return nil
}

func (l *listener) Addr() net.Addr { return l.m.ln.Addr() }

// Dial connects to a node's internal port for one protocol.
func Dial(addr string, tag byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{tag}); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}
