package node_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/internal/testutil"
)

// clientTarget is a server clients talk to: a plain leaf, or the master
// aggregator of a cluster (where `test` is a distributed database).
type clientTarget struct {
	name   string
	n      *testutil.Node
	leaves []*testutil.Node
}

func clientTargets(t *testing.T) []clientTarget {
	leaf := testutil.StartNode(t)
	testutil.Exec(t, leaf.DB(""), "CREATE DATABASE test")
	c := testutil.StartCluster(t, 2, 0)
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE test")
	return []clientTarget{{name: "leaf", n: leaf}, {name: "aggregator", n: c.MA, leaves: c.Leaves}}
}

// TestClientVisibleFixes checks, on a leaf and through an aggregator,
// what clients see of issue 15's items: `@x := expr` outside SET, binary
// strings in string functions and bounded error messages, CREATE/DROP
// SCHEMA, KILL QUERY's error, the server's name, SET NAMES … COLLATE,
// SHOW PROCESSLIST and the result metadata.
func TestClientVisibleFixes(t *testing.T) {
	for _, tg := range clientTargets(t) {
		t.Run(tg.name, func(t *testing.T) {
			db := tg.n.DB("test")
			db.SetMaxOpenConns(1) // one session: user variables carry over
			testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v VARBINARY(20), bl BLOB, s VARCHAR(20), j JSON, d DATETIME, k VARCHAR(2000))")
			testutil.Exec(t, db, "CREATE TABLE u (k VARCHAR(2000) PRIMARY KEY)")
			testutil.Exec(t, db, "INSERT INTO t (id, v, bl, s, j, d) VALUES (1, x'FF01', x'00FF', 'héllo', '{\"a\": 1}', '2024-01-02 03:04:05'), (2, x'41', x'42', 'b', '[]', NULL), (3, 'a', NULL, 'c', NULL, NULL)")
			t.Run("assign", func(t *testing.T) { checkAssignments(t, db) })
			t.Run("binary", func(t *testing.T) { checkBinaryStrings(t, db) })
			t.Run("schema", func(t *testing.T) { checkCreateSchema(t, tg.n) })
			t.Run("kill", func(t *testing.T) { checkKill(t, tg) })
			t.Run("identity", func(t *testing.T) { checkIdentity(t, tg.n) })
			t.Run("processlist", func(t *testing.T) { checkProcessList(t, tg.n) })
			t.Run("fields", func(t *testing.T) { checkFields(t, tg.n) })
		})
	}
}

func checkAssignments(t *testing.T, db *sql.DB) {
	rows, err := db.Query("SELECT @a := 1")
	if err != nil {
		t.Fatalf("SELECT @a := 1: %v", err)
	}
	cols, _ := rows.Columns()
	rows.Close()
	if len(cols) != 1 || cols[0] != "@a := 1" {
		t.Errorf("SELECT @a := 1: columns %q, want [\"@a := 1\"]", cols)
	}
	testutil.ExpectRows(t, db, "SELECT @a", "1")
	testutil.Exec(t, db, "SET @r := 0")
	testutil.ExpectRows(t, db, "SELECT id, @r := @r + 1 FROM t ORDER BY id", "1,1", "2,2", "3,3")
	testutil.ExpectRows(t, db, "SELECT @r", "3")
	// one row of a sharded table: routed on an aggregator, unless it assigns
	testutil.ExpectRows(t, db, "SELECT @s := s AS x FROM t WHERE id = 2", "b")
	testutil.ExpectRows(t, db, "SELECT @s, @b := @c := 7", "b,7")
	testutil.ExpectRows(t, db, "SELECT @b, @c", "7,7")
	testutil.ExpectRows(t, db, "SELECT HEX(@v) FROM (SELECT @v := v FROM t WHERE id = 1) d", "FF01")
}

