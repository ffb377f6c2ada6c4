// Package jobs is the Ops journal: every management operation (deploy a
// node, stop it, follow an agent, …) is a job with a state and a log,
// kept by the primary agent. It is pure state: the agent persists the
// journal with the rest of its metadata and runs the work.
package jobs

import (
	"encoding/json"
	"fmt"
	"time"
)

// State is where a job is in its life.
type State string

const (
	Queued    State = "queued"
	Running   State = "running"
	Finished  State = "finished"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Done reports whether the job reached an end state.
func (s State) Done() bool { return s == Finished || s == Failed || s == Cancelled }

// Line is one log line of a job.
type Line struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// Job is one operation.
type Job struct {
	ID      int               `json:"id"`
	Kind    string            `json:"kind"` // node-deploy, node-stop, …
	Args    map[string]string `json:"args,omitempty"`
	State   State             `json:"state"`
	Created time.Time         `json:"created"`
	Started time.Time         `json:"started,omitzero"`
	Ended   time.Time         `json:"ended,omitzero"`
	Error   string            `json:"error,omitempty"`
	Log     []Line            `json:"log,omitempty"`
	// Steps of a multi-step job, in order; a failed one is retried from
	// the first step not finished.
	Steps   []Step `json:"steps,omitempty"`
	Retries int    `json:"retries,omitempty"`
}

// Step is one step of a job: what it does (Data, for its executor), how
// it reads (Text), and where it is.
type Step struct {
	Text  string          `json:"text"`
	Data  json.RawMessage `json:"data,omitempty"`
	State State           `json:"state"`
	Error string          `json:"error,omitempty"`
}

// NextStep is the first step not finished (len(Steps) when all are).
func (job *Job) NextStep() int {
	for i, s := range job.Steps {
		if s.State != Finished {
			return i
		}
	}
	return len(job.Steps)
}

// StepEnded records the outcome of step i.
func (job *Job) StepEnded(now time.Time, i int, err error) {
	if err != nil {
		job.Steps[i].State, job.Steps[i].Error = Failed, err.Error()
		job.Logf(now, "step %d/%d failed: %s: %v", i+1, len(job.Steps), job.Steps[i].Text, err)
		return
	}
	job.Steps[i].State, job.Steps[i].Error = Finished, ""
	job.Logf(now, "step %d/%d done: %s", i+1, len(job.Steps), job.Steps[i].Text)
}

// Retry runs a failed job again from its first unfinished step.
func (job *Job) Retry(now time.Time) error {
	if (job.State != Failed && job.State != Cancelled) || len(job.Steps) == 0 {
		return fmt.Errorf("job %d is %s: only a failed or cancelled job with steps can be retried", job.ID, job.State)
	}
	job.State, job.Error, job.Ended = Running, "", time.Time{}
	job.Retries++
	job.Logf(now, "retried from step %d/%d", job.NextStep()+1, len(job.Steps))
	return nil
}

// maxLog bounds a job's log: a job that loops must not fill the journal.
const maxLog = 500

// Journal holds the jobs in creation order.
type Journal struct {
	Next int    `json:"next"`
	Jobs []*Job `json:"jobs"`
}

// keep is how many ended jobs the journal keeps.
const keep = 1000

// Add queues a new job and returns it.
func (j *Journal) Add(kind string, args map[string]string, now time.Time) *Job {
	j.Next++
	job := &Job{ID: j.Next, Kind: kind, Args: args, State: Queued, Created: now}
	j.Jobs = append(j.Jobs, job)
	// drop the oldest ended jobs beyond keep
	if ended := j.ended(); ended > keep {
		drop := ended - keep
		out := j.Jobs[:0]
		for _, x := range j.Jobs {
			if drop > 0 && x.State.Done() {
				drop--
				continue
			}
			out = append(out, x)
		}
		j.Jobs = out
	}
	return job
}

func (j *Journal) ended() int {
	n := 0
	for _, x := range j.Jobs {
		if x.State.Done() {
			n++
		}
	}
	return n
}

// Get finds a job by id.
func (j *Journal) Get(id int) (*Job, bool) {
	for _, x := range j.Jobs {
		if x.ID == id {
			return x, true
		}
	}
	return nil, false
}

// Start marks a queued job running.
func (job *Job) Start(now time.Time) error {
	if job.State != Queued {
		return fmt.Errorf("job %d is %s, not queued", job.ID, job.State)
	}
	job.State, job.Started = Running, now
	return nil
}

// Logf adds a line to the job's log.
func (job *Job) Logf(now time.Time, format string, args ...any) {
	if len(job.Log) >= maxLog {
		job.Log = append(job.Log[:maxLog/2], job.Log[len(job.Log)-maxLog/2+1:]...)
	}
	job.Log = append(job.Log, Line{At: now, Text: fmt.Sprintf(format, args...)})
}

// End finishes a running job: Finished when err is nil, else Failed.
func (job *Job) End(now time.Time, err error) {
	if job.State.Done() {
		return
	}
	job.Ended = now
	if err != nil {
		job.State, job.Error = Failed, err.Error()
		job.Logf(now, "failed: %v", err)
		return
	}
	job.State = Finished
	job.Logf(now, "finished")
}

// Cancel ends a job that has not ended.
func (job *Job) Cancel(now time.Time) error {
	if job.State.Done() {
		return fmt.Errorf("job %d already %s", job.ID, job.State)
	}
	job.State, job.Ended = Cancelled, now
	job.Logf(now, "cancelled")
	return nil
}

// Interrupted marks the jobs that were running when the primary stopped:
// their work was cut short and is not resumed on its own (the operator
// retries). It returns how many it marked.
func (j *Journal) Interrupted(now time.Time) int {
	n := 0
	for _, x := range j.Jobs {
		if !x.State.Done() {
			x.End(now, fmt.Errorf("interrupted: the primary agent stopped while the job was %s; run the operation again", x.State))
			n++
		}
	}
	return n
}
