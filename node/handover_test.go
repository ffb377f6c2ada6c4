package node_test

import (
	"context"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestDemotePartition: a demoted partition refuses writes (a commit of an
// open transaction fails and ends it, as in MySQL), keeps serving reads,
// and takes writes again once promoted; the session whose commit failed
// is out of the transaction, so its next autocommit statement commits.
func TestDemotePartition(t *testing.T) {
	n, db := newLeaf(t)
	root := n.DB("")
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1)")

	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES (2)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pos := testutil.Rows(t, root, "CANOPY DEMOTE PARTITION 'test'")
	if len(pos) != 1 || pos[0] != "0,2" {
		t.Errorf("demoted at %q, want term 0, LSN 2", pos)
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	if me := testutil.MySQLError(err); me == nil || me.Number != 1290 {
		t.Fatalf("COMMIT on a demoted partition: %v, want error 1290", err)
	}
	testutil.ExpectError(t, db, 1290, "HY000", "INSERT INTO t VALUES (3)")
	testutil.ExpectRows(t, db, "SELECT id FROM t", "1")
	// demoting twice is harmless
	testutil.Rows(t, root, "CANOPY DEMOTE PARTITION 'test'")

	testutil.Exec(t, root, "CANOPY PROMOTE PARTITION 'test'")
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (4)"); err != nil {
		t.Fatal(err)
	}
	// seen from another connection: the autocommit insert committed
	testutil.ExpectRows(t, db, "SELECT id FROM t ORDER BY id", "1", "4")
}
