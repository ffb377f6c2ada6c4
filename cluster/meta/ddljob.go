package meta

import (
	"errors"
	"fmt"
	"strings"
)

// DDLJob is a schema change that touches more than one node, recorded
// before the first node is touched so that a master aggregator that dies
// (or a leaf that refuses) in the middle leaves a record the next master
// acts on: it finishes the change or undoes it, and until then no other
// schema change of the table starts. Finished jobs stay listed for a
// while (SHOW DDL JOBS).
type DDLJob struct {
	ID   uint64 `json:"id"`
	Kind string `json:"kind"` // DDLAlter, DDLCreateTable, DDLCreateDatabase
	// Database and Table the change is of ("" table: the database).
	Database string `json:"database"`
	Table    string `json:"table,omitempty"`
	// Statement is the change with its tables named in Database (an
	// alter's is rewritten for each partition); Query is the client's
	// text, which SHOW DDL JOBS prints.
	Statement string `json:"statement"`
	Query     string `json:"query,omitempty"`
	// Before is the definition every partition of the table had
	// (SHOW CREATE TABLE, without the AUTO_INCREMENT counter); After the
	// one the first partition changed has ("" until then). A partition
	// with neither is in the middle of the change.
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	// Reversible: the partitions that made the change can be brought
	// back to Before without losing a value (no column is dropped), so a
	// change one partition refuses is undone everywhere. Otherwise the
	// change only goes forward.
	Reversible bool `json:"reversible,omitempty"`
	// Partitions is how many partitions the change runs on; Done the ones
	// known to have made it (a partition can have made it unrecorded: the
	// definitions decide).
	Partitions int    `json:"partitions,omitempty"`
	Done       []int  `json:"done,omitempty"`
	State      string `json:"state"`
	// Error is why the job rolls back or rolled back, or what keeps it
	// from going on.
	Error string `json:"error,omitempty"`
	// Started and Finished are Unix milliseconds, as the master read its
	// clock.
	Started  int64 `json:"started,omitempty"`
	Finished int64 `json:"finished,omitempty"`
	// Sharding is a CREATE TABLE's table, listed when the job is done.
	Sharding *Table `json:"sharding,omitempty"`
	// Masters and Replicas are a CREATE DATABASE's partitions.
	Masters  []string   `json:"masters,omitempty"`
	Replicas [][]string `json:"replicas,omitempty"`
}

// DDL job kinds.
const (
	DDLAlter          = "alter"
	DDLCreateTable    = "create table"
	DDLCreateDatabase = "create database"
)

// DDL job states: the first two are unfinished.
const (
	DDLRunning     = "running"
	DDLRollingBack = "rolling back"
	DDLDone        = "done"
	DDLRolledBack  = "rolled back"
	DDLCancelled   = "cancelled" // its table or database was dropped
)

// maxDDLHistory is how many finished jobs the metadata keeps.
const maxDDLHistory = 32

// Unfinished reports whether the job still has work to do.
func (j *DDLJob) Unfinished() bool { return j.State == DDLRunning || j.State == DDLRollingBack }

// Commands of DDL jobs.
type (
	// StartDDLJob records a job. Job.ID must be the next number
	// (State.NextDDLJob+1): the proposer learns its job's number, and of
	// two jobs proposed at once one is refused and proposed again. It is
	// refused while another unfinished job holds the table (or the
	// database, for a CREATE DATABASE): ErrDDLBusy.
	StartDDLJob struct{ Job DDLJob }
	// UpdateDDLJob records a job's progress; empty fields are kept.
	UpdateDDLJob struct {
		ID    uint64
		State string `json:",omitempty"`
		After string `json:",omitempty"`
		Done  []int  `json:",omitempty"`
		Error string `json:",omitempty"`
	}
	// FinishDDLJob ends a job: done or rolled back.
	FinishDDLJob struct {
		ID       uint64
		State    string
		Error    string `json:",omitempty"`
		Finished int64
	}
)

// ErrDDLBusy: a table (or database) with an unfinished schema change.
var ErrDDLBusy = errors.New("unfinished schema change")

// ErrDDLJobGone: an update of a job that is finished or unknown (its
// table was dropped, or another master finished it).
var ErrDDLJobGone = errors.New("DDL job is not running")

// DDLJob finds a job by number.
func (s *State) DDLJob(id uint64) *DDLJob {
	for i := range s.DDLJobs {
		if s.DDLJobs[i].ID == id {
			return &s.DDLJobs[i]
		}
	}
	return nil
}

