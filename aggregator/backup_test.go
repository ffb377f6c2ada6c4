package aggregator_test

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestBackupRestore: BACKUP DATABASE while transfers between accounts on
// different leaves commit through two aggregators (two-phase commits
// whose second phase is staggered: each transfer stays committed on one
// leaf and not the other for 200 ms), then RESTORE DATABASE under another
// name on the same cluster and on a second cluster with another number
// of leaves: the restored bank's total is intact (the cut has no transfer
// half in it), every table and row is there, and the restored database
// takes writes.
func TestBackupRestore(t *testing.T) {
	stagger := []string{"CANOPY_FAILPOINT=commit-delivery-stagger"}
	c := testutil.NewCluster(t, testutil.StartNodeEnv(t, stagger, "--master-aggregator"))
	for i := 0; i < 3; i++ {
		c.AddLeaf(testutil.StartNode(t), 0)
	}
	c.AddAggregator(testutil.StartNodeEnv(t, stagger))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE bank PARTITIONS 6")
	bank, child := c.MA.DB("bank"), c.Children[0].DB("bank")
	testutil.Exec(t, bank, "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	testutil.Exec(t, bank, "CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY, body TEXT, SHARD KEY (id))")
	var rows []string
	for i := 0; i < bankAccounts; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, bankStart))
	}
	testutil.Exec(t, bank, "INSERT INTO accounts VALUES "+strings.Join(rows, ","))
	testutil.Exec(t, bank, "INSERT INTO notes (body) VALUES ('a'), ('b'), ('c')")
	testutil.Exec(t, bank, "CREATE REFERENCE TABLE branches (id INT PRIMARY KEY, city VARCHAR(20))")
	testutil.Exec(t, bank, "INSERT INTO branches VALUES (1, 'Oslo'), (2, 'Lima')")
	want := bankAccounts * bankStart

	var committed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		db := bank
		if w%2 == 1 {
			db = child
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				from, to := rng.Intn(bankAccounts), rng.Intn(bankAccounts)
				if from != to && transfer(db, from, to, 1+rng.Intn(20)) == nil {
					committed.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	dir := filepath.Join(t.TempDir(), "bank-backup")
	before := committed.Load()
	testutil.Exec(t, ma, fmt.Sprintf("BACKUP DATABASE bank TO '%s'", dir))
	during := committed.Load() - before
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d transfers committed, %d of them while the backup ran", committed.Load(), during)
	if committed.Load() == 0 {
		t.Fatal("no transfer committed")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Fatal(err)
	}
	// a second backup to the same path is refused; a bad path too
	testutil.ExpectError(t, ma, 1105, "HY000", fmt.Sprintf("BACKUP DATABASE bank TO '%s'", dir))
	testutil.ExpectError(t, ma, 1105, "HY000", "BACKUP DATABASE bank TO 'relative/path'")
	testutil.ExpectError(t, ma, 1049, "42000", "BACKUP DATABASE nope TO '/tmp/x'")

	// the same cluster, another name
	testutil.Exec(t, ma, fmt.Sprintf("RESTORE DATABASE bank2 FROM '%s'", dir))
	b2 := c.MA.DB("bank2")
	if got := bankTotal(t, b2); got != want {
		t.Errorf("restored total %d, want %d", got, want)
	}
	testutil.ExpectRows(t, b2, "SELECT COUNT(*) FROM accounts", fmt.Sprint(bankAccounts))
	testutil.ExpectRows(t, b2, "SELECT body FROM notes ORDER BY id", "a", "b", "c")
	// the reference table, on every node: the child aggregator reads its own copy
	testutil.ExpectRows(t, b2, "SELECT city FROM branches ORDER BY id", "Oslo", "Lima")
	c.WaitCaughtUp(c.Children[0], 10*time.Second)
	testutil.ExpectRows(t, c.Children[0].DB("bank2"), "SELECT city FROM branches ORDER BY id", "Oslo", "Lima")
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'bank2' AND ROLE = 'Master'", "6")
	// it takes writes: AUTO_INCREMENT goes on above the restored rows
	testutil.Exec(t, b2, "INSERT INTO notes (body) VALUES ('d')")
	testutil.ExpectRows(t, b2, "SELECT COUNT(DISTINCT id), COUNT(*) FROM notes", "4,4")
	if err := transfer(b2, 0, 1, 5); err != nil {
		t.Errorf("a transfer on the restored bank: %v", err)
	}
	if got := bankTotal(t, b2); got != want {
		t.Errorf("restored total after a transfer %d, want %d", got, want)
	}
	// restoring over an existing database is refused
	testutil.ExpectError(t, ma, 1007, "HY000", fmt.Sprintf("RESTORE DATABASE bank2 FROM '%s'", dir))

	// another cluster with one leaf
	c2 := testutil.StartCluster(t, 1, 0)
	testutil.Exec(t, c2.MA.DB(""), fmt.Sprintf("RESTORE DATABASE bank FROM '%s'", dir))
	if got := bankTotal(t, c2.MA.DB("bank")); got != want {
		t.Errorf("total restored on a one-leaf cluster %d, want %d", got, want)
	}
	testutil.ExpectRows(t, c2.MA.DB("bank"), "SELECT COUNT(*) FROM branches", "2")
	status := testutil.Rows(t, ma, "SHOW BACKUP STATUS")
	if len(status) < 2 || !strings.HasPrefix(status[0], "BACKUP,bank,"+dir+",success") || !strings.Contains(strings.Join(status, "\n"), "RESTORE,bank2,"+dir+",success") {
		t.Errorf("SHOW BACKUP STATUS:\n%s", strings.Join(status, "\n"))
	}
}