func checkBinaryStrings(t *testing.T, db *sql.DB) {
	for q, want := range map[string]string{
		// (this go-sql-driver reads an unsigned INT as int32)
		"SELECT MD5(x'FF'), SHA1(x'FF'), CAST(CRC32(x'FF') AS CHAR)":                                                              "00594fd4f42ba43fc1ca0427a0576295,85e53271e14006f0265921d02d4d736cdc580b0b,4278190080",
		"SELECT SHA2(x'FF', 256), SHA2('abc', 224)":                                                                               "a8100ae6aa1940d0b663bb31cd466142ebbdbd5187131b92d93818987832eb89,23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
		"SELECT HEX(LEFT(x'0001FF', 4)), HEX(RIGHT(x'FF01FE', 2)), HEX(SUBSTRING(x'FF0102', 1, 1)), HEX(MID(x'FF0102', 1, 2))":    "0001FF,01FE,FF,FF01",
		"SELECT HEX(CONCAT(x'FF', x'FE')), HEX(CONCAT(x'FF', 'é')), LENGTH(x'FFFF'), HEX(REVERSE(x'FF01')), HEX(UPPER(x'FF61'))":  "FFFE,FFC3A9,2,01FF,FF61",
		"SELECT HEX(LPAD(x'FF', 3, x'00')), HEX(REPLACE(x'FF01', x'01', x'02')), HEX(TRIM(x'20FF20')), HEX(REPEAT(x'FF', 2))":     "0000FF,FF02,FF,FFFF",
		"SELECT TO_BASE64(x'FF'), ASCII(x'FF'), ORD(x'FF'), BIT_LENGTH(x'FF'), LOCATE(x'01', x'FF01'), INSTR(x'FF01', x'01')":     "/w==,255,255,8,2,2",
		"SELECT LEFT(UNHEX('FF'), 1) = UNHEX('FF'), HEX(SUBSTRING_INDEX(x'FF2CFE', ',', 1)), HEX(CONCAT_WS(x'FF', x'01', x'02'))": "1,FF,01FF02",
		// string literals of bytes that are not UTF-8 (MySQLdb's way of
		// sending bytes), with and without _binary, are their bytes
		"SELECT HEX(_binary'\xff\x02'), HEX('\xff\x01'), LENGTH(_binary'\xff'), LENGTH('\xff')": "FF02,FF01,1,1",
		"SELECT _binary'\xff\x02', '\xff\x03'":                                                  "\xff\x02,\xff\x03",
		// text is unchanged
		"SELECT MD5('abc'), LEFT('héllo', 2), CONCAT('a', 'é'), LOCATE('b', 'abc'), TRIM('  a  ')":                 "900150983cd24fb0d6963f7d28e17f72,hé,aé,2,a",
		"SELECT LPAD('é', 3, 'xy'), RPAD('é', 4, 'xy'), LPAD('abc', 2, 'x'), LPAD('a', -1, 'x'), LPAD('a', 3, '')": "xyé,éxyx,ab,NULL,NULL",
		// columns, and through an aggregator the rows of the partitions
		"SELECT id, MD5(v), HEX(LEFT(bl, 1)), HEX(CONCAT(v, bl)), LENGTH(v), HEX(REVERSE(v)) FROM t WHERE id = 1": "1,fb73c139137bccfee5d95bddb087480a,00,FF0100FF,2,01FF",
		"SELECT id FROM t WHERE LEFT(v, 1) = x'FF'":                                                               "1",
	} {
		testutil.ExpectRows(t, db, q, want)
	}
	// a 100 KB binary value hashes; no error quotes a whole value
	testutil.ExpectRows(t, db, "SELECT LENGTH(MD5(REPEAT(x'FF', 100000)))", "32")
	long := strings.Repeat("x", 1500)
	testutil.Exec(t, db, "INSERT INTO u VALUES (?)", long)
	_, err := db.Exec("INSERT INTO u VALUES (?)", long)
	me := testutil.MySQLError(err)
	if me == nil || me.Number != 1062 {
		t.Fatalf("duplicate long key: got %v, want 1062", err)
	}
	if want := "Duplicate entry '" + long[:61] + "...' for key "; !strings.HasPrefix(me.Message, want) || len(me.Message) > 120 {
		t.Errorf("duplicate long key: message %q, want it to start %q", me.Message, want)
	}
	_, err = db.Exec("INSERT INTO t (id, j) VALUES (9, CONCAT('{', REPEAT('x', 100000)))")
	if me := testutil.MySQLError(err); me == nil || len(me.Message) > 511 {
		t.Errorf("invalid 100 KB JSON: got %.300v (%d bytes), want an error of at most 511", err, len(fmt.Sprint(err)))
	}
}

func checkCreateSchema(t *testing.T, n *testutil.Node) {
	root := n.DB("") // no current database
	testutil.Exec(t, root, "CREATE SCHEMA s1")
	testutil.Exec(t, root, "CREATE SCHEMA IF NOT EXISTS s1")
	testutil.ExpectError(t, root, 1007, "HY000", "CREATE SCHEMA s1")
	testutil.ExpectRows(t, root, "SHOW DATABASES LIKE 's1'", "s1")
	testutil.Exec(t, root, "DROP SCHEMA s1")
	testutil.Exec(t, root, "DROP SCHEMA IF EXISTS s1")
	testutil.ExpectRows(t, root, "SHOW DATABASES LIKE 's1'")
}

