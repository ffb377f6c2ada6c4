// Package eventlog keeps a node's latest cluster events: what the master
// aggregator's controller did and saw (failovers, attaches, rebalances,
// a leaf's failure), recorded from its structured log and shown as
// information_schema.MV_EVENTS, so an operator (or the Ops agent) can
// read every one of them, however quickly the cluster changed.
package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Event is one recorded event.
type Event struct {
	ID       uint64
	Time     time.Time
	Severity string // NOTICE, WARNING or ERROR
	Type     string // what happened: the log message
	Details  string // its attributes, key=value
}

// Log is a ring of the latest events.
type Log struct {
	mu   sync.Mutex
	ring []Event
	max  int
	next uint64
}

// New keeps the latest max events. Event IDs start at the log's creation
// time in microseconds, so they keep increasing across restarts of the
// node: a reader that remembers the last ID it saw reads nothing twice,
// and misses nothing while fewer than max events come between its reads.
func New(max int) *Log {
	return &Log{max: max, next: uint64(time.Now().UnixMicro())}
}

// Add records an event.
func (l *Log) Add(t time.Time, severity, typ, details string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	if len(l.ring) == l.max {
		copy(l.ring, l.ring[1:])
		l.ring = l.ring[:l.max-1]
	}
	l.ring = append(l.ring, Event{ID: l.next, Time: t, Severity: severity, Type: typ, Details: details})
}

// Since returns the events after id, oldest first.
func (l *Log) Since(id uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := len(l.ring)
	for i > 0 && l.ring[i-1].ID > id {
		i--
	}
	return append([]Event(nil), l.ring[i:]...)
}

// Handler records every record of level Info and above logged through it
// as an event, and passes it on to inner.
func (l *Log) Handler(inner slog.Handler) slog.Handler {
	return &handler{log: l, inner: inner}
}

type handler struct {
	log   *Log
	inner slog.Handler
	attrs []slog.Attr // added through WithAttrs after wrapping, keys qualified by their group
	group string
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo || h.inner.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		var b strings.Builder
		add := func(a slog.Attr) bool {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%v", h.qualified(a.Key), a.Value.Resolve())
			return true
		}
		for _, a := range h.attrs {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%v", a.Key, a.Value.Resolve())
		}
		r.Attrs(add)
		sev := "NOTICE"
		switch {
		case r.Level >= slog.LevelError:
			sev = "ERROR"
		case r.Level >= slog.LevelWarn:
			sev = "WARNING"
		}
		h.log.Add(r.Time, sev, r.Message, b.String())
	}
	if h.inner.Enabled(ctx, r.Level) {
		return h.inner.Handle(ctx, r)
	}
	return nil
}

func (h *handler) qualified(key string) string {
	if h.group != "" {
		return h.group + "." + key
	}
	return key
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		c.attrs = append(c.attrs, slog.Attr{Key: h.qualified(a.Key), Value: a.Value})
	}
	c.inner = h.inner.WithAttrs(attrs)
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	c.inner = h.inner.WithGroup(name)
	return &c
}
