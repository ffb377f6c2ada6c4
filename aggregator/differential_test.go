package aggregator_test

import (
	"database/sql"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestDifferential runs generated queries through a cluster's aggregators
// and on a single leaf holding the same rows; the answers must be equal.
// CANOPY_DIFF_SEED picks another seed, CANOPY_DIFF_QUERIES more queries.
func TestDifferential(t *testing.T) {
	seed := int64(20261123)
	if s := os.Getenv("CANOPY_DIFF_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	queries := 400
	if s := os.Getenv("CANOPY_DIFF_QUERIES"); s != "" {
		queries, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d, %d queries", seed, queries)
	rng := rand.New(rand.NewSource(seed))

	c := testutil.StartCluster(t, 3, 1)
	single := testutil.StartNode(t)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE dt PARTITIONS 6")
	testutil.Exec(t, single.DB(""), "CREATE DATABASE dt")
	ma, child, leaf := c.MA.DB("dt"), c.Children[0].DB("dt"), single.DB("dt")
	// nothing is small enough to copy: joins repartition when they can
	repartitioning := c.MA.DBWith("dt", map[string]string{"broadcast_join_max_rows": "0"})

	schema := []string{
		"CREATE TABLE a (id INT PRIMARY KEY, g INT NOT NULL, x INT, s VARCHAR(10), d DECIMAL(10,2), KEY (g))",
		"CREATE TABLE b (id INT, a_id INT, y INT, note TEXT, PRIMARY KEY (id, a_id), SHARD KEY (a_id))",
		"CREATE TABLE c (k INT, v VARCHAR(5))",
		"CREATE REFERENCE TABLE r (g INT PRIMARY KEY, name VARCHAR(10))",
	}
	for _, q := range schema {
		testutil.Exec(t, ma, q)
		testutil.Exec(t, leaf, strings.Replace(strings.Replace(q, "REFERENCE ", "", 1), ", SHARD KEY (a_id)", "", 1))
	}
	load := func(q string) {
		testutil.Exec(t, ma, q)
		testutil.Exec(t, leaf, q)
	}
	nullable := func(v string) string {
		if rng.Intn(8) == 0 {
			return "NULL"
		}
		return v
	}
	var rows []string
	for i := 1; i <= 300; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d, %s, %s, %s)", i, rng.Intn(6),
			nullable(strconv.Itoa(rng.Intn(1000)-200)), nullable(fmt.Sprintf("'s%d'", rng.Intn(40))),
			nullable(fmt.Sprintf("%d.%02d", rng.Intn(500), rng.Intn(100)))))
	}
	load("INSERT INTO a VALUES " + strings.Join(rows, ","))
	rows = rows[:0]
	for i := 1; i <= 500; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d, %s, %s)", i%50, rng.Intn(320), nullable(strconv.Itoa(rng.Intn(100))), nullable(fmt.Sprintf("'n%d'", rng.Intn(9)))))
	}
	load("INSERT IGNORE INTO b VALUES " + strings.Join(rows, ","))
	rows = rows[:0]
	for i := 0; i < 120; i++ {
		rows = append(rows, fmt.Sprintf("(%s, %s)", nullable(strconv.Itoa(rng.Intn(30))), nullable(fmt.Sprintf("'v%d'", rng.Intn(5)))))
	}
	load("INSERT INTO c VALUES " + strings.Join(rows, ","))
	load("INSERT INTO r VALUES (0,'zero'),(1,'one'),(2,'two'),(3,'three'),(7,'seven')")

	g := &queryGen{rng: rng}
	failures := 0
	for i := 0; i < queries && failures < 10; i++ {
		q, ordered := g.query()
		via := ma
		switch i % 3 {
		case 0:
			via = child
		case 1:
			via = repartitioning
		}
		want, werr := collect(leaf, q)
		got, gerr := collect(via, q)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("query %d: %s\n single leaf error: %v\n cluster error: %v", i, q, werr, gerr)
			failures++
			continue
		}
		if werr != nil {
			continue
		}
		if !ordered {
			sort.Strings(want)
			sort.Strings(got)
		}
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			plan, _ := collect(via, "EXPLAIN "+q)
			t.Errorf("query %d: %s\n single leaf (%d rows): %.600q\n cluster (%d rows): %.600q\n%s", i, q, len(want), want, len(got), got, strings.Join(plan, "\n"))
			failures++
		}
	}

	if b, r := c.MA.Metric("canopy_broadcast_joins_total"), c.MA.Metric("canopy_repartition_joins_total"); b == 0 || r == 0 {
		t.Errorf("the master aggregator ran %v broadcast and %v repartition joins; the queries should exercise both", b, r)
	}

	// every join dropped the rows it shipped to the leaves
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range c.Leaves {
		for {
			left, err := collect(l.DB(""), "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'canopy_scratch'")
			if err == nil && len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("leaf %s keeps scratch tables %v (%v)", l.Addr(), left, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Writes: the same random changes on both, then whole tables compared.
	for i := 0; i < 40 && failures < 10; i++ {
		q := g.write()
		_, werr := leaf.Exec(q)
		_, gerr := ma.Exec(q)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("write %d: %s\n single leaf error: %v\n cluster error: %v", i, q, werr, gerr)
			failures++
		}
	}
	for _, q := range []string{"SELECT * FROM a ORDER BY id", "SELECT * FROM b ORDER BY id, a_id", "SELECT * FROM c ORDER BY k, v", "SELECT * FROM r ORDER BY g"} {
		want, _ := collect(leaf, q)
		got, err := collect(child, q)
		if err != nil || strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("after writes, %s differs (%v): single leaf %d rows, cluster %d rows", q, err, len(want), len(got))
		}
	}
}

