package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/dolthub/go-mysql-server/sql"

	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/storage"
)

// TestPromotionsFromOneBaseDiverge: two copies taken over from the same
// base term (two forced takeovers, one after the other) each write a
// record at the same position. A third copy that followed the first
// rejoins the second. Promoted at the partition's epochs (raft's, one per
// master), the two records have different terms, so the second sees the
// third is not a prefix of its log and sends a snapshot: the third ends
// with the second's row, not the first's. (With local terms, term+1 on
// both, the records had the same term at the same position and the third
// copy silently kept the first's row.)
func TestPromotionsFromOneBaseDiverge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		promote   func(s *storage.Store, epoch uint64) error
		converges bool
	}{
		{"epochs", func(s *storage.Store, e uint64) error { _, err := s.PromoteAt("p", e); return err }, true},
		{"local terms", func(s *storage.Store, _ uint64) error { _, err := s.Promote("p"); return err }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := slog.New(slog.DiscardHandler)
			base, first, second, third := newNode(t), newNode(t), newNode(t), newNode(t)
			addr := map[*node]string{}
			for _, n := range []*node{first, second, third} {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				m := mux.New(ln, log, testAuth)
				t.Cleanup(func() { m.Close() })
				go NewReceiver(n.store, log).Serve(m.Listen(mux.TagReplication))
				addr[n] = ln.Addr().String()
			}
			exec := func(n *node, q string) {
				t.Helper()
				sess := storage.NewSession(sql.NewBaseSession(), n.store)
				ctx := sql.NewContext(context.Background(), sql.WithSession(sess))
				ctx.SetCurrentDatabase("p")
				sess.CommandBegin()
				defer sess.CommandEnd()
				_, iter, _, err := n.e.Query(ctx, q)
				if err == nil {
					_, err = sql.RowIterToRows(ctx, iter)
				}
				if err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			// ship runs one hub from src to the targets until they have
			// src's position
			ship := func(src *node, targets ...*node) {
				t.Helper()
				hub := NewHub(src.store, fmt.Sprintf("%p", src), testDialer, log)
				defer hub.Close()
				for _, tg := range targets {
					hub.Ensure("p", addr[tg])
				}
				want, _ := src.store.Position("p")
				deadline := time.Now().Add(10 * time.Second)
				for _, tg := range targets {
					for {
						if got, ok := tg.store.Position("p"); ok && got == want {
							break
						}
						if time.Now().After(deadline) {
							got, _ := tg.store.Position("p")
							t.Fatalf("target at %s, want %s (%+v)", got, want, hub.Statuses())
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
			}
			if err := base.store.CreateDatabase("p", sql.Collation_Default); err != nil {
				t.Fatal(err)
			}
			exec(base, "CREATE TABLE r (id INT PRIMARY KEY, v VARCHAR(10))")
			exec(base, "INSERT INTO r VALUES (1, 'base')")
			ship(base, first, second, third)

			// the first takeover: epoch 1; the third copy follows it
			if err := tc.promote(first.store, 1); err != nil {
				t.Fatal(err)
			}
			exec(first, "INSERT INTO r VALUES (2, 'first')")
			ship(first, third)
			// the second takeover, from the same base: epoch 2
			if err := tc.promote(second.store, 2); err != nil {
				t.Fatal(err)
			}
			exec(second, "INSERT INTO r VALUES (2, 'second')")
			ship(second, third)

			sess := storage.NewSession(sql.NewBaseSession(), third.store)
			ctx := sql.NewContext(context.Background(), sql.WithSession(sess))
			ctx.SetCurrentDatabase("p")
			_, iter, _, err := third.e.Query(ctx, "SELECT v FROM r WHERE id = 2")
			if err != nil {
				t.Fatal(err)
			}
			rows, err := sql.RowIterToRows(ctx, iter)
			if err != nil || len(rows) != 1 {
				t.Fatalf("rows %v, %v", rows, err)
			}
			got := rows[0][0]
			if tc.converges && got != "second" {
				t.Fatalf("the third copy has %v at id 2, want the second master's row", got)
			}
			if !tc.converges && got != "first" {
				t.Fatalf("local terms: the third copy has %v; this case shows the old divergence and expects 'first'", got)
			}
			if !tc.converges {
				return
			}
			// the deposed first master comes back and ships again: the
			// third copy follows a newer term and refuses it, so the first
			// is fenced (its waiting commits fail) and nothing changes
			exec(first, "INSERT INTO r VALUES (3, 'stale')")
			hub := NewHub(first.store, "first", testDialer, log)
			defer hub.Close()
			hub.Ensure("p", addr[third])
			ctx2, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pos, _ := first.store.Position("p")
			if err := hub.WaitTargets(ctx2, "p", []string{addr[third]}, pos.LSN); !errors.Is(err, ErrFenced) {
				t.Fatalf("a stale source's wait: %v, want ErrFenced", err)
			}
			if got, _ := third.store.Position("p"); got.Term != 2 {
				t.Fatalf("the third copy moved to %s", got)
			}
		})
	}
}
