package aggregator_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// TestInDoubtAfterStall: a leaf's links stall for longer than the failure
// timeout while a transfer through a child aggregator is in doubt on it
// and its pair (the child died right after writing the commit decision),
// and while a transaction has written the pair's replica of one of the
// leaf's partitions (statements on a replica take row locks; only the
// commit is refused) — what an aggregator's transaction routed to the
// replica just before its promotion does. The leaf is failed over to its
// pair, the links heal, the leaf is attached again (its stale copies
// dropped and copied back, the partitions handed back once nothing is in
// doubt on them), and the child restarts and resolves the transfer. Bank
// transfers run through the master aggregator all along. Then, within
// seconds: no leaf holds an in-doubt transaction, the stalled leaf is
// online and stays so, every partition has its master and replica, and
// the bank total is intact.
//
// It used to fail three ways: the promotion made the replica writable
// before loading its in-doubt part, so the transaction that had written
// the replica committed over the in-doubt row and the transfer's outcome
// then overwrote it (the bank total off by that transaction); through
// two-phase commit that transaction's COMMIT PREPARED waited behind the
// very promotion waiting for its lock, and the parts the promotion had
// not loaded when its lock wait failed stayed in doubt for good (a
// hand-over back failing with "transactions are in doubt" every 5 s);
// and the stalled leaf's own in-doubt part, loaded in a copy that the
// attach dropped, could never be committed, so it stayed in doubt there
// and the coordinator's resolver retried that leaf forever.
func TestInDoubtAfterStall(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 2000")
	a := startProxiedLeaf(t, c)
	// b lets the test write its partitions directly, as an aggregator does
	b := startProxiedLeafEnv(t, c, []string{"CANOPY_FAILPOINT=client-internal-access"}, "--lock-wait-timeout", "3s")
	child := testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=coordinator-after-decision"})
	c.AddAggregator(child)
	const parts = 4
	testutil.Exec(t, ma, fmt.Sprintf("CREATE DATABASE idb WITH SYNC REPLICATION PARTITIONS %d", parts))
	db := c.MA.DB("idb")
	testutil.Exec(t, db, "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	var rows []string
	for i := 0; i < bankAccounts; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, bankStart))
	}
	testutil.Exec(t, db, "INSERT INTO accounts VALUES "+strings.Join(rows, ","))
	want := bankAccounts * bankStart
	c.WaitCaughtUp(child, 10*time.Second)

	// x and z in a partition a masters (its replica on b), y in one b masters
	copies := partitionCopies(t, ma, "idb")
	key := sharding.NewKey([]gmssql.Type{types.Int32})
	partOf := func(id int) int {
		p, err := key.Partition([]interface{}{id}, parts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ids := map[int][]int{} // partition → accounts
	for id := 0; id < bankAccounts; id++ {
		ids[partOf(id)] = append(ids[partOf(id)], id)
	}
	x, y, z := -1, -1, -1
	for o := 0; o < parts; o++ {
		switch m := copies[o][0]; {
		case m == strconv.Itoa(a.sql.Port) && x < 0 && len(ids[o]) >= 2:
			x, z = ids[o][0], ids[o][1]
		case m == strconv.Itoa(b.sql.Port) && y < 0 && len(ids[o]) >= 1:
			y = ids[o][0]
		}
	}
	if x < 0 || y < 0 {
		t.Fatalf("accounts: x %d, y %d, z %d (copies %v)", x, y, z, copies)
	}
	onA := meta.PartitionName("idb", partOf(x))

	// transfers between the other accounts through the master aggregator
	var stop atomic.Bool
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	var others []int
	for id := 0; id < bankAccounts; id++ {
		if id != x && id != y && id != z {
			others = append(others, id)
		}
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for !stop.Load() {
				from, to := others[rng.Intn(len(others))], others[rng.Intn(len(others))]
				if from == to {
					continue
				}
				if err := transfer(db, from, to, 1+rng.Intn(9)); err != nil {
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
				} else {
					ok.Add(1)
				}
			}
		}(w)
	}
	stopLoad := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopLoad()

	// 1. a transfer x → y through the child: decided, then the child dies
	// before COMMIT PREPARED; it is in doubt on a and b (and on b's
	// replica of x's partition)
	if err := transfer(child.DB("idb"), x, y, 7); err == nil {
		t.Fatal("transfer through a coordinator that dies after its decision succeeded")
	}
	if !child.WaitExit(10 * time.Second) {
		t.Fatal("the child did not stop at its failpoint")
	}
	leafA, leafB := a.DB(""), b.DB("")
	for _, l := range []*sql.DB{leafA, leafB} {
		if p := inDoubt(l, 0); !strings.Contains(p, fmt.Sprintf(":%d/", child.Port)) {
			t.Fatalf("the transfer is not in doubt on both leaves: %q", p)
		}
	}

	// 2. a transaction writes b's replica of x's partition
	ctx := context.Background()
	t2, err := leafB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Close()
	for _, q := range []string{
		"BEGIN",
		fmt.Sprintf("UPDATE `%s`.accounts SET balance = balance - 5 WHERE id = %d", onA, x),
		fmt.Sprintf("UPDATE `%s`.accounts SET balance = balance + 5 WHERE id = %d", onA, z),
	} {
		if _, err := t2.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s on b's replica: %v", q, err)
		}
	}

	// 3. a's links stall for longer than the failure timeout: its
	// partitions fail over to b
	stall(t, a, 2500*time.Millisecond)
	eventually(t, 10*time.Second, func() string {
		for _, r := range testutil.Rows(t, leafB, "SHOW DATABASES EXTENDED") {
			if f := strings.Split(r, ","); f[0] == onA && f[2] != "master" {
				return fmt.Sprintf("b's copy of %s is not promoted: %s", onA, r)
			}
		}
		return ""
	})
	// the transaction goes on to commit as an aggregator's does
	_, err = t2.ExecContext(ctx, "CANOPY PREPARE 'indoubt-t2'")
	if err == nil {
		_, err = t2.ExecContext(ctx, "CANOPY COMMIT PREPARED 'indoubt-t2'")
		if err == nil {
			t.Error("a transaction that wrote a replica before its promotion committed after it")
		}
	} else {
		t2.ExecContext(ctx, "ROLLBACK")
	}
	t.Logf("the replica's transaction: %v", err)

	// 4. a is attached again: its stale copy of x's partition is dropped
	// and copied back from b (the hand-over back waits for the transfer)
	eventually(t, 20*time.Second, func() string {
		for _, r := range testutil.Rows(t, leafA, "SHOW DATABASES EXTENDED") {
			if f := strings.Split(r, ","); f[0] == onA && !strings.HasSuffix(f[2], "slave") {
				return fmt.Sprintf("a's copy of %s: %s", onA, r)
			}
		}
		return ""
	})

	// 5. the child comes back and resolves the transfer
	child.Env = nil
	child.Start()
	start := time.Now()
	eventually(t, 30*time.Second, func() string {
		var problems []string
		for _, l := range []*proxiedLeaf{a, b} {
			if st := leafState(t, ma, l.sql.Port); st != "online" {
				problems = append(problems, fmt.Sprintf("leaf %d is %s", l.sql.Port, st))
			}
		}
		for name, l := range map[string]*sql.DB{"a": leafA, "b": leafB} {
			if p := inDoubt(l, 2*time.Second); p != "" { // younger: transfers committing now
				problems = append(problems, fmt.Sprintf("leaf %s holds in-doubt transactions: %s", name, p))
			}
		}
		for o, cp := range partitionCopies(t, ma, "idb") {
			if cp[0] == "" || cp[1] == "" {
				problems = append(problems, fmt.Sprintf("partition %d has master %q, replica %q", o, cp[0], cp[1]))
			}
		}
		return strings.Join(problems, "; ")
	})
	t.Logf("settled %s after the child restarted (%d transfers, %d failed)", time.Since(start).Round(time.Millisecond), ok.Load(), failed.Load())
	// a stays online: no more attaches failing on transactions in doubt
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if st := leafState(t, ma, a.sql.Port); st != "online" {
			t.Fatalf("the stalled leaf went %s again", st)
		}
	}
	stopLoad()
	if got := bankTotal(t, db); got != want {
		t.Errorf("bank total %d, want %d", got, want)
	}
	if bx, by, bz := balance(t, db, x), balance(t, db, y), balance(t, db, z); bx != bankStart-7 || by != bankStart+7 || bz != bankStart {
		t.Errorf("balances x %d, y %d, z %d; want %d, %d, %d", bx, by, bz, bankStart-7, bankStart+7, bankStart)
	}
	if ok.Load() == 0 {
		t.Error("no transfer succeeded")
	}
}