// checkKill: KILL QUERY ends a running statement with 1317; through an
// aggregator the leaf's part of it stops too. KILL ends the connection.
func checkKill(t *testing.T, tg clientTarget) {
	ctx := context.Background()
	db := tg.n.DB("test")
	victim, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var id int64
	if err := victim.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	// a routed statement on an aggregator: the leaf sleeps
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := victim.ExecContext(ctx, "SELECT SLEEP(20), id FROM t WHERE id = 1")
		errc <- err
	}()
	running := func(n *testutil.Node, id int64) bool {
		for _, r := range testutil.Rows(t, n.DB(""), "SHOW FULL PROCESSLIST") {
			if strings.Contains(r, "SLEEP(20)") && (id == 0 || strings.HasPrefix(r, fmt.Sprint(id)+",")) {
				return true
			}
		}
		return false
	}
	waitFor(t, func() bool { return running(tg.n, id) })
	time.Sleep(200 * time.Millisecond) // on its way to the leaf
	testutil.Exec(t, db, fmt.Sprintf("KILL QUERY %d", id))
	select {
	case err := <-errc:
		if me := testutil.MySQLError(err); me == nil || me.Number != 1317 || string(me.SQLState[:]) != "70100" || me.Message != "Query execution was interrupted" {
			t.Errorf("killed query: got %v, want 1317 (70100) Query execution was interrupted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KILL QUERY did not end the statement")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("killed statement took %v", d)
	}
	for _, l := range tg.leaves {
		waitFor(t, func() bool { return !running(l, 0) })
	}
	// the connection goes on
	var one int
	if err := victim.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after KILL QUERY: %v", err)
	}
	testutil.Exec(t, db, fmt.Sprintf("KILL %d", id))
	if err := victim.QueryRowContext(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Error("a killed connection still answers")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkIdentity(t *testing.T, n *testutil.Node) {
	db := n.DB("")
	db.SetMaxOpenConns(1)
	testutil.ExpectRows(t, db, "SELECT @@version_comment, @@version", "Canopy,8.0.31-canopy")
	testutil.Exec(t, db, "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
	testutil.ExpectRows(t, db, "SELECT @@character_set_connection, @@collation_connection", "utf8mb4,utf8mb4_unicode_ci")
	testutil.Exec(t, db, "SET NAMES latin1")
	testutil.ExpectRows(t, db, "SELECT @@character_set_client, @@collation_connection", "latin1,latin1_swedish_ci")
	testutil.Exec(t, db, "SET NAMES 'utf8mb4'")
	testutil.ExpectRows(t, db, "SELECT @@collation_connection", "utf8mb4_0900_ai_ci")
	testutil.ExpectError(t, db, 1253, "42000", "SET NAMES utf8mb4 COLLATE latin1_swedish_ci")
	testutil.ExpectError(t, db, 1273, "HY000", "SET NAMES utf8mb4 COLLATE nonesuch")
}

func checkProcessList(t *testing.T, n *testutil.Node) {
	db := n.DB("")
	idle, err := n.DB("test").Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	var idleID int64
	if err := idle.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&idleID); err != nil {
		t.Fatal(err)
	}
	rows := testutil.Rows(t, db, "SHOW FULL PROCESSLIST")
	var self, other string
	for _, r := range rows {
		if strings.Contains(r, "SHOW FULL PROCESSLIST") {
			self = r
		}
		if strings.HasPrefix(r, fmt.Sprint(idleID)+",") {
			other = r
		}
		if strings.ContainsRune(r, 0) || strings.Contains(r, "unauthenticated") {
			t.Errorf("SHOW PROCESSLIST row %q", r)
		}
	}
	// Id,User,Host,db,Command,Time,State,Info
	if f := strings.Split(self, ","); len(f) != 8 || f[1] != "root" || !strings.HasPrefix(f[2], "127.0.0.1:") || f[4] != "Query" || f[6] != "init" {
		t.Errorf("SHOW PROCESSLIST's own row %q, want root, 127.0.0.1:port, Query, init", self)
	}
	if f := strings.Split(other, ","); len(f) != 8 || f[1] != "root" || f[3] != "test" || f[4] != "Sleep" || f[6] != "" || f[7] != "NULL" {
		t.Errorf("an idle connection's row %q, want root, test, Sleep, empty State, NULL Info", other)
	}
	for _, r := range testutil.Rows(t, db, "SELECT USER, STATE FROM information_schema.PROCESSLIST") {
		if strings.ContainsRune(r, 0) || strings.Contains(r, "unauthenticated") || strings.Contains(r, "\n") {
			t.Errorf("information_schema.PROCESSLIST row %q", r)
		}
	}
}

// checkFields compares column definitions with what MySQL 8 sends.
func checkFields(t *testing.T, n *testutil.Node) {
	c, err := mysql.Connect(context.Background(), &mysql.ConnParams{Host: "127.0.0.1", Port: n.Port, Uname: "root", Pass: n.RootPassword, DbName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const binary, blob = uint32(querypb.MySqlFlag_BINARY_FLAG), uint32(querypb.MySqlFlag_BLOB_FLAG)
	for _, q := range []string{
		"SELECT id, j, d, v, bl, s, 1, 2.5 FROM t WHERE id = 1", // routed on an aggregator
		"SELECT id, j, d, v, bl, s, 1, 2.5 FROM t ORDER BY id",  // merged
	} {
		res, err := c.ExecuteFetch(q, 100, true)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, f := range res.Fields {
			var wantCharset uint32 = 63
			var wantFlags uint32
			switch f.Name {
			case "j":
				wantFlags = binary | blob
			case "d":
				wantFlags = binary
			case "v":
				wantFlags = binary
			case "bl":
				wantFlags = binary | blob
			case "s":
				wantCharset = 255
			}
			if f.Charset != wantCharset || f.Flags&(binary|blob) != wantFlags {
				t.Errorf("%s: column %s (%v): charset %d flags %d, want charset %d flags %d", q, f.Name, f.Type, f.Charset, f.Flags, wantCharset, wantFlags)
			}
		}
	}
}
