package planner

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"
	"github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
)

// testCatalog: database test with 8 partitions on two leaves, and a local
// database other.
type testCatalog struct {
	dbs     map[string]*meta.Database
	schemas map[string]sql.Schema
}

func varchar(n int64) sql.Type {
	return types.MustCreateString(query.Type_VARCHAR, n, sql.Collation_Default)
}

func newCatalog() *testCatalog {
	d := &meta.Database{Name: "test", Tables: map[string]*meta.Table{
		"t":   {Name: "t", ShardKey: []string{"id"}},
		"u":   {Name: "u", ShardKey: []string{"a", "b"}},
		"k":   {Name: "k"},
		"ai":  {Name: "ai", ShardKey: []string{"id"}, AutoIncrement: "id"},
		"ref": {Name: "ref", Reference: true},
	}}
	for i := 0; i < 8; i++ {
		d.Partitions = append(d.Partitions, meta.Partition{Ordinal: i, Master: fmt.Sprintf("leaf%d:3306", i%2)})
	}
	col := func(name string, t sql.Type) *sql.Column { return &sql.Column{Name: name, Type: t, Nullable: true} }
	return &testCatalog{
		dbs: map[string]*meta.Database{"test": d},
		schemas: map[string]sql.Schema{
			"test.t":   {col("id", types.Int64), col("v", varchar(20))},
			"test.u":   {col("a", types.Int32), col("b", varchar(10)), col("c", types.Int64)},
			"test.k":   {col("x", types.Int64), col("y", types.Int64)},
			"test.ai":  {col("id", types.Int64), col("name", varchar(20))},
			"test.ref": {col("id", types.Int64), col("label", varchar(20))},
		},
	}
}

func (c *testCatalog) Database(name string) *meta.Database { return c.dbs[strings.ToLower(name)] }
func (c *testCatalog) Schema(db, table string) sql.Schema {
	return c.schemas[strings.ToLower(db+"."+table)]
}

func TestPlans(t *testing.T) {
	datadriven.RunTest(t, "testdata/plans", func(t *testing.T, d *datadriven.TestData) string {
		cat := newCatalog()
		db := "test"
		for _, arg := range d.CmdArgs {
			if arg.Key == "db" {
				db = arg.Vals[0]
			}
		}
		stmt, err := ast.Parse(d.Input)
		if err != nil {
			return "parse error: " + err.Error() + "\n"
		}
		if d.Cmd == "template" {
			return planTemplate(cat, db, stmt, d)
		}
		auto, spread := uint64(0), 0
		p, err := Make(Input{
			Stmt: stmt, CurrentDB: db, Catalog: cat,
			NextAutoIncrement: func(string, string) (uint64, error) { auto++; return auto, nil },
			Spread:            func(n int) int { spread++; return (spread * 3) % n },
		})
		if err != nil {
			if e, ok := err.(*Error); ok {
				return fmt.Sprintf("error %d: %s\n", e.Num, e.Msg)
			}
			return "error: " + err.Error() + "\n"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s", p.Kind)
		if p.Database != "" {
			fmt.Fprintf(&b, " db=%s", p.Database)
		}
		if p.Reason != "" {
			fmt.Fprintf(&b, " (%s)", p.Reason)
		}
		if p.InsertID != 0 {
			fmt.Fprintf(&b, " insert_id=%d", p.InsertID)
		}
		b.WriteString("\n")
		for _, r := range p.Routes {
			fmt.Fprintf(&b, "  %d: %s\n", r.Partition, r.SQL)
		}
		return b.String()
	})
}

// planTemplate plans a statement with ? placeholders once, then routes it
// for each args=(…) value list (quoted values are strings, NULL is NULL).
func planTemplate(cat *testCatalog, db string, stmt ast.Statement, d *datadriven.TestData) string {
	tpl, ok := MakeTemplate(Input{Stmt: stmt, CurrentDB: db, Catalog: cat})
	if !ok {
		return "no template\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "template db=%s partitions=%d\n", tpl.Database, tpl.Partitions())
	for _, arg := range d.CmdArgs {
		if arg.Key != "args" {
			continue
		}
		vars := map[string]*query.BindVariable{}
		for i, v := range arg.Vals {
			name := fmt.Sprintf("v%d", i+1)
			switch {
			case v == "NULL":
				vars[name] = sqltypes.NullBindVariable
			case strings.HasPrefix(v, "'"):
				vars[name] = sqltypes.StringBindVariable(strings.Trim(v, "'"))
			default:
				var n int64
				fmt.Sscan(v, &n)
				vars[name] = sqltypes.Int64BindVariable(n)
			}
		}
		if p, q, ok := tpl.Route(vars); ok {
			fmt.Fprintf(&b, "  %v → %d: %s\n", arg.Vals, p, q)
		} else {
			fmt.Fprintf(&b, "  %v → general planner\n", arg.Vals)
		}
	}
	return b.String()
}

// BenchmarkTemplateRoute is the planning an aggregator does per routed
// point query once its template is cached: hash the key, fill the SQL.
func BenchmarkTemplateRoute(b *testing.B) {
	stmt, err := ast.Parse("SELECT c FROM t WHERE id = ?")
	if err != nil {
		b.Fatal(err)
	}
	tpl, ok := MakeTemplate(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog()})
	if !ok {
		b.Fatal("no template")
	}
	vars := map[string]*query.BindVariable{"v1": sqltypes.Int64BindVariable(0)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		vars["v1"] = sqltypes.Int64BindVariable(int64(i))
		if _, _, ok := tpl.Route(vars); !ok {
			b.Fatal("not routed")
		}
	}
}

// BenchmarkMakePointSelect is the general planner on the same statement
// with a literal, for comparison (what every execution paid before).
func BenchmarkMakePointSelect(b *testing.B) {
	cat := newCatalog()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		stmt, err := ast.Parse(fmt.Sprintf("SELECT c FROM t WHERE id = %d", i))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Make(Input{Stmt: stmt, CurrentDB: "test", Catalog: cat}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnlisted: the names a statement uses that the metadata does not hold
// as tables of a distributed database; tables, CTEs (also a UNION's WITH
// and a DML's WITH) and statements without a database are not among them.
func TestUnlisted(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"SELECT * FROM t JOIN ref ON t.id = ref.id", ""},
		{"SELECT * FROM t JOIN newer ON t.id = newer.id", "test.newer(listed db)"},
		{"INSERT INTO newer VALUES (1)", "test.newer(listed db)"},
		{"SELECT * FROM other.x, missing.y", "other.x missing.y"},
		{"WITH c AS (SELECT id FROM t) SELECT * FROM c", ""},
		{"WITH c AS (SELECT id FROM t) SELECT id FROM c UNION SELECT id FROM c", ""},
		{"WITH c AS (SELECT id FROM t) UPDATE t SET v = 'x' WHERE id IN (SELECT id FROM c)", ""},
		{"SELECT 1", ""},
		{"SELECT * FROM information_schema.tables", "information_schema.tables"},
	} {
		stmt, err := ast.Parse(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		var got []string
		for _, n := range Unlisted(Input{Stmt: stmt, CurrentDB: "test", Catalog: newCatalog()}) {
			s := n.DB + "." + n.Name
			if n.DBListed {
				s += "(listed db)"
			}
			got = append(got, s)
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("Unlisted(%s) = %q, want %q", c.sql, g, c.want)
		}
	}
}
