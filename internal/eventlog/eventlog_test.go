package eventlog

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestLogKeepsTheLatest(t *testing.T) {
	l := New(3)
	for _, typ := range []string{"a", "b", "c", "d"} {
		l.Add(time.Time{}, "NOTICE", typ, "")
	}
	all := l.Since(0)
	if len(all) != 3 || all[0].Type != "b" || all[2].Type != "d" {
		t.Fatalf("ring: %+v", all)
	}
	if after := l.Since(all[1].ID); len(after) != 1 || after[0].Type != "d" {
		t.Fatalf("since the second: %+v", after)
	}
	if none := l.Since(all[2].ID); len(none) != 0 {
		t.Fatalf("since the last: %+v", none)
	}
	// a restarted node's IDs are past the old ones
	if again := New(3); again.next < all[2].ID-3 {
		t.Fatalf("a new log starts at %d, before %d", again.next, all[2].ID)
	}
}

func TestHandlerRecordsInfoAndAbove(t *testing.T) {
	l := New(10)
	// the inner handler logs only errors: events are recorded all the same
	log := slog.New(l.Handler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))).With("node", "n1")
	log.Debug("not an event")
	log.Info("partition failed over", "database", "db", "ordinal", 3)
	log.WithGroup("g").Warn("leaf is not answering heartbeats", "leaf", "h:1")
	ev := l.Since(0)
	if len(ev) != 2 {
		t.Fatalf("events: %+v", ev)
	}
	if ev[0].Severity != "NOTICE" || ev[0].Type != "partition failed over" || ev[0].Details != "node=n1 database=db ordinal=3" {
		t.Errorf("first: %+v", ev[0])
	}
	if ev[1].Severity != "WARNING" || ev[1].Details != "node=n1 g.leaf=h:1" {
		t.Errorf("second: %+v", ev[1])
	}
}
