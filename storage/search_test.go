package storage

import (
	"fmt"
	"strings"
	"testing"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/cluster/meta"
)

// TestInListLookup: long IN lists on an index's leading column are read
// as one point range per distinct value (inListLookup), and a lone
// BETWEEN as its range (boundsLookup); both answer as the same query over
// an unindexed copy does: repeated values, values equal under a
// case-insensitive collation, a composite index, the primary key, values
// no row has, ORDER BY the index, and a union of partitions.
func TestInListLookup(t *testing.T) {
	te := newTestEngine(t, "")
	p := NewProvider(te.store)
	p.Union = meta.PartitionSetOf
	te.e = sqle.NewDefault(p)
	ctx := te.session()
	cols := "id INT PRIMARY KEY, k INT, s VARCHAR(20) COLLATE utf8mb4_general_ci, a INT, b INT, u TINYINT UNSIGNED"
	te.must(ctx, "CREATE DATABASE plain")
	te.must(ctx, "CREATE TABLE plain.t ("+cols+")")
	for _, db := range []string{"d_0", "d_1", "whole"} {
		te.must(ctx, "CREATE DATABASE "+db)
		te.must(ctx, fmt.Sprintf("CREATE TABLE %s.t (%s, KEY (k), KEY (s), KEY (a, b), KEY (u))", db, cols))
	}
	for id := 1; id <= 400; id++ {
		row := fmt.Sprintf("(%d, %d, '%s%d', %d, %d, %d)", id, id%53, []string{"ab", "AB", "Ab"}[id%3], id%11, id%4, id%5, (id*37)%256)
		te.must(ctx, "INSERT INTO plain.t VALUES "+row)
		te.must(ctx, "INSERT INTO whole.t VALUES "+row)
		te.must(ctx, fmt.Sprintf("INSERT INTO d_%d.t VALUES %s", id%2, row))
	}
	var ints, strs []string
	for i := 0; i < 40; i++ {
		ints = append(ints, fmt.Sprint((i*7)%60)) // repeats, and values past 52 that no row has
		strs = append(strs, fmt.Sprintf("'%s%d'", []string{"ab", "AB", "aB", "zz"}[i%4], i%13))
	}
	in := func(vals []string) string { return strings.Join(vals, ", ") }
	for _, c := range []struct {
		query   string
		ordered bool
	}{
		{"SELECT id, k FROM %s.t WHERE k IN (" + in(ints) + ")", false},
		{"SELECT k, id FROM %s.t WHERE k IN (" + in(ints) + ") ORDER BY k, id", true},
		{"SELECT k FROM %s.t WHERE k IN (" + in(ints) + ") ORDER BY k DESC", true},
		{"SELECT id, s FROM %s.t WHERE s IN (" + in(strs) + ")", false},
		{"SELECT id FROM %s.t WHERE a IN (" + in(ints) + ") AND b > 1", false},
		{"SELECT id FROM %s.t WHERE id IN (" + in(ints) + ") AND k < 30", false},
		{"SELECT COUNT(*), SUM(id) FROM %s.t WHERE k IN (" + in(ints) + ")", false},
		{"SELECT id, k FROM %s.t WHERE id BETWEEN 50 AND 120", false},
		{"SELECT id FROM %s.t WHERE id BETWEEN 50 AND 120 ORDER BY id DESC", true},
		{"SELECT k, id FROM %s.t WHERE k BETWEEN 3 AND 9 ORDER BY k, id", true},
		{"SELECT id, s FROM %s.t WHERE s BETWEEN 'AB1' AND 'ab5'", false},
		{"SELECT id FROM %s.t WHERE id BETWEEN 120 AND 50", false},
		{"SELECT id FROM %s.t WHERE b BETWEEN 1 AND 2", false},
		// values the column cannot hold: the conditions stay to be checked
		{"SELECT id, u FROM %s.t WHERE u IN (-1, 0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 255, 256, 300, -300)", false},
		{"SELECT id FROM %s.t WHERE id BETWEEN -5000000000 AND 7", false},
		{"SELECT id FROM %s.t WHERE id BETWEEN 390 AND 5000000000", false},
		{"SELECT id FROM %s.t WHERE id >= 3000000000", false},
		{"SELECT id FROM %s.t WHERE id <= -1", false},
		{"SELECT id FROM %s.t WHERE id > 395", false},
		{"SELECT id FROM %s.t WHERE id < 4", false},
	} {
		want := te.must(ctx, fmt.Sprintf(c.query, "plain"))
		for _, db := range []string{"whole", "`d#0,1`"} {
			q := fmt.Sprintf(c.query, db)
			got := te.must(ctx, q)
			w, g := rowsString(want), rowsString(got)
			if !c.ordered {
				w, g = sortedRows(want), sortedRows(got)
			}
			if w != g {
				t.Errorf("%s:\n got %s\nwant %s", q, g, w)
			}
		}
	}

	// the lookup itself: one range per distinct value, in order
	db, err := p.Database(ctx, "d_0")
	if err != nil {
		t.Fatal(err)
	}
	tbl, _, err := db.GetTableInsensitive(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	s := tbl.(*Table).Schema()
	col := expression.NewGetFieldWithTable(1, 0, s[2].Type, "d_0", "t", "s", true)
	var lits []sql.Expression
	for _, v := range []string{"b", "a", "A", "c", "B", "a", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"} {
		lits = append(lits, expression.NewLiteral(v, types.LongText))
	}
	hin, err := expression.NewHashInTuple(ctx, col, expression.NewTuple(lits...))
	if err != nil {
		t.Fatal(err)
	}
	lookup, _, filter, ok, err := tbl.(*Table).LookupForExpressions(ctx, hin)
	if err != nil || !ok {
		t.Fatalf("LookupForExpressions(%s) = %v, %v", hin, ok, err)
	}
	if lookup.Index.ID() != "s" || filter == nil {
		t.Errorf("lookup on index %s, filter %v; want index s and the IN kept as the filter", lookup.Index.ID(), filter)
	}
	ranges := lookup.Ranges.(sql.MySQLRangeCollection)
	var got []string
	for _, r := range ranges {
		got = append(got, fmt.Sprint(r[0].LowerBound.(sql.Below).Key))
	}
	if want := "a b c d e f g h i j k l m n"; strings.ToLower(strings.Join(got, " ")) != want {
		t.Errorf("ranges %v, want one per value under the collation, in order: %s", got, want)
	}
	idcol := expression.NewGetFieldWithTable(0, 0, s[0].Type, "d_0", "t", "id", false)
	// BETWEEN, as GMS hands it over
	lo := expression.NewGreaterThanOrEqual(idcol, expression.NewLiteral(int8(5), types.Int8))
	hi := expression.NewLessThanOrEqual(idcol, expression.NewLiteral(int64(9), types.Int64))
	if lookup, _, _, ok, err := tbl.(*Table).LookupForExpressions(ctx, lo, hi); err != nil || !ok || lookup.Index.ID() != "PRIMARY" || lookup.Ranges.Len() != 1 {
		t.Errorf("LookupForExpressions(%s, %s) = %v on %v, %v", lo, hi, ok, lookup.Index, err)
	}
	if _, _, _, ok, _ := tbl.(*Table).LookupForExpressions(ctx, lo, expression.NewLessThan(bcol0(s), expression.NewLiteral(int64(1), types.Int64))); ok {
		t.Errorf("bounds on two columns were taken over")
	}
	// fewer values, or a column no index leads with: GMS costs it
	if _, _, _, ok, _ := tbl.(*Table).LookupForExpressions(ctx, expression.NewInTuple(col, expression.NewTuple(lits[:3]...))); ok {
		t.Errorf("a 3-value IN list was taken over")
	}
	bcol := expression.NewGetFieldWithTable(4, 0, s[4].Type, "d_0", "t", "b", true)
	var nums []sql.Expression
	for i := 0; i < 20; i++ {
		nums = append(nums, expression.NewLiteral(int64(i), types.Int64))
	}
	if _, _, _, ok, _ := tbl.(*Table).LookupForExpressions(ctx, expression.NewInTuple(bcol, expression.NewTuple(nums...))); ok {
		t.Errorf("an IN list on b, the second column of KEY (a, b), was taken over")
	}
	// strings against an integer column compare as numbers: not taken over
	kcol := expression.NewGetFieldWithTable(1, 0, s[1].Type, "d_0", "t", "k", true)
	if _, _, _, ok, _ := tbl.(*Table).LookupForExpressions(ctx, expression.NewInTuple(kcol, expression.NewTuple(lits...))); ok {
		t.Errorf("an IN list of strings on an integer column was taken over")
	}
}

func bcol0(s sql.Schema) sql.Expression {
	return expression.NewGetFieldWithTable(4, 0, s[4].Type, "d_0", "t", "b", true)
}
