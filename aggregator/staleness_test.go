package aggregator_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// TestInterruptedCreateTable: a master aggregator that dies after making a
// table (in its copy and on the leaves) and before listing it in the
// metadata leaves a table the metadata does not know, and the job it
// recorded. Until the job is taken up (held back here by the failpoint
// ddl-jobs-paused), statements on the table fail with an error that says
// so, on the master and on a child added afterwards, instead of writing
// into an aggregator's copy, which holds no rows. Then the master rolls
// the job back: the table is gone from the copies and the leaves, and it
// can be made again.
func TestInterruptedCreateTable(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0) // the only aggregator stays master across its restart
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE ic PARTITIONS 4")
	c.MA.Stop()
	c.MA.Env = []string{"CANOPY_FAILPOINT=create-table-before-listing"}
	c.MA.Start()
	if _, err := c.MA.DB("ic").Exec("CREATE TABLE half (id INT PRIMARY KEY)"); err == nil {
		t.Fatal("CREATE TABLE through an aggregator that dies before listing the table succeeded")
	}
	if !c.MA.WaitExit(10 * time.Second) {
		t.Fatal("the master aggregator did not stop at the failpoint")
	}
	c.MA.Env = []string{"CANOPY_FAILPOINT=ddl-jobs-paused"}
	c.MA.Start()
	c.AddAggregator(testutil.StartNode(t)) // its copy of ic holds the table too

	const unlisted = "Error 1146 (42S02): Table 'ic.half' is not in the cluster's metadata"
	expectErrorContains(t, c.MA.DB("ic"), "INSERT INTO half VALUES (1)", unlisted)
	expectErrorContains(t, c.Children[0].DB("ic"), "SELECT COUNT(*) FROM half", unlisted)
	jobs := testutil.Rows(t, c.Children[0].DB(""), "SHOW DDL JOBS")
	if len(jobs) == 0 || !strings.Contains(jobs[0], ",ic,half,create table,running,") {
		t.Errorf("SHOW DDL JOBS with the CREATE TABLE interrupted: %q", jobs)
	}

	c.MA.Stop()
	c.MA.Env = nil
	c.MA.Start()
	eventually(t, 15*time.Second, func() string {
		jobs, err := testutil.RenderRows(c.MA.DB(""), ",", "SHOW DDL JOBS")
		if err != nil || len(jobs) == 0 || !strings.Contains(jobs[0], ",ic,half,create table,rolled back,") {
			return fmt.Sprintf("SHOW DDL JOBS: %q %v, want the CREATE TABLE rolled back", jobs, err)
		}
		return ""
	})
	for _, n := range append([]*testutil.Node{c.MA, c.Children[0]}, c.Leaves...) {
		eventually(t, 10*time.Second, func() string {
			rows, err := testutil.RenderRows(n.DB(""), ",", "SELECT table_schema FROM information_schema.tables WHERE table_name = 'half'")
			if err != nil || len(rows) > 0 {
				return fmt.Sprintf("node %d still has the table in %q (%v)", n.Port, rows, err)
			}
			return ""
		})
	}
	testutil.Exec(t, c.Children[0].DB("ic"), "CREATE TABLE half (id INT PRIMARY KEY)")
	testutil.Exec(t, c.Children[0].DB("ic"), "INSERT INTO half VALUES (1), (2), (3), (4), (5)")
	testutil.ExpectRows(t, c.MA.DB("ic"), "SELECT COUNT(*) FROM half", "5")
}

// TestPlanAgainAfterFailoverWait: an autocommit statement whose partition
// is on a leaf that is offline, its failover not finished, waits for the
// failover and is then planned again with the metadata of then. The first
// plan rewrote the statement (the client's values bound, the partition
// named); planned again from that, an UPDATE became a statement of no
// distributed database, run on the aggregator's copy. The failpoint keeps
// the failover from finishing, so the second plan still routes to the
// dead leaf: the statement fails there, as routed statements do.
func TestPlanAgainAfterFailoverWait(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=failover-stalls"}, "--master-aggregator"))
	root := c.MA.DB("")
	testutil.Exec(t, root, "SET GLOBAL leaf_failure_timeout_ms = 1000")
	c.AddLeaf(testutil.StartNode(t), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	testutil.Exec(t, root, "CREATE DATABASE fw PARTITIONS 4")
	db := c.MA.DB("fw")
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8)")
	victim := c.Leaves[1]
	masters := partitionMasters(t, root, "fw")
	key := sharding.NewKey([]gmssql.Type{types.Int32})
	id := 0
	for i := 1; i <= 8 && id == 0; i++ {
		if p, _ := key.Partition([]interface{}{i}, 4); masters[p] == strconv.Itoa(victim.Port) {
			id = i
		}
	}
	if id == 0 {
		t.Fatalf("no row on the second leaf: masters %v", masters)
	}
	s := session(t, db)
	s.exec("SET @v = 70")
	victim.Kill()
	waitLeafState(t, root, victim.Port, "offline", 10*time.Second)
	for _, q := range []string{
		fmt.Sprintf("UPDATE t SET v = @v WHERE id = %d", id),
		fmt.Sprintf("DELETE FROM t WHERE id = %d AND v <> @v", id),
	} {
		_, err := s.c.ExecContext(context.Background(), q)
		if me := testutil.MySQLError(err); me == nil || me.Number != 1735 || !strings.Contains(me.Message, "offline") {
			t.Errorf("%s on the offline leaf's partition: %v, want error 1735 from its leaf", q, err)
		}
	}
	// the other leaf's partitions do not wait
	for i := 1; i <= 8; i++ {
		if p, _ := key.Partition([]interface{}{i}, 4); masters[p] != strconv.Itoa(victim.Port) {
			s.exec(fmt.Sprintf("UPDATE t SET v = @v WHERE id = %d", i))
			s.expect(fmt.Sprintf("SELECT v FROM t WHERE id = %d", i), "70")
		}
	}
}
