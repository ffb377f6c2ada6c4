package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"
)

// testEngine runs SQL through GMS on a store in a temporary directory.
type testEngine struct {
	t     *testing.T
	dir   string
	store *Store
	e     *sqle.Engine
}

func newTestEngine(t *testing.T, dir string) *testEngine {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	te := &testEngine{t: t, dir: dir, store: s, e: sqle.NewDefault(NewProvider(s))}
	t.Cleanup(func() { te.close() })
	return te
}

func (te *testEngine) close() {
	if te.store != nil {
		te.store.Close()
		te.store = nil
	}
}

func (te *testEngine) reopen() {
	te.close()
	s, err := Open(te.dir, Options{NoSync: true})
	if err != nil {
		te.t.Fatal(err)
	}
	te.store = s
	te.e = sqle.NewDefault(NewProvider(s))
}

func (te *testEngine) session() *sql.Context {
	sess := NewSession(sql.NewBaseSession(), te.store)
	ctx := sql.NewContext(context.Background(), sql.WithSession(sess))
	ctx.SetCurrentDatabase("test")
	return ctx
}

func (te *testEngine) run(ctx *sql.Context, q string) ([]sql.Row, error) {
	sess := ctx.Session.(*Session)
	sess.CommandBegin()
	defer sess.CommandEnd()
	_, iter, _, err := te.e.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return sql.RowIterToRows(ctx, iter)
}

func (te *testEngine) must(ctx *sql.Context, q string) []sql.Row {
	te.t.Helper()
	rows, err := te.run(ctx, q)
	if err != nil {
		te.t.Fatalf("%s: %v", q, err)
	}
	return rows
}

