package storage

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
)

// Fencing of a master that was paused (DESIGN.md §3 Replication,
// Fencing). A leaf stopped for longer than the failure timeout (SIGSTOP, a
// frozen VM, a stall) has been failed over, and when it resumes it cannot
// tell: an aggregator that has not applied the failover still sends it
// writes, and with asynchronous replication nothing else refuses them.
// So a leaf notices its own pauses. A watchdog ticks every fenceTick on
// the monotonic clock; a gap of the threshold or more since the last tick
// is a pause. Every commit looks for such a gap too (a clock read and an
// atomic load), so one that runs the moment the process resumes, before
// the watchdog does, sees it. On a pause:
//
//   - every master partition becomes suspect: its commits wait up to
//     ConfirmWait (awaitConfirmation), then are refused (1290,
//     refused whole, so aggregators run an autocommit statement again,
//     on the master the metadata names), until the master aggregator
//     confirms it: PROMOTE at the copy's own term naming this
//     store's current incarnation (PromoteConfirmed). A partition that
//     failed over meanwhile is not this leaf's any more; nobody confirms
//     it, and its copy is dropped when the leaf is attached again.
//   - the incarnation changes. The master aggregator reads it with every
//     heartbeat and confirms the leaf's masters when it changes; a
//     confirmation naming an older incarnation (sent before the pause, or
//     delayed by it) is refused, so only one issued after the pause, from
//     metadata read after it, clears a suspicion.
//   - a commit that was under way across the pause (it passed its check
//     before) is acknowledged only once its partition is confirmed, or
//     fails as unconfirmed.
//
// A start is a pause of unknown length: the masters of a leaf that starts
// are suspect too.
//
// Deposed copies: a master whose sender is refused by its replica because
// the replica follows a newer term (a master raft named since) is deposed
// for good: it refuses commits until it is promoted at a newer epoch, or
// dropped (Depose).

// fenceTick is the watchdog's period.
const fenceTick = 50 * time.Millisecond

// defaultConfirmWait bounds how long a commit to a suspect partition, or
// one that was under way across a pause, waits for its partition to be
// confirmed (Fencing.ConfirmWait).
const defaultConfirmWait = 5 * time.Second

type fence struct {
	threshold atomic.Int64 // ns; 0: fencing off
	// confirmWait: Fencing.ConfirmWait
	confirmWait atomic.Int64 // ns
	base        time.Time
	last        atomic.Int64 // ns since base: the watchdog's latest tick, or the latest pause noticed
	// incarnation changes at every pause noticed (and is random at start)
	incarnation atomic.Uint64
	pauses      atomic.Uint64
	// partitionOf tells a partition database's distributed database by
	// its name (meta.PartitionOf); the store suspects only partitions
	partitionOf func(name string) (owner string, ok bool)
	started     atomic.Bool
}

func newIncarnation() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])>>12 | 1 // never 0 (unknown); fits every client's integer types
}

// Fencing configures pause fencing.
type Fencing struct {
	// Threshold is the shortest scheduling gap taken for a pause.
	Threshold time.Duration
	// PartitionOf tells a partition database's distributed database by
	// its name; only partitions whose distributed database has a copy
	// here (a leaf of a cluster) become suspect.
	PartitionOf func(name string) (owner string, ok bool)
	// ConfirmWait bounds a commit's wait for its suspect partitions to be
	// confirmed (default 5 s): a few of the master aggregator's status
	// reads, so that a leaf's restart costs its clients a wait, not an
	// error, while a copy that failed over refuses soon.
	ConfirmWait time.Duration
}

// EnableFencing turns pause fencing on (a leaf of a cluster), and takes
// its start for a pause: every master partition is suspect until
// confirmed. Enabling it again only changes the threshold.
func (s *Store) EnableFencing(f Fencing) {
	if f.Threshold <= 0 {
		return
	}
	if f.ConfirmWait <= 0 {
		f.ConfirmWait = defaultConfirmWait
	}
	s.fence.confirmWait.Store(int64(f.ConfirmWait))
	if !s.fence.started.CompareAndSwap(false, true) {
		s.fence.threshold.Store(int64(f.Threshold))
		return
	}
	s.commitMu.Lock()
	s.fence.partitionOf = f.PartitionOf
	s.fence.last.Store(int64(time.Since(s.fence.base)))
	s.fence.threshold.Store(int64(f.Threshold))
	if n := s.suspectLocked(); n > 0 {
		s.log.Info("this leaf started: its master partitions take writes once the master aggregator confirms them", "partitions", n)
	}
	s.commitMu.Unlock()
	go s.watchdog()
}

func (s *Store) watchdog() {
	t := time.NewTicker(fenceTick)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		s.notice()
		now := int64(time.Since(s.fence.base))
		for last := s.fence.last.Load(); now > last && !s.fence.last.CompareAndSwap(last, now); last = s.fence.last.Load() {
		}
	}
}

// paused reports a gap since the watchdog's last tick longer than the
// threshold: the cheap check of every commit.
func (f *fence) paused() bool { return f.threshold.Load() > 0 && f.pausedAt(time.Now()) }

