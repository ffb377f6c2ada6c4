package node_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// describe renders a result's rows and column metadata.
func describe(t *testing.T, db *sql.DB, q string, args ...interface{}) string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ct := range cts {
		l, _ := ct.Length()
		p, s, _ := ct.DecimalSize()
		n, _ := ct.Nullable()
		fmt.Fprintf(&b, "%s:%s:%d:%d,%d:%v ", ct.Name(), ct.DatabaseTypeName(), l, p, s, n)
	}
	b.WriteString("|")
	vals := make([]sql.NullString, len(cts))
	ptrs := make([]interface{}, len(cts))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, v := range vals {
			if v.Valid {
				fmt.Fprintf(&b, " %q", v.String)
			} else {
				b.WriteString(" NULL")
			}
		}
		b.WriteString(";")
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return b.String()
}

// TestPointSelectFastPath checks that primary-key point selects answered
// without the SQL engine give exactly the engine's result (values and
// column metadata), and that the fast path really ran.
func TestPointSelectFastPath(t *testing.T) {
	n, db := newLeaf(t)
	testutil.Exec(t, db, `CREATE TABLE p (id BIGINT PRIMARY KEY, s VARCHAR(20), d DECIMAL(10,2), dt DATETIME(3),
		b BLOB, f DOUBLE, u INT UNSIGNED, k INT NOT NULL DEFAULT 7, e ENUM('x','y'), j JSON, ts TIMESTAMP NULL)`)
	testutil.Exec(t, db, `INSERT INTO p VALUES (1, 'one', 1.50, '2026-11-23 10:00:00.123', x'00ff', 2.5, 40000, 3, 'y', '{"a": 1}', '2026-01-02 03:04:05'),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL), (-5, 'neg', -1, NULL, '', -0.0, 0, 1, 'x', '[]', NULL)`)
	testutil.Exec(t, db, "CREATE TABLE c (a INT, b VARCHAR(10) COLLATE utf8mb4_0900_ai_ci, v INT, PRIMARY KEY (a, b))")
	testutil.Exec(t, db, "INSERT INTO c VALUES (1, 'abc', 10), (1, 'abd', 11), (2, 'abc', 20)")

	fast := []string{
		"SELECT * FROM p WHERE id = 1",
		"SELECT * FROM p WHERE id = 2",
		"SELECT * FROM p WHERE id = -5",
		"SELECT s, d, dt FROM p WHERE id = 2",
		"SELECT * FROM p WHERE id = 99",
		"select P.s, P.k from p as P where P.id = 1",
		"SELECT id FROM p WHERE id = 1 LIMIT 0",
		"SELECT id FROM p WHERE id = 1 LIMIT 5",
		"SELECT * FROM test.p WHERE 1 = id",
		"SELECT * FROM c WHERE a = 1 AND b = 'ABC'",
		"SELECT v FROM c WHERE b = 'abd' AND a = 1",
		"SELECT v FROM c WHERE b = 'abc ' AND a = 2",
	}
	before := n.Metric("canopy_point_selects_total")
	for _, q := range fast {
		got := describe(t, db, q)
		// the same query with a term the fast path does not take
		slow := strings.Replace(strings.Replace(q, "WHERE ", "WHERE 1 = 1 AND ", 1), "where ", "where 1 = 1 and ", 1)
		want := describe(t, db, slow)
		if got != want {
			t.Errorf("%s:\n fast   %s\n engine %s", q, got, want)
		}
	}
	// prepared statements take it too
	if got, want := describe(t, db, "SELECT s, u FROM p WHERE id = ?", 1), describe(t, db, "SELECT s, u FROM p WHERE id = ? AND 1 = 1", 1); got != want {
		t.Errorf("prepared:\n fast   %s\n engine %s", got, want)
	}
	if ran := n.Metric("canopy_point_selects_total") - before; ran != float64(len(fast)+1) {
		t.Errorf("fast path ran %v times, want %d", ran, len(fast)+1)
	}

	// Inside a transaction the engine answers, and sees the transaction's writes.
	before = n.Metric("canopy_point_selects_total")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("UPDATE p SET s = 'changed' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := tx.QueryRow("SELECT s FROM p WHERE id = 1").Scan(&s); err != nil || s != "changed" {
		t.Fatalf("read own write in transaction: %q, %v", s, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectRows(t, db, "SELECT s FROM p WHERE id = 1", "one")
	// literals of another type compare as MySQL does: through the engine
	testutil.ExpectRows(t, db, "SELECT s FROM p WHERE id = '1'", "one")
	testutil.ExpectRows(t, db, "SELECT s FROM p WHERE id = 1.0", "one")
	if ran := n.Metric("canopy_point_selects_total") - before; ran != 1 {
		t.Errorf("fast path ran %v times, want 1 (the read after ROLLBACK)", ran)
	}
}
