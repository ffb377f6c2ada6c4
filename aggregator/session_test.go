package aggregator_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/internal/testutil"
)

// conn is one client connection (a session), for tests of session state.
type conn struct {
	t *testing.T
	c *sql.Conn
}

func session(t *testing.T, db *sql.DB) *conn {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t, c}
}

func (c *conn) exec(q string, args ...interface{}) sql.Result {
	c.t.Helper()
	r, err := c.c.ExecContext(context.Background(), q, args...)
	if err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	return r
}

func (c *conn) rows(q string, args ...interface{}) []string {
	c.t.Helper()
	out, err := testutil.RenderRows(c.c, ",", q, args...)
	if err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	return out
}

// rawConn is a client connection of the vitess client, for what
// go-sql-driver cannot send (COM_RESET_CONNECTION).
func rawConn(t *testing.T, n *testutil.Node, db string) *mysql.Conn {
	t.Helper()
	c, err := mysql.Connect(context.Background(), &mysql.ConnParams{
		Host: "127.0.0.1", Port: n.Port, Uname: "root", Pass: n.RootPassword, DbName: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// resetConnection sends COM_RESET_CONNECTION and reads its OK. The client
// has read every earlier answer, so nothing waits in its buffer.
func resetConnection(t *testing.T, c *mysql.Conn) {
	t.Helper()
	if _, err := c.Conn.Write([]byte{1, 0, 0, 0, mysql.ComResetConnection}); err != nil {
		t.Fatal(err)
	}
	var header [4]byte
	if _, err := io.ReadFull(c.Conn, header[:]); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, int(header[0])|int(header[1])<<8|int(header[2])<<16)
	if _, err := io.ReadFull(c.Conn, payload); err != nil {
		t.Fatal(err)
	}
	if len(payload) == 0 || payload[0] != mysql.OKPacket {
		t.Fatalf("COM_RESET_CONNECTION answered %q", payload)
	}
}

func (c *conn) expect(q string, want ...string) {
	c.t.Helper()
	if got := c.rows(q); strings.Join(got, "; ") != strings.Join(want, "; ") {
		c.t.Errorf("%s\n got: %q\nwant: %q", q, got, want)
	}
}

func (c *conn) expectError(code uint16, q string) {
	c.t.Helper()
	_, err := c.c.ExecContext(context.Background(), q)
	if me := testutil.MySQLError(err); me == nil || me.Number != code {
		c.t.Errorf("%s: got %v, want error %d", q, err, code)
	}
}

// TestSessionThroughAggregator: what a statement reads from the client's
// session (user and system variables, LAST_INSERT_ID(), NOW(), DATABASE(),
// CONNECTION_ID()) and the settings that change how it is evaluated
// (time_zone, sql_mode, sql_select_limit) are the client's on every path
// (routed, split inserts, broadcast writes, gathers, prepared statements,
// transactions), through the master and a child aggregator; nothing one
// client sets reaches another through the pooled leaf connections.
func TestSessionThroughAggregator(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE sess PARTITIONS 4")
	ma := c.MA.DB("sess")
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE ts (id INT PRIMARY KEY, at DATETIME(6))",
		"CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
		"CREATE TABLE b (a INT, k INT, PRIMARY KEY (a, k), SHARD KEY (a))",
		"CREATE REFERENCE TABLE r (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
		"CREATE TABLE tz (id INT PRIMARY KEY, z VARCHAR(10))",
		"CREATE TABLE td (id INT PRIMARY KEY, v INT, n DATETIME(6), at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))",
		"INSERT INTO b VALUES (1, 1), (1, 2), (1, 3), (2, 1), (3, 1)",
		"INSERT INTO tz VALUES (1, '+05:00'), (2, '+06:00')",
		// reads a sharded table, then sets the zone (GMS takes SET of a
		// system variable in a procedure only through PREPARE)
		"CREATE PROCEDURE zone_six() BEGIN DECLARE n INT; SELECT COUNT(*) INTO n FROM tz; PREPARE z6 FROM 'SET time_zone = ''+06:00'''; EXECUTE z6; END",
	} {
		testutil.Exec(t, ma, q)
	}

	for _, via := range []struct {
		name string
		node *testutil.Node
	}{{"master", c.MA}, {"child", c.Children[0]}} {
		t.Run("user variables/"+via.name, func(t *testing.T) {
			s := session(t, via.node.DB("sess"))
			s.exec("DELETE FROM t WHERE id > 0") // (without WHERE, a leaf answers 1049: see the report)
			s.exec("SET @x = 42, @id = 5, @neg = -7, @f = 1.5e0, @str = 'it''s'")
			s.exec("INSERT INTO t VALUES (5, @x)") // routed
			s.expect("SELECT v FROM t WHERE id = 5", "42")
			s.exec("UPDATE t SET v = @x + 1 WHERE id = @id") // routed by the variable's value
			s.expect("SELECT v FROM t WHERE id = @id", "43")
			s.exec("INSERT INTO t VALUES (@id + 1, @neg), (7, @x), (8, @x), (9, @x), (10, LENGTH(@str))") // split
			s.expect("SELECT id, v FROM t ORDER BY id", "5,43", "6,-7", "7,42", "8,42", "9,42", "10,4")
			s.exec("UPDATE t SET v = v + @x WHERE id > 6") // broadcast
			s.expect("SELECT SUM(v) FROM t WHERE id > 6", strconv.Itoa(3*84+46))
			s.exec("DELETE FROM t WHERE v = @x + @x") // broadcast
			s.expect("SELECT COUNT(*) FROM t", "3")
			s.expect("SELECT @f * 2, @str, v FROM t WHERE id = 5", "3,it's,43")
			// the select list keeps the names the client wrote, also
			// around a *
			for q, want := range map[string]string{
				"SELECT @x + 1, v FROM t WHERE id = 5":            "@x + 1,v",
				"SELECT *, @x FROM t WHERE id = 5":                "id,v,@x",
				"SELECT @x, t.*, @@time_zone FROM t WHERE id = 5": "@x,id,v,@@time_zone",
			} {
				if cols := columns(t, via.node.DB("sess"), q); cols != want {
					t.Errorf("%s: columns %q, want %q", q, cols, want)
				}
			}
			// inside a transaction, and rolled back
			s.exec("BEGIN")
			s.exec("SET @y = 1000")
			s.exec("UPDATE t SET v = @y WHERE id = 5")
			s.exec("INSERT INTO t VALUES (11, @y), (12, @y)")
			s.expect("SELECT v FROM t WHERE id = @id", "1000")
			s.exec("ROLLBACK")
			s.expect("SELECT v FROM t WHERE id = 5", "43")
			s.exec("START TRANSACTION")
			s.exec("UPDATE t SET v = @y + 1 WHERE id = 5")
			s.exec("COMMIT")
			s.expect("SELECT v FROM t WHERE id = 5", "1001")
		})
	}

	t.Run("prepared statements", func(t *testing.T) {
		s := session(t, c.MA.PreparingDB("sess"))
		s.exec("SET @lo = 1000")
		for i := 0; i < 3; i++ {
			if got := s.rows("SELECT v FROM t WHERE id = ? AND v > @lo", 5); strings.Join(got, ";") != "1001" {
				t.Errorf("prepared with @lo = 1000: %q", got)
			}
			if got := s.rows("SELECT @lo + ?, v FROM t WHERE id = ?", 1, 5); strings.Join(got, ";") != "1001,1001" {
				t.Errorf("prepared select of @lo: %q", got)
			}
		}
		s.exec("SET @lo = 2000")
		if got := s.rows("SELECT v FROM t WHERE id = ? AND v > @lo", 5); len(got) != 0 {
			t.Errorf("prepared with @lo = 2000: %q", got)
		}
		s.exec("UPDATE t SET v = @lo WHERE id = ?", 5)
		s.expect("SELECT v FROM t WHERE id = 5", "2000")
	})

	t.Run("two clients", func(t *testing.T) {
		a, b, fresh := session(t, ma), session(t, ma), session(t, c.Children[0].DB("sess"))
		offset := b.rows("SELECT ROUND(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) / 60)")[0] // the system's time zone
		a.exec("SET @x = 1, time_zone = '+05:00', sql_mode = ''")
		b.exec("SET @x = 2")
		// SELECT … INTO sets the client's own variable, on the aggregator
		a.exec("SELECT v INTO @leak FROM t WHERE id = 5")
		a.expect("SELECT @leak", "2000")
		for i := 0; i < 20; i++ {
			a.expect("SELECT @x, @leak, ROUND(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) / 60) FROM t WHERE id = 5", "1,2000,300")
			b.expect("SELECT @x, @leak, ROUND(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) / 60) FROM t WHERE id = 5", "2,NULL,"+offset)
			fresh.expect("SELECT @x, @leak, @@sql_mode = @@global.sql_mode FROM t WHERE id = 5", "NULL,NULL,1")
		}
		// a's empty sql_mode accepts what b's ONLY_FULL_GROUP_BY refuses,
		// on one partition, on all, and on the aggregator
		for i := 0; i < 5; i++ {
			a.expect("SELECT a, k FROM b WHERE a = 2 GROUP BY a", "2,1")
			b.expectError(1105, "SELECT a, k FROM b WHERE a = 2 GROUP BY a")
			a.expect("SELECT COUNT(*) FROM (SELECT a, k FROM b GROUP BY a) g", "3")
			b.expectError(1105, "SELECT a, k FROM b GROUP BY a")
		}
	})

	t.Run("LAST_INSERT_ID", func(t *testing.T) {
		for i, node := range []*testutil.Node{c.MA, c.Children[0]} {
			s := session(t, node.DB("sess"))
			res := s.exec("INSERT INTO ai (v) VALUES (1)")
			id, err := res.LastInsertId()
			if err != nil || id == 0 {
				t.Fatalf("insert id %d (%v)", id, err)
			}
			want := strconv.FormatInt(id, 10)
			s.expect("SELECT LAST_INSERT_ID()", want)
			s.expect("SELECT id, v FROM ai WHERE id = LAST_INSERT_ID()", want+",1") // routed by the value
			first := s.exec("INSERT INTO ai (v) VALUES (2), (3), (4), (5)")
			id, _ = first.LastInsertId()
			s.expect("SELECT LAST_INSERT_ID()", strconv.FormatInt(id, 10))
			s.expect("SELECT v FROM ai WHERE id = LAST_INSERT_ID()", "2")
			// an explicit value leaves it
			s.exec(fmt.Sprintf("INSERT INTO ai VALUES (%d, 7)", 1000+i))
			s.expect("SELECT LAST_INSERT_ID()", strconv.FormatInt(id, 10))
			// LAST_INSERT_ID(expr) sets it, the sequence idiom
			s.exec("UPDATE t SET v = LAST_INSERT_ID(v + 1) WHERE id = 5")
			s.expect("SELECT LAST_INSERT_ID(), v FROM t WHERE id = 5", "2001,2001")
			s.exec("UPDATE t SET v = LAST_INSERT_ID(v + 1) WHERE id = 12345") // no row: unchanged
			s.expect("SELECT LAST_INSERT_ID()", "2001")
			s.exec("UPDATE t SET v = 2000 WHERE id = 5")
			// a reference table's AUTO_INCREMENT (a child forwards the insert)
			res = s.exec("INSERT INTO r (v) VALUES (9)")
			rid, _ := res.LastInsertId()
			s.expect("SELECT LAST_INSERT_ID()", strconv.FormatInt(rid, 10))
			s.expect("SELECT v FROM r WHERE id = LAST_INSERT_ID()", "9")
		}
	})

	t.Run("NOW is one value per statement", func(t *testing.T) {
		s := session(t, ma)
		var rows []string
		for i := 1; i <= 40; i++ {
			rows = append(rows, fmt.Sprintf("(%d, NOW(6))", i))
		}
		s.exec("INSERT INTO ts VALUES " + strings.Join(rows, ", ")) // every partition
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at) FROM ts", "40,1")
		s.exec("UPDATE ts SET at = CURRENT_TIMESTAMP(6)") // broadcast
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at) FROM ts", "40,1")
		s.expect("SELECT at < NOW(6), at = at FROM ts WHERE id = 7", "1,1")
		// the client's time zone
		s.exec("SET time_zone = '-03:00'")
		s.exec("UPDATE ts SET at = NOW() WHERE id = 1")
		s.expect("SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), at) BETWEEN -181 AND -179 FROM ts WHERE id = 1", "1")
		s.expect("SELECT FROM_UNIXTIME(0) FROM ts WHERE id = 1", "1969-12-31 21:00:00") // the leaf evaluates it in the client's zone
	})

	// The aggregator keeps a copy of each client's settings; statements
	// that may change them, and read sharded tables on the way (the
	// copy is read while they run), leave the copy as they end.
	t.Run("settings after SET, CALL, EXECUTE", func(t *testing.T) {
		for _, node := range []*testutil.Node{c.MA, c.Children[0]} {
			s := session(t, node.DB("sess"))
			zone := func(want string) {
				t.Helper()
				// the leaf evaluates FROM_UNIXTIME in the client's zone
				s.expect("SELECT FROM_UNIXTIME(0) FROM tz WHERE id = 1", "1970-01-01 "+want)
			}
			s.exec("SET time_zone = '+01:00'")
			zone("01:00:00")
			s.exec("SET time_zone = (SELECT z FROM tz WHERE id = 1)")
			zone("05:00:00")
			s.exec("SET @n = (SELECT COUNT(*) FROM tz), time_zone = '+03:00'")
			zone("03:00:00")
			s.expect("SELECT @n", "2")
			s.exec("PREPARE st FROM 'SET time_zone = ''+07:00'''")
			zone("03:00:00")
			s.exec("EXECUTE st")
			zone("07:00:00")
			if node == c.MA {
				s.exec("CALL zone_six()")
				zone("06:00:00")
				s.exec("EXECUTE st")
			}
			s.exec("SET @only_user = 1") // changes no setting
			zone("07:00:00")
		}
	})

	// COM_RESET_CONNECTION gives the client a new session: the
	// aggregator's part of the old one (its settings, the leaf parts of
	// its transaction) ends with it.
	t.Run("COM_RESET_CONNECTION", func(t *testing.T) {
		vc := rawConn(t, c.MA, "sess")
		run := func(q string) string {
			t.Helper()
			res, err := vc.ExecuteFetch(q, 100, false)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			var out []string
			for _, row := range res.Rows {
				for _, v := range row {
					out = append(out, v.ToString())
				}
			}
			return strings.Join(out, ",")
		}
		local := run("SELECT FROM_UNIXTIME(0)") // the node's zone
		run("SET time_zone = '+05:00'")
		if got := run("SELECT FROM_UNIXTIME(0) FROM tz WHERE id = 2"); got != "1970-01-01 05:00:00" {
			t.Fatalf("before the reset: %q", got)
		}
		run("BEGIN")
		run("UPDATE tz SET z = 'changed' WHERE id = 2")
		resetConnection(t, vc)
		if got := run("SELECT FROM_UNIXTIME(0) FROM tz WHERE id = 2"); got != local {
			t.Errorf("after the reset the leaf evaluates in %q, want the default zone (%q)", got, local)
		}
		if got := run("SELECT @@autocommit, z FROM tz WHERE id = 2"); got != "1,+06:00" {
			t.Errorf("after the reset: %q, want autocommit and the committed value", got)
		}
		// the transaction's leaf part was rolled back, its lock let go
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := ma.ExecContext(ctx, "UPDATE tz SET z = '+06:00' WHERE id = 2"); err != nil {
			t.Fatalf("another client's update of the row: %v", err)
		}
	})

	// DEFAULT CURRENT_TIMESTAMP and ON UPDATE CURRENT_TIMESTAMP, filled
	// in by the leaves, take the statement's time: one value on every
	// partition, the same as the statement's NOW()
	t.Run("CURRENT_TIMESTAMP columns", func(t *testing.T) {
		s := session(t, ma)
		var rows, withNow []string
		for i := 1; i <= 40; i++ {
			rows = append(rows, fmt.Sprintf("(%d, 0)", i))
			withNow = append(withNow, fmt.Sprintf("(%d, 0, NOW(6))", 100+i))
		}
		s.exec("INSERT INTO td (id, v) VALUES " + strings.Join(rows, ", ")) // every partition
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at) FROM td", "40,1")
		s.exec("INSERT INTO td (id, v, n) VALUES " + strings.Join(withNow, ", "))
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at) FROM td WHERE id > 100 AND at = n", "40,1")
		s.exec("INSERT INTO td (id, v, n) VALUES (200, 0, NOW(6))") // one partition
		s.expect("SELECT at = n FROM td WHERE id = 200", "1")
		s.exec("UPDATE td SET v = 1 WHERE id <= 40") // broadcast: ON UPDATE
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at) FROM td WHERE id <= 40", "40,1")
		s.expect("SELECT COUNT(*) FROM td WHERE id <= 40 AND at > (SELECT MAX(n) FROM td)", "40")
		s.exec("UPDATE td SET v = 2, n = NOW(6)") // the statement's NOW() and ON UPDATE agree
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at), SUM(at = n) FROM td", "81,1,81")
		// new rows and duplicates (GMS applies no ON UPDATE to these)
		var upsert []string
		for i := 1; i <= 40; i++ {
			upsert = append(upsert, fmt.Sprintf("(%d, 0)", i), fmt.Sprintf("(%d, 0)", 400+i))
		}
		s.exec("INSERT INTO td (id, v) VALUES " + strings.Join(upsert, ", ") + " ON DUPLICATE KEY UPDATE v = v + 1")
		s.expect("SELECT COUNT(*), COUNT(DISTINCT at) FROM td WHERE id > 400", "40,1")
		s.expect("SELECT SUM(v) FROM td WHERE id <= 40", "120")
		// a client's own SET timestamp holds, on the leaves too
		s.exec("SET timestamp = 1600000000.25")
		s.exec("INSERT INTO td (id, v, n) VALUES (300, 0, NOW(6)), (301, 0, NOW(6)), (302, 0, NOW(6)), (303, 0, NOW(6))")
		s.expect("SELECT DISTINCT UNIX_TIMESTAMP(at), UNIX_TIMESTAMP(n) FROM td WHERE id BETWEEN 300 AND 303", "1600000000.250000,1600000000.250000")
		s.exec("SET timestamp = DEFAULT")
		s.expect("SELECT NOW() > '2020-09-14' FROM td WHERE id = 300", "1")
	})

	t.Run("session functions and variables", func(t *testing.T) {
		s := session(t, ma)
		cid := s.rows("SELECT CONNECTION_ID()")[0]
		user := s.rows("SELECT USER()")[0]
		s.expect("SELECT DATABASE(), CONNECTION_ID(), USER(), v FROM t WHERE id = 5", "sess,"+cid+","+user+",2000")
		s.exec("SET autocommit = 0")
		s.expect("SELECT @@autocommit, @@session.autocommit FROM t WHERE id = 5", "0,0")
		s.exec("COMMIT")
		s.exec("SET autocommit = 1, SESSION transaction_isolation = 'SERIALIZABLE'")
		s.expect("SELECT @@transaction_isolation, @@session.transaction_isolation = @@global.transaction_isolation FROM t WHERE id = 5", "SERIALIZABLE,0")
		// ANSI_QUOTES: "v" is the column
		s.exec("SET sql_mode = 'ANSI_QUOTES'")
		s.expect(`SELECT "v" FROM t WHERE id = 5`, "2000")
		s.exec("SET sql_mode = DEFAULT")
		s.expect(`SELECT "v" FROM t WHERE id = 5`, "v")
		// sql_select_limit cuts what the client gets, not what the
		// aggregator reads from the partitions
		s.exec("SET sql_select_limit = 1")
		s.expect("SELECT k FROM b WHERE a = 1 ORDER BY k", "1")
		s.expect("SELECT COUNT(*) FROM b", "5")
		s.expect("SELECT a, COUNT(*) FROM b GROUP BY a ORDER BY a", "1,3")
		s.exec("SET sql_select_limit = DEFAULT")
		s.expect("SELECT k FROM b WHERE a = 1 ORDER BY k", "1", "2", "3")
		// what the leaves' statements leave in the session
		s.expect("SELECT FOUND_ROWS(), ROW_COUNT()", "3,-1")
		s.expect("SELECT SQL_CALC_FOUND_ROWS k FROM b WHERE a = 1 ORDER BY k LIMIT 1", "1")
		s.expect("SELECT FOUND_ROWS()", "3")
		s.exec("UPDATE b SET k = k + 10 WHERE a = 1 AND k > 1")
		s.expect("SELECT ROW_COUNT()", "2")
		s.exec("UPDATE b SET k = k - 10 WHERE k > 10") // broadcast
		s.expect("SELECT ROW_COUNT()", "2")
	})
}
