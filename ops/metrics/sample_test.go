package metrics

import (
	"math"
	"testing"
)

func TestHistogramQuantile(t *testing.T) {
	// 100 observations: 50 in (0, 1], 40 in (1, 2], 10 in (2, 4]
	h := Histogram{Count: 100, Sum: 150, Buckets: []Bucket{{1, 50}, {2, 90}, {4, 100}, {math.Inf(1), 100}}}
	for _, c := range []struct{ q, want float64 }{
		{0.5, 1},    // the 50th is the last of the first bucket
		{0.7, 1.5},  // the 70th is halfway through (1, 2]
		{0.99, 3.8}, // the 99th is 9/10 of the way through (2, 4]
		{0.25, 0.5},
	} {
		if got := h.Quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	// everything beyond the last finite bound: that bound is all we know
	over := Histogram{Count: 10, Buckets: []Bucket{{1, 0}, {2, 0}, {math.Inf(1), 10}}}
	if got := over.Quantile(0.99); got != 2 {
		t.Errorf("overflow quantile = %v, want 2", got)
	}
	if got := (Histogram{}).Quantile(0.99); got != 0 {
		t.Errorf("empty quantile = %v", got)
	}
}

func TestHistogramSub(t *testing.T) {
	prev := Histogram{Count: 10, Sum: 5, Buckets: []Bucket{{1, 8}, {2, 10}}}
	now := Histogram{Count: 30, Sum: 25, Buckets: []Bucket{{1, 10}, {2, 30}}}
	d, ok := now.Sub(prev)
	if !ok || d.Count != 20 || d.Sum != 20 || d.Buckets[0].Count != 2 || d.Buckets[1].Count != 20 {
		t.Fatalf("Sub = %+v, %v", d, ok)
	}
	// a restarted node's counters went back: no interval to report
	if _, ok := prev.Sub(now); ok {
		t.Error("Sub of a reset histogram reported an interval")
	}
}
