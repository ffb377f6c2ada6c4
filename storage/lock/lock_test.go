package lock

import (
	"context"
	"errors"
	"testing"
	"time"
)

var bg = context.Background()

func TestWaitThenGrant(t *testing.T) {
	lt := New()
	if fresh, err := lt.Acquire(bg, 1, "k", time.Second); err != nil || !fresh {
		t.Fatalf("first acquire: %v %v", fresh, err)
	}
	if fresh, err := lt.Acquire(bg, 1, "k", time.Second); err != nil || fresh {
		t.Fatalf("re-acquire by owner: %v %v", fresh, err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := lt.Acquire(bg, 2, "k", 5*time.Second)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("waiter returned before release: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	lt.Release(1, []string{"k"})
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if lt.Held() != 1 {
		t.Fatalf("held = %d", lt.Held())
	}
}

func TestTimeout(t *testing.T) {
	lt := New()
	lt.Acquire(bg, 1, "k", time.Second)
	_, err := lt.Acquire(bg, 2, "k", 30*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want timeout", err)
	}
}

func TestDeadlockDetected(t *testing.T) {
	lt := New()
	lt.Acquire(bg, 1, "a", time.Second)
	lt.Acquire(bg, 2, "b", time.Second)
	waiting := make(chan error, 1)
	go func() {
		_, err := lt.Acquire(bg, 1, "b", 5*time.Second) // 1 waits for 2
		waiting <- err
	}()
	time.Sleep(30 * time.Millisecond)
	// 2 waiting for 1 closes the cycle.
	if _, err := lt.Acquire(bg, 2, "a", 5*time.Second); !errors.Is(err, ErrDeadlock) {
		t.Fatalf("err = %v, want deadlock", err)
	}
	lt.Release(2, []string{"b"})
	if err := <-waiting; err != nil {
		t.Fatalf("txn 1 should get b after 2 gives up: %v", err)
	}
}

func TestThreeWayCycle(t *testing.T) {
	lt := New()
	lt.Acquire(bg, 1, "a", time.Second)
	lt.Acquire(bg, 2, "b", time.Second)
	lt.Acquire(bg, 3, "c", time.Second)
	go lt.Acquire(bg, 1, "b", 5*time.Second)
	go lt.Acquire(bg, 2, "c", 5*time.Second)
	time.Sleep(30 * time.Millisecond)
	if _, err := lt.Acquire(bg, 3, "a", time.Second); !errors.Is(err, ErrDeadlock) {
		t.Fatalf("err = %v, want deadlock", err)
	}
	lt.Release(1, []string{"a"})
	lt.Release(2, []string{"b"})
	lt.Release(3, []string{"c"})
}

// TestTake: a lock taken from its owner is the taker's; the old owner's
// release leaves it alone, and a waiter waits on for the taker.
func TestTake(t *testing.T) {
	lt := New()
	lt.Acquire(bg, 1, "k", time.Second)
	got := make(chan error, 1)
	go func() {
		_, err := lt.Acquire(bg, 3, "k", 5*time.Second)
		got <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if !lt.Take(2, "k") {
		t.Fatal("take: not fresh")
	}
	if lt.Take(2, "k") {
		t.Fatal("take by the owner: fresh")
	}
	lt.Release(1, []string{"k"})
	select {
	case err := <-got:
		t.Fatalf("waiter returned while the taker holds the lock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := lt.Acquire(bg, 1, "k", 30*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("old owner re-acquire: %v, want timeout", err)
	}
	lt.Release(2, []string{"k"})
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
}
