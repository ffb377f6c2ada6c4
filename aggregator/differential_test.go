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
// and on a single leaf holding the same rows; the answers must be equal,
// and so must the errors (their numbers) of queries either refuses. A
// family of GROUP BY queries over columns that are not grouped checks that
// the aggregator's rewrites never change whether a query is accepted.
// CANOPY_DIFF_SEED picks another seed, CANOPY_DIFF_QUERIES more queries.
func TestDifferential(t *testing.T) {
	rng, queries := diffRun(t, 20261123, 400)

	c := testutil.StartCluster(t, 3, 1)
	single := testutil.StartNode(t)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE dt PARTITIONS 6")
	testutil.Exec(t, single.DB(""), "CREATE DATABASE dt")
	ma, child, leaf := c.MA.DB("dt"), c.Children[0].DB("dt"), single.DB("dt")
	// the three ways to join on columns that are not both shard keys: the
	// MA looks small sides up (the default), the child copies them to the
	// leaves, and with nothing small enough joins repartition
	broadcasting := c.Children[0].DBWith("dt", map[string]string{"lookup_join_max_rows": "0"})
	repartitioning := c.MA.DBWith("dt", map[string]string{"lookup_join_max_rows": "0", "broadcast_join_max_rows": "0"})

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
			via = broadcasting
		case 1:
			via = repartitioning
		}
		if same, _ := compareQuery(t, fmt.Sprintf("query %d", i), leaf, via, q, ordered, checkRows); !same {
			failures++
		}
	}

	// GROUP BY with expressions over columns that are not grouped: the
	// aggregator's rewrites must neither reject what a leaf accepts nor
	// accept what it rejects, and must answer alike. (Its own budget of
	// failures, so that it runs whatever the other queries found.)
	grouped, played, groupFailures := 0, 0, 0
	for i := 0; i < queries/2 && groupFailures < 10; i++ {
		played++
		q, ordered, check := g.groupQuery()
		via := ma
		if i%2 == 0 {
			via = child
		}
		same, accepted := compareQuery(t, fmt.Sprintf("group-by query %d", i), leaf, via, q, ordered, check)
		if !same {
			groupFailures++
		}
		if accepted {
			grouped++
		}
	}
	t.Logf("group-by family: the single leaf accepted %d of %d queries", grouped, played)
	if played == queries/2 && grouped < played/4 {
		t.Errorf("only %d of %d group-by queries ran on the single leaf; the family should mostly be valid", grouped, played)
	}

	if l, b, r := c.MA.Metric("canopy_lookup_joins_total"), c.Children[0].Metric("canopy_broadcast_joins_total"), c.MA.Metric("canopy_repartition_joins_total"); l == 0 || b == 0 || r == 0 {
		t.Errorf("the aggregators ran %v lookup, %v broadcast and %v repartition joins; the queries should exercise all three", l, b, r)
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

// answerCheck is how much of an answer the data determine.
type answerCheck int

const (
	// checkAccepted: only whether the query is accepted (and its error
	// number); the rows depend on which row of a group GMS reads first.
	checkAccepted answerCheck = iota
	// checkRowCount: also how many rows come back.
	checkRowCount
	// checkRows: the rows themselves.
	checkRows
)

// compareQuery runs q on the single leaf and through the cluster and
// reports a difference: one fails and the other does not, the error
// numbers differ, or the rows (as far as check says they are determined;
// in order when ordered) differ. It also says whether the leaf accepted q.
func compareQuery(t *testing.T, what string, leaf, via *sql.DB, q string, ordered bool, check answerCheck) (same, accepted bool) {
	t.Helper()
	want, werr := collect(leaf, q)
	got, gerr := collect(via, q)
	accepted = werr == nil
	switch {
	case (werr == nil) != (gerr == nil):
		t.Errorf("%s: %s\n single leaf error: %v\n cluster error: %v", what, q, werr, gerr)
		return false, accepted
	case werr != nil:
		if wn, gn := errNumber(werr), errNumber(gerr); wn != gn {
			t.Errorf("%s: %s\n single leaf error %d: %v\n cluster error %d: %v", what, q, wn, werr, gn, gerr)
			return false, accepted
		}
		return true, accepted
	case check == checkAccepted:
		return true, accepted
	case check == checkRowCount:
		if len(want) != len(got) {
			t.Errorf("%s: %s\n single leaf %d rows, cluster %d rows", what, q, len(want), len(got))
			return false, accepted
		}
		return true, accepted
	}
	if !ordered {
		sort.Strings(want)
		sort.Strings(got)
	}
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		plan, _ := collect(via, "EXPLAIN "+q)
		t.Errorf("%s: %s\n single leaf (%d rows): %.600q\n cluster (%d rows): %.600q\n%s", what, q, len(want), want, len(got), got, strings.Join(plan, "\n"))
		return false, accepted
	}
	return true, accepted
}

