package failpoint

import "testing"

func TestFailCounted(t *testing.T) {
	armed["t-counted"], left["t-counted"] = true, 2
	armed["t-always"] = true
	defer func() { delete(armed, "t-counted"); delete(left, "t-counted"); delete(armed, "t-always") }()
	var got []bool
	for i := 0; i < 3; i++ {
		got = append(got, Fail("t-counted"))
	}
	if got[0] != true || got[1] != true || got[2] != false {
		t.Errorf("name*2 failed %v, want the first two hits only", got)
	}
	if !Fail("t-always") || !Fail("t-always") {
		t.Error("an uncounted fault clears")
	}
	if Fail("t-unarmed") {
		t.Error("an unarmed fault fails")
	}
}

// TestHitAt: name@N passes the first N-1 hits (the N-th would exit).
func TestHitAt(t *testing.T) {
	armed["t-at"], at["t-at"] = true, 3
	defer func() { delete(armed, "t-at"); delete(at, "t-at") }()
	Hit("t-at")
	Hit("t-at")
	if at["t-at"] != 1 {
		t.Errorf("after two hits of t-at@3, %d left, want the next to exit", at["t-at"])
	}
}
