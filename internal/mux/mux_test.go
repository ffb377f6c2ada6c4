package mux

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

func newMux(t *testing.T) *Mux {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(ln, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { m.Close() })
	return m
}

// roundTrip dials tag, writes a byte and checks it arrives on l.
func roundTrip(t *testing.T, m *Mux, l net.Listener, tag byte) {
	t.Helper()
	c, err := Dial(m.Addr().String(), tag, time.Second)
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

func TestRoutesByTag(t *testing.T) {
	m := newMux(t)
	raft, repl := m.Listen(TagRaft), m.Listen(TagReplication)
	roundTrip(t, m, repl, TagReplication)
	roundTrip(t, m, raft, TagRaft)

	// A connection for a tag nobody listens on is closed.
	c, err := Dial(m.Addr().String(), 'Z', time.Second)
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
	m := newMux(t)
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
	roundTrip(t, m, l2, TagRaft)

	m.Close()
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after the mux closed: %v", err)
	}
}
