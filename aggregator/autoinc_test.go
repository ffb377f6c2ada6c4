package aggregator_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestAutoIncrementReservation: an aggregator hands out AUTO_INCREMENT
// values of sharded tables only from a range it reserved durably. A
// reservation write that fails (the failpoint autoinc-reserve-error*2
// fails the first one) fails the statement with 1467, nothing inserted;
// the next insert, the fault cleared, gets a fresh value; and no value
// repeats across restarts, a kill -9 included.
func TestAutoIncrementReservation(t *testing.T) {
	ma := testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=autoinc-reserve-error*2"}, "--master-aggregator")
	c := testutil.NewCluster(t, ma)
	c.AddLeaf(testutil.StartNode(t), 0)
	testutil.Exec(t, ma.DB(""), "CREATE DATABASE ai PARTITIONS 4")
	// id is not the primary key, so a repeated value shows as one
	// instead of a duplicate-key error
	testutil.Exec(t, ma.DB("ai"), "CREATE TABLE a (k INT PRIMARY KEY, id BIGINT AUTO_INCREMENT, KEY (id))")

	seen := map[int64]int{} // id → k
	insert := func(t *testing.T, k int) (int64, error) {
		t.Helper()
		r, err := ma.DB("ai").Exec(fmt.Sprintf("INSERT INTO a (k) VALUES (%d)", k))
		if err != nil {
			return 0, err
		}
		return r.LastInsertId()
	}
	check := func(t *testing.T, k int) {
		t.Helper()
		id, err := insert(t, k)
		if err != nil {
			t.Fatalf("insert %d: %v", k, err)
		}
		stored := testutil.Rows(t, ma.DB("ai"), fmt.Sprintf("SELECT id FROM a WHERE k = %d", k))
		if len(stored) != 1 || stored[0] != strconv.FormatInt(id, 10) {
			t.Fatalf("row %d holds id %v, LAST_INSERT_ID() %d", k, stored, id)
		}
		if prev, dup := seen[id]; dup {
			t.Fatalf("AUTO_INCREMENT value %d given to row %d and again to row %d", id, prev, k)
		}
		seen[id] = k
	}

	t.Run("a failed reservation fails the statement", func(t *testing.T) {
		id, err := insert(t, 1)
		if me := testutil.MySQLError(err); me == nil || me.Number != 1467 {
			t.Errorf("insert while the reservation write fails: %v, want error 1467", err)
		}
		if err == nil {
			seen[id] = 1 // handed out from a range never reserved
		}
		_, err = ma.DB("ai").Exec("INSERT INTO a (k) SELECT 100")
		if me := testutil.MySQLError(err); me == nil || me.Number != 1467 {
			t.Errorf("INSERT … SELECT while the reservation write fails: %v, want error 1467", err)
		}
		testutil.ExpectRows(t, ma.DB("ai"), "SELECT COUNT(*) FROM a", "0")
	})
	t.Run("the next insert gets a fresh value", func(t *testing.T) {
		check(t, 2)
		check(t, 3)
	})
	t.Run("no value repeats after a restart", func(t *testing.T) {
		ma.Stop()
		ma.Env = nil
		ma.Start()
		waitServing(t, ma)
		check(t, 4)
		check(t, 5)
	})
	t.Run("no value repeats after kill -9", func(t *testing.T) {
		ma.Kill()
		ma.Start()
		waitServing(t, ma)
		check(t, 6)
		check(t, 7)
	})
	testutil.ExpectRows(t, ma.DB("ai"), "SELECT COUNT(*) - COUNT(DISTINCT id) FROM a", "0")
	t.Logf("rows and their values: %v", testutil.Rows(t, ma.DB("ai"), "SELECT k, id FROM a ORDER BY k"))
}

// waitServing waits until a restarted master aggregator runs statements
// on the cluster's tables again.
func waitServing(t *testing.T, n *testutil.Node) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := testutil.RenderRows(n.DB("ai"), ",", "SELECT COUNT(*) FROM a")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted aggregator does not serve: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
