package storage

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/cluster/meta"
)

// TestUnionOfPartitions runs queries over a set of partitions named at
// once (d#0,1,2) and over one database holding the same rows, and wants
// the same answers, in the same order where the query orders them: the
// union's index lookups must merge the partitions in index order, since
// GMS drops sorts an index provides.
func TestUnionOfPartitions(t *testing.T) {
	te := newTestEngine(t, "")
	p := NewProvider(te.store)
	p.Union = meta.PartitionSetOf
	te.e = sqle.NewDefault(p)
	ctx := te.session()
	def := "(id INT PRIMARY KEY, k INT, s VARCHAR(20), KEY kk (k))"
	te.must(ctx, "CREATE DATABASE d")
	te.must(ctx, "CREATE TABLE d.r (k INT PRIMARY KEY, name VARCHAR(20))")
	te.must(ctx, "CREATE DATABASE whole")
	te.must(ctx, "CREATE TABLE whole.t "+def)
	te.must(ctx, "CREATE TABLE whole.r (k INT PRIMARY KEY, name VARCHAR(20))")
	for part := 0; part < 3; part++ {
		te.must(ctx, fmt.Sprintf("CREATE DATABASE d_%d", part))
		te.must(ctx, fmt.Sprintf("CREATE TABLE d_%d.t %s", part, def))
	}
	for k := 0; k < 10; k++ {
		for _, db := range []string{"d", "whole"} {
			te.must(ctx, fmt.Sprintf("INSERT INTO %s.r VALUES (%d, 'name%d')", db, k, k))
		}
	}
	for id := 1; id <= 200; id++ {
		k := (id * 7) % 23
		s := fmt.Sprintf("'s%03d'", (id*13)%50)
		if id%17 == 0 {
			s = "NULL"
		}
		row := fmt.Sprintf("(%d, %d, %s)", id, k, s)
		te.must(ctx, fmt.Sprintf("INSERT INTO d_%d.t VALUES %s", id%3, row))
		te.must(ctx, "INSERT INTO whole.t VALUES "+row)
	}
	union := "`d#0,1,2`"
	for _, c := range []struct {
		query   string
		ordered bool
	}{
		{"SELECT * FROM %s.t", false},
		{"SELECT * FROM %s.t ORDER BY id", true},
		{"SELECT id, s FROM %s.t WHERE id BETWEEN 50 AND 120 ORDER BY id", true},
		{"SELECT id FROM %s.t WHERE id > 150 ORDER BY id DESC", true},
		{"SELECT id FROM %s.t ORDER BY id DESC LIMIT 7", true},
		{"SELECT k, id FROM %s.t WHERE k BETWEEN 3 AND 9 ORDER BY k, id", true},
		{"SELECT k, id FROM %s.t WHERE k > 15 ORDER BY k DESC, id DESC", true},
		{"SELECT k FROM %s.t ORDER BY k LIMIT 20", true},
		{"SELECT id FROM %s.t WHERE id IN (3, 4, 5, 99, 1000)", false},
		{"SELECT k, COUNT(*), SUM(id), MIN(s), MAX(s) FROM %s.t GROUP BY k", false},
		{"SELECT COUNT(*), SUM(k), AVG(id) FROM %s.t WHERE s IS NULL", false},
		{"SELECT DISTINCT s FROM %s.t ORDER BY s", true},
		{"SELECT t.id, r.name FROM %s.t JOIN %[1]s.r ON t.k = r.k WHERE t.id < 60", false},
		{"SELECT a.id, b.id FROM %s.t a JOIN %[1]s.t b ON a.id = b.id + 1 WHERE a.id < 40", false},
	} {
		want := te.must(ctx, fmt.Sprintf(c.query, "whole"))
		got := te.must(ctx, fmt.Sprintf(c.query, union))
		w, g := rowsString(want), rowsString(got)
		if !c.ordered {
			w, g = sortedRows(want), sortedRows(got)
		}
		if w != g {
			t.Errorf("%s:\n got %s\nwant %s", fmt.Sprintf(c.query, union), g, w)
		}
		if len(want) == 0 {
			t.Errorf("%s: no rows: the case tests nothing", c.query)
		}
	}

	// read-only
	if _, err := te.run(ctx, "INSERT INTO "+union+".t VALUES (1000, 1, 'x')"); err == nil {
		t.Error("an insert into a union of partitions succeeded")
	}
	// a partition missing here
	if _, err := te.run(ctx, "SELECT * FROM `d#0,7`.t"); err == nil {
		t.Error("a union naming a partition this node lacks answered")
	}
	// a table one partition lacks is not read as the copy's empty one
	te.must(ctx, "CREATE TABLE d_1.only1 (id INT PRIMARY KEY)")
	te.must(ctx, "INSERT INTO d_1.only1 VALUES (1)")
	te.must(ctx, "CREATE TABLE d.only1 (id INT PRIMARY KEY)")
	if rows, err := te.run(ctx, "SELECT * FROM "+union+".only1"); err == nil {
		t.Errorf("a table missing from a partition read as %v", rows)
	}
	// partitions whose tables differ refuse with 1412
	te.must(ctx, "ALTER TABLE d_1.t ADD COLUMN extra INT")
	_, err := te.run(ctx, "SELECT id FROM "+union+".t")
	var se *mysql.SQLError
	if !errors.As(err, &se) || se.Num != 1412 {
		t.Errorf("union over partitions of two shapes: %v, want error 1412", err)
	}
}

// sortedRows is rowsString of the rows in sorted order.
func sortedRows(rows []sql.Row) string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = rowsString([]sql.Row{r})
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
