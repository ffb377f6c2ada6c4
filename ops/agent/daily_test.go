package agent

import (
	"testing"
	"time"
)

func TestNextDaily(t *testing.T) {
	at := 2*time.Hour + 30*time.Minute
	for _, c := range []struct{ now, want string }{
		{"2026-12-05T01:00:00Z", "2026-12-05T02:30:00Z"},
		{"2026-12-05T02:30:00Z", "2026-12-06T02:30:00Z"}, // not the same instant again
		{"2026-12-05T23:59:00Z", "2026-12-06T02:30:00Z"},
		{"2026-12-31T03:00:00Z", "2027-01-01T02:30:00Z"},
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		if got := nextDaily(now, at).Format(time.RFC3339); got != c.want {
			t.Errorf("nextDaily(%s) = %s, want %s", c.now, got, c.want)
		}
	}
}
