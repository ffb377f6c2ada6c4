// Package replication ships partition logs from a database's master to its
// replicas over the nodes' internal ports. The source pushes: it connects
// to the target, learns the target's position, and streams every later log
// record as it commits; the target applies each record atomically with its
// position and acknowledges it once durable. Reference databases (copied
// from the master aggregator to every node) use it, and so do the replicas
// of partitions.
package replication

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/storage"
)

// Frame types of the stream.
const (
	frameHello    byte = 'H' // source → target: hello (JSON)
	framePosition byte = 'P' // target → source: the target's position (JSON)
	frameRecord   byte = 'R' // source → target: one log record
	frameBeat     byte = 'B' // source → target: keepalive
	frameAck      byte = 'A' // target → source: LSN durable on the target (uvarint)
	frameSnapshot byte = 'S' // source → target: a snapshot follows, as of this position (JSON)
	frameChunk    byte = 'K' // source → target: keys and values of the snapshot
	frameSnapEnd  byte = 'E' // source → target: the snapshot is complete
)

// snapshotBegin heads a snapshot: the source position it is as of.
type snapshotBegin struct {
	Term    uint64 `json:"term"`
	LSN     uint64 `json:"lsn"`
	Commits uint64 `json:"commits"`
}

// snapshotChunkBytes is the size of a snapshot frame.
const snapshotChunkBytes = 256 << 10

type hello struct {
	Database string `json:"database"`
	Source   string `json:"source"`
	Sync     bool   `json:"sync,omitempty"`
	// Term is the source copy's term: a target whose copy has a newer
	// term follows a newer master (terms are the partition epochs of the
	// metadata), so it refuses the stream and the source is fenced.
	Term uint64 `json:"term,omitempty"`
}

type position struct {
	Term  uint64 `json:"term"`
	LSN   uint64 `json:"lsn"`
	Error string `json:"error,omitempty"`
	// Fenced: the target's copy takes its own writes (it was promoted),
	// so the source is no longer the master of this database.
	Fenced bool `json:"fenced,omitempty"`
	// Pending: the target's copy is an unfinished snapshot; it needs a
	// whole one.
	Pending bool `json:"pending,omitempty"`
}

// ErrFenced is returned by waits of a source whose target was promoted:
// the source's commits can no longer be confirmed, and must not be
// acknowledged.
var ErrFenced = errors.New("this partition was failed over to its replica; the commit is not confirmed")

// Store is what replication needs of a node's storage.
type Store interface {
	ReadLog(db string, fromLSN uint64, max int) ([]*storage.LogRecord, error)
	CommitSignal(db string) <-chan struct{}
	Position(db string) (storage.Position, bool)
	EnsureReplica(db string) (storage.Position, error)
	ApplyRecord(db string, rec *storage.LogRecord) error
	IsReplica(db string) bool
	FirstLogLSN(db string) (uint64, error)
	LogBase(db string) (storage.Position, bool)
	OpenSnapshot(db string) (*storage.Snapshot, error)
	SnapshotPending(db string) bool
	BeginSnapshot(db string) error
	ApplySnapshotChunk(db string, chunk []byte) error
	FinishSnapshot(db string, pos storage.Position, commits uint64) error
}

func writeFrame(w *bufio.Writer, typ byte, payload []byte) error {
	if err := w.WriteByte(typ); err != nil {
		return err
	}
	var n [binary.MaxVarintLen64]byte
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(payload)))]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// maxFrame bounds one frame (a log record of a large transaction can be
// big); allocStep is how much of a frame is allocated before its bytes
// arrive, so a peer announcing a huge frame and sending nothing costs
// nothing.
const (
	maxFrame  = 1 << 30
	allocStep = 1 << 20
)

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, err
	}
	if n > maxFrame {
		return 0, nil, fmt.Errorf("replication: frame of %d bytes (at most %d)", n, maxFrame)
	}
	b := make([]byte, 0, min(n, allocStep))
	for uint64(len(b)) < n {
		k := min(n-uint64(len(b)), allocStep)
		b = slices.Grow(b, int(k))
		if _, err := io.ReadFull(r, b[len(b):len(b)+int(k)]); err != nil {
			return 0, nil, err
		}
		b = b[:len(b)+int(k)]
	}
	return typ, b, nil
}

