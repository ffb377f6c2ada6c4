package raftstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

func open(t *testing.T, dir string) *pebble.DB {
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestLogAndStableStore(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	s := New(db)
	if i, _ := s.FirstIndex(); i != 0 {
		t.Fatalf("empty first index = %d", i)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/5, Type: raft.LogCommand, Data: []byte{byte(i)}, AppendedAt: time.Unix(100, int64(i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != 10 {
		t.Fatalf("first, last = %d, %d", first, last)
	}
	var l raft.Log
	if err := s.GetLog(7, &l); err != nil || l.Term != 2 || !bytes.Equal(l.Data, []byte{7}) || !l.AppendedAt.Equal(time.Unix(100, 7)) {
		t.Fatalf("GetLog(7) = %+v, %v", l, err)
	}
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted log: %v", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	s.Set([]byte("LastVoteCand"), []byte("node-2"))
	db.Close()

	db = open(t, dir)
	defer db.Close()
	s = New(db)
	first, _ = s.FirstIndex()
	last, _ = s.LastIndex()
	if first != 5 || last != 10 {
		t.Fatalf("after reopen first, last = %d, %d", first, last)
	}
	if v, _ := s.GetUint64([]byte("CurrentTerm")); v != 9 {
		t.Fatalf("term = %d", v)
	}
	if v, _ := s.Get([]byte("LastVoteCand")); string(v) != "node-2" {
		t.Fatalf("vote = %q", v)
	}
	if v, err := s.Get([]byte("missing")); v != nil || err != nil {
		t.Fatalf("missing key = %q, %v", v, err)
	}
}
