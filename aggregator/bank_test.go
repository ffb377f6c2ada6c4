package aggregator_test

import (
	"database/sql"
	"fmt"
	"math/rand"
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

const (
	bankAccounts = 24
	bankStart    = 1000
)

// transfer moves amount from one account to another in one transaction.
func transfer(db *sql.DB, from, to, amount int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if _, err := tx.Exec("UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, from); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.Exec("UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, to); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func bankTotal(t *testing.T, db *sql.DB) int {
	t.Helper()
	n, _ := strconv.Atoi(testutil.Rows(t, db, "SELECT SUM(balance) FROM accounts")[0])
	return n
}

func balance(t *testing.T, db *sql.DB, id int) int {
	t.Helper()
	n, _ := strconv.Atoi(testutil.Rows(t, db, fmt.Sprintf("SELECT balance FROM accounts WHERE id = %d", id))[0])
	return n
}

// TestBankTransfers runs concurrent transfers between accounts on
// different partitions through two aggregators, then crashes coordinators
// and leaves in the middle of two-phase commits: the total never changes,
// and every in-doubt transaction is resolved (its locks freed).
func TestBankTransfers(t *testing.T) {
	c := testutil.StartCluster(t, 3, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE bank PARTITIONS 6")
	ma, child := c.MA.DB("bank"), c.Children[0].DB("bank")
	testutil.Exec(t, ma, "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	var rows []string
	for i := 0; i < bankAccounts; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, bankStart))
	}
	testutil.Exec(t, ma, "INSERT INTO accounts VALUES "+strings.Join(rows, ","))
	want := bankAccounts * bankStart

	// which leaf holds each account
	masters := partitionMasters(t, ma, "bank")
	key := sharding.NewKey([]gmssql.Type{types.Int32})
	leafOf := func(id int) string {
		p, err := key.Partition([]interface{}{id}, 6)
		if err != nil {
			t.Fatal(err)
		}
		return masters[p]
	}
	// a pair of accounts on different leaves, the first on leaf
	pairOn := func(leaf string) (int, int) {
		for a := 0; a < bankAccounts; a++ {
			for b := 0; b < bankAccounts; b++ {
				if leafOf(a) == leaf && leafOf(b) != leaf {
					return a, b
				}
			}
		}
		t.Fatalf("no accounts on leaf %s and another", leaf)
		return 0, 0
	}

	t.Run("concurrent transfers", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		committed, failed := 0, 0
		for w := 0; w < 6; w++ {
			db := ma
			if w%2 == 1 {
				db = child
			}
			wg.Add(1)
			go func(w int, db *sql.DB) {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(w)))
				for i := 0; i < 40; i++ {
					from, to := rng.Intn(bankAccounts), rng.Intn(bankAccounts)
					if from == to {
						continue
					}
					err := transfer(db, from, to, 1+rng.Intn(50))
					mu.Lock()
					if err == nil {
						committed++
					} else {
						failed++ // deadlock victims and the like: rolled back everywhere
					}
					mu.Unlock()
				}
			}(w, db)
		}
		wg.Wait()
		t.Logf("%d transfers committed, %d rolled back", committed, failed)
		if committed < 100 {
			t.Errorf("only %d of 240 transfers committed", committed)
		}
		if got := bankTotal(t, ma); got != want {
			t.Fatalf("total %d after transfers, want %d", got, want)
		}
	})

	// A coordinator that dies at a failpoint, then comes back.
	crashCoordinator := func(t *testing.T, point string, applied bool) {
		n := testutil.StartNode(t)
		n.Env = []string{"CANOPY_FAILPOINT=" + point}
		n.Stop()
		n.Start()
		c.AddAggregator(n)
		// before the node is stopped with the subtest: two dead voters of
		// four would leave the metadata group without a quorum
		t.Cleanup(func() { c.RemoveAggregator(n) })
		a, b := pairOn(leafOf(0))
		ba, bb := balance(t, ma, a), balance(t, ma, b)
		if err := transfer(n.DB("bank"), a, b, 7); err == nil {
			t.Fatalf("transfer through an aggregator that crashes at %s succeeded", point)
		}
		if !n.WaitExit(10 * time.Second) {
			t.Fatalf("aggregator did not stop at failpoint %s", point)
		}
		n.Env = nil
		n.Start() // its resolver finishes the commit it left
		deadline := time.Now().Add(15 * time.Second)
		for {
			// the rows are writable again once the in-doubt transaction is resolved
			_, err := ma.Exec("UPDATE accounts SET balance = balance + 0 WHERE id IN (?, ?)", a, b)
			if err == nil && len(testutil.Rows(t, ma, "SELECT 1 FROM accounts WHERE id = 0")) == 1 {
				pending := 0
				for _, l := range c.Leaves {
					pending += len(testutil.Rows(t, l.DB(""), "CANOPY PREPARED TRANSACTIONS"))
				}
				if pending == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("in-doubt transaction not resolved after the coordinator restarted (last error %v)", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		na, nb := balance(t, ma, a), balance(t, ma, b)
		if applied && (na != ba-7 || nb != bb+7) {
			t.Errorf("after a crash past the commit decision: balances %d,%d want %d,%d", na, nb, ba-7, bb+7)
		}
		if !applied && (na != ba || nb != bb) {
			t.Errorf("after a crash before the commit decision: balances %d,%d want %d,%d", na, nb, ba, bb)
		}
		if got := bankTotal(t, ma); got != want {
			t.Fatalf("total %d, want %d", got, want)
		}
	}
	t.Run("coordinator crash after prepare", func(t *testing.T) { crashCoordinator(t, "coordinator-after-prepare", false) })
	t.Run("coordinator crash after decision", func(t *testing.T) { crashCoordinator(t, "coordinator-after-decision", true) })

	t.Run("leaf crash before commit prepared", func(t *testing.T) {
		leaf := c.Leaves[1]
		a, b := pairOn(strconv.Itoa(leaf.Port))
		ba, bb := balance(t, ma, a), balance(t, ma, b)
		leaf.Env = []string{"CANOPY_FAILPOINT=leaf-before-commit-prepared"}
		leaf.Stop()
		leaf.Start()
		waitReadable(t, ma)
		// decided: the client hears of a commit though one leaf has not applied it yet
		if err := transfer(ma, a, b, 11); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		if !leaf.WaitExit(10 * time.Second) {
			t.Fatal("leaf did not stop at its failpoint")
		}
		leaf.Env = nil
		leaf.Start() // reloads the prepared transaction; the resolver commits it
		deadline := time.Now().Add(15 * time.Second)
		for len(testutil.Rows(t, leaf.DB(""), "CANOPY PREPARED TRANSACTIONS")) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the restarted leaf's in-doubt transaction was not committed")
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitReadable(t, ma)
		if na, nb := balance(t, ma, a), balance(t, ma, b); na != ba-11 || nb != bb+11 {
			t.Errorf("balances %d,%d after a decided commit, want %d,%d", na, nb, ba-11, bb+11)
		}
		if got := bankTotal(t, ma); got != want {
			t.Fatalf("total %d, want %d", got, want)
		}
	})

	t.Run("leaf crash after prepare", func(t *testing.T) {
		leaf := c.Leaves[0]
		port := strconv.Itoa(leaf.Port)
		a, b := pairOn(port)
		ba, bb := balance(t, ma, a), balance(t, ma, b)
		leaf.Env = []string{"CANOPY_FAILPOINT=leaf-after-prepare"}
		leaf.Stop()
		leaf.Start()
		waitReadable(t, ma)
		// a transfer can also fail before it prepares (a connection of the
		// old process, a leaf marked offline while it restarted): retry
		// until one reaches the failpoint
		for attempt := 0; ; attempt++ {
			if err := transfer(ma, a, b, 9); err == nil {
				t.Fatal("transfer succeeded though a leaf crashed while preparing")
			}
			if leaf.WaitExit(3 * time.Second) {
				break
			}
			if attempt == 5 {
				t.Fatal("leaf did not stop at its failpoint")
			}
		}
		leaf.Env = nil
		leaf.Start() // reloads the prepared transaction with its locks
		deadline := time.Now().Add(15 * time.Second)
		for len(testutil.Rows(t, leaf.DB(""), "CANOPY PREPARED TRANSACTIONS")) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the restarted leaf's in-doubt transaction was not rolled back")
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitReadable(t, ma)
		if na, nb := balance(t, ma, a), balance(t, ma, b); na != ba || nb != bb {
			t.Errorf("balances %d,%d after a failed distributed commit, want %d,%d", na, nb, ba, bb)
		}
		if got := bankTotal(t, ma); got != want {
			t.Fatalf("total %d, want %d", got, want)
		}
		if err := transfer(ma, a, b, 1); err != nil {
			t.Fatalf("transfer after recovery: %v", err)
		}
	})
}

// waitReadable waits until a query over every partition succeeds (a
// restarted leaf answers again).
func waitReadable(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rows, err := db.Query("SELECT SUM(balance) FROM accounts")
		if err == nil {
			rows.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not readable: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
