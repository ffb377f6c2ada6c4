package node_test

import (
	"database/sql"
	"fmt"
	"math/rand"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

func newLeaf(t *testing.T) (*testutil.Node, *sql.DB) {
	n := testutil.StartNode(t)
	root := n.DB("")
	testutil.Exec(t, root, "CREATE DATABASE test")
	return n, n.DB("test")
}

func TestLeafDDLAndDML(t *testing.T) {
	_, db := newLeaf(t)
	testutil.Exec(t, db, `CREATE TABLE items (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		sku VARCHAR(32) NOT NULL,
		qty INT NOT NULL DEFAULT 0,
		price DECIMAL(10,2),
		UNIQUE KEY sku_u (sku),
		KEY qty_i (qty))`)
	testutil.Exec(t, db, "INSERT INTO items (sku, qty, price) VALUES ('a', 5, 1.50), ('b', 3, 2.00), ('c', 9, NULL)")
	testutil.ExpectRows(t, db, "SELECT id, sku, qty, price FROM items ORDER BY id", "1,a,5,1.50", "2,b,3,2.00", "3,c,9,NULL")

	// indexes are used for point and range lookups
	for q, idx := range map[string]string{
		"SELECT * FROM items WHERE id = 2":               "[items.id]",
		"SELECT * FROM items WHERE sku = 'c'":            "[items.sku]",
		"SELECT * FROM items WHERE qty BETWEEN 4 AND 10": "[items.qty]",
		"SELECT * FROM items WHERE id > 1 ORDER BY id":   "[items.id]",
	} {
		plan := strings.Join(testutil.Rows(t, db, "EXPLAIN "+q), "\n")
		if !strings.Contains(plan, "IndexedTableAccess") || !strings.Contains(plan, idx) {
			t.Errorf("EXPLAIN %s does not use index %s:\n%s", q, idx, plan)
		}
	}
	testutil.ExpectRows(t, db, "SELECT sku FROM items WHERE qty BETWEEN 4 AND 10 ORDER BY sku", "a", "c")
	testutil.ExpectRows(t, db, "SELECT sku FROM items WHERE id > 1 ORDER BY id DESC", "c", "b")

	testutil.Exec(t, db, "INSERT INTO items (sku, qty) VALUES ('a', 1) ON DUPLICATE KEY UPDATE qty = qty + 10")
	testutil.ExpectRows(t, db, "SELECT qty FROM items WHERE sku = 'a'", "15")
	testutil.Exec(t, db, "REPLACE INTO items (id, sku, qty) VALUES (2, 'b2', 30)")
	testutil.ExpectRows(t, db, "SELECT id, sku, qty FROM items WHERE id = 2", "2,b2,30")
	r := testutil.Exec(t, db, "UPDATE items SET qty = qty * 2 WHERE qty > 10")
	if n, _ := r.RowsAffected(); n != 2 {
		t.Errorf("UPDATE affected %d rows, want 2", n)
	}
	testutil.Exec(t, db, "DELETE FROM items WHERE sku = 'c'")
	testutil.ExpectRows(t, db, "SELECT sku, qty FROM items ORDER BY sku", "a,30", "b2,60")

	// joins, subqueries, group by, window functions
	testutil.Exec(t, db, "CREATE TABLE orders (oid INT PRIMARY KEY, item_id BIGINT, n INT, KEY item (item_id))")
	testutil.Exec(t, db, "INSERT INTO orders VALUES (1, 1, 2), (2, 1, 3), (3, 2, 1), (4, 99, 1)")
	testutil.ExpectRows(t, db, "SELECT i.sku, SUM(o.n) FROM items i JOIN orders o ON o.item_id = i.id GROUP BY i.sku ORDER BY i.sku", "a,5", "b2,1")
	testutil.ExpectRows(t, db, "SELECT oid FROM orders WHERE item_id NOT IN (SELECT id FROM items) ORDER BY oid", "4")
	testutil.ExpectRows(t, db, "SELECT oid, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY oid DESC) FROM orders ORDER BY oid", "1,2", "2,1", "3,1", "4,1")

	// ALTER TABLE keeps data and indexes consistent
	testutil.Exec(t, db, "ALTER TABLE orders ADD COLUMN note VARCHAR(10) DEFAULT 'none'")
	testutil.Exec(t, db, "ALTER TABLE orders ADD INDEX n_i (n)")
	testutil.ExpectRows(t, db, "SELECT oid, note FROM orders WHERE n = 3", "2,none")
	testutil.Exec(t, db, "ALTER TABLE orders DROP INDEX n_i")
	testutil.Exec(t, db, "ALTER TABLE orders DROP COLUMN note")
	testutil.ExpectRows(t, db, "SELECT * FROM orders WHERE oid = 4", "4,99,1")
	testutil.Exec(t, db, "TRUNCATE TABLE orders")
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM orders", "0")
	testutil.Exec(t, db, "DROP TABLE orders")
	testutil.ExpectError(t, db, 1146, "42S02", "SELECT * FROM orders")
}

func TestLeafTypes(t *testing.T) {
	_, db := newLeaf(t)
	testutil.Exec(t, db, `CREATE TABLE types (
		id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, bi BIGINT, d DECIMAL(20,6), f DOUBLE,
		vc VARCHAR(100), tx TEXT, bl BLOB, dt DATE, dtm DATETIME(6), ts TIMESTAMP, tm TIME, y YEAR,
		e ENUM('x','y'), j JSON)`)
	testutil.Exec(t, db, `INSERT INTO types VALUES
		(1, -128, 65535, -9223372036854775808, 12345678901234.123456, 2.5, 'héllo', 'long text', X'00FF10',
		 '2024-02-29', '2024-02-29 13:14:15.123456', '2024-01-01 00:00:01', '-12:30:00', 2024, 'y', '{"a": [1, "b"]}'),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	testutil.ExpectRows(t, db, "SELECT ti, si, bi, d, f, vc, tx, HEX(bl), dt, dtm, ts, tm, y, e, j FROM types WHERE id = 1",
		`-128,65535,-9223372036854775808,12345678901234.123456,2.5,héllo,long text,00FF10,2024-02-29,2024-02-29 13:14:15.123456,2024-01-01 00:00:01,-12:30:00,2024,y,{"a": [1, "b"]}`)
	testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM types WHERE ti IS NULL AND j IS NULL", "1")
	testutil.ExpectRows(t, db, "SELECT id FROM types WHERE dt > '2024-01-01'", "1")
}

func TestLeafErrors(t *testing.T) {
	_, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(5) NOT NULL, UNIQUE KEY v_u (v))")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
	testutil.ExpectError(t, db, 1062, "23000", "INSERT INTO t VALUES (1, 'z')")
	testutil.ExpectError(t, db, 1062, "23000", "INSERT INTO t VALUES (3, 'a')")
	testutil.ExpectError(t, db, 1062, "23000", "UPDATE t SET id = 2 WHERE id = 1")
	testutil.ExpectError(t, db, 1146, "42S02", "SELECT * FROM missing")
	testutil.ExpectError(t, db, 1049, "42000", "USE nodb")
	testutil.ExpectError(t, db, 1064, "42000", "SELEC 1")
	testutil.ExpectError(t, db, 1054, "42S22", "SELECT nocol FROM t")
	testutil.ExpectError(t, db, 1048, "23000", "INSERT INTO t VALUES (4, NULL)")
	testutil.ExpectError(t, db, 1136, "21S01", "INSERT INTO t VALUES (4)")
	testutil.ExpectError(t, db, 1050, "42S01", "CREATE TABLE t (x INT)")
	testutil.ExpectError(t, db, 1007, "HY000", "CREATE DATABASE test")
	testutil.ExpectError(t, db, 1118, "42000", "CREATE TABLE wide (a VARCHAR(16000), b VARCHAR(16000))")
	testutil.ExpectError(t, db, 1118, "42000", "ALTER TABLE t ADD COLUMN a VARCHAR(16000), ADD COLUMN b VARCHAR(16000)")
	// a multi-row insert that fails leaves nothing behind
	testutil.ExpectError(t, db, 1062, "23000", "INSERT INTO t VALUES (10, 'x'), (11, 'y'), (1, 'w')")
	testutil.ExpectRows(t, db, "SELECT id, v FROM t ORDER BY id", "1,a", "2,b")
	_, err := db.Exec("INSERT INTO t VALUES (1, 'z')")
	if me := testutil.MySQLError(err); me == nil || !strings.Contains(me.Message, "Duplicate entry '1' for key 't.PRIMARY'") {
		t.Errorf("duplicate key message: %v", err)
	}
}

func TestLeafTransactions(t *testing.T) {
	_, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE acct (id INT PRIMARY KEY, bal INT NOT NULL)")
	testutil.Exec(t, db, "INSERT INTO acct VALUES (1, 100), (2, 100)")

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec("UPDATE acct SET bal = bal - 10 WHERE id = 1")
	tx.Exec("UPDATE acct SET bal = bal + 10 WHERE id = 2")
	testutil.ExpectRows(t, db, "SELECT bal FROM acct ORDER BY id", "100", "100") // not visible yet
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT bal FROM acct ORDER BY id", "90", "110")

	tx, _ = db.Begin()
	tx.Exec("DELETE FROM acct")
	tx.Exec("INSERT INTO acct VALUES (3, 1)")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT id, bal FROM acct ORDER BY id", "1,90", "2,110")

	// reading a view is not DDL: it neither commits the transaction nor
	// drops its savepoints (GMS marked it DDL, which commits); a real DDL
	// statement still commits what came before it
	testutil.Exec(t, db, "CREATE VIEW rich AS SELECT id FROM acct WHERE bal > 100")
	tx, _ = db.Begin()
	for _, q := range []string{
		"INSERT INTO acct VALUES (4, 500)",
		"SAVEPOINT s",
		"SELECT COUNT(*) FROM rich",
		"SHOW FIELDS FROM rich", // mariadb-dump --single-transaction
		"SHOW CREATE TABLE rich",
		"INSERT INTO acct SELECT id + 10, 1 FROM rich",
		"ROLLBACK TO SAVEPOINT s",
	} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT id FROM acct ORDER BY id", "1", "2")
	tx, _ = db.Begin()
	tx.Exec("INSERT INTO acct VALUES (5, 5)")
	tx.Exec("CREATE VIEW poor AS SELECT id FROM rich")
	tx.Rollback()
	testutil.ExpectRows(t, db, "SELECT id FROM acct ORDER BY id", "1", "2", "5")
}

// TestLeafConcurrentWriters: increments from many sessions are never lost,
// and transfers that conflict wait or fail with a MySQL error, keeping the
// total.
func TestLeafConcurrentWriters(t *testing.T) {
	_, db := newLeaf(t)
	db.SetMaxOpenConns(16)
	testutil.Exec(t, db, "CREATE TABLE counter (id INT PRIMARY KEY, v INT NOT NULL)")
	testutil.Exec(t, db, "INSERT INTO counter VALUES (1, 0)")
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				if _, err := db.Exec("UPDATE counter SET v = v + 1 WHERE id = 1"); err != nil {
					t.Errorf("increment: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testutil.ExpectRows(t, db, "SELECT v FROM counter", fmt.Sprint(workers*perWorker))

	// bank transfers in explicit transactions
	testutil.Exec(t, db, "CREATE TABLE bank (id INT PRIMARY KEY, bal INT NOT NULL)")
	const accounts = 10
	for i := 0; i < accounts; i++ {
		testutil.Exec(t, db, "INSERT INTO bank VALUES (?, 1000)", i)
	}
	var committed, retried atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < 30; i++ {
				from, to := r.Intn(accounts), r.Intn(accounts)
				if from == to {
					continue
				}
				amt := r.Intn(50) + 1
				for {
					err := transfer(db, from, to, amt)
					if err == nil {
						committed.Add(1)
						break
					}
					me := testutil.MySQLError(err)
					if me == nil || (me.Number != 1213 && me.Number != 1205) {
						t.Errorf("transfer: %v", err)
						return
					}
					retried.Add(1)
				}
			}
		}(int64(w))
	}
	wg.Wait()
	testutil.ExpectRows(t, db, "SELECT SUM(bal), COUNT(*) FROM bank", fmt.Sprintf("%d,%d", accounts*1000, accounts))
	t.Logf("transfers committed %d, retried after deadlock/timeout %d", committed.Load(), retried.Load())
}

func transfer(db *sql.DB, from, to, amt int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if _, err := tx.Exec("UPDATE bank SET bal = bal - ? WHERE id = ?", amt, from); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.Exec("UPDATE bank SET bal = bal + ? WHERE id = ?", amt, to); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func TestLeafRestartKeepsData(t *testing.T) {
	n, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT, KEY v_i (v(10)))")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
	testutil.Exec(t, db, "CREATE VIEW tv AS SELECT id FROM t WHERE id > 1")
	n.Stop()
	if code := n.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	n.Start()
	db = n.DB("test")
	testutil.ExpectRows(t, db, "SELECT id, v FROM t ORDER BY id", "1,one", "2,two")
	testutil.ExpectRows(t, db, "SELECT id FROM t WHERE v = 'two'", "2")
	testutil.ExpectRows(t, db, "SELECT * FROM tv", "2")
}

// TestLeafKill9LosesNoAcknowledgedWrite kills the node with SIGKILL while
// writers are inserting, and checks every acknowledged row after restart.
func TestLeafKill9LosesNoAcknowledgedWrite(t *testing.T) {
	n, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE acked (id BIGINT PRIMARY KEY, writer INT, payload VARCHAR(64))")
	db.SetMaxOpenConns(8)
	var mu sync.Mutex
	var acked []int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := int64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := int64(w)<<32 | i
				var err error
				if i%3 == 0 {
					// a two-statement transaction
					var tx *sql.Tx
					if tx, err = db.Begin(); err == nil {
						if _, err = tx.Exec("INSERT INTO acked VALUES (?, ?, 'tx')", id, w); err == nil {
							err = tx.Commit()
						} else {
							tx.Rollback()
						}
					}
				} else {
					_, err = db.Exec("INSERT INTO acked VALUES (?, ?, 'autocommit')", id, w)
				}
				if err != nil {
					return // the node is gone
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(700 * time.Millisecond)
	n.Kill()
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged before the kill; the test needs more", len(acked))
	}
	n.Start()
	db = n.DB("test")
	present := map[int64]bool{}
	rows, err := db.Query("SELECT id FROM acked")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		present[id] = true
	}
	rows.Close()
	missing := 0
	for _, id := range acked {
		if !present[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes missing after kill -9", missing, len(acked))
	}
	t.Logf("%d acknowledged writes, all present after kill -9 (%d rows stored)", len(acked), len(present))
}

// TestPartitionLogPositions: each committed write transaction advances the
// database's log position by one; reads and no-op writes do not; positions
// survive a restart.
func TestPartitionLogPositions(t *testing.T) {
	n, db := newLeaf(t)
	pos := func() (commits, lsn string) {
		t.Helper()
		for _, r := range testutil.Rows(t, db, "SHOW DATABASES EXTENDED") {
			f := strings.Split(r, ",")
			if f[0] == "test" {
				if f[2] != "master" || f[3] != "online" {
					t.Errorf("role/state = %s/%s", f[2], f[3])
				}
				return f[1], f[4]
			}
		}
		t.Fatal("no row for database test")
		return
	}
	c0, p0 := pos()
	if c0 != "0" || p0 != "0:0" {
		t.Errorf("fresh database at %s commits, position %s", c0, p0)
	}
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	want := 1
	check := func(what string) {
		t.Helper()
		c, p := pos()
		if c != fmt.Sprint(want) || p != fmt.Sprintf("0:%d", want) {
			t.Errorf("after %s: commits %s position %s, want %d and 0:%d", what, c, p, want, want)
		}
	}
	check("CREATE TABLE")
	testutil.Exec(t, db, "INSERT INTO t VALUES (1, 1)")
	want++
	check("INSERT")
	testutil.Exec(t, db, "INSERT INTO t VALUES (2, 2), (3, 3)")
	want++
	check("multi-row INSERT")
	tx, _ := db.Begin()
	tx.Exec("UPDATE t SET v = 10 WHERE id = 1")
	tx.Exec("DELETE FROM t WHERE id = 2")
	tx.Commit()
	want++
	check("two-statement transaction")
	testutil.Rows(t, db, "SELECT * FROM t")
	testutil.Exec(t, db, "UPDATE t SET v = 10 WHERE id = 1") // no change
	testutil.Exec(t, db, "UPDATE t SET v = 0 WHERE id = 99") // no row
	check("reads and no-op writes")
	tx, _ = db.Begin()
	tx.Exec("INSERT INTO t VALUES (9, 9)")
	tx.Rollback()
	check("rollback")
	n.Stop()
	n.Start()
	db = n.DB("test")
	check("restart")
	testutil.Exec(t, db, "INSERT INTO t VALUES (4, 4)")
	want++
	check("INSERT after restart")
}

func TestLeafMariadbClient(t *testing.T) {
	path, err := exec.LookPath("mariadb")
	if err != nil {
		t.Skip("mariadb client not installed (CI installs it)")
	}
	n := testutil.StartNode(t)
	out, err := exec.Command(path, "-h127.0.0.1", fmt.Sprintf("-P%d", n.Port), "-uroot", "--skip-ssl", "-e",
		"CREATE DATABASE m; USE m; CREATE TABLE x (id INT PRIMARY KEY); INSERT INTO x VALUES (7); SELECT id FROM x; SHOW DATABASES EXTENDED").CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "7") || !strings.Contains(string(out), "Position") {
		t.Errorf("unexpected mariadb output:\n%s", out)
	}
}

// TestLeafHashJoinKeys: hash joins whose key is a DECIMAL or a DATETIME
// (here the type of `y % 6` and of a DATE compared with a DATETIME) find
// every match; GMS alone lost them (internal/gmsfix).
func TestLeafHashJoinKeys(t *testing.T) {
	_, db := newLeaf(t)
	testutil.Exec(t, db, "CREATE TABLE a (id INT, g INT, day DATE)")
	testutil.Exec(t, db, "CREATE TABLE b (id INT PRIMARY KEY, y INT, at DATETIME)")
	testutil.Exec(t, db, "INSERT INTO a VALUES (1, 1, '2026-01-01'), (2, 2, '2026-01-02'), (3, 0, '2026-01-03'), (4, 1, NULL)")
	testutil.Exec(t, db, "INSERT INTO b VALUES (1, 7, '2026-01-01'), (2, 8, '2026-01-03'), (3, 13, '2026-01-03 00:00:01'), (4, 0, NULL), (5, 6, '2026-01-02')")
	for _, q := range []string{
		"EXPLAIN SELECT a.id, b.id FROM a JOIN b ON a.g = b.y % 6",
		"EXPLAIN SELECT a.id, b.id FROM a JOIN b ON a.day = b.at",
	} {
		plan, err := testutil.RenderRows(db, "", q)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(plan, "\n"), "HashLookup") {
			t.Fatalf("%s: expected a hash join, got\n%s", q, strings.Join(plan, "\n"))
		}
	}
	testutil.ExpectRows(t, db, "SELECT a.id, b.id FROM a JOIN b ON a.g = b.y % 6 ORDER BY a.id, b.id",
		"1,1", "1,3", "2,2", "3,4", "3,5", "4,1", "4,3")
	testutil.ExpectRows(t, db, "SELECT a.id, b.id FROM a JOIN b ON a.day = b.at ORDER BY a.id, b.id",
		"1,1", "2,5", "3,2")
}
