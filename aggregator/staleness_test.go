package aggregator_test

import (
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestInterruptedCreateTable: a master aggregator that dies after making a
// table (in its copy and on the leaves) and before
// listing it in the metadata leaves a table the metadata does not know.
// Statements on it fail with an error that says so, on the master and on
// a child added afterwards, instead of writing into an aggregator's copy, which holds no
// rows; DROP TABLE clears it everywhere and it can be made again.
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
	c.MA.Env = nil
	c.MA.Start()
	c.AddAggregator(testutil.StartNode(t)) // its copy of ic holds the table too

	const unlisted = "Error 1146 (42S02): Table 'ic.half' is not in the cluster's metadata"
	expectErrorContains(t, c.MA.DB("ic"), "INSERT INTO half VALUES (1)", unlisted)
	expectErrorContains(t, c.Children[0].DB("ic"), "SELECT COUNT(*) FROM half", unlisted)

	testutil.Exec(t, c.MA.DB("ic"), "DROP TABLE half")
	testutil.Exec(t, c.Children[0].DB("ic"), "CREATE TABLE half (id INT PRIMARY KEY)")
	testutil.Exec(t, c.Children[0].DB("ic"), "INSERT INTO half VALUES (1), (2), (3), (4), (5)")
	testutil.ExpectRows(t, c.MA.DB("ic"), "SELECT COUNT(*) FROM half", "5")
}
