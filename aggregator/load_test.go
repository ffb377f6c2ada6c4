package aggregator_test

import (
	"database/sql"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// writeLoad is the steady load of the fault and rebalance tests: inserts
// of unique ids into kv and bank transfers between accounts, through
// several aggregators. verify checks that every acknowledged insert is
// there and the bank total is intact.
type writeLoad struct {
	t          *testing.T
	dbs        []*sql.DB // the database on each aggregator
	name       string    // the database
	partitions int
	key        sharding.Key

	mu sync.Mutex
	// Transfers pause while the total is checked: a read concurrent with
	// a distributed commit can see part of it (READ COMMITTED, as in
	// SingleStore), and after a failover that window lasts until the
	// in-doubt parts are applied on the promoted copies.
	transfersPaused                    sync.RWMutex
	acked                              map[int64]bool
	next                               int64
	insertErrs, transfers, transferErr int
	samples                            []insertSample
	stop                               chan struct{}
	wg                                 sync.WaitGroup
}

// startWriteLoad creates kv and accounts in the database (dbs[0] is on the
// master aggregator) and starts 2 insert and 2 transfer workers per
// aggregator. It stops when the test ends, or with Stop.
func startWriteLoad(t *testing.T, partitions int, dbs ...*sql.DB) *writeLoad {
	testutil.Exec(t, dbs[0], "CREATE TABLE kv (id BIGINT PRIMARY KEY, w INT)")
	testutil.Exec(t, dbs[0], "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	var rows []string
	for i := 0; i < bankAccounts; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, bankStart))
	}
	testutil.Exec(t, dbs[0], "INSERT INTO accounts VALUES "+strings.Join(rows, ","))
	l := &writeLoad{t: t, dbs: dbs, name: testutil.Rows(t, dbs[0], "SELECT DATABASE()")[0], partitions: partitions,
		key: sharding.NewKey([]gmssql.Type{types.Int64}), acked: map[int64]bool{}, stop: make(chan struct{})}
	for w := 0; w < 2*len(dbs); w++ {
		db := dbs[w%len(dbs)]
		l.wg.Add(2)
		go l.inserts(db)
		go l.transfersOn(w, db)
	}
	t.Cleanup(l.Stop)
	return l
}

