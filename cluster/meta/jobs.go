package meta

import "fmt"

// The operation journal: every cluster operation that runs steps
// (rebalance, attach, restore redundancy, a partition command, removing
// a leaf) is a job in the metadata, with each step's status, so any
// aggregator shows it (SHOW REBALANCE STATUS) and a new master
// aggregator finds the operations the old one left running: it marks
// them interrupted and takes them up again (the controller: a leaf left
// attaching is attached again, a rebalance is planned and run again from
// the current map, which every step left consistent).

// Job is one operation.
type Job struct {
	ID    uint64    `json:"id"`
	Kind  string    `json:"kind"`
	DB    string    `json:"db"`
	Leaf  string    `json:"leaf,omitempty"` // the leaf an attach or removal is about
	By    string    `json:"by"`             // the master aggregator that runs it
	Token string    `json:"token"`          // the proposer's name for it, until numbered
	State string    `json:"state"`
	Error string    `json:"error,omitempty"`
	Steps []JobStep `json:"steps"`
	// StartedUnixMs, UpdatedUnixMs: the proposer's clock (Apply stays
	// deterministic)
	StartedUnixMs int64 `json:"started_unix_ms"`
	UpdatedUnixMs int64 `json:"updated_unix_ms"`
}

// JobStep is one step of a job and how it went.
type JobStep struct {
	Step
	Status        string `json:"status"` // scheduled, running, success, error
	StartedUnixMs int64  `json:"started_unix_ms,omitempty"`
	TookMs        int64  `json:"took_ms,omitempty"`
}

// Job kinds and states.
const (
	JobRebalance = "rebalance"
	JobAttach    = "attach"
	JobCommand   = "partition command"
	JobRemove    = "remove leaf"

	JobRunning     = "running"
	JobDone        = "done"
	JobFailed      = "failed"
	JobInterrupted = "interrupted"
)

// keepJobs bounds the finished jobs the metadata keeps.
const keepJobs = 64

// Job commands.
type (
	// StartJob records a new job; Apply numbers it (NextJobID).
	StartJob struct{ Job Job }
	// SetJobStep records a step's status.
	SetJobStep struct {
		ID            uint64
		Index         int
		Status        string
		StartedUnixMs int64
		TookMs        int64
		NowUnixMs     int64
	}
	// EndJob records how a job ended.
	EndJob struct {
		ID        uint64
		State     string
		Error     string
		NowUnixMs int64
	}
)

// Job finds a job by id.
func (s *State) Job(id uint64) *Job {
	for i := range s.Jobs {
		if s.Jobs[i].ID == id {
			return &s.Jobs[i]
		}
	}
	return nil
}

// LatestJob is the newest job on a database, nil if none.
func (s *State) LatestJob(db string) *Job {
	for i := len(s.Jobs) - 1; i >= 0; i-- {
		if equalFold(s.Jobs[i].DB, db) {
			return &s.Jobs[i]
		}
	}
	return nil
}

func (s *State) startJob(j Job) {
	s.NextJobID++
	j.ID = s.NextJobID
	j.State = JobRunning
	j.UpdatedUnixMs = j.StartedUnixMs
	s.Jobs = append(s.Jobs, j)
	// forget the oldest finished jobs beyond keepJobs
	for n := len(s.Jobs); n > keepJobs; n-- {
		i := 0
		for i < len(s.Jobs) && s.Jobs[i].State == JobRunning {
			i++
		}
		if i == len(s.Jobs) {
			break
		}
		s.Jobs = append(s.Jobs[:i], s.Jobs[i+1:]...)
	}
}

func (s *State) setJobStep(p SetJobStep) error {
	j := s.Job(p.ID)
	if j == nil || p.Index < 0 || p.Index >= len(j.Steps) {
		return fmt.Errorf("no step %d of job %d", p.Index, p.ID)
	}
	st := &j.Steps[p.Index]
	st.Status = p.Status
	if p.StartedUnixMs != 0 {
		st.StartedUnixMs = p.StartedUnixMs
	}
	st.TookMs = p.TookMs
	j.UpdatedUnixMs = p.NowUnixMs
	return nil
}

func (s *State) endJob(p EndJob) error {
	j := s.Job(p.ID)
	if j == nil {
		return fmt.Errorf("no job %d", p.ID)
	}
	j.State, j.Error, j.UpdatedUnixMs = p.State, p.Error, p.NowUnixMs
	for i := range j.Steps {
		if p.State == JobInterrupted && j.Steps[i].Status == "running" {
			j.Steps[i].Status = "interrupted"
		}
	}
	return nil
}