// Receiver applies the streams a node receives.
type Receiver struct {
	store Store
	log   *slog.Logger
	mu    sync.Mutex
	sync  map[string]bool // database → its source waits for this replica
	// active is each database's stream being applied: a new stream of a
	// database ends the previous one and waits for it, so two sources (or
	// an old and a new connection of one) never write into a copy at once
	active map[string]*activeStream
	// snapshots and snapshotBytes count the snapshots installed here
	snapshots, snapshotBytes atomic.Uint64
}

// Snapshots reports how many snapshots this receiver installed, and their
// bytes.
func (rv *Receiver) Snapshots() (count, bytes uint64) {
	return rv.snapshots.Load(), rv.snapshotBytes.Load()
}

// NewReceiver returns a receiver applying to store.
func NewReceiver(store Store, log *slog.Logger) *Receiver {
	return &Receiver{store: store, log: log, sync: map[string]bool{}, active: map[string]*activeStream{}}
}

// Sync reports whether the last stream of db said its source waits for
// this replica's acknowledgements.
func (rv *Receiver) Sync(db string) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.sync[db]
}

// Serve accepts replication streams on ln and applies them.
func (rv *Receiver) Serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go rv.receive(c)
	}
}

type activeStream struct {
	c    net.Conn
	done chan struct{}
}

// End ends the stream being applied to db, if any: its copy was promoted,
// so its old master's sender reconnects and learns that it was fenced.
func (rv *Receiver) End(db string) {
	rv.mu.Lock()
	if a := rv.active[db]; a != nil {
		a.c.Close()
	}
	rv.mu.Unlock()
}

// claim makes c the stream of db, ending the one before (and waiting
// until it has stopped applying); release undoes it.
func (rv *Receiver) claim(db string, c net.Conn) (release func()) {
	me := &activeStream{c: c, done: make(chan struct{})}
	for {
		rv.mu.Lock()
		prev := rv.active[db]
		if prev == nil {
			rv.active[db] = me
			rv.mu.Unlock()
			break
		}
		rv.mu.Unlock()
		prev.c.Close()
		<-prev.done
	}
	return func() {
		rv.mu.Lock()
		if rv.active[db] == me {
			delete(rv.active, db)
		}
		rv.mu.Unlock()
		close(me.done)
	}
}

func (rv *Receiver) receive(c net.Conn) {
	store, log := rv.store, rv.log
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	typ, b, err := readFrame(r)
	if err != nil || typ != frameHello {
		return
	}
	var h hello
	if err := json.Unmarshal(b, &h); err != nil {
		return
	}
	defer rv.claim(h.Database, c)()
	pos, err := store.EnsureReplica(h.Database)
	if err == nil && h.Term > 0 && pos.Term > h.Term && !store.SnapshotPending(h.Database) {
		err = fmt.Errorf("database %s here follows a master of term %d, newer than the source's %d: %w", h.Database, pos.Term, h.Term, storage.ErrNotReplica)
	}
	reply := position{Term: pos.Term, LSN: pos.LSN, Pending: err == nil && store.SnapshotPending(h.Database)}
	if err != nil {
		reply.Error = err.Error()
		reply.Fenced = errors.Is(err, storage.ErrNotReplica)
		if p, ok := store.Position(h.Database); ok && reply.Fenced {
			reply.Term = p.Term // a newer one deposes the source (Hub.OnDeposed)
		}
	} else {
		rv.mu.Lock()
		rv.sync[h.Database] = h.Sync
		rv.mu.Unlock()
	}
	pb, _ := json.Marshal(reply)
	if writeFrame(w, framePosition, pb) != nil || w.Flush() != nil || err != nil {
		if err != nil {
			log.Warn("replication stream refused", "database", h.Database, "source", h.Source, "err", err)
		}
		return
	}
	log.Debug("replicating", "database", h.Database, "from", h.Source, "position", pos)
	var ack [binary.MaxVarintLen64]byte
	var acked time.Time
	sendAck := func(lsn uint64) bool {
		acked = time.Now()
		n := binary.PutUvarint(ack[:], lsn)
		c.SetWriteDeadline(time.Now().Add(ackTimeout))
		return writeFrame(w, frameAck, ack[:n]) == nil && w.Flush() == nil
	}
	// acknowledge what is applied once caught up with what arrived, and
	// at least every ackEvery, so a source that streams a backlog or a
	// snapshot still hears from a live target
	ackDue := func() bool { return r.Buffered() == 0 || time.Since(acked) >= ackEvery }
	var snap snapshotBegin
	var snapBytes int64
	var snapStart time.Time
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		typ, b, err := readFrame(r)
		if err != nil {
			return
		}
		switch typ {
		case frameBeat:
			// answered, so that the source notices a link that went dead;
			// a copy promoted meanwhile ends the stream (End does it at once)
			if !store.IsReplica(h.Database) {
				return
			}
			if p, ok := store.Position(h.Database); !ok || !sendAck(p.LSN) {
				return
			}
			continue
		case frameSnapshot:
			if err := json.Unmarshal(b, &snap); err != nil {
				return
			}
			if err := store.BeginSnapshot(h.Database); err != nil {
				log.Error("begin snapshot", "database", h.Database, "source", h.Source, "err", err)
				return
			}
			snapBytes, snapStart = 0, time.Now()
			continue
		case frameChunk:
			if err := store.ApplySnapshotChunk(h.Database, b); err != nil {
				log.Error("apply snapshot", "database", h.Database, "source", h.Source, "err", err)
				return
			}
			snapBytes += int64(len(b))
			if ackDue() && !sendAck(0) { // alive; nothing new is durable yet
				return
			}
			continue
		case frameSnapEnd:
			at := storage.Position{Term: snap.Term, LSN: snap.LSN}
			if err := store.FinishSnapshot(h.Database, at, snap.Commits); err != nil {
				log.Error("finish snapshot", "database", h.Database, "source", h.Source, "err", err)
				return
			}
			rv.snapshots.Add(1)
			rv.snapshotBytes.Add(uint64(snapBytes))
			log.Info("replica provisioned from a snapshot", "database", h.Database, "source", h.Source, "position", at,
				"bytes", snapBytes, "took", time.Since(snapStart).Round(time.Millisecond))
			if !sendAck(at.LSN) {
				return
			}
			continue
		case frameRecord:
		default:
			return
		}
		rec, err := storage.DecodeLogRecord(b)
		if err == nil {
			err = store.ApplyRecord(h.Database, rec)
		}
		if err != nil {
			log.Error("replication apply failed", "database", h.Database, "source", h.Source, "err", err)
			return
		}
		if ackDue() && !sendAck(rec.Pos.LSN) {
			return
		}
	}
}