// collect runs a query and renders its rows.
func collect(db *sql.DB, q string) ([]string, error) { return testutil.RenderRows(db, "|", q) }

// queryGen makes random queries over tables a, b, c and r.
type queryGen struct{ rng *rand.Rand }

func (g *queryGen) n(max int) int { return g.rng.Intn(max) }

func (g *queryGen) pick(opts ...string) string { return opts[g.n(len(opts))] }

// pred is a condition on table a (alias p: "" or "a.").
func (g *queryGen) pred(p string) string {
	atoms := []func() string{
		func() string { return fmt.Sprintf("%sx > %d", p, g.n(1000)-200) },
		func() string { return fmt.Sprintf("%sx <= %d", p, g.n(600)) },
		func() string { return p + "x IS NULL" },
		func() string { return p + "d IS NOT NULL" },
		func() string { return fmt.Sprintf("%ss LIKE 's%d%%'", p, g.n(4)) },
		func() string { return fmt.Sprintf("%sg IN (%d, %d)", p, g.n(6), g.n(6)) },
		func() string { lo := g.n(300); return fmt.Sprintf("%sid BETWEEN %d AND %d", p, lo, lo+g.n(80)) },
		func() string { return fmt.Sprintf("%sd < %d.5", p, g.n(500)) },
		func() string { return fmt.Sprintf("NOT (%sg = %d)", p, g.n(6)) },
		func() string { return fmt.Sprintf("%sid = %d", p, g.n(310)) },
		func() string { return fmt.Sprintf("(%sx > %d OR %sg = %d)", p, g.n(800), p, g.n(6)) },
		func() string { return fmt.Sprintf("%sid IN (%d, %d, %d)", p, g.n(300), g.n(300), g.n(300)) },
		func() string { return fmt.Sprintf("COALESCE(%sx, 0) + %sg > %d", p, p, g.n(400)) },
		func() string { return fmt.Sprintf("%ss = 's%d'", p, g.n(40)) },
		func() string { return fmt.Sprintf("%sid %% %d = %d", p, 2+g.n(5), g.n(2)) },
	}
	s := atoms[g.n(len(atoms))]()
	for g.n(3) == 0 {
		s += g.pick(" AND ", " OR ") + atoms[g.n(len(atoms))]()
	}
	return s
}

func (g *queryGen) where(p string) string {
	if g.n(5) == 0 {
		return ""
	}
	return " WHERE " + g.pred(p)
}

