package metrics

import (
	"testing"
	"time"
)

func TestStoreRollupsAndRetention(t *testing.T) {
	s, err := Open(t.TempDir(), Retention{Raw: time.Hour, Rollups: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := int64(1_800_000_000) // a multiple of 300
	var batch []Sample
	// 10-second samples for 2 hours: values 0..719 for cpu, constant for mem
	for i := int64(0); i < 720; i++ {
		batch = append(batch, Sample{Source: "host/127.0.0.1", Metric: "cpu", T: t0 + 10*i, V: float64(i)},
			Sample{Source: "host/127.0.0.1", Metric: "mem", T: t0 + 10*i, V: 5})
	}
	// in two batches: a bucket spanning both is folded, not overwritten
	if err := s.Add(batch[:101]); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(batch[101:]); err != nil {
		t.Fatal(err)
	}
	raw, err := s.Query("host/127.0.0.1", "cpu", t0, t0+599, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 60 || raw[0].V != 0 || raw[59].V != 59 {
		t.Fatalf("raw: %d points, %v … %v", len(raw), raw[0], raw[len(raw)-1])
	}
	up, err := s.Query("host/127.0.0.1", "cpu", t0, t0+2*3600, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 24 {
		t.Fatalf("%d rollups, want 24", len(up))
	}
	// the first bucket holds samples 0..29: average 14.5, min 0, max 29
	if p := up[0]; p.T != t0 || p.V != 14.5 || p.Min != 0 || p.Max != 29 {
		t.Errorf("first rollup %+v", p)
	}
	if p := up[1]; p.V != 44.5 || p.Min != 30 || p.Max != 59 {
		t.Errorf("second rollup %+v", p)
	}
	series, _ := s.Series()
	if len(series) != 2 {
		t.Errorf("series %v", series)
	}
	// two hours after the end: raw samples older than an hour go, rollups
	// older than three hours go
	now := time.Unix(t0+2*3600, 0).Add(90 * time.Minute)
	if err := s.Prune(now); err != nil {
		t.Fatal(err)
	}
	raw, _ = s.Query("host/127.0.0.1", "cpu", t0, t0+3*3600, false)
	for _, p := range raw {
		if p.T < now.Add(-time.Hour).Unix() {
			t.Fatalf("raw sample at %d survived the retention (cut %d)", p.T, now.Add(-time.Hour).Unix())
		}
	}
	up, _ = s.Query("host/127.0.0.1", "cpu", t0, t0+3*3600, true)
	if len(up) == 0 || len(up) == 24 || up[0].T < now.Add(-3*time.Hour).Unix()-Rollup {
		t.Errorf("rollups after pruning: %d, first %+v", len(up), up)
	}
	if s.DiskBytes() == 0 {
		t.Error("no disk usage reported")
	}
}
