// Package lock is the row lock table of a node: exclusive locks on keys,
// held by transactions until they commit or roll back. A transaction that
// finds a key locked waits; a wait that would close a cycle fails at once
// with ErrDeadlock, and a wait that outlasts its timeout fails with
// ErrTimeout. Readers never lock (READ COMMITTED).
package lock

import (
	"context"
	"errors"
	"sync"
	"time"
)

var (
	// ErrDeadlock means the wait would close a cycle of waiting transactions.
	ErrDeadlock = errors.New("deadlock found when trying to get lock")
	// ErrTimeout means the lock was not granted within the wait timeout.
	ErrTimeout = errors.New("lock wait timeout exceeded")
)

// TxnID identifies a lock owner. Zero is not a valid owner.
type TxnID uint64

type entry struct {
	owner    TxnID
	released chan struct{} // closed when the owner lets go
}

// Table is a set of key locks. The zero value is not usable; use New.
type Table struct {
	mu       sync.Mutex
	locks    map[string]*entry
	waitsFor map[TxnID]TxnID
}

// New returns an empty lock table.
func New() *Table {
	return &Table{locks: make(map[string]*entry), waitsFor: make(map[TxnID]TxnID)}
}

// Acquire locks key for txn, waiting up to timeout for another owner. It
// returns true when the lock is newly taken (the caller must release it),
// false when txn already held it.
func (t *Table) Acquire(ctx context.Context, txn TxnID, key string, timeout time.Duration) (bool, error) {
	t.mu.Lock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		e, ok := t.locks[key]
		if !ok {
			t.locks[key] = &entry{owner: txn, released: make(chan struct{})}
			t.mu.Unlock()
			return true, nil
		}
		if e.owner == txn {
			t.mu.Unlock()
			return false, nil
		}
		if t.cycle(txn, e.owner) {
			t.mu.Unlock()
			return false, ErrDeadlock
		}
		t.waitsFor[txn] = e.owner
		ch := e.released
		t.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		var err error
		select {
		case <-ch:
		case <-timer.C:
			err = ErrTimeout
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.mu.Lock()
		delete(t.waitsFor, txn)
		if err != nil {
			t.mu.Unlock()
			return false, err
		}
	}
}

// cycle reports whether waiting on owner would make txn wait on itself.
func (t *Table) cycle(txn, owner TxnID) bool {
	for steps := 0; steps <= len(t.waitsFor); steps++ {
		if owner == txn {
			return true
		}
		next, ok := t.waitsFor[owner]
		if !ok {
			return false
		}
		owner = next
	}
	return true
}

// Release frees the given keys held by txn and wakes their waiters.
func (t *Table) Release(txn TxnID, keys []string) {
	if len(keys) == 0 {
		return
	}
	t.mu.Lock()
	for _, k := range keys {
		if e, ok := t.locks[k]; ok && e.owner == txn {
			delete(t.locks, k)
			close(e.released)
		}
	}
	t.mu.Unlock()
}

// Held returns the number of locked keys, for metrics and tests.
func (t *Table) Held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.locks)
}

// Take locks key for txn at once, whoever holds it: for a caller that
// knows the owner can never commit (a transaction that wrote a copy while
// it was a replica, when its promotion loads the copy's in-doubt
// transactions). The old owner's waiters wait on txn now; the old owner's
// Release leaves the key alone. It returns true when the lock is newly
// taken by txn.
func (t *Table) Take(txn TxnID, key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.locks[key]; ok {
		if e.owner == txn {
			return false
		}
		close(e.released)
	}
	t.locks[key] = &entry{owner: txn, released: make(chan struct{})}
	return true
}
