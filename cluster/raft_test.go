package cluster

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/mux"
)

// Raft recovery paths with in-process members on real internal ports:
// a forced takeover (ForceSoleVoter), a replaced voter rejoining blank,
// holding when no one answers, and stepping down.

var secret = []byte("0123456789abcdef0123456789abcdef")

const holdInterval = 50 * time.Millisecond

// member is one aggregator's raft member; restart keeps its store and
// internal port, as a process restart would.
type member struct {
	t     *testing.T
	id    string
	dir   string
	db    *pebble.DB
	mux   *mux.Mux
	rf    *Raft
	mu    sync.Mutex
	check Verdict // what Config.Check answers
	asked int     // how often it was asked
}

func newMember(t *testing.T, id string) *member {
	t.Helper()
	dir := t.TempDir()
	db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &member{t: t, id: id, dir: dir, db: db,
		mux: mux.New(ln, slog.New(slog.NewTextHandler(io.Discard, nil)), mux.Auth{Secret: func() []byte { return secret }})}
	t.Cleanup(func() {
		if m.rf != nil {
			m.rf.Shutdown()
		}
		m.mux.Close()
		db.Close()
	})
	return m
}

func (m *member) addr() string { return m.mux.Addr().String() }

func (m *member) setCheck(v Verdict) {
	m.mu.Lock()
	m.check = v
	m.mu.Unlock()
}

func (m *member) timesAsked() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.asked
}

func (m *member) start(bootstrap bool) {
	m.t.Helper()
	rf, err := Start(Config{
		ID: m.id, RaftAddr: m.addr(), Dir: m.dir, DB: m.db,
		Listen:       func() net.Listener { return m.mux.Listen(mux.TagRaft) },
		Dialer:       mux.Dialer{Secret: func() []byte { return secret }},
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		HoldInterval: holdInterval,
		Check: func(*meta.State) Verdict {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.asked++
			return m.check
		},
	}, bootstrap)
	if err != nil {
		m.t.Fatalf("start %s: %v", m.id, err)
	}
	m.rf = rf
}

func (m *member) stop() {
	m.t.Helper()
	if err := m.rf.Shutdown(); err != nil {
		m.t.Fatalf("shut %s down: %v", m.id, err)
	}
	m.rf = nil
}

func (m *member) restart() {
	m.t.Helper()
	m.stop()
	m.start(false)
}

