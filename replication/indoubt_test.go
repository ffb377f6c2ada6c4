package replication

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/storage"
)

// TestPromotionLoadsInDoubtFirst: a master prepares two transactions
// (in doubt: their coordinator has not decided yet) and its replica gets
// their records. A transaction on the replica updates a row of the first
// (a statement on a replica takes row locks; only its commit is refused),
// the replica is promoted (the master failed), and that transaction then
// tries to prepare and commit. The promotion must load both in-doubt
// parts with their locks before the copy takes a write, and the
// transaction that wrote the copy as a replica must not commit: the
// decisions then apply both parts, and nothing stays in doubt.
//
// Before, the promotion made the copy writable first and then loaded the
// parts, waiting for their locks while holding promoteMu: the
// transaction prepared, its COMMIT PREPARED waited for promoteMu behind
// the load waiting for its lock, the load failed on the lock wait
// timeout, the second part was never loaded, COMMIT PREPARED of it
// answered OK without applying it, and the copy could not be demoted
// (ErrInDoubt) for good.
func TestPromotionLoadsInDoubtFirst(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	master := newNode(t)
	s, err := storage.Open(t.TempDir(), storage.Options{NoSync: true, LockWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	replica := &node{store: s, e: sqle.NewDefault(storage.NewProvider(s))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := mux.New(ln, log, testAuth)
	defer m.Close()
	go NewReceiver(replica.store, log).Serve(m.Listen(mux.TagReplication))

	session := func(n *node) func(q string) error {
		sess := storage.NewSession(sql.NewBaseSession(), n.store)
		return func(q string) error {
			ctx := sql.NewContext(context.Background(), sql.WithSession(sess))
			ctx.SetCurrentDatabase("p")
			if len(q) > 8 && q[:8] == "PREPARE " {
				_, err := sess.PrepareSession(ctx, q[8:])
				return err
			}
			sess.CommandBegin()
			defer sess.CommandEnd()
			_, iter, _, err := n.e.Query(ctx, q)
			if err == nil {
				_, err = sql.RowIterToRows(ctx, iter)
			}
			return err
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(master.store.CreateDatabase("p", sql.Collation_Default))
	on := session(master)
	must(on("CREATE TABLE r (id INT PRIMARY KEY, v INT)"))
	must(on("INSERT INTO r VALUES (1, 10), (2, 20), (3, 30)"))
	for _, tx := range []struct{ xid, update string }{
		{"xid-a", "UPDATE r SET v = v + 1 WHERE id = 1"},
		{"xid-b", "UPDATE r SET v = v + 1 WHERE id = 2"},
	} {
		tm := session(master)
		must(tm("BEGIN"))
		must(tm(tx.update))
		must(tm("PREPARE " + tx.xid))
	}
	hub := NewHub(master.store, "master", testDialer, log)
	hub.Ensure("p", ln.Addr().String())
	want, _ := master.store.Position("p")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, _ := replica.store.Position("p"); got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not reach %s", want)
		}
	}
	hub.Close() // the master fails

	// a transaction writes the replica's row 1 (refused only at commit)
	t2 := session(replica)
	must(t2("BEGIN"))
	must(t2("UPDATE r SET v = v + 100 WHERE id = 1"))

	promoted := make(chan error, 1)
	go func() {
		_, err := replica.store.PromoteAt("p", 2)
		promoted <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); replica.store.IsReplica("p"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the copy was not promoted")
		}
	}
	// the transaction goes on to commit, through two-phase commit as an
	// aggregator's would
	committed := make(chan error, 1)
	go func() {
		if err := t2("PREPARE t2"); err != nil {
			t2("ROLLBACK")
			committed <- err
			return
		}
		committed <- replica.store.CommitPrepared("t2")
	}()
	select {
	case err := <-promoted:
		if err != nil {
			t.Errorf("promotion: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("promotion hangs")
	}
	select {
	case err := <-committed:
		if err == nil {
			t.Error("a transaction that wrote the copy while it was a replica committed after its promotion")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the transaction's commit hangs")
	}
	// the coordinators decide: commit both
	for _, xid := range []string{"xid-a", "xid-b"} {
		if err := replica.store.CommitPrepared(xid); err != nil {
			t.Errorf("commit prepared %s: %v", xid, err)
		}
	}
	if p := replica.store.Prepared(); len(p) != 0 {
		t.Errorf("in doubt after the decisions: %+v", p)
	}
	got, err := replica.exec(t, "SELECT v FROM p.r ORDER BY id")
	if err != nil || len(got) != 3 || got[0][0] != int32(11) || got[1][0] != int32(21) || got[2][0] != int32(30) {
		t.Errorf("rows after the decisions: %v (%v), want 11, 21, 30", got, err)
	}
	// nothing in doubt holds the copy: it can be handed over
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := replica.store.Demote(ctx, "p"); errors.Is(err, storage.ErrInDoubt) {
		t.Error("in-doubt records left in the copy: it cannot be demoted")
	} else if err != nil {
		t.Errorf("demote: %v", err)
	}
}