// UnfinishedDDL is the unfinished job holding a table of a database
// (table "": any of its jobs), nil if none. A CREATE DATABASE job holds
// every table of its database.
func (s *State) UnfinishedDDL(db, table string) *DDLJob {
	for i := range s.DDLJobs {
		j := &s.DDLJobs[i]
		if !j.Unfinished() || !strings.EqualFold(j.Database, db) {
			continue
		}
		if table == "" || j.Table == "" || strings.EqualFold(j.Table, table) {
			return j
		}
	}
	return nil
}

func (s *State) startDDLJob(j DDLJob) error {
	if j.ID != s.NextDDLJob+1 {
		return fmt.Errorf("DDL job number %d is taken (next is %d)", j.ID, s.NextDDLJob+1)
	}
	if j.Kind == DDLCreateDatabase {
		if o := s.UnfinishedDDL(j.Database, ""); o != nil {
			return fmt.Errorf("database '%s' has an %w (DDL job %d, %s)", j.Database, ErrDDLBusy, o.ID, o.State)
		}
	} else if o := s.UnfinishedDDL(j.Database, j.Table); o != nil {
		return fmt.Errorf("table '%s.%s' has an %w (DDL job %d, %s)", j.Database, j.Table, ErrDDLBusy, o.ID, o.State)
	}
	if j.State == "" {
		j.State = DDLRunning
	}
	s.NextDDLJob = j.ID
	s.DDLJobs = append(s.DDLJobs, j)
	return nil
}

func (s *State) updateDDLJob(p UpdateDDLJob) error {
	j := s.DDLJob(p.ID)
	if j == nil || !j.Unfinished() {
		return fmt.Errorf("%w: job %d", ErrDDLJobGone, p.ID)
	}
	if p.State != "" {
		if p.State != DDLRunning && p.State != DDLRollingBack {
			return fmt.Errorf("DDL job %d: %q is not a state of an unfinished job", p.ID, p.State)
		}
		j.State = p.State
	}
	if p.After != "" {
		j.After = p.After
	}
	if p.Done != nil {
		j.Done = append([]int(nil), p.Done...)
	}
	if p.Error != "" {
		j.Error = p.Error
	}
	return nil
}

func (s *State) finishDDLJob(p FinishDDLJob) error {
	j := s.DDLJob(p.ID)
	if j == nil || !j.Unfinished() {
		return fmt.Errorf("%w: job %d", ErrDDLJobGone, p.ID)
	}
	if p.State != DDLDone && p.State != DDLRolledBack && p.State != DDLCancelled {
		return fmt.Errorf("DDL job %d: %q does not finish a job", p.ID, p.State)
	}
	s.endDDLJob(j, p.State, p.Error, p.Finished)
	return nil
}

// endDDLJob finishes a job (it stays listed among the finished ones).
func (s *State) endDDLJob(j *DDLJob, state, why string, at int64) {
	j.State, j.Finished = state, at
	if why != "" {
		j.Error = why
	}
	j.forget()
	s.trimDDLHistory()
}

// forget drops what only an unfinished job needs (the definitions, the
// partitions' places), which every state change would copy.
func (j *DDLJob) forget() {
	j.Before, j.After, j.Sharding, j.Masters, j.Replicas = "", "", nil, nil, nil
}

// trimDDLHistory drops the oldest finished jobs beyond maxDDLHistory.
func (s *State) trimDDLHistory() {
	finished := 0
	for i := range s.DDLJobs {
		if !s.DDLJobs[i].Unfinished() {
			finished++
		}
	}
	kept := s.DDLJobs[:0]
	for _, j := range s.DDLJobs {
		if !j.Unfinished() && finished > maxDDLHistory {
			finished--
			continue
		}
		kept = append(kept, j)
	}
	s.DDLJobs = kept
}

// cancelDDLJobs ends the unfinished jobs of a dropped table (or, table
// "", database): nothing is left for them to finish.
func (s *State) cancelDDLJobs(db, table string) {
	what := "table"
	if table == "" {
		what = "database"
	}
	for i := range s.DDLJobs {
		j := &s.DDLJobs[i]
		if j.Unfinished() && strings.EqualFold(j.Database, db) && (table == "" || strings.EqualFold(j.Table, table)) {
			j.State, j.Error = DDLCancelled, "its "+what+" was dropped"
			j.forget()
		}
	}
	s.trimDDLHistory()
}
