package aggregator_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestDifferentialSession is the differential test's family of
// session-dependent statements: user variables in reads, routed and
// split writes and broadcasts, SELECT … INTO, LAST_INSERT_ID() and
// LAST_INSERT_ID(expr), NOW() in rows that land on every partition,
// time_zone, sql_mode (ONLY_FULL_GROUP_BY, ANSI_QUOTES), sql_select_limit,
// transactions. Three clients run one generated script: two through the
// master aggregator (they share its pooled leaf connections) and one
// through a child, each against its own connection to a single leaf
// holding the same rows; every answer, every error, and the tables at the
// end must be equal. CANOPY_DIFF_SEED picks another seed,
// CANOPY_DIFF_QUERIES more steps.
func TestDifferentialSession(t *testing.T) {
	rng, steps := diffRun(t, 20261205, 300)

	c := testutil.StartCluster(t, 3, 1)
	single := testutil.StartNode(t)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE ds PARTITIONS 6")
	testutil.Exec(t, single.DB(""), "CREATE DATABASE ds")
	ma, leaf := c.MA.DB("ds"), single.DB("ds")
	for _, q := range []string{
		"CREATE TABLE a (id INT PRIMARY KEY, g INT NOT NULL, x INT NOT NULL, s VARCHAR(20))",
		"CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT, note VARCHAR(20))",
		"CREATE TABLE ev (id INT PRIMARY KEY, at DATETIME(6), tag VARCHAR(10))",
		"CREATE REFERENCE TABLE r (id INT PRIMARY KEY, label VARCHAR(10))",
	} {
		testutil.Exec(t, ma, q)
		testutil.Exec(t, leaf, strings.Replace(q, "REFERENCE ", "", 1))
	}
	var rows []string
	for i := 1; i <= 60; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d, %d, 's%d')", i, rng.Intn(6), rng.Intn(400)-100, rng.Intn(9)))
	}
	for _, db := range []*sql.DB{ma, leaf} {
		testutil.Exec(t, db, "INSERT INTO a VALUES "+strings.Join(rows, ", "))
		testutil.Exec(t, db, "INSERT INTO r VALUES (0, 'zero'), (1, 'one'), (2, 'two'), (3, 'three')")
	}

	open := func(db *sql.DB) *sql.Conn {
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	type client struct{ cluster, leaf *sql.Conn }
	clients := []client{
		{open(ma), open(leaf)},
		{open(ma), open(leaf)},
		{open(c.Children[0].DB("ds")), open(leaf)},
	}
	g := &sessionGen{rng: rng, nextID: 1000, nextEv: 1}
	failures := 0
	for i := 0; i < steps && failures < 10; i++ {
		who := rng.Intn(len(clients))
		for _, st := range g.step() {
			want, werr := testutil.RenderRows(clients[who].leaf, "|", st.sql)
			got, gerr := testutil.RenderRows(clients[who].cluster, "|", st.sql)
			if (werr == nil) != (gerr == nil) {
				t.Errorf("step %d, client %d: %s\n single leaf error: %v\n cluster error: %v", i, who, st.sql, werr, gerr)
				failures++
				continue
			}
			if werr != nil || !st.compare {
				continue
			}
			if !st.ordered {
				sort.Strings(want)
				sort.Strings(got)
			}
			if strings.Join(want, "\n") != strings.Join(got, "\n") {
				t.Errorf("step %d, client %d: %s\n single leaf: %.400q\n cluster: %.400q", i, who, st.sql, want, got)
				failures++
			}
		}
	}
	for _, q := range []string{
		"SELECT * FROM a ORDER BY id",
		"SELECT v, note FROM ai ORDER BY v, note", // the ids come from different counters
		"SELECT tag, COUNT(*), COUNT(DISTINCT at) FROM ev GROUP BY tag ORDER BY tag",
		"SELECT * FROM r ORDER BY id",
	} {
		want, _ := collect(leaf, q)
		got, err := collect(c.Children[0].DB("ds"), q)
		if err != nil || strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("at the end, %s differs (%v):\n single leaf: %.400q\n cluster: %.400q", q, err, want, got)
		}
	}
}

// sessionGen makes the steps of the session family.
type sessionGen struct {
	rng    *rand.Rand
	nextID int // ids of new rows of a
	nextEv int // ids of rows of ev
	batch  int
}

type sessionStep struct {
	sql     string
	compare bool // compare the rows (writes compare errors only)
	ordered bool
}

func (g *sessionGen) n(max int) int { return g.rng.Intn(max) }