// query returns a query and whether its row order is defined.
func (g *queryGen) query() (string, bool) {
	lim := func() string {
		switch g.n(4) {
		case 0:
			return fmt.Sprintf(" LIMIT %d", 1+g.n(20))
		case 1:
			return fmt.Sprintf(" LIMIT %d, %d", g.n(10), 1+g.n(20))
		}
		return ""
	}
	agg := func() string {
		return g.pick("COUNT(*)", "COUNT(x)", "COUNT(s)", "SUM(x)", "SUM(d)", "AVG(x)", "AVG(d)", "MIN(x)", "MAX(x)",
			"MIN(s)", "MAX(s)", "MIN(d)", "MAX(d)", "SUM(x) + COUNT(*)", "SUM(d * 2)", "AVG(x + g)", "MAX(id % 7)")
	}
	switch g.n(33) {
	case 31: // aggregates blind to duplicates: partitions send distinct rows
		key := g.pick("g", "g % 2", "s IS NULL")
		return fmt.Sprintf("SELECT %s, COUNT(DISTINCT x), COUNT(DISTINCT s, g), MIN(d), SUM(DISTINCT x), AVG(DISTINCT d) FROM a%s GROUP BY %s",
			key, g.where(""), key), false
	case 32:
		return "SELECT COUNT(DISTINCT g), COUNT(DISTINCT s), MAX(x) FROM a" + g.where(""), true
	case 26: // joins on columns that are not both shard keys
		return fmt.Sprintf("SELECT a.id, b.id, b.y FROM a JOIN b ON a.x = b.y%s", g.where("a.")), false
	case 27:
		return fmt.Sprintf("SELECT a.id, a.g, c.k, c.v FROM a LEFT JOIN c ON a.g = c.k%s%s",
			g.pick("", " AND c.v <> 'v1'"), g.where("a.")), false
	case 28: // strings compared under a collation; a TEXT key
		if g.n(2) == 0 {
			return fmt.Sprintf("SELECT b.id, b.note, c.k FROM b JOIN c ON b.note = c.v WHERE c.k > %d", g.n(30)), false
		}
		return fmt.Sprintf("SELECT c.k, c.v, a.id FROM c JOIN a ON c.v = a.s WHERE c.k > %d", g.n(20)), false
	case 29: // aggregates over a repartitioned join
		return fmt.Sprintf("SELECT a.g, COUNT(*), SUM(b.y), MAX(b.note) FROM a JOIN b ON a.x = b.y%s GROUP BY a.g", g.where("a.")), false
	case 30: // a join condition that is not an equality of columns
		return fmt.Sprintf("SELECT a.id, b.id FROM a JOIN b ON a.g = b.y %% 6 WHERE a.id < %d AND b.id < %d", 20+g.n(40), g.n(30)), false
	case 23: // co-located outer join with conditions on both sides
		return fmt.Sprintf("SELECT a.id, a.x, b.id, b.y FROM a LEFT JOIN b ON a.id = b.a_id AND b.y > %d%s", g.n(100), g.where("a.")), false
	case 24: // self join on the shard key
		return fmt.Sprintf("SELECT p.id, q.g FROM a p JOIN a q ON p.id = q.id WHERE p.x > %d AND q.g <> %d", g.n(600)-200, g.n(6)), false
	case 25: // reference table first, then aggregates over the join
		return fmt.Sprintf("SELECT r.name, COUNT(*), SUM(a.x) FROM r JOIN a ON r.g = a.g%s GROUP BY r.name", g.where("a.")), false
	case 18: // global aggregates, also over empty partitions and empty results
		return fmt.Sprintf("SELECT %s, %s, %s FROM a%s", agg(), agg(), agg(),
			g.pick(g.where(""), " WHERE id < 0", " WHERE id = 7", " WHERE g = 0")), true
	case 19: // grouped by columns and expressions, NULL groups included
		key := g.pick("g", "s", "x > 100", "g % 2", "d IS NULL", "g, s")
		if g.n(3) == 0 { // grouped by the select alias
			key = g.pick("g", "s", "x > 100", "g % 2", "d IS NULL", "x DIV 100")
			return fmt.Sprintf("SELECT %s AS k1, %s FROM a%s GROUP BY k1", key, agg(), g.where("")), false
		}
		q := fmt.Sprintf("SELECT %s, %s, %s FROM a%s GROUP BY %s", key, agg(), agg(), g.where(""), key)
		if g.n(2) == 0 {
			q += fmt.Sprintf(" HAVING %s > %d", g.pick("COUNT(*)", "SUM(x)", "MAX(id)"), g.n(100))
		}
		return q, false
	case 20: // ordered by an aggregate with a limit (ties broken by the key)
		return fmt.Sprintf("SELECT g, COUNT(*) AS n, SUM(x) AS t FROM a%s GROUP BY g ORDER BY %s, g LIMIT %d",
			g.where(""), g.pick("n DESC", "t", "n"), 1+g.n(5)), true
	case 21: // keyless table, skewed groups
		return fmt.Sprintf("SELECT v, COUNT(*), SUM(k), AVG(k), MIN(k) FROM c%s GROUP BY v",
			g.pick("", " WHERE k > 10", " WHERE v = 'v1'")), false
	case 22:
		return fmt.Sprintf("SELECT a_id %% 5 AS m, COUNT(*), MAX(y), AVG(y) FROM b WHERE y IS NOT NULL GROUP BY a_id %% 5 ORDER BY m"), true
	case 0:
		return "SELECT id, g, x, s, d FROM a" + g.where("") + " ORDER BY id" + g.pick("", " DESC") + lim(), true
	case 1:
		return "SELECT * FROM a" + g.where(""), false
	case 2:
		return "SELECT COUNT(*), COUNT(x), SUM(x), MIN(s), MAX(d), AVG(x), SUM(d) FROM a" + g.where(""), true
	case 3:
		q := "SELECT g, COUNT(*), SUM(x), MAX(s) FROM a" + g.where("") + " GROUP BY g"
		if g.n(2) == 0 {
			q += fmt.Sprintf(" HAVING COUNT(*) > %d", g.n(60))
		}
		return q + " ORDER BY g", true
	case 4:
		return "SELECT DISTINCT " + g.pick("g", "s", "g, x > 100") + " FROM a" + g.where(""), false
	case 5:
		return "SELECT a.id, a.g, b.id, b.y FROM a JOIN b ON a.id = b.a_id" + g.where("a.") + " ORDER BY a.id, b.id" + lim(), true
	case 6:
		return "SELECT a.id, r.name FROM a LEFT JOIN r ON a.g = r.g" + g.where("a."), false
	case 7:
		return fmt.Sprintf("SELECT id, s FROM a WHERE id IN (SELECT a_id FROM b WHERE y > %d)", g.n(100)), false
	case 8:
		return fmt.Sprintf("SELECT id FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.a_id = a.id AND b.y < %d)", g.n(100)), false
	case 9:
		return "SELECT id, (SELECT COUNT(*) FROM b WHERE b.a_id = a.id) AS nb FROM a" + g.where("") + " ORDER BY id" + lim(), true
	case 10:
		return "SELECT g, m, n FROM (SELECT g, MAX(x) AS m, COUNT(*) AS n FROM a" + g.where("") + " GROUP BY g) t ORDER BY g", true
	case 11:
		return fmt.Sprintf("SELECT id FROM a WHERE g = %d UNION SELECT a_id FROM b WHERE y = %d", g.n(6), g.n(100)), false
	case 12:
		return "SELECT id, g, ROW_NUMBER() OVER (PARTITION BY g ORDER BY id), SUM(x) OVER (PARTITION BY g) FROM a" + g.where("") + " ORDER BY id", true
	case 13:
		return "SELECT c.k, c.v, COUNT(*) FROM c" + g.pick("", fmt.Sprintf(" WHERE k > %d", g.n(30)), " WHERE v IS NULL") + " GROUP BY c.k, c.v", false
	case 14:
		return "SELECT b.note, COUNT(DISTINCT b.a_id), SUM(a.x) FROM b JOIN a ON a.id = b.a_id JOIN r ON r.g = a.g GROUP BY b.note ORDER BY b.note", true
	case 15:
		return "SELECT UPPER(s), CASE WHEN x > 100 THEN 'big' WHEN x IS NULL THEN 'none' ELSE 'small' END, LENGTH(s), d * 2 FROM a" + g.where(""), false
	case 16:
		return "SELECT x, id FROM a" + g.where("") + " ORDER BY x " + g.pick("ASC", "DESC") + ", id" + lim(), true
	default:
		return fmt.Sprintf("SELECT a.id, c.v FROM a JOIN c ON a.id = c.k WHERE a.g <> %d", g.n(6)), false
	}
}

// write returns a random change for tables a, b, c and r.
func (g *queryGen) write() string {
	switch g.n(8) {
	case 0:
		return fmt.Sprintf("UPDATE a SET x = x + %d WHERE %s", g.n(50), g.pred(""))
	case 1:
		return fmt.Sprintf("UPDATE a SET s = 'u%d', d = NULL WHERE id = %d", g.n(9), g.n(300))
	case 2:
		return "DELETE FROM a WHERE " + g.pred("")
	case 3:
		return fmt.Sprintf("INSERT INTO a VALUES (%d, %d, %d, 'i', 1.5) ON DUPLICATE KEY UPDATE x = VALUES(x) + 1000", 250+g.n(100), g.n(6), g.n(1000))
	case 4:
		return fmt.Sprintf("DELETE FROM b WHERE a_id = %d", g.n(320))
	case 5:
		return fmt.Sprintf("UPDATE b SET y = %d WHERE y > %d", g.n(100), 50+g.n(50))
	case 6:
		return fmt.Sprintf("INSERT INTO c VALUES (%d, 'w')", g.n(40))
	default:
		return fmt.Sprintf("UPDATE r SET name = CONCAT(name, '%d') WHERE g = %d", g.n(9), g.n(8))
	}
}
