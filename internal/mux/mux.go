// Package mux shares a node's internal port between protocols (raft,
// replication streams, …) and admits only members of the node's cluster.
//
// A dialer opens with a hello: one tag byte naming the protocol, a version
// byte, a flags byte (whether it wants TLS) and a random 32-byte nonce.
// The listener answers with the mode (plain or TLS; with TLS both sides
// switch now), its own nonce and a MAC over both nonces, the tag and the
// TLS channel binding, keyed by the cluster secret; the dialer checks it
// and answers with its own MAC (another label, so neither side can reflect
// the other's). Only then does the listener hand the connection to the
// protocol registered for the tag. A node without a secret (in no cluster)
// admits no one. Each side proves it knows the secret without sending it,
// and the binding to the TLS session defeats a man in the middle even
// though the certificates are self-signed and not verified.
package mux

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
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

const (
	version      byte = 1
	flagTLS      byte = 1
	modePlain    byte = 0
	modeTLS      byte = 1
	nonceLen          = 32
	macLen            = sha256.Size
	helloLen          = 3 + nonceLen
	handshakeIn       = 5 * time.Second // a peer that has not proved itself in this long is dropped
	bindingLabel      = "EXPORTER-canopy-internal-port"
	// maxHandshakes bounds the connections proving themselves at once: a
	// stranger opening many costs the node no more than this many
	// goroutines and sockets
	maxHandshakes = 64
)

// ErrAuth reports a peer that does not know the cluster secret.
var ErrAuth = errors.New("internal port: the peer is not a member of this cluster (authentication failed)")

// Auth is how the internal port admits peers.
type Auth struct {
	// Secret returns the cluster secret, or nil while the node is in no
	// cluster (then no one is admitted).
	Secret func() []byte
	// TLS, when set, lets peers switch to TLS (the node's certificate).
	TLS *tls.Config
	// RequireTLS refuses peers that do not switch to TLS.
	RequireTLS bool
}

// Dialer opens authenticated connections to other nodes' internal ports.
type Dialer struct {
	// Secret returns the cluster secret (nil: no connection can be made).
	Secret func() []byte
	// TLS asks the listener for TLS and refuses a plain connection.
	TLS bool
}

// Mux accepts connections and routes them by tag.
type Mux struct {
	ln         net.Listener
	log        *slog.Logger
	auth       Auth
	handshakes chan struct{} // a slot per connection proving itself

	mu        sync.Mutex
	listeners map[byte]*listener
	closed    bool
}

// New starts routing the connections accepted on ln that pass auth.
func New(ln net.Listener, log *slog.Logger, auth Auth) *Mux {
	m := &Mux{ln: ln, log: log, auth: auth, listeners: make(map[byte]*listener), handshakes: make(chan struct{}, maxHandshakes)}
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
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// out of file descriptors, say: wait and accept again, as
			// net/http does, rather than leave the port dead
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("internal port accept", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case m.handshakes <- struct{}{}:
			go m.route(c)
		default:
			c.Close() // too many strangers at once: members retry
		}
	}
}