// Hub runs the senders of a node: one per (database, target).
type Hub struct {
	store   Store
	source  string
	dialer  mux.Dialer // to targets' internal ports
	log     *slog.Logger
	mu      sync.Mutex
	senders map[key]*sender
	running sync.WaitGroup // the senders' goroutines (Close waits for them)
	changed chan struct{}  // closed and replaced on any ack or connection change
	// deposed, when set, hears of a copy shipped from here whose target
	// follows a newer term: a newer master exists (OnDeposed)
	deposed func(db string, term uint64)
}

// OnDeposed sets what the hub calls when a target refuses a stream
// because its copy follows a newer term than the source's: the source's
// copy is no longer the master. Set before shipping starts.
func (h *Hub) OnDeposed(fn func(db string, term uint64)) { h.deposed = fn }

type key struct{ db, target string }

// NewHub returns a hub shipping from store; source names this node in logs.
func NewHub(store Store, source string, dialer mux.Dialer, log *slog.Logger) *Hub {
	return &Hub{store: store, source: source, dialer: dialer, log: log, senders: make(map[key]*sender), changed: make(chan struct{})}
}

type sender struct {
	hub       *Hub
	db        string
	target    string // internal address
	sync      bool
	stop      chan struct{}
	connected bool
	fenced    bool
	acked     uint64
	// floor: the target has, or is being given, the log up to here; the
	// source keeps its log after it while connected (LogFloor)
	floor        uint64
	snapshotting atomic.Bool // a snapshot is being shipped
	// downSince: when the target last lost (or never had) a working stream
	downSince time.Time
	lastErr   string
	limit     atomic.Int64 // bytes/s; 0: no cap
}

// Ensure starts shipping db to target (an internal address) unless it is
// shipped already.
func (h *Hub) Ensure(db, target string) { h.EnsureSync(db, target, false) }

// EnsureSync starts shipping db to target, telling it whether the source
// waits for its acknowledgements (shown by the replica); a sender whose
// mode changed is restarted.
func (h *Hub) EnsureSync(db, target string, sync bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := key{db, target}
	if s, ok := h.senders[k]; ok {
		if s.sync == sync {
			return
		}
		close(s.stop)
	}
	s := &sender{hub: h, db: db, target: target, sync: sync, stop: make(chan struct{}), downSince: time.Now()}
	h.senders[k] = s
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		s.run()
	}()
}