func (m *member) propose(p interface{}) {
	m.t.Helper()
	if err := m.rf.Propose(p); err != nil {
		m.t.Fatalf("%s proposes %T: %v", m.id, p, err)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectNoLeadership checks that m does not become master for a while.
func expectNoLeadership(t *testing.T, m *member, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if m.rf.IsLeader() {
			t.Fatalf("%s elected itself", m.id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func variable(m *member, name string) string { return m.rf.State().Variables[name] }

// pair founds a group with a as master and b as its follower, both
// holding the metadata.
func pair(t *testing.T) (a, b *member) {
	a, b = newMember(t, "a:3306"), newMember(t, "b:3306")
	a.start(true)
	waitFor(t, "a elected", a.rf.IsLeader)
	a.propose(meta.Bootstrap{ClusterID: "c1", Aggregator: meta.Aggregator{Host: "a", Port: 3306}})
	b.start(false)
	if err := a.rf.AddFollower(b.id, b.addr()); err != nil {
		t.Fatal(err)
	}
	a.propose(meta.AddAggregator{Aggregator: meta.Aggregator{Host: "b", Port: 3306}})
	a.propose(meta.SetVariable{Name: "v", Value: "1"})
	waitFor(t, "b has the metadata", func() bool { return variable(b, "v") == "1" })
	return a, b
}

func TestVerdictNext(t *testing.T) {
	for _, c := range []struct {
		v    Verdict
		sole bool
		want step
	}{
		{Verdict{Witnessed: true}, true, stepRun},
		{Verdict{}, true, stepHold}, // the only voter, no one answers: it could be a second master
		{Verdict{}, false, stepRun}, // others vote: raft's majority decides
		{Verdict{Replaced: true, By: "b", Witnessed: true}, true, stepHold},
		{Verdict{Replaced: true, By: "b", Witnessed: true}, false, stepHold},
		{Verdict{Replaced: true, By: "b", Rejoin: true, Witnessed: true}, true, stepRejoin},
	} {
		if got := c.v.next(c.sole); got != c.want {
			t.Errorf("%+v, sole %v: %d, want %d", c.v, c.sole, got, c.want)
		}
	}
}

// TestForcedTakeoverAndRejoin: the master is down, the follower takes
// over by force; the old master, told it was replaced (and the new one
// answers), starts blank and gets the new master's metadata. Then the
// same the other way round: the member that rejoins has a snapshot of
// its own forced takeover, which must go too (raft would start from its
// configuration, and the state machine would miss everything before).
func TestForcedTakeoverAndRejoin(t *testing.T) {
	a, b := pair(t)
	a.stop()
	if err := b.rf.ForceSoleVoter([]Member{{ID: a.id, Addr: a.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b elected", b.rf.IsLeader)
	b.propose(meta.SetVariable{Name: "v", Value: "2"})

	a.setCheck(Verdict{Replaced: true, By: b.id, Rejoin: true, Witnessed: true})
	a.start(false)
	if a.timesAsked() != 1 {
		t.Fatalf("the restarted voter was asked %d times", a.timesAsked())
	}
	if a.rf.Held() != nil {
		t.Fatalf("a holds: %+v", a.rf.Held())
	}
	waitFor(t, "a gets the new master's metadata", func() bool { return variable(a, "v") == "2" && a.rf.Leader() == b.id })
	members, err := b.rf.Members()
	if err != nil || len(members) != 2 || members[1].ID != a.id || members[1].Voter {
		t.Fatalf("members after the rejoin: %+v, %v", members, err)
	}

	// the other way round: b, with its takeover's snapshot, is replaced
	b.stop()
	if err := a.rf.ForceSoleVoter([]Member{{ID: b.id, Addr: b.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a elected", a.rf.IsLeader)
	a.propose(meta.SetVariable{Name: "w", Value: "3"})
	b.setCheck(Verdict{Replaced: true, By: a.id, Rejoin: true, Witnessed: true})
	b.start(false)
	waitFor(t, "b gets the metadata back", func() bool {
		st := b.rf.State()
		return st.ClusterID == "c1" && st.Variables["v"] == "2" && st.Variables["w"] == "3"
	})
	if b.rf.IsLeader() || !a.rf.IsLeader() {
		t.Fatal("leadership moved")
	}
}

// TestRejoinDropsForcedSnapshot follows the two masters of issue 16: b
// takes over by force while a is down, then goes down; a, back, holds
// (b does not answer) until forced back; b, back, is told to rejoin. Both
// forced takeovers snapshot at the same index and term, so b's leftover
// snapshot would match a's log: raft would accept a's later entries on
// top of it with b's state machine blank.
func TestRejoinDropsForcedSnapshot(t *testing.T) {
	a, b := pair(t)
	a.stop()
	if err := b.rf.ForceSoleVoter([]Member{{ID: a.id, Addr: a.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b elected", b.rf.IsLeader)
	b.stop()
	a.setCheck(Verdict{Replaced: true, By: b.id, Epoch: 2, Witnessed: true})
	a.start(false)
	if a.rf.Held() == nil {
		t.Fatal("a does not hold")
	}
	if err := a.rf.ForceSoleVoter([]Member{{ID: b.id, Addr: b.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a elected", a.rf.IsLeader)
	a.propose(meta.SetVariable{Name: "w", Value: "7"})
	b.setCheck(Verdict{Replaced: true, By: a.id, Epoch: 3, Rejoin: true, Witnessed: true})
	b.start(false)
	waitFor(t, "b has the whole metadata", func() bool {
		st := b.rf.State()
		return st.ClusterID == "c1" && st.Variables["v"] == "1" && st.Variables["w"] == "7"
	})
}

// TestHoldUntilWitnessed: a sole voter that hears from no one does not
// elect itself; it serves its metadata meanwhile and runs once someone
// answers.
func TestHoldUntilWitnessed(t *testing.T) {
	a, b := pair(t)
	b.stop()
	a.restart()
	if a.rf.Held() == nil {
		t.Fatal("a sole voter that heard from no one runs raft")
	}
	expectNoLeadership(t, a, time.Second)
	if a.timesAsked() < 5 {
		t.Errorf("asked %d times in a second while holding", a.timesAsked())
	}
	if variable(a, "v") != "1" {
		t.Errorf("held member's metadata: %+v", a.rf.State().Variables)
	}
	if err := a.rf.Propose(meta.SetVariable{Name: "v", Value: "x"}); err == nil {
		t.Error("a held member committed a change")
	}
	if a.rf.Leader() != "" {
		t.Errorf("held member's leader: %q", a.rf.Leader())
	}
	if _, err := a.rf.Members(); err == nil {
		t.Error("a held member lists members")
	}
	a.setCheck(Verdict{Witnessed: true})
	waitFor(t, "a elected once a leaf answers", a.rf.IsLeader)
	if a.rf.Held() != nil {
		t.Error("still held")
	}
	a.propose(meta.SetVariable{Name: "v", Value: "4"})
	// the follower comes back and follows
	b.start(false)
	waitFor(t, "b follows", func() bool { return variable(b, "v") == "4" })
}

// TestHoldReplacedThenForce: a voter replaced by a master that does not
// answer holds, saying by whom; AGGREGATOR SET AS MASTER forces it.
func TestHoldReplacedThenForce(t *testing.T) {
	a, b := pair(t)
	b.stop()
	a.setCheck(Verdict{Replaced: true, By: b.id, Epoch: 7, Witnessed: true})
	a.restart()
	v := a.rf.Held()
	if v == nil || !v.Replaced || v.By != b.id {
		t.Fatalf("held verdict %+v", v)
	}
	expectNoLeadership(t, a, 500*time.Millisecond)
	if err := a.rf.Propose(meta.SetVariable{Name: "v", Value: "x"}); err == nil || err.Error() != "this aggregator was replaced as master by b:3306" {
		t.Errorf("proposing while held: %v", err)
	}
	if err := a.rf.ForceSoleVoter([]Member{{ID: b.id, Addr: b.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a elected by force", a.rf.IsLeader)
	if a.rf.Held() != nil || variable(a, "v") != "1" {
		t.Fatalf("after forcing: held %+v, metadata %+v", a.rf.Held(), a.rf.State().Variables)
	}
	a.propose(meta.SetVariable{Name: "v", Value: "5"})
	time.Sleep(3 * holdInterval) // the hold loop is gone: nothing restarts raft
	if !a.rf.IsLeader() {
		t.Fatal("lost leadership after the forced takeover")
	}
}

// TestStepDownAndRejoin: a running master that a leaf tells of a newer
// master stops; once that master answers it rejoins blank.
func TestStepDownAndRejoin(t *testing.T) {
	a, b := pair(t)
	a.stop()
	if err := b.rf.ForceSoleVoter([]Member{{ID: a.id, Addr: a.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b elected", b.rf.IsLeader)
	b.propose(meta.SetVariable{Name: "v", Value: "6"})
	b.stop()
	// a comes back with its old configuration and, having heard of no
	// newer master, elects itself: two masters
	a.setCheck(Verdict{Witnessed: true})
	a.start(false)
	waitFor(t, "a elected", a.rf.IsLeader)

	// a leaf tells it of b's takeover
	if err := a.rf.StepDown(Verdict{Replaced: true, By: b.id, Epoch: 9}); err != nil {
		t.Fatal(err)
	}
	if v := a.rf.Held(); a.rf.IsLeader() || v == nil || v.By != b.id {
		t.Fatalf("after stepping down: leader %v, held %+v", a.rf.IsLeader(), v)
	}
	a.setCheck(Verdict{Replaced: true, By: b.id, Epoch: 9, Witnessed: true})
	expectNoLeadership(t, a, 300*time.Millisecond)

	b.setCheck(Verdict{Witnessed: true})
	b.start(false)
	waitFor(t, "b elected again", b.rf.IsLeader)
	a.setCheck(Verdict{Replaced: true, By: b.id, Epoch: 9, Rejoin: true, Witnessed: true})
	waitFor(t, "a rejoins b", func() bool { return variable(a, "v") == "6" && a.rf.Leader() == b.id })
	if !b.rf.IsLeader() {
		t.Fatal("b lost leadership")
	}
}

// TestNoCheckAlone: a voter with no other member never asks (no one
// could have replaced it), nor does a follower.
func TestNoCheckAlone(t *testing.T) {
	a := newMember(t, "a:3306")
	a.start(true)
	waitFor(t, "a elected", a.rf.IsLeader)
	a.propose(meta.Bootstrap{ClusterID: "c1", Aggregator: meta.Aggregator{Host: "a", Port: 3306}})
	a.restart()
	waitFor(t, "a elected again", a.rf.IsLeader)
	if a.timesAsked() != 0 {
		t.Errorf("a lone voter asked %d times", a.timesAsked())
	}
}
