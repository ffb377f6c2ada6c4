package aggregator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestReferenceWritesInTransactions: a write to a reference table inside
// an explicit transaction commits or rolls back with the transaction,
// through the master and through a child aggregator. ROLLBACK undoes it
// on every node; COMMIT keeps it; a transaction that also wrote sharded
// tables is all or nothing, also when one side fails to commit; the
// session reads its own uncommitted write; another aggregator sees only
// committed rows; autocommit writes work as before.
func TestReferenceWritesInTransactions(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE rt PARTITIONS 4")
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, v INT)",
		"CREATE REFERENCE TABLE r (id INT PRIMARY KEY, v INT)",
	} {
		testutil.Exec(t, c.MA.DB("rt"), q)
	}
	c.WaitCaughtUp(c.Children[0], 10*time.Second)
	everyNode := append([]*testutil.Node{c.MA, c.Children[0]}, c.Leaves...)

	// ref is the reference row id on every node ("" when absent)
	ref := func(t *testing.T, id int, want string) {
		t.Helper()
		for _, n := range everyNode {
			got := strings.Join(testutil.Rows(t, n.DB(""), fmt.Sprintf("SELECT v FROM rt.r WHERE id = %d", id)), ";")
			if got != want {
				t.Errorf("node %d: reference row %d is %q, want %q", n.Port, id, got, want)
			}
		}
	}
	// sharded is the sharded row id through both aggregators
	sharded := func(t *testing.T, id int, want string) {
		t.Helper()
		for _, n := range []*testutil.Node{c.MA, c.Children[0]} {
			got := strings.Join(testutil.Rows(t, n.DB("rt"), fmt.Sprintf("SELECT v FROM t WHERE id = %d", id)), ";")
			if got != want {
				t.Errorf("aggregator %d: sharded row %d is %q, want %q", n.Port, id, got, want)
			}
		}
	}

	for i, via := range []struct {
		name         string
		node, other  *testutil.Node
		otherAggName string
	}{
		{"master", c.MA, c.Children[0], "child"},
		{"child", c.Children[0], c.MA, "master"},
	} {
		b := (i + 1) * 100
		other := via.other.DB("rt")
		otherSees := func(t *testing.T, table string, id int, want string) {
			t.Helper()
			got := strings.Join(testutil.Rows(t, other, fmt.Sprintf("SELECT v FROM %s WHERE id = %d", table, id)), ";")
			if got != want {
				t.Errorf("the %s aggregator reads %s row %d as %q during the transaction, want %q", via.otherAggName, table, id, got, want)
			}
		}

		t.Run(via.name+"/rollback undoes a reference write", func(t *testing.T) {
			s := session(t, via.node.DB("rt"))
			s.exec("BEGIN")
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 1)", b+1))
			s.expect(fmt.Sprintf("SELECT v FROM r WHERE id = %d", b+1), "1") // its own write
			otherSees(t, "r", b+1, "")
			s.exec("ROLLBACK")
			s.expect(fmt.Sprintf("SELECT v FROM r WHERE id = %d", b+1))
			ref(t, b+1, "")
		})

		t.Run(via.name+"/commit keeps a reference write", func(t *testing.T) {
			s := session(t, via.node.DB("rt"))
			s.exec("BEGIN")
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 2)", b+2))
			s.exec(fmt.Sprintf("UPDATE r SET v = 20 WHERE id = %d", b+2))
			s.expect(fmt.Sprintf("SELECT v FROM r WHERE id = %d", b+2), "20")
			otherSees(t, "r", b+2, "")
			s.exec("COMMIT")
			ref(t, b+2, "20")
		})

		t.Run(via.name+"/mixed transaction rolled back leaves neither", func(t *testing.T) {
			s := session(t, via.node.DB("rt"))
			s.exec("BEGIN")
			s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 3), (%d, 3)", b+3, b+53))
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 3)", b+3))
			s.exec("ROLLBACK")
			ref(t, b+3, "")
			sharded(t, b+3, "")
			sharded(t, b+53, "")
		})

		t.Run(via.name+"/mixed transaction committed keeps both", func(t *testing.T) {
			s := session(t, via.node.DB("rt"))
			s.exec("BEGIN")
			s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 4), (%d, 4)", b+4, b+54))
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 4)", b+4))
			otherSees(t, "r", b+4, "")
			otherSees(t, "t", b+4, "")
			s.exec("COMMIT")
			ref(t, b+4, "4")
			sharded(t, b+4, "4")
			sharded(t, b+54, "4")
		})

		t.Run(via.name+"/savepoints cover the reference part", func(t *testing.T) {
			s := session(t, via.node.DB("rt"))
			s.exec("BEGIN")
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 5)", b+5))
			s.exec("SAVEPOINT sp")
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 6)", b+6))
			s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 6)", b+6))
			s.exec("ROLLBACK TO SAVEPOINT sp")
			s.exec("COMMIT")
			ref(t, b+5, "5")
			ref(t, b+6, "")
			sharded(t, b+6, "")
		})

		t.Run(via.name+"/autocommit off", func(t *testing.T) {
			s := session(t, via.node.DB("rt"))
			s.exec("SET autocommit = 0")
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 9)", b+8))
			s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 9)", b+8))
			s.exec("ROLLBACK")
			ref(t, b+8, "")
			sharded(t, b+8, "")
			s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 9)", b+9))
			s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 9)", b+9))
			otherSees(t, "r", b+9, "")
			s.exec("COMMIT")
			ref(t, b+9, "9")
			sharded(t, b+9, "9")
			s.exec("SET autocommit = 1")
		})

		t.Run(via.name+"/autocommit reference writes", func(t *testing.T) {
			db := via.node.DB("rt")
			testutil.Exec(t, db, fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 7)", b+7))
			ref(t, b+7, "7")
			testutil.Exec(t, db, fmt.Sprintf("UPDATE r SET v = 70 WHERE id = %d", b+7))
			ref(t, b+7, "70")
			testutil.Exec(t, db, fmt.Sprintf("DELETE FROM r WHERE id = %d", b+7))
			ref(t, b+7, "")
		})

		// One side cannot commit: a schema change on its table since the
		// transaction wrote it. Nothing of the transaction stays.
		for _, side := range []string{"r", "t"} {
			t.Run(via.name+"/mixed transaction whose "+side+" part fails to commit leaves neither", func(t *testing.T) {
				id := b + 10
				if side == "t" {
					id = b + 11
				}
				s := session(t, via.node.DB("rt"))
				s.exec("BEGIN")
				s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 8)", id))
				s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 8)", id))
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if _, err := c.MA.DB("rt").ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN x%d INT", side, id)); err != nil {
					t.Fatalf("ALTER TABLE %s: %v", side, err)
				}
				_, err := s.c.ExecContext(context.Background(), "COMMIT")
				if err == nil {
					t.Errorf("COMMIT of a transaction whose %s part cannot commit succeeded", side)
				}
				s.exec("ROLLBACK") // no-op if the failed commit ended it
				ref(t, id, "")
				sharded(t, id, "")
			})
		}
	}
}