func rowsString(rows []sql.Row) string {
	var b strings.Builder
	for i, r := range rows {
		if i > 0 {
			b.WriteString("; ")
		}
		for j, v := range r {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

func (te *testEngine) expect(ctx *sql.Context, q, want string) {
	te.t.Helper()
	if got := rowsString(te.must(ctx, q)); got != want {
		te.t.Errorf("%s\n got: %s\nwant: %s", q, got, want)
	}
}

func TestEngineBasics(t *testing.T) {
	te := newTestEngine(t, "")
	ctx := te.session()
	ctx.SetCurrentDatabase("")
	te.must(ctx, "CREATE DATABASE test")
	ctx.SetCurrentDatabase("test")
	te.must(ctx, "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), score DECIMAL(10,2), KEY name_idx (name))")
	te.must(ctx, "INSERT INTO t VALUES (1, 'a', 1.50), (2, 'b', 2.25), (3, 'c', NULL)")
	te.expect(ctx, "SELECT * FROM t ORDER BY id", "1,a,1.5; 2,b,2.25; 3,c,<nil>")
	te.expect(ctx, "SELECT name FROM t WHERE id = 2", "b")
	te.expect(ctx, "SELECT id FROM t WHERE name = 'c'", "3")
	te.expect(ctx, "SELECT id FROM t WHERE id > 1 ORDER BY id DESC", "3; 2")
	te.expect(ctx, "SELECT count(*), sum(score) FROM t", "3,3.75")
	te.must(ctx, "UPDATE t SET name = 'z' WHERE id = 1")
	te.expect(ctx, "SELECT id FROM t WHERE name = 'z'", "1")
	te.expect(ctx, "SELECT id FROM t WHERE name = 'a'", "")
	te.must(ctx, "DELETE FROM t WHERE id = 3")
	te.expect(ctx, "SELECT id FROM t ORDER BY id", "1; 2")
	if _, err := te.run(ctx, "INSERT INTO t VALUES (1, 'dup', 0)"); err == nil || !sql.ErrPrimaryKeyViolation.Is(sql.UnwrapError(err)) {
		t.Fatalf("duplicate insert: %v", err)
	}
	te.must(ctx, "INSERT INTO t VALUES (1, 'x', 9) ON DUPLICATE KEY UPDATE name = 'odku'")
	te.expect(ctx, "SELECT name FROM t WHERE id = 1", "odku")
	te.must(ctx, "REPLACE INTO t VALUES (2, 'replaced', 0)")
	te.expect(ctx, "SELECT id, name FROM t ORDER BY id", "1,odku; 2,replaced")

	// Keyless table with duplicates and an auto-increment table.
	te.must(ctx, "CREATE TABLE k (a INT, b TEXT)")
	te.must(ctx, "INSERT INTO k VALUES (1,'x'), (1,'x'), (2,'y')")
	te.must(ctx, "DELETE FROM k WHERE a = 1 LIMIT 1")
	te.expect(ctx, "SELECT a, b FROM k ORDER BY a", "1,x; 2,y")
	te.must(ctx, "UPDATE k SET b = 'w' WHERE a = 2")
	te.expect(ctx, "SELECT a, b FROM k ORDER BY a", "1,x; 2,w")
	te.must(ctx, "CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)")
	te.must(ctx, "INSERT INTO ai (v) VALUES (10), (20)")
	te.must(ctx, "INSERT INTO ai VALUES (100, 30)")
	te.must(ctx, "INSERT INTO ai (v) VALUES (40)")
	te.expect(ctx, "SELECT id, v FROM ai ORDER BY id", "1,10; 2,20; 100,30; 101,40")

	// Unique index.
	te.must(ctx, "CREATE TABLE u (id INT PRIMARY KEY, email VARCHAR(50), UNIQUE KEY email_u (email))")
	te.must(ctx, "INSERT INTO u VALUES (1, 'a@x'), (2, NULL), (3, NULL)")
	if _, err := te.run(ctx, "INSERT INTO u VALUES (4, 'a@x')"); err == nil || !sql.ErrUniqueKeyViolation.Is(sql.UnwrapError(err)) {
		t.Fatalf("unique violation: %v", err)
	}
	te.expect(ctx, "SELECT count(*) FROM u", "3")

	// Persistence.
	te.reopen()
	ctx = te.session()
	te.expect(ctx, "SELECT id, name FROM t ORDER BY id", "1,odku; 2,replaced")
	te.expect(ctx, "SELECT a, b FROM k ORDER BY a", "1,x; 2,w")
	te.must(ctx, "INSERT INTO ai (v) VALUES (50)")
	te.expect(ctx, "SELECT max(id) FROM ai", "102")
	te.expect(ctx, "SELECT id FROM u WHERE email = 'a@x'", "1")
}

func TestEngineTransactions(t *testing.T) {
	te := newTestEngine(t, "")
	c1 := te.session()
	c1.SetCurrentDatabase("")
	te.must(c1, "CREATE DATABASE test")
	c1.SetCurrentDatabase("test")
	te.must(c1, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	te.must(c1, "INSERT INTO t VALUES (1, 0)")
	te.must(c1, "BEGIN")
	te.must(c1, "UPDATE t SET v = 5 WHERE id = 1")
	te.must(c1, "INSERT INTO t VALUES (2, 2)")
	te.expect(c1, "SELECT id, v FROM t ORDER BY id", "1,5; 2,2")
	c2 := te.session()
	te.expect(c2, "SELECT id, v FROM t ORDER BY id", "1,0")
	te.must(c1, "ROLLBACK")
	te.expect(c1, "SELECT id, v FROM t ORDER BY id", "1,0")
	te.must(c1, "BEGIN")
	te.must(c1, "INSERT INTO t VALUES (3, 3)")
	if _, err := te.run(c1, "INSERT INTO t VALUES (4, 4), (1, 1)"); err == nil {
		t.Fatal("expected duplicate key")
	}
	te.must(c1, "COMMIT")
	// statement atomicity: row 4 of the failed statement is gone, row 3 stays
	te.expect(c2, "SELECT id FROM t ORDER BY id", "1; 3")
	te.must(c1, "BEGIN")
	te.must(c1, "INSERT INTO t VALUES (5, 5)")
	te.must(c1, "SAVEPOINT s1")
	te.must(c1, "INSERT INTO t VALUES (6, 6)")
	te.must(c1, "ROLLBACK TO SAVEPOINT s1")
	te.must(c1, "COMMIT")
	te.expect(c2, "SELECT id FROM t ORDER BY id", "1; 3; 5")
}

func TestEngineAlter(t *testing.T) {
	te := newTestEngine(t, "")
	ctx := te.session()
	ctx.SetCurrentDatabase("")
	te.must(ctx, "CREATE DATABASE test")
	ctx.SetCurrentDatabase("test")
	te.must(ctx, "CREATE TABLE t (id INT PRIMARY KEY, a INT)")
	te.must(ctx, "INSERT INTO t VALUES (1, 10), (2, 20)")
	te.must(ctx, "ALTER TABLE t ADD COLUMN b VARCHAR(10) NOT NULL DEFAULT 'x'")
	te.expect(ctx, "SELECT * FROM t ORDER BY id", "1,10,x; 2,20,x")
	te.must(ctx, "ALTER TABLE t ADD INDEX a_idx (a)")
	te.expect(ctx, "SELECT id FROM t WHERE a = 20", "2")
	te.must(ctx, "ALTER TABLE t DROP COLUMN b")
	te.expect(ctx, "SELECT * FROM t ORDER BY id", "1,10; 2,20")
	te.expect(ctx, "SELECT id FROM t WHERE a = 10", "1")
	te.must(ctx, "ALTER TABLE t MODIFY COLUMN a BIGINT")
	te.expect(ctx, "SELECT id FROM t WHERE a = 10", "1")
	te.must(ctx, "ALTER TABLE t DROP INDEX a_idx")
	te.must(ctx, "TRUNCATE TABLE t")
	te.expect(ctx, "SELECT count(*) FROM t", "0")
	te.must(ctx, "RENAME TABLE t TO t2")
	te.must(ctx, "INSERT INTO t2 VALUES (7, 70)")
	te.reopen()
	ctx = te.session()
	te.expect(ctx, "SELECT * FROM t2", "7,70")
	te.must(ctx, "CREATE VIEW v AS SELECT id * 2 AS d FROM t2")
	te.reopen()
	ctx = te.session()
	te.expect(ctx, "SELECT d FROM v", "14")
}

// TestEngineAlterCollation: ALTER TABLE … COLLATE changes the collation
// of columns added later, not of the existing ones, as in MySQL.
func TestEngineAlterCollation(t *testing.T) {
	te := newTestEngine(t, "")
	ctx := te.session()
	ctx.SetCurrentDatabase("")
	te.must(ctx, "CREATE DATABASE test")
	ctx.SetCurrentDatabase("test")
	te.must(ctx, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) COLLATE utf8mb4_bin, KEY (v))")
	te.must(ctx, "INSERT INTO t VALUES (1, 'Apple'), (2, 'Ünïcode')")
	te.expect(ctx, "SELECT id FROM t WHERE v = 'apple'", "")
	te.must(ctx, "ALTER TABLE t COLLATE utf8mb4_general_ci")
	te.expect(ctx, "SELECT id FROM t WHERE v = 'apple'", "")
	te.must(ctx, "ALTER TABLE t ADD COLUMN w VARCHAR(20)")
	te.must(ctx, "UPDATE t SET w = UPPER(v)")
	te.expect(ctx, "SELECT id FROM t WHERE w = 'apple'", "1")
	te.reopen()
	ctx = te.session()
	te.expect(ctx, "SELECT id FROM test.t WHERE w = 'APPLE' AND v != 'apple'", "1")
	// a row size MySQL refuses (1118) is refused whole: no column added
	if _, err := te.run(ctx, "ALTER TABLE test.t ADD COLUMN a VARCHAR(16000), ADD COLUMN b VARCHAR(16000)"); err == nil {
		t.Fatal("a 128,000-byte row was accepted")
	}
	te.expect(ctx, "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 't' AND column_name IN ('a', 'b')", "0")
}

// TestEngineAddColumnDefaultFirst: an expression default of a column
// added before the columns it reads is computed from their values.
func TestEngineAddColumnDefaultFirst(t *testing.T) {
	te := newTestEngine(t, "")
	ctx := te.session()
	ctx.SetCurrentDatabase("")
	te.must(ctx, "CREATE DATABASE test")
	ctx.SetCurrentDatabase("test")
	te.must(ctx, "CREATE TABLE t (pk BIGINT PRIMARY KEY, v1 BIGINT)")
	te.must(ctx, "INSERT INTO t VALUES (1, 3), (2, 4)")
	te.must(ctx, "ALTER TABLE t ADD COLUMN v2 BIGINT DEFAULT (v1 + 2) FIRST")
	te.expect(ctx, "SELECT * FROM t ORDER BY pk", "5,1,3; 6,2,4")
}