// pausedAt is paused as of now (a reading of the monotonic clock).
func (f *fence) pausedAt(now time.Time) bool {
	th := f.threshold.Load()
	return th > 0 && int64(now.Sub(f.base))-f.last.Load() >= th
}

// notice looks for a pause, and acts on one.
func (s *Store) notice() {
	if s.fence.paused() {
		s.commitMu.Lock()
		s.noticeLocked()
		s.commitMu.Unlock()
	}
}

// noticeLocked acts on a pause seen by the caller, unless another
// goroutine acted on it first; called under commitMu.
func (s *Store) noticeLocked() {
	now := int64(time.Since(s.fence.base))
	gap := now - s.fence.last.Load()
	if gap < s.fence.threshold.Load() {
		return // noticed already
	}
	s.fence.last.Store(now)
	s.fence.incarnation.Add(1)
	s.fence.pauses.Add(1)
	n := s.suspectLocked()
	s.log.Warn("this process was paused; its master partitions take writes again once the master aggregator confirms them (they may have failed over)",
		"paused", time.Duration(gap).Round(time.Millisecond), "partitions", n)
}

// suspectLocked makes every master partition suspect; called under
// commitMu.
func (s *Store) suspectLocked() int {
	if s.fence.partitionOf == nil {
		return 0
	}
	n := 0
	for _, d := range s.databases() {
		if d.replica || d.dropped {
			continue
		}
		owner, ok := s.fence.partitionOf(d.meta.Name)
		if !ok {
			continue
		}
		if o := s.database(owner); o == nil || !o.replica {
			continue // not a copy of a distributed database's partition
		}
		d.suspect = true
		d.syncReadFence()
		n++
	}
	return n
}

// Incarnation is this store's incarnation: it changes at every pause the
// store notices (checked first) and at every start.
func (s *Store) Incarnation() uint64 {
	s.notice()
	return s.fence.incarnation.Load()
}

// SuspectCount counts the master partitions that are suspect (and not
// deposed): they wait for the master aggregator's confirmation.
func (s *Store) SuspectCount() int {
	if s.fence.threshold.Load() == 0 {
		return 0
	}
	dbs := s.databases()
	n := 0
	s.commitMu.Lock()
	for _, d := range dbs {
		if d.suspect && d.deposedBy == 0 && !d.replica && !d.dropped {
			n++
		}
	}
	s.commitMu.Unlock()
	return n
}

// Pauses counts the pauses noticed since the start.
func (s *Store) Pauses() uint64 { return s.fence.pauses.Load() }

// ErrStaleIncarnation: a confirmation names an incarnation this store no
// longer has: it was sent before a pause, or from what the sender knew
// before it.
var ErrStaleIncarnation = errors.New("this leaf was paused since the promotion was sent")

// PromoteConfirmed is PromoteAt by the master aggregator, naming this
// store's incarnation as its heartbeats last read it: the copy is
// promoted (or confirmed master at its term) and is no longer suspect. A
// stale incarnation changes nothing (ErrStaleIncarnation).
func (s *Store) PromoteConfirmed(name string, epoch, incarnation uint64) (Position, error) {
	return s.promote(name, epoch, true, &incarnation)
}

// Depose marks a master copy deposed when a newer master exists: its
// replica refused its stream because the replica follows term, newer
// than the copy's own. It refuses commits until promoted at a newer
// epoch, or dropped. It reports whether it was deposed now.
func (s *Store) Depose(name string, term uint64) bool {
	d := s.database(name)
	if d == nil {
		return false
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if d.replica || d.dropped || d.pos.Term >= term || d.deposedBy >= term {
		return false
	}
	first := d.deposedBy == 0
	d.deposedBy = term
	d.syncReadFence()
	if first {
		s.log.Warn("this master partition was failed over: its replica follows a newer master; it refuses writes until it is dropped",
			"database", name, "term", d.pos.Term, "newer term", term)
	}
	return first
}

// fencedLocked is the refusal of a commit to a suspect or deposed master;
// called under commitMu.
func (d *dbState) fencedLocked() error {
	switch {
	case d.deposedBy != 0:
		return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
			"The partition database '%s' failed over to another leaf (term %d, this copy's %d); this stale copy takes no writes: write through an aggregator", d.meta.Name, d.deposedBy, d.pos.Term)
	case d.suspect:
		return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
			"The partition database '%s' may have failed over while this leaf was paused or down; it takes writes again once the master aggregator confirms it. Retry the transaction", d.meta.Name)
	}
	return nil
}