// TestReferenceTransactionCoordinatorCrash: a transaction that wrote a
// sharded and a reference table, whose coordinator dies between prepare
// and decision (both parts roll back) or after the decision (both
// commit), through a child aggregator (the reference part is in doubt on
// the master aggregator) and through the master (it is in doubt in its
// own copy).
func TestReferenceTransactionCoordinatorCrash(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE rc PARTITIONS 4")
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, v INT)",
		"CREATE REFERENCE TABLE r (id INT PRIMARY KEY, v INT)",
	} {
		testutil.Exec(t, c.MA.DB("rc"), q)
	}
	child := testutil.StartNode(t)
	c.AddAggregator(child)

	// inDoubt counts the in-doubt transactions on every node
	inDoubt := func(t *testing.T) int {
		n := 0
		for _, node := range append([]*testutil.Node{c.MA, child}, c.Leaves...) {
			rows, err := testutil.RenderRows(node.DB(""), ",", "CANOPY PREPARED TRANSACTIONS")
			if err != nil {
				return -1
			}
			n += len(rows)
		}
		return n
	}
	crash := func(t *testing.T, coord *testutil.Node, point string, id int, applied bool) {
		coord.Env = []string{"CANOPY_FAILPOINT=" + point}
		coord.Stop()
		coord.Start()
		c.WaitCaughtUp(child, 10*time.Second)
		s := session(t, coord.DB("rc"))
		s.exec("BEGIN")
		s.exec(fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 1), (%d, 1), (%d, 1), (%d, 1)", id, id+1, id+2, id+3))
		s.exec(fmt.Sprintf("INSERT INTO r (id, v) VALUES (%d, 1)", id))
		if _, err := s.c.ExecContext(context.Background(), "COMMIT"); err == nil {
			t.Fatalf("COMMIT through an aggregator that crashes at %s succeeded", point)
		}
		if !coord.WaitExit(10 * time.Second) {
			t.Fatalf("the coordinator did not stop at %s", point)
		}
		coord.Env = nil
		coord.Start() // its resolver finishes what it left
		deadline := time.Now().Add(20 * time.Second)
		for inDoubt(t) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("in-doubt transaction not resolved after the coordinator restarted (%d left)", inDoubt(t))
			}
			time.Sleep(200 * time.Millisecond)
		}
		wantRef, wantSharded := "", "0"
		if applied {
			wantRef, wantSharded = "1", "4"
		}
		eventually(t, 10*time.Second, func() string {
			for _, n := range append([]*testutil.Node{c.MA, child}, c.Leaves...) {
				got, err := testutil.RenderRows(n.DB(""), ",", fmt.Sprintf("SELECT v FROM rc.r WHERE id = %d", id))
				if err != nil || strings.Join(got, ";") != wantRef {
					return fmt.Sprintf("node %d: reference row %d: %q (%v), want %q", n.Port, id, got, err, wantRef)
				}
			}
			for _, n := range []*testutil.Node{c.MA, child} {
				got, err := testutil.RenderRows(n.DB("rc"), ",", fmt.Sprintf("SELECT COUNT(*) FROM t WHERE id BETWEEN %d AND %d", id, id+3))
				if err != nil || strings.Join(got, ";") != wantSharded {
					return fmt.Sprintf("aggregator %d: %q sharded rows (%v), want %s", n.Port, got, err, wantSharded)
				}
			}
			return ""
		})
		// the rows are free again
		testutil.Exec(t, c.MA.DB("rc"), fmt.Sprintf("REPLACE INTO r (id, v) VALUES (%d, 2)", id))
		testutil.Exec(t, c.MA.DB("rc"), fmt.Sprintf("REPLACE INTO t (id, v) VALUES (%d, 2)", id))
	}
	t.Run("child crash after prepare rolls both back", func(t *testing.T) { crash(t, child, "coordinator-after-prepare", 10, false) })
	t.Run("child crash after decision commits both", func(t *testing.T) { crash(t, child, "coordinator-after-decision", 20, true) })
	t.Run("master crash after prepare rolls both back", func(t *testing.T) { crash(t, c.MA, "coordinator-after-prepare", 30, false) })
	t.Run("master crash after decision commits both", func(t *testing.T) { crash(t, c.MA, "coordinator-after-decision", 40, true) })
}
