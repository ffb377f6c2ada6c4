package replication

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/storage"
)

// target is a node receiving streams on a loopback port, which can be
// stopped and opened again on the same data.
type target struct {
	t    *testing.T
	dir  string
	addr string
	*node
	m *mux.Mux
}

func startTarget(t *testing.T, dir, addr string) *target {
	t.Helper()
	s, err := storage.Open(dir, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	tg := &target{t: t, dir: dir, addr: ln.Addr().String(), node: &node{store: s, e: sqle.NewDefault(storage.NewProvider(s))}, m: mux.New(ln, log, testAuth)}
	go NewReceiver(s, log).Serve(tg.m.Listen(mux.TagReplication))
	t.Cleanup(tg.stop)
	return tg
}

func (tg *target) stop() {
	if tg.m != nil {
		tg.m.Close()
		tg.store.Close()
		tg.m = nil
	}
}

// dump is every row of r on n, in order.
func dump(t *testing.T, n *node) string {
	t.Helper()
	rows, err := n.exec(t, "SELECT * FROM r ORDER BY id")
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return fmt.Sprint(rows)
}

// TestSnapshotProvisioning: a new copy gets a snapshot, then the log; a
// copy further behind than the source's truncated log gets a snapshot
// again, which replaces everything it held; a snapshot interrupted by a
// crash leaves a copy that says so and is provisioned afresh.
func TestSnapshotProvisioning(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	src := newNode(t)
	if err := src.store.CreateDatabase("ref", sql.Collation_Default); err != nil {
		t.Fatal(err)
	}
	exec := func(q string) {
		t.Helper()
		if _, err := src.exec(t, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE TABLE r (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100), KEY v (v))")
	for i := 0; i < 20; i++ {
		var vals []string
		for j := 0; j < 100; j++ {
			vals = append(vals, fmt.Sprintf("('%s')", strings.Repeat(string(rune('a'+j%26)), 1+j)))
		}
		exec("INSERT INTO r (v) VALUES " + strings.Join(vals, ","))
	}
	exec("DELETE FROM r WHERE id % 7 = 0")
	tg := startTarget(t, t.TempDir(), "")
	hub := NewHub(src.store, "src", testDialer, log)
	defer hub.Close()

	caughtUp := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			pos, _ := src.store.Position("ref")
			got, ok := tg.store.Position("ref")
			if ok && got == pos && dump(t, tg.node) == dump(t, src) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: copy at %v, source at %v (statuses %+v)", what, got, pos, hub.Statuses())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	hub.Ensure("ref", tg.addr)
	caughtUp("new copy")
	pos, _ := src.store.Position("ref")
	if first, _ := tg.store.FirstLogLSN("ref"); first != pos.LSN+1 {
		t.Errorf("a snapshot copy holds log from %d, want none (position %v): it was not provisioned by snapshot", first, pos)
	}
	exec("INSERT INTO r (v) VALUES ('after the snapshot')")
	exec("ALTER TABLE r ADD COLUMN w INT DEFAULT 5")
	caughtUp("log after the snapshot")

	// away while the source writes more than its log keeps
	hub.Stop("ref", tg.addr)
	exec("DELETE FROM r WHERE id < 100")
	for i := 0; i < 30; i++ {
		exec(fmt.Sprintf("INSERT INTO r (v, w) VALUES ('away %d', %d)", i, i))
	}
	exec("CREATE TABLE r2 (k INT PRIMARY KEY)")
	exec("INSERT INTO r2 VALUES (1), (2)")
	pos, _ = src.store.Position("ref")
	if err := src.store.TruncateLog("ref", 0, pos.LSN-3); err != nil {
		t.Fatal(err)
	}
	if first, _ := src.store.FirstLogLSN("ref"); first != pos.LSN-2 {
		t.Fatalf("after truncation the log starts at %d, want %d", first, pos.LSN-2)
	}
	hub.Ensure("ref", tg.addr)
	caughtUp("copy far behind")
	if rows, err := tg.exec(t, "SELECT COUNT(*) FROM r2"); err != nil || rows[0][0] != int64(2) {
		t.Errorf("a table created while the copy was away: %v %v", rows, err)
	}
	if rows, err := tg.exec(t, "SELECT COUNT(*) FROM r WHERE id < 100"); err != nil || rows[0][0] != int64(0) {
		t.Errorf("rows deleted while the copy was away are still there: %v %v", rows, err)
	}

	// a crash in the middle of a snapshot: the copy says it is unfinished
	hub.Stop("ref", tg.addr)
	if err := tg.store.BeginSnapshot("ref"); err != nil {
		t.Fatal(err)
	}
	sn, err := src.store.OpenSnapshot("ref")
	if err != nil {
		t.Fatal(err)
	}
	chunk, _ := sn.Next(1000)
	sn.Close()
	if err := tg.store.ApplySnapshotChunk("ref", chunk); err != nil {
		t.Fatal(err)
	}
	dir, addr := tg.dir, tg.addr
	tg.stop()
	tg = startTarget(t, dir, addr)
	if !tg.store.SnapshotPending("ref") {
		t.Fatal("a half-installed snapshot is not marked after a restart")
	}
	if got, _ := tg.store.Position("ref"); got != (storage.Position{}) {
		t.Errorf("a half-installed snapshot claims position %v", got)
	}
	if _, err := tg.store.Promote("ref"); !errors.Is(err, storage.ErrProvisioning) {
		t.Errorf("promoting a half-installed copy: %v, want ErrProvisioning", err)
	}
	exec("UPDATE r SET w = 42 WHERE id = 100")
	hub.Ensure("ref", tg.addr)
	caughtUp("after an interrupted snapshot")
	if tg.store.SnapshotPending("ref") {
		t.Error("still marked after a complete snapshot")
	}
	if base, ok := tg.store.LogBase("ref"); !ok || base.LSN == 0 {
		t.Errorf("no log base after a snapshot: %v %v", base, ok)
	}
	// and the copy goes on following the log, with its catalog loaded
	exec("INSERT INTO r2 VALUES (3)")
	caughtUp("log after the second snapshot")
	if rows, err := tg.exec(t, "SELECT k FROM r2 ORDER BY k"); err != nil || !reflect.DeepEqual(rows, []sql.Row{{int32(1)}, {int32(2)}, {int32(3)}}) {
		t.Errorf("r2 on the copy: %v %v", rows, err)
	}
}
