package jobs

import (
	"errors"
	"testing"
	"time"
)

func TestJobLife(t *testing.T) {
	now := time.Unix(1000, 0)
	var j Journal
	a := j.Add("node-deploy", map[string]string{"role": "leaf"}, now)
	b := j.Add("node-stop", nil, now)
	if a.ID != 1 || b.ID != 2 || a.State != Queued {
		t.Fatalf("ids %d %d, state %s", a.ID, b.ID, a.State)
	}
	if err := a.Start(now); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(now); err == nil {
		t.Error("a running job started again")
	}
	a.Logf(now, "step %d", 1)
	a.End(now, nil)
	if a.State != Finished || len(a.Log) != 2 {
		t.Errorf("state %s, log %v", a.State, a.Log)
	}
	if err := a.Cancel(now); err == nil {
		t.Error("an ended job was cancelled")
	}
	b.Start(now)
	b.End(now, errors.New("boom"))
	if b.State != Failed || b.Error != "boom" {
		t.Errorf("state %s, error %q", b.State, b.Error)
	}
	c := j.Add("node-start", nil, now)
	c.Start(now)
	if n := j.Interrupted(now); n != 1 || c.State != Failed {
		t.Errorf("interrupted %d, state %s", n, c.State)
	}
	if got, ok := j.Get(2); !ok || got != b {
		t.Error("Get(2)")
	}
}

func TestJournalBounds(t *testing.T) {
	var j Journal
	now := time.Unix(0, 0)
	for i := 0; i < keep+10; i++ {
		job := j.Add("x", nil, now)
		job.Start(now)
		job.End(now, nil)
	}
	open := j.Add("open", nil, now)
	if len(j.Jobs) > keep+1 {
		t.Errorf("%d jobs kept", len(j.Jobs))
	}
	if _, ok := j.Get(open.ID); !ok {
		t.Error("the open job was dropped")
	}
	job := j.Add("chatty", nil, now)
	for i := 0; i < 3*maxLog; i++ {
		job.Logf(now, "line %d", i)
	}
	if len(job.Log) > maxLog || job.Log[len(job.Log)-1].Text != "line 1499" || job.Log[0].Text != "line 0" {
		t.Errorf("log of %d lines, first %q, last %q", len(job.Log), job.Log[0].Text, job.Log[len(job.Log)-1].Text)
	}
}

func TestStepsAndRetry(t *testing.T) {
	now := time.Unix(0, 0)
	var j Journal
	job := j.Add("enable-high-availability", nil, now)
	job.Steps = []Step{{Text: "a"}, {Text: "b"}, {Text: "c"}}
	job.Start(now)
	if err := job.Retry(now); err == nil {
		t.Error("a running job retried")
	}
	job.StepEnded(now, 0, nil)
	job.StepEnded(now, 1, errors.New("disk full"))
	job.End(now, errors.New("disk full"))
	if job.NextStep() != 1 || job.Steps[1].State != Failed {
		t.Fatalf("next %d, steps %+v", job.NextStep(), job.Steps)
	}
	if err := job.Retry(now); err != nil || job.State != Running || job.Retries != 1 {
		t.Fatalf("retry: %v, %s", err, job.State)
	}
	job.StepEnded(now, 1, nil)
	job.StepEnded(now, 2, nil)
	job.End(now, nil)
	if job.NextStep() != 3 || job.State != Finished {
		t.Errorf("next %d, state %s", job.NextStep(), job.State)
	}
}