func (m *Mux) route(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeIn))
	conn, tag, err := m.accept(c)
	<-m.handshakes
	if err != nil {
		// logged at debug: a port scanner or a node of another cluster
		// would otherwise fill the log
		m.log.Debug("internal port: refused a connection", "from", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	m.mu.Lock()
	l := m.listeners[tag]
	m.mu.Unlock()
	if l == nil {
		m.log.Warn("internal port: connection for an unknown protocol", "tag", string([]byte{tag}), "from", c.RemoteAddr())
		conn.Close()
		return
	}
	select {
	case l.conns <- conn:
	case <-l.done:
		conn.Close()
	}
}

// accept runs the listener's side of the handshake.
func (m *Mux) accept(c net.Conn) (net.Conn, byte, error) {
	var hello [helloLen]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return nil, 0, fmt.Errorf("read hello: %w", err)
	}
	tag, ver, flags, cnonce := hello[0], hello[1], hello[2], hello[3:]
	if ver != version {
		return nil, 0, fmt.Errorf("hello of version %d (want %d)", ver, version)
	}
	secret := m.secret()
	if secret == nil {
		return nil, 0, errors.New("this node is in no cluster")
	}
	mode := modePlain
	switch {
	case flags&flagTLS != 0 && m.auth.TLS != nil:
		mode = modeTLS
	case flags&flagTLS != 0:
		return nil, 0, errors.New("the peer wants TLS and this node has no certificate")
	case m.auth.RequireTLS:
		return nil, 0, errors.New("the peer does not use TLS and this node requires it")
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		return nil, 0, err
	}
	conn := c
	var binding []byte
	if mode == modeTLS {
		tc := tls.Server(c, m.auth.TLS)
		if err := tc.Handshake(); err != nil {
			return nil, 0, fmt.Errorf("TLS: %w", err)
		}
		cs := tc.ConnectionState()
		b, err := cs.ExportKeyingMaterial(bindingLabel, nil, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("TLS channel binding: %w", err)
		}
		conn, binding = tc, b
	}
	snonce := make([]byte, nonceLen)
	rand.Read(snonce)
	reply := append(snonce, mac(secret, "server", tag, cnonce, snonce, binding)...)
	if _, err := conn.Write(reply); err != nil {
		return nil, 0, err
	}
	got := make([]byte, macLen)
	if _, err := io.ReadFull(conn, got); err != nil {
		return nil, 0, fmt.Errorf("read proof: %w", err)
	}
	if !hmac.Equal(got, mac(secret, "client", tag, cnonce, snonce, binding)) {
		return nil, 0, ErrAuth
	}
	return conn, tag, nil
}

func (m *Mux) secret() []byte {
	if m.auth.Secret == nil {
		return nil
	}
	return m.auth.Secret()
}

// mac proves knowledge of the secret for one side of one handshake.
func mac(secret []byte, side string, tag byte, cnonce, snonce, binding []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("canopy internal port v1 " + side))
	h.Write([]byte{tag})
	h.Write(cnonce)
	h.Write(snonce)
	h.Write(binding)
	return h.Sum(nil)
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

// Dial connects to a node's internal port for one protocol and proves
// that both ends are members of the same cluster.
func (d Dialer) Dial(addr string, tag byte, timeout time.Duration) (net.Conn, error) {
	var secret []byte
	if d.Secret != nil {
		secret = d.Secret()
	}
	if secret == nil {
		return nil, fmt.Errorf("dial %s: this node is in no cluster (no cluster secret)", addr)
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	conn, err := d.handshake(c, secret, tag, timeout)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

func (d Dialer) handshake(c net.Conn, secret []byte, tag byte, timeout time.Duration) (net.Conn, error) {
	c.SetDeadline(time.Now().Add(max(timeout, time.Second)))
	hello := make([]byte, 3, helloLen)
	hello[0], hello[1] = tag, version
	if d.TLS {
		hello[2] = flagTLS
	}
	cnonce := make([]byte, nonceLen)
	rand.Read(cnonce)
	hello = append(hello, cnonce...)
	if _, err := c.Write(hello); err != nil {
		return nil, err
	}
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return nil, fmt.Errorf("the node refused the connection (%v): it is in no cluster, in another one, or wants TLS (--node-tls)", err)
	}
	conn := c
	var binding []byte
	switch mode[0] {
	case modePlain:
		if d.TLS {
			return nil, errors.New("the node offers no TLS and this node requires it")
		}
	case modeTLS:
		// The certificate is self-signed; the MACs below, bound to this
		// TLS session, authenticate the peer instead.
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		cs := tc.ConnectionState()
		b, err := cs.ExportKeyingMaterial(bindingLabel, nil, 32)
		if err != nil {
			return nil, fmt.Errorf("TLS channel binding: %w", err)
		}
		conn, binding = tc, b
	default:
		return nil, fmt.Errorf("unknown mode %d", mode[0])
	}
	reply := make([]byte, nonceLen+macLen)
	if _, err := io.ReadFull(conn, reply); err != nil {
		return nil, fmt.Errorf("read the node's proof: %w", err)
	}
	snonce, smac := reply[:nonceLen], reply[nonceLen:]
	if !hmac.Equal(smac, mac(secret, "server", tag, cnonce, snonce, binding)) {
		return nil, ErrAuth
	}
	if _, err := conn.Write(mac(secret, "client", tag, cnonce, snonce, binding)); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}