// startProxiedLeafEnv is startProxiedLeaf for a node with extra
// environment and arguments.
func startProxiedLeafEnv(t *testing.T, c *testutil.Cluster, env []string, args ...string) *proxiedLeaf {
	n, internal := testutil.StartNodeBehindInternalProxy(t, env, args...)
	l := &proxiedLeaf{Node: n, sql: testutil.StartProxy(t, 0, n.Addr()), internal: internal}
	testutil.Exec(t, c.MA.DB(""), fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.sql.Port))
	c.Leaves = append(c.Leaves, n)
	return l
}

// stall blackholes a leaf's MySQL and internal ports for d, then heals
// them, closing the connections they held.
func stall(t *testing.T, l *proxiedLeaf, d time.Duration) {
	t.Helper()
	if err := l.sql.Blackhole(); err != nil {
		t.Fatal(err)
	}
	if err := l.internal.Blackhole(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if err := l.sql.HealClosing(); err != nil {
		t.Fatal(err)
	}
	if err := l.internal.HealClosing(); err != nil {
		t.Fatal(err)
	}
}

// inDoubt lists a leaf's in-doubt transactions at least minAge old (""
// if none).
func inDoubt(leaf *sql.DB, minAge time.Duration) string {
	rows, err := testutil.RenderRows(leaf, ",", "CANOPY PREPARED TRANSACTIONS")
	if err != nil {
		return err.Error()
	}
	var old []string
	for _, r := range rows {
		f := strings.Split(r, ",") // XID,Age_ms,Keys
		if ms, _ := strconv.Atoi(f[1]); time.Duration(ms)*time.Millisecond >= minAge {
			old = append(old, r)
		}
	}
	return strings.Join(old, "; ")
}
