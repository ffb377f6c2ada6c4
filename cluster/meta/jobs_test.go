package meta

import "testing"

// TestJobs: the journal numbers jobs, records steps and ends, and keeps
// the running jobs and the latest finished ones.
func TestJobs(t *testing.T) {
	st := New()
	apply := func(cmd any) {
		t.Helper()
		b, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		n, err := st.Apply(b)
		if err != nil {
			t.Fatal(err)
		}
		st = n
	}
	apply(StartJob{Job: Job{Kind: JobRebalance, DB: "db", Token: "t1", Steps: []JobStep{{Step: Step{Action: ActionCopy, DB: "db"}, Status: "scheduled"}}}})
	j := st.LatestJob("DB")
	if j == nil || j.ID != 1 || j.State != JobRunning {
		t.Fatalf("job %+v", j)
	}
	apply(SetJobStep{ID: 1, Index: 0, Status: "running", StartedUnixMs: 5})
	apply(EndJob{ID: 1, State: JobInterrupted})
	if j := st.Job(1); j.Steps[0].Status != "interrupted" || j.State != JobInterrupted {
		t.Fatalf("interrupted job %+v", j)
	}
	if b, _ := Encode(SetJobStep{ID: 1, Index: 3}); b != nil {
		if _, err := st.Apply(b); err == nil {
			t.Fatal("a step the job does not have was recorded")
		}
	}
	apply(StartJob{Job: Job{Kind: JobAttach, DB: "other"}}) // running: kept
	for i := 0; i < 2*keepJobs; i++ {
		apply(StartJob{Job: Job{Kind: JobRebalance, DB: "db"}})
		apply(EndJob{ID: st.NextJobID, State: JobDone})
	}
	if len(st.Jobs) != keepJobs || st.Job(2) == nil || st.Job(2).State != JobRunning {
		t.Fatalf("%d jobs kept, the running one: %+v", len(st.Jobs), st.Job(2))
	}
}
