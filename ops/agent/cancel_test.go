package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/ops/jobs"
)

// TestJobCancel: job-cancel ends a running job's context; the job ends
// cancelled, and a cancelled multi-step job can be retried.
func TestJobCancel(t *testing.T) {
	a, err := Start(Config{Home: t.TempDir(), Bind: "127.0.0.1", Port: testutil.FreePorts(t, 1)[0], Exe: "/bin/false"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(false)
	c, err := NewClient(Credentials{Addr: a.Addr(), Token: a.st.Token})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan *jobs.Job, 1)
	go func() {
		j, _ := a.stepJob("slow", nil, []jobs.Step{{Text: "wait"}}, func(ctx context.Context, j *jobs.Job, logf func(string, ...any)) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		done <- j
	}()
	<-started
	if err := c.Call(context.Background(), "POST", "/api/jobs/999/cancel", nil, nil); err == nil {
		t.Error("cancel of an unknown job")
	}
	if err := c.Call(context.Background(), "POST", "/api/jobs/1/cancel", nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case j := <-done:
		if j.State != jobs.Cancelled {
			t.Fatalf("job state %s", j.State)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the job did not end")
	}
	var apiErr *APIError
	if err := c.Call(context.Background(), "POST", "/api/jobs/1/cancel", nil, nil); !errors.As(err, &apiErr) || apiErr.Status != 409 {
		t.Errorf("cancel of an ended job: %v", err)
	}
	a.mu.Lock()
	j, _ := a.st.Jobs.Get(1)
	err = j.Retry(time.Now())
	a.mu.Unlock()
	if err != nil {
		t.Errorf("retry of a cancelled job with steps: %v", err)
	}
}