// SetLimit caps what the sender of db to target ships, in bytes per
// second (0: no cap), without restarting it: a copy being provisioned is
// capped, the replica it becomes is not.
func (h *Hub) SetLimit(db, target string, bytesPerSec int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.senders[key{db, target}]; ok {
		s.limit.Store(bytesPerSec)
	}
}

// Stop stops shipping db to target.
func (h *Hub) Stop(db, target string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.senders[key{db, target}]; ok {
		close(s.stop)
		delete(h.senders, key{db, target})
		h.signalLocked()
	}
}

// Retain stops every sender not accepted by keep.
func (h *Hub) Retain(keep func(db, target string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, s := range h.senders {
		if !keep(k.db, k.target) {
			close(s.stop)
			delete(h.senders, k)
		}
	}
	h.signalLocked()
}

// Close stops every sender and waits (up to 10 s) until they have
// returned: the store they read may be closed next, and a sender still
// reading it would panic (seen in CI: pebble: closed).
func (h *Hub) Close() {
	h.Retain(func(string, string) bool { return false })
	done := make(chan struct{})
	go func() {
		h.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.log.Warn("replication senders still running 10 s after close")
	}
}

func (h *Hub) signalLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// WaitAcked waits until every live target of db has lsn durable, or ctx
// ends. It returns the targets that did not confirm. A target is live when
// connected or still making its first connection; one whose last attempt
// failed is not waited for (it catches up when it is back).
func (h *Hub) WaitAcked(ctx context.Context, db string, lsn uint64) []string {
	for {
		h.mu.Lock()
		var pending []string
		for k, s := range h.senders {
			// a sender that has not reached its target yet (and has not
			// failed) is pending too: the target may not have db at all
			if k.db == db && (s.connected && s.acked < lsn || !s.connected && s.lastErr == "") {
				pending = append(pending, k.target)
			}
		}
		ch := h.changed
		h.mu.Unlock()
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			sort.Strings(pending)
			return pending
		}
	}
}

// WaitTargets waits until each of targets that db is still shipped to has
// lsn durable, or ctx ends (an error naming the targets). A target dropped
// from the hub meanwhile is no longer waited for; one that was promoted
// fails the wait with ErrFenced.
func (h *Hub) WaitTargets(ctx context.Context, db string, targets []string, lsn uint64) error {
	for {
		h.mu.Lock()
		var pending []string
		fenced := false
		for _, t := range targets {
			s := h.senders[key{db, t}]
			if s == nil {
				continue
			}
			if s.fenced {
				fenced = true
			}
			if s.acked < lsn {
				pending = append(pending, t)
			}
		}
		ch := h.changed
		h.mu.Unlock()
		if fenced {
			return ErrFenced
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replicas %v of %s did not confirm position %d: %w", pending, db, lsn, ctx.Err())
		}
	}
}

// Status describes one sender.
type Status struct {
	Database, Target string
	Connected, Sync  bool
	Acked            uint64
	Error            string
	// DownFor is how long the target has been without a working stream
	// (0 while connected).
	DownFor time.Duration
}

// Statuses lists the senders.
func (h *Hub) Statuses() []Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Status
	for k, s := range h.senders {
		st := Status{k.db, k.target, s.connected, s.sync, s.acked, s.lastErr, 0}
		if !s.connected {
			st.DownFor = time.Since(s.downSince)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Database != out[j].Database {
			return out[i].Database < out[j].Database
		}
		return out[i].Target < out[j].Target
	})
	return out
}

func (s *sender) setState(connected bool, acked uint64, err error) {
	h := s.hub
	h.mu.Lock()
	var f fencedError
	if errors.As(err, &f) {
		s.fenced = true
	}
	if s.connected && !connected {
		s.downSince = time.Now()
	}
	s.connected = connected
	if acked > s.acked || !connected {
		s.acked = acked
	}
	if acked > s.floor || !connected {
		s.floor = acked
	}
	if err != nil {
		s.lastErr = err.Error()
	} else if connected {
		s.lastErr, s.fenced = "", false
	}
	h.signalLocked()
	h.mu.Unlock()
}

