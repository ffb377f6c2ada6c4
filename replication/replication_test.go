package replication

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/storage"
)

type node struct {
	store *storage.Store
	e     *sqle.Engine
}

func newNode(t *testing.T) *node {
	s, err := storage.Open(t.TempDir(), storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &node{store: s, e: sqle.NewDefault(storage.NewProvider(s))}
}

func (n *node) exec(t *testing.T, q string) ([]sql.Row, error) {
	t.Helper()
	sess := storage.NewSession(sql.NewBaseSession(), n.store)
	ctx := sql.NewContext(context.Background(), sql.WithSession(sess))
	ctx.SetCurrentDatabase("ref")
	sess.CommandBegin()
	defer sess.CommandEnd()
	_, iter, _, err := n.e.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return sql.RowIterToRows(ctx, iter)
}

func TestShipDatabase(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	src, dst := newNode(t), newNode(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := mux.New(ln, log, testAuth)
	defer m.Close()
	go NewReceiver(dst.store, log).Serve(m.Listen(mux.TagReplication))

	if err := src.store.CreateDatabase("ref", sql.Collation_Default); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE r (id INT PRIMARY KEY, v VARCHAR(10), KEY v (v))", "INSERT INTO r VALUES (1, 'a'), (2, 'b')"} {
		if _, err := src.exec(t, q); err != nil {
			t.Fatal(err)
		}
	}
	hub := NewHub(src.store, "src", testDialer, log)
	defer hub.Close()
	hub.Ensure("ref", ln.Addr().String())

	waitFor := func(what string) uint64 {
		t.Helper()
		pos, _ := src.store.Position("ref")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if pending := hub.WaitAcked(ctx, "ref", pos.LSN); pending == nil {
				if got, ok := dst.store.Position("ref"); ok && got == pos {
					return pos.LSN
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: replica did not reach %s (statuses %+v)", what, pos, hub.Statuses())
		return 0
	}
	waitFor("initial copy")
	rows, err := dst.exec(t, "SELECT id, v FROM r WHERE v = 'b'")
	if err != nil || len(rows) != 1 || rows[0][0] != int32(2) {
		t.Fatalf("replica rows = %v, %v", rows, err)
	}
	// later writes and schema changes follow
	for _, q := range []string{"UPDATE r SET v = 'z' WHERE id = 1", "ALTER TABLE r ADD COLUMN w INT DEFAULT 7", "INSERT INTO r VALUES (3, 'c', 8)"} {
		if _, err := src.exec(t, q); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("later writes")
	rows, err = dst.exec(t, "SELECT id, v, w FROM r ORDER BY id")
	if err != nil || len(rows) != 3 || rows[0][1] != "z" || rows[2][2] != int32(8) || rows[0][2] != int32(7) {
		t.Fatalf("replica rows = %v, %v", rows, err)
	}
	// the replica refuses writes of its own
	if _, err := dst.exec(t, "INSERT INTO r VALUES (9, 'x', 0)"); err == nil {
		t.Fatal("replica took a write")
	}
	if !dst.store.IsReplica("ref") || src.store.IsReplica("ref") {
		t.Fatal("roles")
	}
}

// TestPacer: a capped sender pauses so that its average rate since the
// cap was set stays under it; no cap, no pause.
func TestPacer(t *testing.T) {
	var p pacer
	if d := p.wait(0, 1<<20); d != 0 {
		t.Errorf("no cap: pause %s", d)
	}
	if d := p.wait(1<<20, 1<<20); d < 900*time.Millisecond || d > time.Second {
		t.Errorf("1 MiB at 1 MiB/s: pause %s, want about 1s", d)
	}
	if d := p.wait(1<<20, 1<<19); d < 1400*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("1.5 MiB at 1 MiB/s: pause %s, want about 1.5s since the cap was set", d)
	}
	if d := p.wait(2<<20, 1<<20); d < 400*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("a new cap starts a new window: pause %s, want about 0.5s", d)
	}
}
