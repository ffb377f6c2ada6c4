package storage

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCheckpointUnderWrites: a checkpoint taken while transactions commit
// holds every transaction acknowledged before it began, whole (each
// writes two tables of two databases), and exactly the positions it
// reports.
func TestCheckpointUnderWrites(t *testing.T) {
	te := newTestEngine(t, "")
	ctx := te.session()
	ctx.SetCurrentDatabase("")
	for _, q := range []string{"CREATE DATABASE x", "CREATE DATABASE y",
		"CREATE TABLE x.t (w INT, i INT, PRIMARY KEY (w, i))", "CREATE TABLE y.u (w INT, i INT, PRIMARY KEY (w, i))"} {
		te.must(ctx, q)
	}
	const writers = 4
	var acked [writers]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := te.session()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, q := range []string{"BEGIN", fmt.Sprintf("INSERT INTO x.t VALUES (%d, %d)", w, i),
					fmt.Sprintf("INSERT INTO y.u VALUES (%d, %d)", w, i), "COMMIT"} {
					if _, err := te.run(c, q); err != nil {
						t.Errorf("writer %d: %s: %v", w, q, err)
						return
					}
				}
				acked[w].Store(int64(i + 1))
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	var before [writers]int64
	for w := range before {
		before[w] = acked[w].Load()
	}
	dir := filepath.Join(t.TempDir(), "cp")
	infos, err := te.store.Checkpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // writes go on after it
	close(stop)
	wg.Wait()

	cp := newTestEngine(t, dir)
	cctx := cp.session()
	cctx.SetCurrentDatabase("")
	for w := 0; w < writers; w++ {
		for _, tbl := range []string{"x.t", "y.u"} {
			rows := cp.must(cctx, fmt.Sprintf("SELECT COUNT(*), COALESCE(MAX(i), -1) FROM %s WHERE w = %d", tbl, w))
			n, _ := toInt(rows[0][0])
			max, _ := toInt(rows[0][1])
			if n != max+1 {
				t.Errorf("writer %d in %s: %d rows up to %d: a gap", w, tbl, n, max)
			}
			if n < before[w] {
				t.Errorf("writer %d in %s: %d rows, %d acknowledged before the checkpoint", w, tbl, n, before[w])
			}
		}
		cp.expect(cctx, fmt.Sprintf("SELECT (SELECT COUNT(*) FROM x.t WHERE w = %d) = (SELECT COUNT(*) FROM y.u WHERE w = %d)", w, w), "true")
	}
	for _, d := range infos {
		if got, ok := cp.store.Position(d.Name); !ok || got != d.Pos {
			t.Errorf("%s: the checkpoint holds position %v, it reported %v", d.Name, got, d.Pos)
		}
	}
	if len(infos) < 2 {
		t.Errorf("reported databases: %+v", infos)
	}
}