func (g *sessionGen) pick(opts ...string) string { return opts[g.n(len(opts))] }

func query(q string) sessionStep        { return sessionStep{sql: q, compare: true} }
func orderedQuery(q string) sessionStep { return sessionStep{sql: q, compare: true, ordered: true} }
func write(q string) sessionStep        { return sessionStep{sql: q} }

// step returns the statements of one step, run by one client in order.
func (g *sessionGen) step() []sessionStep {
	id := func() string { return strconv.Itoa(1 + g.n(70)) } // some ids do not exist
	switch g.n(25) {
	case 0, 1:
		return []sessionStep{write(fmt.Sprintf("SET @x = %d, @id = %s, @g = %d, @s = 's%d'", g.n(300)-100, id(), g.n(6), g.n(9)))}
	case 2:
		return []sessionStep{write(fmt.Sprintf("SET @f = %d.%de0, @d = %d.%02d", g.n(50), g.n(10), g.n(50), g.n(100))),
			query("SELECT id, x * @f, x + @d, @f / 3, @d / 3 FROM a WHERE id = @id")}
	case 3: // routed by a variable
		return []sessionStep{query(g.pick(
			"SELECT id, g, x, s FROM a WHERE id = @id",
			"SELECT id, x + @x, @s, s = @s FROM a WHERE id = @id",
			"SELECT @x, @undefined, @id, COUNT(*) FROM a WHERE id = @id"))}
	case 4: // gathered
		return []sessionStep{query(g.pick(
			"SELECT id, x FROM a WHERE g = @g AND x > @x",
			"SELECT g, COUNT(*), SUM(x + @x) FROM a WHERE s <> @s GROUP BY g",
			"SELECT id FROM a WHERE id IN (@id, @id + 1, @id + 2)",
			"SELECT COUNT(*) FROM a JOIN r ON a.g = r.id WHERE r.label <> @s"))}
	case 5: // routed writes
		return []sessionStep{write(g.pick(
			"UPDATE a SET x = x + @x WHERE id = @id",
			"UPDATE a SET s = CONCAT(@s, '-', x) WHERE id = @id",
			"DELETE FROM a WHERE id = @id AND x < @x")),
			query("SELECT * FROM a WHERE id = @id")}
	case 6: // broadcast writes
		return []sessionStep{write(g.pick(
			"UPDATE a SET x = x - @x WHERE g = @g",
			"UPDATE a SET s = @s WHERE x > @x",
			"DELETE FROM a WHERE x > 250 + @x"))}
	case 7: // new rows: one partition or several
		first := g.nextID
		g.nextID += 4
		return []sessionStep{write(fmt.Sprintf("SET @new = %d", first)),
			write(g.pick(
				"INSERT INTO a VALUES (@new, @g, @x, @s)",
				"INSERT INTO a VALUES (@new, @g, @x, @s), (@new + 1, @g, @x + 1, @s), (@new + 2, 1, -@x, 'y'), (@new + 3, @g, @id, CONCAT(@s, @s))")),
			query("SELECT * FROM a WHERE id >= @new AND id < @new + 4")}
	case 8: // LAST_INSERT_ID after generated values
		return []sessionStep{write(g.pick(
			"INSERT INTO ai (v, note) VALUES (@x, @s)",
			"INSERT INTO ai (v, note) VALUES (@x, 'first'), (@x + 1, 'second'), (@x + 2, 'third')",
			"INSERT INTO ai (v, note) SELECT @x, label FROM r WHERE id = 0")),
			query("SELECT v, note FROM ai WHERE id = LAST_INSERT_ID()"),
			query("SELECT LAST_INSERT_ID() > 0")}
	case 9: // LAST_INSERT_ID(expr)
		return []sessionStep{write("UPDATE a SET x = LAST_INSERT_ID(x + 1) WHERE id = @id"),
			query("SELECT LAST_INSERT_ID() = x FROM a WHERE id = @id")}
	case 10: // SELECT … INTO the client's own variables
		return []sessionStep{write(g.pick(
			"SELECT x, s INTO @y, @t FROM a WHERE id = @id",
			"SELECT COUNT(*) INTO @y FROM a WHERE g = @g")),
			query("SELECT @y, @t"),
			query("SELECT id FROM a WHERE x = @y")}
	case 11: // NOW() is one value in rows on every partition
		g.batch++
		var vals []string
		for k := 0; k < 8; k++ {
			vals = append(vals, fmt.Sprintf("(%d, NOW(6), 'b%d')", g.nextEv, g.batch))
			g.nextEv++
		}
		tag := fmt.Sprintf("'b%d'", g.batch)
		return []sessionStep{write("INSERT INTO ev VALUES " + strings.Join(vals, ", ")),
			query("SELECT COUNT(*), COUNT(DISTINCT at), MIN(at) <= NOW(6) FROM ev WHERE tag = " + tag),
			write("UPDATE ev SET at = CURRENT_TIMESTAMP(6) WHERE tag = " + tag),
			query("SELECT COUNT(DISTINCT at) FROM ev WHERE tag = " + tag)}
	case 12: // the client's time zone
		return []sessionStep{write(fmt.Sprintf("SET time_zone = '%s%02d:%s'", g.pick("+", "-"), g.n(12), g.pick("00", "30"))),
			query("SELECT id, FROM_UNIXTIME(ABS(x) * 100000), UNIX_TIMESTAMP('2020-01-01 00:00:00') FROM a WHERE id = @id"),
			query("SELECT ROUND(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) / 60), @@time_zone FROM a WHERE id = @id")}
	case 13:
		return []sessionStep{write("SET time_zone = DEFAULT")}
	case 14: // sql_mode: ONLY_FULL_GROUP_BY on one partition and on all
		return []sessionStep{write(g.pick("SET sql_mode = ''", "SET sql_mode = DEFAULT", "SET sql_mode = 'STRICT_TRANS_TABLES'")),
			query("SELECT g, x FROM a WHERE id = @id GROUP BY g"),
			query("SELECT COUNT(*) FROM (SELECT g, x FROM a GROUP BY g) t"),
			query("SELECT @@sql_mode, id FROM a WHERE id = @id")}
	case 15: // ANSI_QUOTES: "x" is a column
		return []sessionStep{write("SET sql_mode = 'ANSI_QUOTES'"),
			query(`SELECT "x", "s" FROM a WHERE id = @id`),
			query(`SELECT COUNT(*) FROM a WHERE "g" = @g`),
			write("SET sql_mode = DEFAULT"),
			query(`SELECT "x" FROM a WHERE id = @id`)}
	case 16: // sql_select_limit limits what the client gets only
		return []sessionStep{write(fmt.Sprintf("SET sql_select_limit = %d", 1+g.n(4))),
			orderedQuery("SELECT id, x FROM a WHERE g = @g ORDER BY id"),
			query("SELECT COUNT(*), SUM(x) FROM a"),
			write("SET sql_select_limit = DEFAULT")}
	case 17: // session functions and variables
		return []sessionStep{query("SELECT DATABASE(), @@autocommit, @@session.sql_select_limit, @x FROM a WHERE id = @id")}
	case 18: // a transaction, committed or rolled back
		end := g.pick("COMMIT", "ROLLBACK")
		return []sessionStep{write("BEGIN"),
			write("SET @x = @x + 1"),
			write("UPDATE a SET x = @x WHERE id = @id"),
			write("UPDATE a SET s = @s WHERE g = @g"),
			query("SELECT x, s FROM a WHERE id = @id"),
			query("SELECT COUNT(*) FROM a WHERE s = @s"),
			write(end),
			query("SELECT x, s, @x FROM a WHERE id = @id")}
	case 19: // autocommit off
		return []sessionStep{write("SET autocommit = 0"),
			write("INSERT INTO ai (v, note) VALUES (@x, 'txn')"),
			query("SELECT v, note FROM ai WHERE id = LAST_INSERT_ID()"),
			write(g.pick("COMMIT", "ROLLBACK")),
			write("SET autocommit = 1")}
	case 20: // reference table writes with variables
		return []sessionStep{write("UPDATE r SET label = @s WHERE id = @g % 4"),
			query("SELECT label FROM r WHERE id = @g % 4")}
	case 21:
		return []sessionStep{query("SELECT @y, @t, @new, @x"), query("SELECT LAST_INSERT_ID() > 0")}
	case 22: // the result character set: rows in latin1, routed or gathered
		return []sessionStep{write(g.pick("SET NAMES latin1", "SET NAMES utf8mb4", "SET character_set_results = latin1")),
			query("SELECT id, CONCAT(s, 'é'), @s FROM a WHERE id = @id"),
			query("SELECT id, CONCAT(s, 'ü') FROM a WHERE g = @g"),
			query("SELECT @@character_set_results, @@character_set_client, @@collation_connection FROM a WHERE id = @id")}
	default: // routed by a variable in an expression
		return []sessionStep{query("SELECT id, x FROM a WHERE id = @id + 1"),
			query("SELECT id, x FROM a WHERE id = -@x")}
	}
}
