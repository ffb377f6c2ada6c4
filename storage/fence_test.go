package storage

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dolthub/vitess/go/mysql"
)

// pause makes the store's watchdog see a gap as long as d in its
// scheduling, as if the process had been stopped.
func (s *Store) pause(d time.Duration) { s.fence.last.Add(-int64(d)) }

func expectCode(t *testing.T, err error, code int, what string) {
	t.Helper()
	var se *mysql.SQLError
	if !errors.As(err, &se) || se.Num != code {
		t.Fatalf("%s: got %v, want error %d", what, err, code)
	}
}

// TestPauseFencing: with fencing on, a start and every pause make the
// master partitions suspect (commits refused with 1290) until a promotion
// naming the current incarnation confirms them; a stale incarnation
// changes nothing; a commit under way across a pause is acknowledged once
// its partition is confirmed, and fails if it is deposed; a deposed copy
// takes no writes until promoted at a newer term. Databases that are not
// partitions are never fenced.
func TestPauseFencing(t *testing.T) {
	te := newTestEngine(t, "")
	s := te.store
	ctx := te.session()
	if _, err := s.EnsureReplica("d"); err != nil { // the distributed database's copy
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE DATABASE test", "CREATE DATABASE d_0", "CREATE DATABASE d_1",
		"CREATE TABLE test.t (id INT PRIMARY KEY)", "CREATE TABLE d_0.t (id INT PRIMARY KEY)", "CREATE TABLE d_1.t (id INT PRIMARY KEY)"} {
		te.must(ctx, q)
	}
	te.must(ctx, "INSERT INTO d_0.t VALUES (1)") // fencing off: nothing is suspect
	s.EnableFencing(Fencing{Threshold: 300 * time.Millisecond, ConfirmWait: 300 * time.Millisecond, PartitionOf: func(name string) (string, bool) {
		i := strings.LastIndexByte(name, '_')
		return name[:max(i, 0)], i > 0
	}})
	states := func() string {
		var out []string
		for _, d := range s.DatabaseInfos() {
			if d.Suspect {
				out = append(out, d.Name+":suspect")
			}
			if d.Deposed {
				out = append(out, d.Name+":deposed")
			}
		}
		return strings.Join(out, " ")
	}
	if got := states(); got != "d_0:suspect d_1:suspect" {
		t.Fatalf("after the start: %q", got)
	}
	_, err := te.run(ctx, "INSERT INTO d_0.t VALUES (2)")
	expectCode(t, err, 1290, "a write to a suspect partition")
	te.must(ctx, "INSERT INTO test.t VALUES (1)") // not a partition
	_, err = te.run(ctx, "SELECT * FROM d_1.t")
	expectCode(t, err, 1290, "a read of a partition not confirmed in time")

	inc := s.Incarnation()
	if _, err := s.PromoteConfirmed("d_0", 0, inc+1); !errors.Is(err, ErrStaleIncarnation) {
		t.Fatalf("a confirmation naming another incarnation: %v", err)
	}
	if _, err := s.PromoteConfirmed("d_0", 0, inc); err != nil {
		t.Fatal(err)
	}
	te.must(ctx, "INSERT INTO d_0.t VALUES (2)")
	if got, n := states(), s.SuspectCount(); got != "d_1:suspect" || n != 1 {
		t.Fatalf("after confirming d_0: %q, %d suspect", got, n)
	}

	// a pause: suspect again, and the incarnation changed
	s.pause(time.Second)
	_, err = te.run(ctx, "INSERT INTO d_0.t VALUES (3)")
	expectCode(t, err, 1290, "a write after a pause")
	if s.Incarnation() == inc {
		t.Fatal("the incarnation did not change with a pause")
	}
	if _, err := s.PromoteConfirmed("d_0", 0, inc); !errors.Is(err, ErrStaleIncarnation) {
		t.Fatalf("a confirmation sent before the pause: %v", err)
	}
	inc = s.Incarnation()
	if _, err := s.PromoteConfirmed("d_0", 0, inc); err != nil {
		t.Fatal(err)
	}

	// a write to a suspect partition waits for its confirmation
	s.pause(time.Second)
	start := time.Now() // before the confirmation's clock starts
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.PromoteConfirmed("d_0", 0, s.Incarnation())
	}()
	te.must(ctx, "INSERT INTO d_0.t VALUES (10)")
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("a write to a suspect partition returned after %s, before the confirmation", took)
	}
	te.must(ctx, "DELETE FROM d_0.t WHERE id = 10")
	// … and so does a read
	s.pause(time.Second)
	start = time.Now()
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.PromoteConfirmed("d_0", 0, s.Incarnation())
	}()
	te.expect(ctx, "SELECT id FROM d_0.t WHERE id = 2", "2")
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("a read of a suspect partition returned after %s, before the confirmation", took)
	}

	// a commit under way across a pause waits for the confirmation
	paused := make(chan struct{})
	var hook ReplicaWaiter = func(db string, lsn uint64) error {
		if db == "d_0" {
			s.pause(time.Second)
			close(paused)
		}
		return nil
	}
	s.SetReplicaWaiter(hook)
	go func() {
		<-paused
		time.Sleep(100 * time.Millisecond)
		s.PromoteConfirmed("d_0", 0, s.Incarnation())
	}()
	start = time.Now()
	te.must(ctx, "INSERT INTO d_0.t VALUES (3)")
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("a commit across a pause returned after %s, before the confirmation", took)
	}
	// … and fails if its partition is deposed meanwhile
	paused = make(chan struct{})
	go func() {
		<-paused
		time.Sleep(50 * time.Millisecond)
		s.Depose("d_0", 7)
	}()
	_, err = te.run(ctx, "INSERT INTO d_0.t VALUES (4)")
	expectCode(t, err, 1105, "a commit across a pause whose partition was deposed")
	s.SetReplicaWaiter(func(string, uint64) error { return nil })
	if got := states(); got != "d_0:suspect d_0:deposed d_1:suspect" {
		t.Fatalf("after deposing d_0: %q", got)
	}
	inc = s.Incarnation()
	if _, err := s.PromoteConfirmed("d_0", 0, inc); err != nil {
		t.Fatal(err)
	}
	_, err = te.run(ctx, "INSERT INTO d_0.t VALUES (5)")
	expectCode(t, err, 1290, "a write to a deposed partition confirmed at its own term")
	_, err = te.run(ctx, "SELECT * FROM d_0.t WHERE id = 1")
	expectCode(t, err, 1290, "a read of a deposed partition")
	if _, err := s.PromoteConfirmed("d_0", 7, inc); err != nil {
		t.Fatal(err)
	}
	_, err = te.run(ctx, "INSERT INTO d_0.t VALUES (5)")
	expectCode(t, err, 1290, "a write to a partition promoted at the term that deposed it")
	if _, err := s.PromoteConfirmed("d_0", 8, inc); err != nil {
		t.Fatal(err)
	}
	te.must(ctx, "INSERT INTO d_0.t VALUES (5)")
	te.expect(ctx, "SELECT id FROM d_0.t ORDER BY id", "1; 2; 3; 4; 5")

	// a replica is never suspect, and a depose of a copy with a newer
	// term does nothing
	if _, err := s.Demote(ctx, "d_1"); err != nil {
		t.Fatal(err)
	}
	if s.Depose("d_0", 8) {
		t.Error("a copy of term 8 deposed by term 8")
	}
	if got := states(); got != "" {
		t.Fatalf("after demoting d_1: %q", got)
	}
	// an aggregator's read of a partition that is a replica here is
	// refused (its metadata is behind a hand-over); a client's is not
	te.expect(ctx, "SELECT COUNT(*) FROM d_1.t", "0")
	link := te.session()
	link.Session.(*Session).SetRouted(func() bool { return true })
	_, err = te.run(link, "SELECT COUNT(*) FROM d_1.t")
	expectCode(t, err, 1290, "a routed read of a replica partition")
	te.expect(link, "SELECT COUNT(*) FROM d_0.t", "5")
}