// errNumber is a MySQL error's number, 0 for other errors.
func errNumber(err error) uint16 {
	if me := testutil.MySQLError(err); me != nil {
		return me.Number
	}
	return 0
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
	switch g.n(36) {
	case 33: // a join the leaves run, then another join on the aggregator
		return fmt.Sprintf("SELECT a.id, b.id, c.v FROM a JOIN b ON a.id = b.a_id JOIN c ON c.k = b.y WHERE a.g = %d", g.n(6)), false
	case 34:
		return fmt.Sprintf("SELECT a.id, a.x, b.id, c.k FROM c JOIN a ON c.k = a.g JOIN b ON a.x = b.y%s", g.where("a.")), false
	case 35: // and a cross join over one
		return fmt.Sprintf("SELECT a.id, b.y, r.name FROM a JOIN b ON a.x = b.y, r WHERE r.g = %d AND a.g < %d", g.n(8), g.n(6)), false
	case 31: // aggregates blind to duplicates: partitions send distinct rows
		key := g.pick("g", "g % 2", "s IS NULL")
		return fmt.Sprintf("SELECT %s, COUNT(DISTINCT x), COUNT(DISTINCT s, g), MIN(d), SUM(DISTINCT x), AVG(DISTINCT d) FROM a%s GROUP BY %s",
			key, g.where(""), key), false
	case 32:
		return "SELECT COUNT(DISTINCT g), COUNT(DISTINCT s), MAX(x) FROM a" + g.where(""), true
	case 26: // joins on columns that are not both shard keys
		return fmt.Sprintf("SELECT a.id, b.id, b.y FROM a JOIN b ON a.x = b.y%s%s", g.pick("", " AND b.y = a.x"), g.where("a.")), false
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

// groupSource is what a generated GROUP BY query reads: a FROM clause,
// its columns (numeric or not), the grouping keys it may use, and a key
// that determines every column (a primary key), if any.
type groupSource struct {
	from          string
	nums, strs    []string
	keys          [][]string
	determinesAll string
}

var groupSources = []groupSource{
	{from: "a", nums: []string{"id", "g", "x", "d"}, strs: []string{"s"}, determinesAll: "id",
		keys: [][]string{{"g"}, {"s"}, {"g % 2"}, {"x > 100"}, {"g", "s"}, {"d IS NULL"}, {"id"}, {"x"}, {"x DIV 100", "g"}}},
	{from: "b", nums: []string{"id", "a_id", "y"}, strs: []string{"note"},
		keys: [][]string{{"a_id"}, {"y"}, {"note"}, {"a_id", "y"}}},
	{from: "c", nums: []string{"k"}, strs: []string{"v"}, keys: [][]string{{"k"}, {"v"}, {"k % 3"}}},
	{from: "a JOIN b ON a.id = b.a_id", nums: []string{"a.g", "a.x", "a.d", "b.y"}, strs: []string{"a.s", "b.note"},
		keys: [][]string{{"a.g"}, {"b.note"}, {"a.g", "b.y"}}},
}

// groupQuery returns a GROUP BY query whose select list, HAVING and ORDER
// BY use expressions over columns that are not grouped (some whose value
// does not depend on them, some that pick a row's value), aggregates of
// expressions and expressions of aggregates, maybe DISTINCT and LIMIT;
// whether its row order is defined; and what of its answer the data
// determine.
func (g *queryGen) groupQuery() (string, bool, answerCheck) {
	src := groupSources[g.n(len(groupSources))]
	keys := src.keys[g.n(len(src.keys))]
	isKey := map[string]bool{}
	for _, k := range keys {
		isKey[k] = true
	}
	cols := append(append([]string(nil), src.nums...), src.strs...)
	// determined: the key fixes the column's value within a group
	determined := func(c string) bool { return isKey[c] || isKey[src.determinesAll] && src.determinesAll != "" }
	var free []string // columns not grouped by
	for _, c := range cols {
		if !isKey[c] {
			free = append(free, c)
		}
	}
	if len(free) == 0 {
		free = cols
	}
	col := func() string { return cols[g.n(len(cols))] }
	num := func() string { return src.nums[g.n(len(src.nums))] }
	freeCol := func() string { return free[g.n(len(free))] }
	key := func() string { return keys[g.n(len(keys))] }

	// item is a select-list expression and whether the data determine it
	item := func() (string, bool) {
		c := freeCol()
		switch g.n(6) {
		case 0:
			return key(), true
		case 1: // over a column that is not grouped, but not depending on it
			return fmt.Sprintf(g.pick("COALESCE(%[1]d, %[2]s)", "IFNULL(%[1]d, %[2]s)", "COALESCE(NULL, %[1]d, %[2]s)",
				"IF(1 > 0, %[1]d, %[2]s)", "(%[2]s IS NULL OR %[2]s IS NOT NULL)", "CASE WHEN 1 = 1 THEN %[3]s ELSE %[2]s END",
				"CASE WHEN %[2]s IS NULL THEN %[3]s ELSE %[3]s END", "COALESCE(%[1]d, %[2]s) + %[3]s",
				"CONCAT(COALESCE('z', %[2]s), %[3]s)", "- COALESCE(%[1]d, %[2]s)", "COALESCE(%[1]d, %[2]s) * 2 + 1"),
				g.n(100), c, key()), true
		case 2: // the value of some row of the group
			return fmt.Sprintf(g.pick("%[1]s", "%[1]s + 1", "UPPER(%[1]s)", "COALESCE(%[1]s, 95)", "NULLIF(%[1]s, %[2]s)",
				"CASE WHEN %[1]s IS NULL THEN 'n' ELSE 'v' END", "COUNT(*) + COALESCE(%[1]s, 0)"), c, key()), determined(c)
		case 3, 4: // aggregates of expressions
			n := num()
			return fmt.Sprintf(g.pick("COUNT(*)", "COUNT(%[1]s)", "SUM(%[2]s)", "SUM(%[2]s * 2 + 1)", "AVG(COALESCE(%[2]s, 0))",
				"MIN(%[1]s)", "MAX(%[1]s)", "MAX(CASE WHEN %[2]s > 0 THEN %[1]s END)", "COUNT(IF(%[2]s > 100, 1, NULL))",
				"MIN(CONCAT(%[1]s, 'x'))", "MAX(COALESCE(95, %[1]s))", "SUM(DISTINCT %[2]s)", "COUNT(DISTINCT %[1]s)",
				"AVG(%[2]s)", "SUM(COALESCE(%[2]s, 1) * 0)"), col(), n), true
		default: // expressions of aggregates
			n := num()
			return fmt.Sprintf(g.pick("SUM(%[2]s) + COUNT(*)", "COALESCE(MAX(%[2]s), 0)", "CASE WHEN COUNT(*) > 5 THEN 'many' ELSE 'few' END",
				"IF(MIN(%[2]s) IS NULL, -1, MIN(%[2]s))", "COALESCE(95, MAX(%[1]s))", "MAX(%[2]s) - MIN(%[2]s)", "SUM(%[2]s) / COUNT(*)",
				"COUNT(*) + COALESCE(7, %[1]s)", "COALESCE(%[3]d, %[1]s, MAX(%[2]s))"), c, n, g.n(100)), true
		}
	}

	check := checkRows
	var sel []string
	for i, n := 0, 1+g.n(4); i < n; i++ {
		e, det := item()
		if !det {
			check = checkRowCount
		}
		sel = append(sel, e)
	}
	distinct := g.n(6) == 0
	if distinct && check != checkRows {
		check = checkAccepted // which rows are duplicates depends on the values
	}
	q := "SELECT "
	if distinct {
		q += "DISTINCT "
	}
	q += strings.Join(sel, ", ") + " FROM " + src.from
	if g.n(3) == 0 {
		q += fmt.Sprintf(g.pick(" WHERE %s IS NOT NULL", " WHERE %s > 3"), num())
	}
	q += " GROUP BY " + strings.Join(keys, ", ")
	if g.n(3) == 0 {
		c := freeCol()
		h, det := fmt.Sprintf(g.pick("COUNT(*) > %[1]d", "SUM(%[2]s) > %[1]d", "COALESCE(1, MAX(%[2]s)) > 0", "MAX(%[2]s) IS NOT NULL",
			"%[3]s IS NOT NULL", "COUNT(*) > %[1]d AND %[3]s IS NOT NULL"), g.n(10), num(), key()), true
		if g.n(4) == 0 {
			h, det = fmt.Sprintf(g.pick("COALESCE(1, %[1]s) > 0", "%[1]s IS NOT NULL", "MAX(%[1]s) IS NOT NULL OR %[1]s IS NULL"), c), determined(c)
		}
		if !det {
			check = checkAccepted
		}
		q += " HAVING " + h
	}
	ordered := false
	switch g.n(5) {
	case 0: // every key: a defined order
		var by []string
		for _, k := range keys {
			by = append(by, k+g.pick("", " DESC"))
		}
		q += " ORDER BY " + strings.Join(by, ", ")
		ordered = true
	case 1: // a select-list position, an aggregate, or an expression over a free column, then every key
		first, det := g.pick("1", "COUNT(*) DESC", fmt.Sprintf("COALESCE(%d, %s)", g.n(9), freeCol()), "MAX("+col()+")"), true
		if g.n(4) == 0 {
			c := freeCol()
			first, det = g.pick(c, "COALESCE("+c+", 0)"), determined(c)
		}
		q += " ORDER BY " + first + ", " + strings.Join(keys, ", ")
		// a position names a select item that may not be determined
		ordered = det && check == checkRows
	case 2: // a column that is not grouped alone
		q += " ORDER BY " + freeCol()
	}
	if ordered && g.n(2) == 0 {
		q += fmt.Sprintf(g.pick(" LIMIT %d", " LIMIT 2, %d"), 1+g.n(8))
	}
	if g.n(8) == 0 { // as a derived table, which GMS plans on its own
		if g.n(2) == 0 {
			if check == checkRowCount { // the count of rows is the answer
				check = checkRows
			}
			return "SELECT COUNT(*) FROM (" + q + ") AS dt", true, check
		}
		return "SELECT * FROM (" + q + ") AS dt", false, check
	}
	return q, ordered, check
}

// diffRun is a differential run's random source and length:
// CANOPY_DIFF_SEED and CANOPY_DIFF_QUERIES override the defaults.
func diffRun(t *testing.T, seed int64, n int) (*rand.Rand, int) {
	if s := os.Getenv("CANOPY_DIFF_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	if s := os.Getenv("CANOPY_DIFF_QUERIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d, %d steps", seed, n)
	return rand.New(rand.NewSource(seed)), n
}
