package meta

import (
	"errors"
	"testing"
)

func try(s *State, payload interface{}) (*State, error) {
	b, err := Encode(payload)
	if err != nil {
		return s, err
	}
	return s.Apply(b)
}

// TestDDLJobs: a job is numbered by its proposer (the next number, or the
// command is refused), holds its table until it finishes (another job of
// the table, or of the whole database for CREATE DATABASE, is refused),
// records progress only while unfinished, and ends listed among the last
// finished ones; dropping its table or database cancels it.
func TestDDLJobs(t *testing.T) {
	s := apply(t, New(),
		Bootstrap{ClusterID: "c1", Aggregator: Aggregator{Host: "ma", Port: 3306}},
		AddLeaf{leaf("l1")},
		CreateDatabase{Name: "db", Masters: []string{"l1:3306", "l1:3306"}},
		CreateTable{Database: "db", Table: Table{Name: "t", ShardKey: []string{"id"}}},
		CreateTable{Database: "db", Table: Table{Name: "u", ShardKey: []string{"id"}}},
	)
	s = apply(t, s, StartDDLJob{Job: DDLJob{ID: 1, Kind: DDLAlter, Database: "db", Table: "t", Statement: "alter table db.t add column c int", Before: "B", Reversible: true, Partitions: 2}})
	j := s.DDLJob(1)
	if j == nil || j.State != DDLRunning || s.NextDDLJob != 1 || s.UnfinishedDDL("DB", "T") != j {
		t.Fatalf("started job: %+v (next %d)", j, s.NextDDLJob)
	}
	if _, err := try(s, StartDDLJob{Job: DDLJob{ID: 1, Kind: DDLAlter, Database: "db", Table: "u"}}); err == nil {
		t.Error("a job with a number already taken started")
	}
	if _, err := try(s, StartDDLJob{Job: DDLJob{ID: 2, Kind: DDLAlter, Database: "db", Table: "T"}}); !errors.Is(err, ErrDDLBusy) {
		t.Errorf("a second job of the table: %v, want ErrDDLBusy", err)
	}
	if _, err := try(s, StartDDLJob{Job: DDLJob{ID: 2, Kind: DDLCreateDatabase, Database: "db"}}); !errors.Is(err, ErrDDLBusy) {
		t.Errorf("a job of the database while one of its tables runs: %v, want ErrDDLBusy", err)
	}
	s = apply(t, s,
		StartDDLJob{Job: DDLJob{ID: 2, Kind: DDLAlter, Database: "db", Table: "u"}}, // another table goes on
		UpdateDDLJob{ID: 1, After: "A", Done: []int{0}},
		UpdateDDLJob{ID: 1, State: DDLRollingBack, Error: "Duplicate entry"},
	)
	if j := s.DDLJob(1); j.After != "A" || len(j.Done) != 1 || j.State != DDLRollingBack || j.Error != "Duplicate entry" || j.Before != "B" {
		t.Errorf("job after progress: %+v", j)
	}
	if _, err := try(s, UpdateDDLJob{ID: 1, State: DDLDone}); err == nil {
		t.Error("an update finished a job")
	}
	s = apply(t, s, FinishDDLJob{ID: 1, State: DDLRolledBack, Error: "Duplicate entry", Finished: 5})
	if j := s.DDLJob(1); j.State != DDLRolledBack || j.Finished != 5 || s.UnfinishedDDL("db", "t") != nil || j.Before != "" || j.After != "" {
		t.Errorf("finished job: %+v", j)
	}
	for _, p := range []interface{}{UpdateDDLJob{ID: 1, After: "x"}, FinishDDLJob{ID: 1, State: DDLDone}, UpdateDDLJob{ID: 9}} {
		if _, err := try(s, p); !errors.Is(err, ErrDDLJobGone) {
			t.Errorf("%T of a finished or unknown job: %v, want ErrDDLJobGone", p, err)
		}
	}

	// a dropped table cancels its job; a dropped database, all of its
	s = apply(t, s, DropTable{Database: "db", Name: "u"})
	if j := s.DDLJob(2); j.State != DDLCancelled {
		t.Errorf("the job of a dropped table: %+v", j)
	}
	s = apply(t, s,
		StartDDLJob{Job: DDLJob{ID: 3, Kind: DDLAlter, Database: "db", Table: "t"}},
		DropDatabase{Name: "db"},
		StartDDLJob{Job: DDLJob{ID: 4, Kind: DDLCreateDatabase, Database: "db", Masters: []string{"l1:3306"}}},
	)
	if j := s.DDLJob(3); j.State != DDLCancelled {
		t.Errorf("the job of a dropped database: %+v", j)
	}
	if _, err := try(s, StartDDLJob{Job: DDLJob{ID: 5, Kind: DDLCreateTable, Database: "db", Table: "x"}}); !errors.Is(err, ErrDDLBusy) {
		t.Errorf("a table job while its database is being created: %v, want ErrDDLBusy", err)
	}

	// the finished jobs kept are the last ones
	s = apply(t, s, FinishDDLJob{ID: 4, State: DDLDone, Finished: 6})
	for id := uint64(5); id < 5+2*maxDDLHistory; id++ {
		s = apply(t, s, StartDDLJob{Job: DDLJob{ID: id, Kind: DDLAlter, Database: "db", Table: "t"}}, FinishDDLJob{ID: id, State: DDLDone})
	}
	if len(s.DDLJobs) != maxDDLHistory || s.DDLJobs[0].ID != 5+maxDDLHistory || s.DDLJob(4) != nil {
		t.Errorf("%d jobs kept, the first %d", len(s.DDLJobs), s.DDLJobs[0].ID)
	}
}
