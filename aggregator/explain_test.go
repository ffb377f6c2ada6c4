package aggregator_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestExplainGolden pins what EXPLAIN on an aggregator shows for a
// catalogue of statements: routing, the SQL each partition runs (partial
// aggregates, top-N, DISTINCT pushed down) and the aggregator's own plan.
// Run with -rewrite to update testdata/explain after a deliberate change.
func TestExplainGolden(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE e PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("e"), "CREATE TABLE t (id INT PRIMARY KEY, g INT, x INT, s VARCHAR(10), d DECIMAL(10,2))")
	testutil.Exec(t, c.MA.DB("e"), "CREATE TABLE u (id INT, t_id INT, y INT, PRIMARY KEY (id, t_id), SHARD KEY (t_id))")
	testutil.Exec(t, c.MA.DB("e"), "CREATE REFERENCE TABLE r (g INT PRIMARY KEY, name VARCHAR(10))")
	// one connection: exec blocks set session variables for what follows
	db, err := c.MA.DB("e").Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	datadriven.RunTest(t, "testdata/explain", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd == "exec" {
			for _, stmt := range strings.Split(d.Input, ";\n") {
				if _, err := db.ExecContext(context.Background(), stmt); err != nil {
					return "error: " + err.Error() + "\n"
				}
			}
			return ""
		}
		rows, err := db.QueryContext(context.Background(), "EXPLAIN "+d.Input)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			// leaf addresses change from run to run
			line = leafAddr.ReplaceAllString(line, "<leaf>")
			b.WriteString(line + "\n")
		}
		return b.String()
	})
}

var leafAddr = regexp.MustCompile(`127\.0\.0\.1:\d+`)
