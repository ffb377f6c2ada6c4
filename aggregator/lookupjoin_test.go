package aggregator_test

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestLookupJoin: joins of a small side with a big one on columns that
// are not the shard keys run as lookups (the small side's keys sent to
// the big side's partitions as IN lists), and answer as one server does:
// integer keys of different widths, case-insensitive strings, binary
// strings, dates and decimals, NULL keys, duplicate keys on both sides, a
// condition besides the equality, a LEFT JOIN's unmatched rows, more keys
// than one IN list takes, and a transaction's own uncommitted rows.
func TestLookupJoin(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	single := testutil.StartNode(t)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE lj PARTITIONS 6")
	testutil.Exec(t, single.DB(""), "CREATE DATABASE lj")
	ma, leaf := c.MA.DB("lj"), single.DB("lj")
	both := func(q string) {
		t.Helper()
		testutil.Exec(t, ma, q)
		testutil.Exec(t, leaf, q)
	}
	cols := "k %s, s VARCHAR(20) COLLATE utf8mb4_general_ci, b VARBINARY(8), dt DATETIME, d DECIMAL(8,2)"
	both("CREATE TABLE big (id INT PRIMARY KEY, " + fmt.Sprintf(cols, "INT") + ", KEY (k), KEY (s))")
	both("CREATE TABLE small (id INT PRIMARY KEY, " + fmt.Sprintf(cols, "BIGINT") + ")")
	both("CREATE TABLE many (id INT PRIMARY KEY, k INT)")

	rng := rand.New(rand.NewSource(7))
	null := func(v string) string {
		if rng.Intn(10) == 0 {
			return "NULL"
		}
		return v
	}
	row := func(id, keys int) string {
		k := rng.Intn(keys)
		word := []string{"abc", "ABC", "Abc", "xyz", "XYZ", "straße"}[rng.Intn(6)]
		return fmt.Sprintf("(%d, %s, %s, %s, %s, %s)", id, null(fmt.Sprint(k)), null(fmt.Sprintf("'%s%d'", word, k%7)),
			null(fmt.Sprintf("x'%02x00'", k%13)), null(fmt.Sprintf("'2026-01-%02d 10:00:00'", 1+k%28)), null(fmt.Sprintf("%d.%02d", k%11, k%3)))
	}
	var rows []string
	for i := 1; i <= 5000; i++ {
		rows = append(rows, row(i, 3000))
	}
	both("INSERT INTO big VALUES " + strings.Join(rows, ","))
	rows = rows[:0]
	for i := 1; i <= 300; i++ {
		rows = append(rows, row(i, 3200))
	}
	both("INSERT INTO small VALUES " + strings.Join(rows, ","))
	rows = rows[:0]
	for i := 1; i <= 4500; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, i/2))
	}
	both("INSERT INTO many VALUES " + strings.Join(rows, ","))

	queries := []string{
		"SELECT big.id, small.id FROM big JOIN small ON big.k = small.k",
		"SELECT big.id, small.id FROM small JOIN big ON big.s = small.s",
		"SELECT big.id, small.id, big.b FROM big JOIN small ON big.b = small.b WHERE big.id < 2000",
		"SELECT big.id, small.id FROM big JOIN small ON big.dt = small.dt AND big.d = small.d",
		"SELECT big.id, small.id FROM big JOIN small ON big.k = small.k AND big.id > small.id",
		"SELECT small.id, big.id FROM small LEFT JOIN big ON big.k = small.k AND big.id % 3 = 0",
		"SELECT small.id, big.id, big.s FROM small LEFT JOIN big ON big.s = small.s WHERE small.id < 100",
		"SELECT LOWER(small.s), COUNT(*), SUM(big.id) FROM big JOIN small ON big.s = small.s GROUP BY LOWER(small.s)",
		"SELECT COUNT(*), SUM(big.id), SUM(many.id) FROM many JOIN big ON big.k = many.k",
		"SELECT many.id, big.id FROM many LEFT JOIN big ON big.k = many.k WHERE many.id % 97 = 0",
	}
	before := c.MA.Metric("canopy_lookup_joins_total")
	for _, q := range queries {
		compareQuery(t, "lookup join", leaf, ma, q, false, checkRows)
	}
	if ran := c.MA.Metric("canopy_lookup_joins_total") - before; ran < float64(len(queries)) {
		t.Errorf("%v lookup joins for %d queries", ran, len(queries))
	}
	if plan := strings.Join(testutil.Rows(t, ma, "EXPLAIN "+queries[8]), "\n"); !strings.Contains(plan, "LookupJoin") || !strings.Contains(plan, "many's join keys looked up in big") {
		t.Errorf("EXPLAIN %s:\n%s", queries[8], plan)
	}

	// inside a transaction the lookup reads through it, and sees its rows
	ctx := context.Background()
	maConn, err := ma.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer maConn.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO small VALUES (1000, 42, 'new', NULL, NULL, NULL)", "UPDATE big SET k = 42 WHERE id IN (7, 4007)"} {
		if _, err := maConn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	before = c.MA.Metric("canopy_lookup_joins_total")
	r, err := maConn.QueryContext(ctx, "SELECT big.id FROM small JOIN big ON big.k = small.k WHERE small.id = 1000 ORDER BY big.id")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for r.Next() {
		var id int
		if err := r.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	r.Close()
	want := testutil.Rows(t, leaf, "SELECT id FROM big WHERE k = 42 OR id IN (7, 4007) ORDER BY id")
	if fmt.Sprint(got) != "["+strings.Join(want, " ")+"]" {
		t.Errorf("in a transaction the join found big rows %v, want %v", got, want)
	}
	if c.MA.Metric("canopy_lookup_joins_total") == before {
		t.Errorf("the join inside a transaction was not a lookup join")
	}
	if _, err := maConn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.Rows(t, ma, "SELECT COUNT(*) FROM small JOIN big ON big.k = small.k WHERE small.id = 1000"); n[0] != "0" {
		t.Errorf("after ROLLBACK the join found %v rows", n)
	}
}