func (l *writeLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *writeLoad) inserts(db *sql.DB) {
	defer l.wg.Done()
	for !l.stopped() {
		l.mu.Lock()
		l.next++
		id := l.next
		l.mu.Unlock()
		start := time.Now()
		_, err := db.Exec("INSERT INTO kv VALUES (?, 1)", id)
		l.mu.Lock()
		l.samples = append(l.samples, insertSample{at: start, took: time.Since(start), failed: err != nil})
		if err == nil {
			l.acked[id] = true
		} else {
			l.insertErrs++
		}
		l.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (l *writeLoad) transfersOn(w int, db *sql.DB) {
	defer l.wg.Done()
	rng := rand.New(rand.NewSource(int64(w)))
	for !l.stopped() {
		from, to := rng.Intn(bankAccounts), rng.Intn(bankAccounts)
		if from == to {
			continue
		}
		l.transfersPaused.RLock()
		err := transfer(db, from, to, 1+rng.Intn(50))
		l.transfersPaused.RUnlock()
		l.mu.Lock()
		l.transfers++
		if err != nil {
			l.transferErr++
		}
		l.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop ends the workers (idempotent).
func (l *writeLoad) Stop() {
	l.mu.Lock()
	if !l.stopped() {
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// Ack records a write the test made itself.
func (l *writeLoad) Ack(id int64) {
	l.mu.Lock()
	l.acked[id] = true
	l.mu.Unlock()
}

// idOn is a new id of kv whose row lives in partition o.
func (l *writeLoad) idOn(o int) int64 {
	for {
		l.mu.Lock()
		l.next++
		id := l.next
		l.mu.Unlock()
		if p, _ := l.key.Partition([]interface{}{id}, l.partitions); p == o {
			return id
		}
	}
}

// firstWrite measures how long after since (a leaf failing) a write to
// one of the partitions that leaf was master of succeeds; ma is the master
// aggregator.
func (l *writeLoad) firstWrite(ma *sql.DB, leafPort int, since time.Time) time.Duration {
	t := l.t
	t.Helper()
	masters := partitionMasters(t, ma, l.name)
	var id int64 = 1 << 40
	for ; ; id++ {
		if p, _ := l.key.Partition([]interface{}{id}, l.partitions); masters[p] == strconv.Itoa(leafPort) {
			break
		}
	}
	for {
		_, err := l.dbs[0].Exec("INSERT INTO kv VALUES (?, 2)", id)
		if err == nil {
			l.Ack(id)
			return time.Since(since)
		}
		if time.Since(since) > 30*time.Second {
			t.Fatalf("no write on the failed leaf's partitions succeeded in 30 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verify checks, through the master aggregator, that no acknowledged
// insert is missing and that the bank total is intact.
func (l *writeLoad) verify(step string, ma *sql.DB, leaves []*testutil.Node) {
	t := l.t
	t.Helper()
	db := l.dbs[0]
	missing, want := l.lost()
	if len(missing) > 0 {
		name := l.name
		parts := map[int]int{}
		for _, id := range missing {
			p, _ := l.key.Partition([]interface{}{id}, l.partitions)
			parts[p]++
		}
		t.Logf("missing per partition: %v; partitions: %q", parts, testutil.Rows(t, ma, "SHOW PARTITIONS ON "+name))
		time.Sleep(2 * time.Second)
		for _, id := range missing[:min(len(missing), 5)] {
			p, _ := l.key.Partition([]interface{}{id}, l.partitions)
			t.Logf("id %d (partition %d) through the MA now: %q", id, p, testutil.Rows(t, db, fmt.Sprintf("SELECT w FROM kv WHERE id = %d", id)))
			for _, n := range leaves {
				if n.Running() {
					var w sql.NullInt64
					err := n.DB("").QueryRow(fmt.Sprintf("SELECT w FROM %s_%d.kv WHERE id = %d", name, p, id)).Scan(&w)
					t.Logf("  on leaf %d: %v %v", n.Port, w, err)
				}
			}
		}
		t.Fatalf("%s: %d of %d acknowledged inserts lost, e.g. %v", step, len(missing), want, missing[:min(len(missing), 10)])
	}
	func() {
		l.transfersPaused.Lock()
		defer l.transfersPaused.Unlock()
		start := time.Now()
		eventually(t, 15*time.Second, func() string {
			if got := bankTotal(t, db); got != bankAccounts*bankStart {
				return fmt.Sprintf("%s: bank total %d, want %d", step, got, bankAccounts*bankStart)
			}
			return ""
		})
		if waited := time.Since(start); waited > time.Second {
			t.Logf("%s: the bank total was right after %s", step, waited)
		}
	}()
	l.mu.Lock()
	t.Logf("%s: %d acknowledged inserts all present (%d failed), %d transfers (%d failed), total intact", step, want, l.insertErrs, l.transfers, l.transferErr)
	l.mu.Unlock()
}

// lost lists the acknowledged inserts missing now, and how many were
// acknowledged.
func (l *writeLoad) lost() ([]int64, int) {
	l.mu.Lock()
	want := make([]int64, 0, len(l.acked))
	for id := range l.acked {
		want = append(want, id)
	}
	l.mu.Unlock()
	present := map[int64]bool{}
	for _, r := range testutil.Rows(l.t, l.dbs[0], "SELECT id FROM kv") {
		id, _ := strconv.ParseInt(r, 10, 64)
		present[id] = true
	}
	var missing []int64
	for _, id := range want {
		if !present[id] {
			missing = append(missing, id)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	return missing, len(want)
}

// insertSample is one insert of the load: when it started, how long it
// took, and whether it failed.
type insertSample struct {
	at     time.Time
	took   time.Duration
	failed bool
}

// latency summarizes the inserts that started in [from, to): p50 and p99
// of the successful ones, and how many failed.
type latency struct {
	n, failed int
	p50, p99  time.Duration
}

func (s latency) String() string {
	return fmt.Sprintf("%d inserts, p50 %s, p99 %s, %d failed", s.n, s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.failed)
}

func (l *writeLoad) latency(from, to time.Time) latency {
	l.mu.Lock()
	var took []time.Duration
	var out latency
	for _, s := range l.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		if s.failed {
			out.failed++
			continue
		}
		took = append(took, s.took)
	}
	l.mu.Unlock()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	out.n = len(took)
	if len(took) > 0 {
		out.p50 = took[len(took)/2]
		out.p99 = took[min(len(took)-1, len(took)*99/100)]
	}
	return out
}
