package mux

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/tlsutil"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func fixed(b []byte) func() []byte { return func() []byte { return b } }

func newMux(t testing.TB, auth Auth) *Mux {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(ln, slog.New(slog.NewTextHandler(io.Discard, nil)), auth)
	t.Cleanup(func() { m.Close() })
	return m
}

func serverTLS(t testing.TB) *tls.Config {
	certPEM, keyPEM, err := tlsutil.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tlsutil.ServerConfig(cert)
}

// roundTrip dials tag, writes a byte and checks it arrives on l.
func roundTrip(t *testing.T, d Dialer, m *Mux, l net.Listener, tag byte) {
	t.Helper()
	c, err := d.Dial(m.Addr().String(), tag, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{42}); err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != 42 {
		t.Fatalf("read %v, %v", b, err)
	}
}

// refused checks that a connection never reaches l.
func refused(t *testing.T, l net.Listener) {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			got <- c
		}
	}()
	select {
	case c := <-got:
		c.Close()
		t.Fatal("an unauthenticated connection reached the protocol")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestRoutesByTag(t *testing.T) {
	m := newMux(t, Auth{Secret: fixed(secret)})
	d := Dialer{Secret: fixed(secret)}
	raft, repl := m.Listen(TagRaft), m.Listen(TagReplication)
	roundTrip(t, d, m, repl, TagReplication)
	roundTrip(t, d, m, raft, TagRaft)

	// A connection for a tag nobody listens on is closed.
	c, err := d.Dial(m.Addr().String(), 'Z', time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection for an unknown tag stayed open")
	}
	c.Close()
}

func TestListenAgainAfterClose(t *testing.T) {
	m := newMux(t, Auth{Secret: fixed(secret)})
	d := Dialer{Secret: fixed(secret)}
	l := m.Listen(TagRaft)
	if m.Listen(TagRaft) != l {
		t.Fatal("Listen twice gave two listeners")
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
	l2 := m.Listen(TagRaft)
	if l2 == l {
		t.Fatal("Listen after Close returned the closed listener")
	}
	roundTrip(t, d, m, l2, TagRaft)

	m.Close()
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after the mux closed: %v", err)
	}
}

func TestOnlyMembersAreAdmitted(t *testing.T) {
	m := newMux(t, Auth{Secret: fixed(secret)})
	l := m.Listen(TagReplication)
	other := []byte("another cluster's secret, 32 b..")
	if _, err := (Dialer{Secret: fixed(other)}).Dial(m.Addr().String(), TagReplication, time.Second); !errors.Is(err, ErrAuth) {
		t.Fatalf("dial with another secret: %v, want ErrAuth", err)
	}
	if _, err := (Dialer{}).Dial(m.Addr().String(), TagReplication, time.Second); err == nil {
		t.Fatal("a dialer without secret connected")
	}
	refused(t, l)

	// A node in no cluster admits no one, even a dialer with a secret.
	lonely := newMux(t, Auth{Secret: fixed(nil)})
	ll := lonely.Listen(TagReplication)
	if _, err := (Dialer{Secret: fixed(secret)}).Dial(lonely.Addr().String(), TagReplication, time.Second); err == nil {
		t.Fatal("a node without secret admitted a connection")
	}
	refused(t, ll)

	// A peer that speaks first without knowing the secret: the old
	// protocol's bare tag byte, or a guess at the proof.
	for _, b := range [][]byte{{TagReplication}, append([]byte{TagReplication, version, 0}, make([]byte, nonceLen+macLen)...)} {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, c) // until the mux closes it (or the deadline)
		c.Close()
	}
	refused(t, l)
}

func TestTLS(t *testing.T) {
	m := newMux(t, Auth{Secret: fixed(secret), TLS: serverTLS(t), RequireTLS: true})
	l := m.Listen(TagRaft)
	d := Dialer{Secret: fixed(secret), TLS: true}
	c, err := d.Dial(m.Addr().String(), TagRaft, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", c)
	}
	c.Close()
	if s, err := l.Accept(); err == nil {
		s.Close()
	}
	roundTrip(t, d, m, l, TagRaft)

	// the listener requires TLS: a plain dialer is refused
	if _, err := (Dialer{Secret: fixed(secret)}).Dial(m.Addr().String(), TagRaft, time.Second); err == nil {
		t.Fatal("a plain dialer connected to a node that requires TLS")
	}
	// a dialer that requires TLS refuses a node without it
	plain := newMux(t, Auth{Secret: fixed(secret)})
	if _, err := d.Dial(plain.Addr().String(), TagRaft, time.Second); err == nil {
		t.Fatal("a TLS dialer accepted a node without TLS")
	}
}

// FuzzHandshake throws arbitrary bytes at the internal port: nothing
// reaches a protocol, nothing panics, and the port keeps working.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte{TagRaft})
	f.Add([]byte{TagReplication, version, flagTLS})
	f.Add(append([]byte{TagReplication, version, 0}, make([]byte, nonceLen+macLen+8)...))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0xff}) // a TLS ClientHello's start
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	m := newMux(f, Auth{Secret: fixed(secret), TLS: serverTLS(f)})
	l := m.Listen(TagReplication)
	reached := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			reached <- struct{}{}
		}
	}()
	d := Dialer{Secret: fixed(secret)}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
		select {
		case <-reached:
			t.Fatalf("bytes %x reached the protocol without the secret", b)
		default:
		}
		// the port still admits a member
		ok, err := d.Dial(m.Addr().String(), TagReplication, time.Second)
		if err != nil {
			t.Fatalf("after %x: %v", b, err)
		}
		ok.Close()
		<-reached
	})
}

// TestStrangersCannotExhaustThePort: silent strangers hold at most
// maxHandshakes connections (the rest are closed at once) and only until
// the handshake deadline; members get in once they are gone.
func TestStrangersCannotExhaustThePort(t *testing.T) {
	m := newMux(t, Auth{Secret: fixed(secret)})
	l := m.Listen(TagRaft)
	var conns []net.Conn
	for i := 0; i < 3*maxHandshakes; i++ {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	if open > maxHandshakes {
		t.Errorf("%d silent strangers kept open, at most %d", open, maxHandshakes)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(handshakeIn + 2*time.Second)
	for {
		c, err := (Dialer{Secret: fixed(secret)}).Dial(m.Addr().String(), TagRaft, time.Second)
		if err == nil {
			c.Close()
			if s, err := l.Accept(); err == nil {
				s.Close()
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a member could not connect after the strangers left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
