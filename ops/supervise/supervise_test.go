package supervise

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := func(d time.Duration) time.Time { return t0.Add(d) }
	running := Started(Proc{Wanted: true}, t0)
	died := Exited(running, s(5*time.Second))
	for _, c := range []struct {
		name   string
		p      Proc
		manual bool
		now    time.Time
		start  bool
		retry  time.Time
	}{
		{"running", running, false, s(time.Second), false, time.Time{}},
		{"stopped by the operator", Proc{}, false, t0, false, time.Time{}},
		{"never started", Proc{Wanted: true}, false, t0, true, time.Time{}},
		{"died: backs off", died, false, s(5500 * time.Millisecond), false, s(6 * time.Second)},
		{"died: restarts after the backoff", died, false, s(6 * time.Second), true, time.Time{}},
		{"died under manual control", died, true, s(time.Hour), false, time.Time{}},
	} {
		d := Decide(c.p, c.manual, c.now)
		if d.Start != c.start || !d.Retry.Equal(c.retry) {
			t.Errorf("%s: got %+v, want start %v retry %v", c.name, d, c.start, c.retry)
		}
	}
}

func TestBackoffGrowsAndResets(t *testing.T) {
	t0 := time.Unix(0, 0)
	p := Proc{Wanted: true}
	var waits []time.Duration
	now := t0
	for i := 0; i < 7; i++ {
		p = Started(p, now)
		now = now.Add(2 * time.Second)
		p = Exited(p, now)
		waits = append(waits, Backoff(p.Failures))
		now = now.Add(Backoff(p.Failures))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if waits[i] != w*time.Second {
			t.Fatalf("waits %v, want %v s", waits, want)
		}
	}
	// a process that lived long enough starts the backoff over
	p = Started(p, now)
	p = Exited(p, now.Add(2*Stable))
	if p.Failures != 1 {
		t.Errorf("failures after a stable run: %d", p.Failures)
	}
}