// awaitConfirmation waits, until deadline, for the master aggregator to
// confirm the suspect partitions t writes (it reads a leaf's incarnation
// every second), so that a leaf's restart or a short pause costs its
// clients a wait, not an error. It reports whether every one of them is
// confirmed: false when none was suspect (the commit failed for another
// reason), one was deposed, or the deadline passed. Only a refusal
// (1290, err) is looked into: other failed commits pay nothing.
func (s *Store) awaitConfirmation(t *Txn, err error, deadline time.Time) bool {
	var se *mysql.SQLError
	if s.fence.threshold.Load() == 0 || !errors.As(err, &se) || se.Num != mysql.EROptionPreventsStatement {
		return false
	}
	var suspects []*dbState
	s.commitMu.Lock()
	for _, g := range t.groupByDatabase() {
		if d := s.databaseByID(g.dbID); !g.global && d != nil && d.suspect {
			suspects = append(suspects, d)
		}
	}
	s.commitMu.Unlock()
	if len(suspects) == 0 {
		return false
	}
	for {
		waiting := false
		s.commitMu.Lock()
		for _, d := range suspects {
			if d.deposedBy != 0 || d.replica || d.dropped {
				s.commitMu.Unlock()
				return false
			}
			waiting = waiting || d.suspect
		}
		s.commitMu.Unlock()
		if !waiting {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-s.closed:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// confirmPaused: a commit that was under way when a pause was noticed
// (its incarnation is not the current one) is acknowledged only once each
// of its partitions is confirmed master again (not suspect); it fails
// if one was deposed or is not confirmed in time. Its changes are durable
// here, but may be lost: the partition may have failed over meanwhile.
func (s *Store) confirmPaused(applied []dbCommit) error {
	if s.fence.threshold.Load() == 0 {
		return nil
	}
	s.notice()
	inc := s.fence.incarnation.Load()
	deadline := time.Now().Add(time.Duration(s.fence.confirmWait.Load()))
	for _, a := range applied {
		if a.inc == inc {
			continue
		}
		for {
			s.commitMu.Lock()
			err := a.d.fencedLocked()
			if err == nil && (a.d.replica || a.d.dropped) {
				err = errors.New("it is no longer a master")
			}
			suspect := a.d.suspect && a.d.deposedBy == 0 && !a.d.replica && !a.d.dropped
			s.commitMu.Unlock()
			if err == nil {
				break
			}
			if suspect && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return mysql.NewSQLError(1105, "HY000",
				"Commit on %s is not confirmed: this leaf was paused while committing and the partition may have failed over (%s); it may be lost. Check, and retry the transaction", a.d.meta.Name, fmt.Sprint(err))
		}
	}
	return nil
}

// routed reports whether ctx is an aggregator's session on this node.
func routed(ctx *sql.Context) bool {
	if ctx == nil {
		return false
	}
	s, ok := ctx.Session.(*Session)
	return ok && s.routed != nil && s.routed()
}

// isPartition reports whether name is a partition of a distributed
// database that has a copy here (fencing knows them on a cluster's leaf).
func (s *Store) isPartition(name string) bool {
	if s.fence.threshold.Load() == 0 || s.fence.partitionOf == nil {
		return false
	}
	owner, ok := s.fence.partitionOf(name)
	if !ok {
		return false
	}
	o := s.database(owner)
	return o != nil && o.replicaNow.Load()
}

// The read fence's states (dbState.readFenced).
const (
	readOpen uint32 = iota
	readSuspect
	readDeposed
)

// syncReadFence copies suspect and deposedBy to readFenced, and replica
// to replicaNow; called under commitMu wherever they change.
func (d *dbState) syncReadFence() {
	d.replicaNow.Store(d.replica)
	switch {
	case d.deposedBy != 0:
		d.readFenced.Store(readDeposed)
	case d.suspect:
		d.readFenced.Store(readSuspect)
	default:
		d.readFenced.Store(readOpen)
	}
}

// readFence holds a read of a suspect master copy until the master
// aggregator confirms it (up to ConfirmWait), as a commit waits, and
// refuses it after that or when the copy is deposed. An aggregator's
// routed read (Session.SetRouted) of a partition whose copy here is a
// replica is refused too: the aggregator's metadata is behind a hand-over
// or failover, and the copy may lack the latest commits (a read through
// another aggregator, or the same client's write a moment before, saw
// them). 1290 makes the aggregator route it again.
func (d *dbState) readFence(ctx *sql.Context) error {
	d.s.notice() // a read that runs the moment the process resumes
	if d.replicaNow.Load() && routed(ctx) && d.s.isPartition(d.meta.Name) {
		return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
			"The partition database '%s' is a replica on this leaf: its master moved (a hand-over or failover this aggregator has not applied yet). Retry the statement", d.meta.Name)
	}
	if d.readFenced.Load() == readOpen {
		return nil
	}
	deadline := time.Now().Add(time.Duration(d.s.fence.confirmWait.Load()))
	for d.readFenced.Load() == readSuspect && time.Now().Before(deadline) {
		select {
		case <-d.s.closed:
			deadline = time.Time{}
		case <-time.After(10 * time.Millisecond):
		}
	}
	if d.readFenced.Load() == readOpen {
		return nil
	}
	return mysql.NewSQLError(mysql.EROptionPreventsStatement, "HY000",
		"The partition database '%s' may have failed over while this leaf was paused or down; it is read again once the master aggregator confirms it. Retry the statement", d.meta.Name)
}
