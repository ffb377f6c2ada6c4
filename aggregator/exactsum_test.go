package aggregator_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestExactAggregates checks that SUM and AVG of integers and decimals
// are DECIMALs with MySQL's values, names and display, on a single node
// and through the master aggregator (partial sums merged exactly), and
// that SUM and AVG of a DOUBLE stay DOUBLE.
func TestExactAggregates(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	single := testutil.StartNode(t)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE xs PARTITIONS 6")
	testutil.Exec(t, single.DB(""), "CREATE DATABASE xs")
	ma, leaf := c.MA.DB("xs"), single.DB("xs")
	const schema = "CREATE TABLE t (id INT PRIMARY KEY, p TEXT, f DOUBLE, d DECIMAL(10,2), u BIGINT UNSIGNED)"
	testutil.Exec(t, ma, schema)
	testutil.Exec(t, leaf, schema)
	for start := 1; start <= 1200; start += 100 {
		var rows []string
		for i := start; i < start+100; i++ {
			rows = append(rows, fmt.Sprintf("(%d, REPEAT('x', 4000), %d / 4, 1.10, 18446744073709551615)", i, i))
		}
		q := "INSERT INTO t VALUES " + strings.Join(rows, ",")
		testutil.Exec(t, ma, q)
		testutil.Exec(t, leaf, q)
	}

	for _, tc := range []struct {
		q     string
		names string // column names as the client sees them
		types string // column types
		rows  []string
	}{
		{"SELECT SUM(LENGTH(p)) FROM t", "SUM(LENGTH(p))", "DECIMAL", []string{"4800000"}},
		{"SELECT sum(id), AVG(id), count(*) FROM t", "sum(id),AVG(id),count(*)", "DECIMAL,DECIMAL,BIGINT", []string{"720600,600.5000,1200"}},
		{"SELECT SUM(d), AVG(d) FROM t", "SUM(d),AVG(d)", "DECIMAL,DECIMAL", []string{"1320.00,1.100000"}},
		{"SELECT SUM(u) FROM t", "SUM(u)", "DECIMAL", []string{"22136092888451461938000"}},
		{"SELECT SUM(f), AVG(f) FROM t", "SUM(f),AVG(f)", "DOUBLE,DOUBLE", []string{"180150,150.125"}},
		{"SELECT SUM(id) AS s, AVG(id) a FROM t WHERE id < 0", "s,a", "DECIMAL,DECIMAL", []string{"NULL,NULL"}},
		// (GMS types id % 3 DECIMAL, MySQL BIGINT)
		{"SELECT id % 3 AS g, SUM(id), AVG(id) FROM t GROUP BY g ORDER BY g", "g,SUM(id),AVG(id)", "DECIMAL,DECIMAL,DECIMAL",
			[]string{"0,240600,601.5000", "1,239800,599.5000", "2,240200,600.5000"}},
		{"SELECT SUM(id) / 7, SUM(id) + 1 FROM t", "SUM(id) / 7,SUM(id) + 1", "DECIMAL,DECIMAL", []string{"102942.8571,720601"}},
		{"SELECT s FROM (SELECT SUM(LENGTH(p)) AS s FROM t WHERE id <= 10) x", "s", "DECIMAL", []string{"40000"}},
		{"SELECT SUM(DISTINCT d), AVG(DISTINCT id % 2) FROM t", "SUM(DISTINCT d),AVG(DISTINCT id % 2)", "DECIMAL,DECIMAL", []string{"1.10,0.5000"}},
	} {
		for _, via := range []struct {
			name string
			db   *sql.DB
		}{{"single node", leaf}, {"master aggregator", ma}} {
			names, types, rows, err := describe(via.db, tc.q)
			if err != nil {
				t.Errorf("%s: %s: %v", via.name, tc.q, err)
				continue
			}
			if names != tc.names || types != tc.types || strings.Join(rows, "; ") != strings.Join(tc.rows, "; ") {
				t.Errorf("%s: %s\n got: %s %s %q\nwant: %s %s %q", via.name, tc.q, names, types, rows, tc.names, tc.types, tc.rows)
			}
		}
	}

	// the partitions send exact partial sums
	plan := strings.Join(testutil.Rows(t, ma, "EXPLAIN SELECT SUM(id), AVG(id) FROM t"), "\n")
	if !strings.Contains(plan, "partial aggregate") {
		t.Errorf("SUM and AVG are not split into partial aggregates:\n%s", plan)
	}
}

// describe runs q and returns its column names and types, comma separated,
// and its rows as testutil.Rows renders them.
func describe(db *sql.DB, q string) (names, types string, rows []string, err error) {
	r, err := db.Query(q)
	if err != nil {
		return "", "", nil, err
	}
	cts, err := r.ColumnTypes()
	r.Close()
	if err != nil {
		return "", "", nil, err
	}
	var ns, ts []string
	for _, ct := range cts {
		ns = append(ns, ct.Name())
		ts = append(ts, ct.DatabaseTypeName())
	}
	rows, err = testutil.RenderRows(db, ",", q)
	return strings.Join(ns, ","), strings.Join(ts, ","), rows, err
}
