package aggregator_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestOneStatementPerLeaf: a fan-out read reaches each leaf as one
// statement over all of its partitions (not one per partition), and
// gives the same answers; when a leaf's partitions differ in shape (a
// schema change half done), the leaf refuses the union and the
// aggregator reads those partitions one at a time, sorted merges
// included.
func TestOneStatementPerLeaf(t *testing.T) {
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	// the test changes a partition by hand on the first leaf
	c.AddLeaf(testutil.StartNodeEnv(t, []string{"CANOPY_FAILPOINT=client-internal-access"}), 0)
	c.AddLeaf(testutil.StartNode(t), 0)
	ma := c.MA.DB("u")
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE u PARTITIONS 8")
	testutil.Exec(t, ma, "CREATE TABLE t (id INT PRIMARY KEY, k INT, s VARCHAR(10), KEY (k))")
	var rows []string
	for i := 1; i <= 400; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d, 's%d')", i, i%37, i%5))
	}
	testutil.Exec(t, ma, "INSERT INTO t VALUES "+strings.Join(rows, ","))

	// expected answers, worked out here
	sumK, evenIDs := 0, 0
	for i := 1; i <= 400; i++ {
		sumK += i % 37
		if i%2 == 0 {
			evenIDs++
		}
	}
	byK := map[int]int{}
	for i := 1; i <= 400; i++ {
		byK[i%37]++
	}
	check := func(label string) {
		t.Helper()
		if got := testutil.Rows(t, ma, "SELECT COUNT(*), SUM(k) FROM t"); got[0] != fmt.Sprintf("400,%d", sumK) {
			t.Errorf("%s: COUNT, SUM = %v, want 400,%d", label, got, sumK)
		}
		if got := testutil.Rows(t, ma, "SELECT COUNT(*) FROM t WHERE id % 2 = 0"); got[0] != fmt.Sprint(evenIDs) {
			t.Errorf("%s: even ids %v, want %d", label, got, evenIDs)
		}
		// a sorted merge of more rows than a stream buffers
		ids := testutil.Rows(t, ma, "SELECT id FROM t ORDER BY id")
		if len(ids) != 400 {
			t.Fatalf("%s: ORDER BY id gave %d rows", label, len(ids))
		}
		for i, id := range ids {
			if id != fmt.Sprint(i+1) {
				t.Fatalf("%s: ORDER BY id: row %d is %s", label, i, id)
			}
		}
		ks := testutil.Rows(t, ma, "SELECT k FROM t ORDER BY k DESC")
		for i := 1; i < len(ks); i++ {
			a, _ := strconv.Atoi(ks[i-1])
			b, _ := strconv.Atoi(ks[i])
			if a < b {
				t.Fatalf("%s: ORDER BY k DESC out of order at %d: %d then %d", label, i, a, b)
			}
		}
		groups := testutil.Rows(t, ma, "SELECT k, COUNT(*) FROM t GROUP BY k")
		if len(groups) != len(byK) {
			t.Errorf("%s: %d groups, want %d", label, len(groups), len(byK))
		}
		for _, g := range groups {
			var k, n int
			fmt.Sscanf(g, "%d,%d", &k, &n)
			if byK[k] != n {
				t.Errorf("%s: group %d has %d rows, want %d", label, k, n, byK[k])
			}
		}
		top := testutil.Rows(t, ma, "SELECT id FROM t ORDER BY k DESC, id LIMIT 3")
		if strings.Join(top, " ") != "36 73 110" {
			t.Errorf("%s: top 3 by k: %v", label, top)
		}
	}
	check("one statement per leaf")

	// each leaf holds 4 partitions: 40 fan-out reads are 40 statements a
	// leaf, not 160 (heartbeats add a few)
	leaf := c.Leaves[1]
	before := leaf.Metric("canopy_statement_duration_seconds_count")
	for i := 0; i < 40; i++ {
		testutil.Rows(t, ma, "SELECT COUNT(*) FROM t WHERE s = 's1'")
	}
	if n := leaf.Metric("canopy_statement_duration_seconds_count") - before; n >= 80 {
		t.Errorf("40 fan-out reads cost a leaf of 4 partitions %.0f statements, want about 40", n)
	}
	plan := strings.Join(testutil.Rows(t, ma, "EXPLAIN SELECT COUNT(*) FROM t WHERE s = 's1'"), "\n")
	if !strings.Contains(plan, "Leaf SQL (partial aggregate)") || !strings.Contains(plan, "`u#<leaf's partitions>`.`t`") {
		t.Errorf("EXPLAIN does not show the per-leaf statement:\n%s", plan)
	}

	// one partition of the first leaf gets a column the others lack
	var part string
	for o, port := range partitionMasters(t, c.MA.DB(""), "u") {
		if port == strconv.Itoa(c.Leaves[0].Port) {
			part = fmt.Sprintf("u_%d", o)
			break
		}
	}
	if part == "" {
		t.Fatal("no partition mastered on the first leaf")
	}
	testutil.Exec(t, c.Leaves[0].DB(""), "ALTER TABLE "+part+".t ADD COLUMN extra INT")
	check("partitions of two shapes on a leaf")
}