func (s *sender) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (s *sender) run() {
	backoff := 50 * time.Millisecond
	for !s.stopped() {
		err := s.stream()
		s.setState(false, 0, err)
		if s.stopped() {
			return
		}
		if err != nil {
			s.hub.log.Debug("replication stream ended", "database", s.db, "target", s.target, "err", err)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

// stream runs one connection until it fails or the sender stops.
func (s *sender) stream() error {
	// only a copy that takes its own writes is a source: a replica, or a
	// copy half provisioned, would ship what it does not have
	if s.hub.store.IsReplica(s.db) {
		return fmt.Errorf("replication: %s here is not a master copy; it ships nothing", s.db)
	}
	c, err := s.hub.dialer.Dial(s.target, mux.TagReplication, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	ended := make(chan struct{})
	defer close(ended)
	go func() {
		select {
		case <-s.stop:
			c.Close()
		case <-ended:
		}
	}()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	own, _ := s.hub.store.Position(s.db)
	hb, _ := json.Marshal(hello{Database: s.db, Source: s.hub.source, Sync: s.sync, Term: own.Term})
	if err := writeFrame(w, frameHello, hb); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := readFrame(r)
	if err != nil {
		return err
	}
	c.SetReadDeadline(time.Time{})
	var pos position
	if typ != framePosition || json.Unmarshal(b, &pos) != nil {
		return errors.New("replication: bad handshake")
	}
	if pos.Fenced {
		if pos.Term > own.Term && s.hub.deposed != nil {
			s.hub.deposed(s.db, pos.Term)
		}
		return fencedError{pos.Error}
	}
	if pos.Error != "" {
		return errors.New(pos.Error)
	}
	first, err := s.hub.store.FirstLogLSN(s.db)
	if err != nil {
		return err
	}
	// A copy that is new, unfinished, behind what the log still holds, or
	// not a prefix of this log (a deposed master's copy may hold writes
	// this source never had) gets a snapshot: it replaces whatever the
	// copy held.
	source, _ := s.hub.store.Position(s.db)
	snapshot := pos.Pending || pos.LSN+1 < first || pos.LSN == 0 && source.LSN > 0
	if !snapshot && s.diverged(pos, first) {
		s.hub.log.Warn("copy diverged from its source; it gets a snapshot", "database", s.db, "target", s.target, "position", fmt.Sprintf("%d:%d", pos.Term, pos.LSN))
		snapshot = true
	}
	// acks are read from now on, snapshot included: a target that goes
	// silent for ackTimeout ends the stream, and so do its writes
	acks := make(chan error, 1)
	go func() { acks <- s.readAcks(c, r) }()
	var pace pacer
	next := pos.LSN + 1
	if snapshot {
		s.setState(true, 0, nil)
		at, err := s.sendSnapshot(c, w, &pace)
		if err != nil {
			return err
		}
		next = at + 1
	} else {
		s.setState(true, pos.LSN, nil)
	}
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	for {
		c.SetWriteDeadline(time.Now().Add(ackTimeout))
		signal := s.hub.store.CommitSignal(s.db)
		batch := 256
		if s.limit.Load() > 0 {
			batch = 16 // a capped copy pauses between smaller batches
		}
		recs, err := s.hub.store.ReadLog(s.db, next, batch)
		if err != nil {
			return err
		}
		if len(recs) > 0 && recs[0].Pos.LSN != next {
			// truncated while this stream connected: the next one snapshots
			return fmt.Errorf("replication: the log of %s starts at %d, past %d", s.db, recs[0].Pos.LSN, next)
		}
		sent := 0
		for _, rec := range recs {
			b := rec.Encode()
			if err := writeFrame(w, frameRecord, b); err != nil {
				return err
			}
			sent += len(b)
			next = rec.Pos.LSN + 1
		}
		if len(recs) > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			if d := pace.wait(s.limit.Load(), sent); d > 0 {
				select {
				case <-time.After(d):
				case <-s.stop:
					return nil
				}
			}
			continue
		}
		select {
		case <-signal:
		case <-beat.C:
			if err := writeFrame(w, frameBeat, nil); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
		case err := <-acks:
			return err
		case <-s.stop:
			return nil
		}
	}
}

// sendSnapshot ships the whole database as of its current position, paced
// like the log, and returns that position's LSN. The log after it is kept
// for this target from the start (floor).
func (s *sender) sendSnapshot(c net.Conn, w *bufio.Writer, pace *pacer) (uint64, error) {
	sn, err := s.hub.store.OpenSnapshot(s.db)
	if err != nil {
		return 0, err
	}
	defer sn.Close()
	s.hub.mu.Lock()
	s.floor = sn.Pos.LSN
	s.hub.mu.Unlock()
	s.hub.log.Info("provisioning a copy from a snapshot", "database", s.db, "target", s.target, "position", sn.Pos)
	b, _ := json.Marshal(snapshotBegin{Term: sn.Pos.Term, LSN: sn.Pos.LSN, Commits: sn.Commits})
	if err := writeFrame(w, frameSnapshot, b); err != nil {
		return 0, err
	}
	s.snapshotting.Store(true)
	defer s.snapshotting.Store(false)
	for {
		c.SetWriteDeadline(time.Now().Add(snapshotAckTimeout))
		chunk, err := sn.Next(snapshotChunkBytes)
		if err != nil {
			return 0, err
		}
		if len(chunk) == 0 {
			break
		}
		if err := writeFrame(w, frameChunk, chunk); err != nil {
			return 0, err
		}
		if d := pace.wait(s.limit.Load(), len(chunk)); d > 0 {
			if err := w.Flush(); err != nil {
				return 0, err
			}
			select {
			case <-time.After(d):
			case <-s.stop:
				return 0, errors.New("replication: stopped")
			}
		}
	}
	if err := writeFrame(w, frameSnapEnd, nil); err != nil {
		return 0, err
	}
	return sn.Pos.LSN, w.Flush()
}

// LogFloor is the lowest position db's connected targets are known to
// have (or are being given by a snapshot): the log after it must stay. ok
// is false when no target of db is connected.
func (h *Hub) LogFloor(db string) (floor uint64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, s := range h.senders {
		if k.db == db && s.connected && (!ok || s.floor < floor) {
			floor, ok = s.floor, true
		}
	}
	return floor, ok
}

// diverged reports whether the target's position is not one of the
// source's log: it is past the source's end, or the source's record there
// has another term. (A copy whose term went up by a promotion without
// records after it counts as diverged too: it is copied again, which is
// safe.)
func (s *sender) diverged(pos position, first uint64) bool {
	if pos.LSN == 0 {
		return false
	}
	if pos.LSN < first {
		// the record is gone; a copy at the position a snapshot installed
		// here (the log's base) agrees, any other cannot be checked
		base, ok := s.hub.store.LogBase(s.db)
		return !ok || base != storage.Position{Term: pos.Term, LSN: pos.LSN}
	}
	recs, err := s.hub.store.ReadLog(s.db, pos.LSN, 1)
	if err != nil {
		return false // unknown: do not destroy anything
	}
	return len(recs) == 0 || recs[0].Pos.LSN != pos.LSN || recs[0].Pos.Term != pos.Term
}

// ackTimeout bounds the silence of a target: it answers every beat (one a
// second), so a stream without any answer for this long is a dead link,
// given up so that the sender reconnects and reports it down.
const ackTimeout = 5 * time.Second

// snapshotAckTimeout replaces ackTimeout while a snapshot is shipped: the
// target's disk may stall on a large install.
const snapshotAckTimeout = 30 * time.Second

func (s *sender) silenceLimit() time.Duration {
	if s.snapshotting.Load() {
		return snapshotAckTimeout
	}
	return ackTimeout
}

// ackEvery: a target acknowledges at least this often while frames keep
// arriving (a backlog, a snapshot), not only once it has caught up.
const ackEvery = 500 * time.Millisecond

func (s *sender) readAcks(c net.Conn, r *bufio.Reader) (err error) {
	defer func() {
		if err != nil {
			c.Close() // a writer blocked on a dead link returns too
		}
	}()
	for {
		c.SetReadDeadline(time.Now().Add(s.silenceLimit()))
		typ, b, err := readFrame(r)
		if err != nil {
			return err
		}
		if typ != frameAck {
			return fmt.Errorf("replication: unexpected frame %q", typ)
		}
		lsn, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("replication: bad ack")
		}
		s.setState(true, lsn, nil)
	}
}

// pacer spaces a sender's batches so that it ships at most limit bytes
// per second on average since the limit was last changed.
type pacer struct {
	limit int64
	since time.Time
	bytes int64
}

// wait records sent bytes and says how long to pause.
func (p *pacer) wait(limit int64, sent int) time.Duration {
	if limit != p.limit {
		p.limit, p.since, p.bytes = limit, time.Now(), 0
	}
	if limit <= 0 {
		return 0
	}
	p.bytes += int64(sent)
	due := time.Duration(float64(p.bytes) / float64(limit) * float64(time.Second))
	return due - time.Since(p.since)
}

type fencedError struct{ msg string }

func (f fencedError) Error() string { return f.msg }
