// Package planner decides how an aggregator runs a statement: on one
// partition, split across partitions, on every partition, on the
// aggregator over rows gathered from every partition, or on the aggregator
// alone. It is a pure function of the statement, the cluster metadata and
// the table schemas; the executors in package aggregator carry the plans
// out, and golden tests pin them.
package planner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sharding"
)

// Kind is the shape of a plan.
type Kind int

const (
	// Local: no sharded table is involved; the aggregator's own engine
	// answers (reference tables, information_schema, SET, SHOW, …).
	Local Kind = iota
	// Routed: everything the statement needs is on one partition.
	Routed
	// InsertSplit: an INSERT whose rows go to several partitions.
	InsertSplit
	// Broadcast: a DML statement run on every partition.
	Broadcast
	// Gather: the aggregator's engine runs the statement over the rows of
	// the sharded tables, fetched from every partition in parallel.
	Gather
	// ReferenceWrite: a write to reference tables, run by the master
	// aggregator and copied to every node.
	ReferenceWrite
	// DDL: a schema change, run by the master aggregator on every node.
	DDL
)

var kindNames = [...]string{"local", "routed", "insert split", "broadcast", "gather", "reference write", "ddl"}

func (k Kind) String() string { return kindNames[k] }

// Plan says how to run one statement.
type Plan struct {
	Kind     Kind
	Database string  // the distributed database involved
	Routes   []Route // Routed, InsertSplit, Broadcast: the SQL each partition runs
	Reason   string  // why a statement is Local or Gather
	// InsertID is the first AUTO_INCREMENT value the aggregator generated.
	InsertID uint64
	// SetsInsertID: the statement sets the session's LAST_INSERT_ID()
	// with LAST_INSERT_ID(expr); the executor reads the value back.
	SetsInsertID bool
	// Bound: the statement's session-dependent expressions were replaced
	// by their values (see session.go); where the client's text would run
	// in another session, the statement runs as ast.String(Stmt).
	Bound bool
	// ColumnNames are names of result columns whose expressions were
	// replaced by values, as the client wrote them (the partition names
	// them after the value), by position: i ≥ 0 from the first column,
	// i < 0 from the end (-1: the last), for columns after a *.
	ColumnNames map[int]string
	// StatementTime: the leaves fill columns from the clock (expression
	// defaults such as CURRENT_TIMESTAMP, ON UPDATE CURRENT_TIMESTAMP) on
	// several partitions, or next to values the aggregator bound: they
	// must all take the statement's time, so that a statement has one
	// NOW() on every partition.
	StatementTime bool
}

// Route is the statement one partition runs.
type Route struct {
	Partition int
	SQL       string
}

// Catalog is what the planner knows of the cluster.
type Catalog interface {
	// Database returns a distributed database's metadata, or nil.
	Database(name string) *meta.Database
	// Schema returns a table's columns, or nil if the table is unknown.
	Schema(db, table string) sql.Schema
}

// Input is one statement to plan.
type Input struct {
	Stmt      ast.Statement
	CurrentDB string
	Catalog   Catalog
	// NextAutoIncrement hands out AUTO_INCREMENT values for sharded
	// tables; an error (a value that cannot be reserved) fails the
	// statement.
	NextAutoIncrement func(db, table string) (uint64, error)
	// Spread picks the partition of a row of a table without shard key.
	Spread func(partitions int) int
	// Session evaluates what the statement reads from the client's
	// session (see session.go). Without one, a SELECT that reads it is
	// left to the aggregator's engine (Gather) and a write is refused.
	Session Session

	// template, when set, plans a statement whose shard key values are
	// bind variables (see MakeTemplate).
	template *Template
	// setsInsertID: the statement assigns LAST_INSERT_ID(expr)
	setsInsertID bool
	// bound: session-dependent expressions were replaced by values
	bound bool
	// columnNames: see Plan.ColumnNames
	columnNames map[int]string
}

// Error is a planning error with the MySQL error number to report.
type Error struct {
	Num int
	Msg string
}

func (e *Error) Error() string { return e.Msg }

func errorf(num int, format string, args ...interface{}) error {
	return &Error{Num: num, Msg: fmt.Sprintf(format, args...)}
}

// MySQL error numbers the planner reports.
const (
	ErNotSupported = 1235 // ER_NOT_SUPPORTED_YET
	ErNoDB         = 1046
)

// tableRef is one table the statement names.
type tableRef struct {
	db, name string
	alias    string
	dist     *meta.Database // nil outside distributed databases
	table    *meta.Table    // nil for views and unknown names
}

func (r *tableRef) sharded() bool   { return r.table != nil && !r.table.Reference }
func (r *tableRef) reference() bool { return r.table != nil && r.table.Reference }

// Make plans one statement.
func Make(in Input) (*Plan, error) {
	if p, done, err := bindSession(&in); done {
		return p, err
	}
	p, err := makePlan(in)
	if err != nil {
		return nil, err
	}
	if in.setsInsertID {
		markSetsInsertID(p)
	}
	p.Bound, p.ColumnNames = in.bound, in.columnNames
	return p, nil
}

func makePlan(in Input) (*Plan, error) {
	switch s := in.Stmt.(type) {
	case *ast.Select, *ast.SetOp, *ast.ParenSelect:
		return planSelect(in, s.(ast.SelectStatement))
	case *ast.Insert:
		return planInsert(in, s)
	case *ast.Update:
		return planUpdate(in, s)
	case *ast.Delete:
		return planDelete(in, s)
	case *ast.DDL, *ast.DBDDL, *ast.AlterTable:
		return &Plan{Kind: DDL}, nil
	}
	return &Plan{Kind: Local, Reason: "no table data"}, nil
}

// TableName is a table a statement names, with its database.
type TableName struct {
	DB, Name string
	// DBListed: the database is a distributed database of the metadata
	// (and the table is not one of its tables)
	DBListed bool
}

// Unlisted lists the names a statement reads or writes that the metadata
// does not hold as tables of a distributed database: views, tables and
// databases created after the metadata the catalog was made from, names
// of this node's own databases, and names that do not exist. Common
// table expressions are not names of tables.
func Unlisted(in Input) []TableName {
	rs, _ := refs(in, in.Stmt)
	ctes := cteNames(in.Stmt)
	var out []TableName
	for _, r := range rs {
		if r.table == nil && r.db != "" && !ctes[strings.ToLower(r.name)] {
			out = append(out, TableName{DB: r.db, Name: r.name, DBListed: r.dist != nil})
		}
	}
	return out
}

// Databases lists the databases of the tables a statement names (the
// current one for unqualified names).
func Databases(in Input) []string {
	rs, _ := refs(in, in.Stmt)
	var out []string
	for _, r := range rs {
		out = append(out, r.db)
	}
	return out
}

// cteNames collects the names of a statement's common table expressions,
// including those of a UNION's WITH, which the parser's walk skips.
func cteNames(stmt ast.SQLNode) map[string]bool {
	names := map[string]bool{}
	var visit ast.Visit
	visit = func(n ast.SQLNode) (bool, error) {
		switch n := n.(type) {
		case *ast.CommonTableExpr:
			names[strings.ToLower(n.As.String())] = true
		case *ast.SetOp:
			if n.With != nil {
				for _, c := range n.With.Ctes {
					ast.Walk(visit, c)
				}
			}
		}
		return true, nil
	}
	ast.Walk(visit, stmt)
	return names
}

// refs collects the tables of a statement (FROM, JOIN, subqueries, DML
// targets) in order of appearance.
func refs(in Input, node ast.SQLNode) ([]*tableRef, error) {
	var out []*tableRef
	add := func(tn ast.TableName, alias string) {
		r := &tableRef{db: tn.DbQualifier.String(), name: tn.Name.String(), alias: alias}
		if r.db == "" {
			r.db = in.CurrentDB
		}
		if r.alias == "" {
			r.alias = r.name
		}
		if r.dist = in.Catalog.Database(r.db); r.dist != nil {
			r.table = r.dist.Table(r.name)
		}
		out = append(out, r)
	}
	ctes := map[string]bool{}
	err := ast.Walk(func(n ast.SQLNode) (bool, error) {
		switch n := n.(type) {
		case *ast.CommonTableExpr:
			ctes[strings.ToLower(n.As.String())] = true
		case *ast.AliasedTableExpr:
			if tn, ok := n.Expr.(ast.TableName); ok && !(tn.DbQualifier.IsEmpty() && ctes[strings.ToLower(tn.Name.String())]) {
				add(tn, n.As.String())
			}
		case *ast.Insert:
			add(n.Table, "")
		}
		return true, nil
	}, node)
	return out, err
}

type census struct {
	sharded, reference, other int
	db                        *meta.Database
	multiDB                   bool
	views                     bool // names in a distributed database that are not its tables
	noDB                      bool
}

func count(rs []*tableRef) census {
	var c census
	for _, r := range rs {
		switch {
		case r.db == "":
			c.noDB = true
		case r.sharded():
			c.sharded++
		case r.reference():
			c.reference++
		case r.dist != nil:
			c.views = true
		default:
			c.other++
		}
		if r.dist != nil {
			if c.db != nil && c.db != r.dist {
				c.multiDB = true
			}
			c.db = r.dist
		}
	}
	return c
}

func dbName(d *meta.Database) string {
	if d == nil {
		return ""
	}
	return d.Name
}

func planSelect(in Input, s ast.SelectStatement) (*Plan, error) {
	rs, err := refs(in, s)
	if err != nil {
		return nil, err
	}
	c := count(rs)
	if c.sharded == 0 && !c.views {
		return &Plan{Kind: Local, Database: dbName(c.db), Reason: "no sharded table"}, nil
	}
	if c.sharded == 1 && !c.views && !c.multiDB {
		if sel, ok := s.(*ast.Select); ok {
			if r := shardedRef(rs); r != nil && inFrom(sel, r) {
				if p, ok, err := routeBy(in, r, sel.Where, rs); err != nil {
					return nil, err
				} else if ok {
					return routed(in, s, r.dist, p)
				}
			}
		}
	}
	reason := "sharded tables without a single-partition filter"
	if c.views {
		reason = "views over distributed tables"
	}
	return &Plan{Kind: Gather, Database: dbName(c.db), Reason: reason}, nil
}

func shardedRef(rs []*tableRef) *tableRef {
	for _, r := range rs {
		if r.sharded() {
			return r
		}
	}
	return nil
}

// inFrom reports whether r is named in the top-level FROM of sel (not only
// in a subquery).
func inFrom(sel *ast.Select, r *tableRef) bool {
	found := false
	ast.Walk(func(n ast.SQLNode) (bool, error) {
		switch n := n.(type) {
		case *ast.Subquery:
			return false, nil
		case *ast.AliasedTableExpr:
			if tn, ok := n.Expr.(ast.TableName); ok && strings.EqualFold(tn.Name.String(), r.name) {
				found = true
			}
		}
		return true, nil
	}, sel.From)
	return found
}

// routeBy finds the partition a WHERE clause pins r to: equality with a
// constant on every shard key column, among the top-level AND terms.
func routeBy(in Input, r *tableRef, where *ast.Where, all []*tableRef) (int, bool, error) {
	if where == nil || len(r.table.ShardKey) == 0 {
		return 0, false, nil
	}
	schema := in.Catalog.Schema(r.db, r.name)
	if schema == nil {
		return 0, false, nil
	}
	exprs := make([]ast.Expr, len(r.table.ShardKey))
	for _, term := range conjuncts(where.Expr) {
		col, lit, ok := columnEqualsValue(term, in.template != nil)
		if !ok || !refersTo(col, r, schema, all, in) {
			continue
		}
		for i, k := range r.table.ShardKey {
			if strings.EqualFold(k, col.Name.String()) && exprs[i] == nil {
				exprs[i] = lit
			}
		}
	}
	for _, e := range exprs {
		if e == nil {
			return 0, false, nil
		}
	}
	key, ok := shardKey(schema, r.table.ShardKey)
	if !ok {
		return 0, false, nil
	}
	if in.template != nil {
		return in.template.bind(r.dist, key, exprs)
	}
	vals := make([]interface{}, len(exprs))
	for i, e := range exprs {
		v, err := literal(e)
		if err != nil {
			return 0, false, nil
		}
		vals[i] = v
	}
	for i, v := range vals {
		if v == nil || !literalFits(v, key.Types[i]) {
			return 0, false, nil // NULL matches nothing; mixed types compare as MySQL does, not by hash
		}
	}
	p, err := key.Partition(vals, len(r.dist.Partitions))
	if err != nil {
		return 0, false, nil
	}
	return p, true, nil
}

// Conjuncts splits an expression into its top-level AND terms.
func Conjuncts(e ast.Expr) []ast.Expr { return conjuncts(e) }

func conjuncts(e ast.Expr) []ast.Expr {
	switch e := e.(type) {
	case *ast.AndExpr:
		return append(conjuncts(e.Left), conjuncts(e.Right)...)
	case *ast.ParenExpr:
		return conjuncts(e.Expr)
	}
	return []ast.Expr{e}
}

// columnEqualsValue matches col = value, value = col, and col IN (value),
// where value is a literal, or also a bind variable when args is set.
func columnEqualsValue(e ast.Expr, args bool) (*ast.ColName, ast.Expr, bool) {
	cmp, ok := e.(*ast.ComparisonExpr)
	if !ok {
		return nil, nil, false
	}
	isValue := func(e ast.Expr) bool { return isLiteral(e) || args && isArg(e) }
	switch cmp.Operator {
	case ast.EqualStr:
		if c, ok := cmp.Left.(*ast.ColName); ok && isValue(cmp.Right) {
			return c, cmp.Right, true
		}
		if c, ok := cmp.Right.(*ast.ColName); ok && isValue(cmp.Left) {
			return c, cmp.Left, true
		}
	case ast.InStr:
		if t, ok := cmp.Right.(ast.ValTuple); ok && len(t) == 1 && isValue(t[0]) {
			if c, ok := cmp.Left.(*ast.ColName); ok {
				return c, t[0], true
			}
		}
	}
	return nil, nil, false
}

// refersTo reports whether a column reference means a column of r.
func refersTo(col *ast.ColName, r *tableRef, schema sql.Schema, all []*tableRef, in Input) bool {
	q := col.Qualifier
	if !q.IsEmpty() {
		if !q.DbQualifier.IsEmpty() && !strings.EqualFold(q.DbQualifier.String(), r.db) {
			return false
		}
		return strings.EqualFold(q.Name.String(), r.alias)
	}
	if schema.IndexOfColName(col.Name.String()) < 0 {
		return false
	}
	for _, o := range all { // an unqualified name must not be ambiguous
		if o == r {
			continue
		}
		if s := in.Catalog.Schema(o.db, o.name); s != nil && s.IndexOfColName(col.Name.String()) >= 0 {
			return false
		}
	}
	return true
}

func isLiteral(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SQLVal:
		return e.Type == ast.StrVal || e.Type == ast.IntVal || e.Type == ast.FloatVal
	case *ast.NullVal:
		return true
	case *ast.UnaryExpr:
		if e.Operator == ast.UMinusStr {
			v, ok := e.Expr.(*ast.SQLVal)
			return ok && (v.Type == ast.IntVal || v.Type == ast.FloatVal)
		}
	}
	return false
}

// literal is the Go value of a literal expression.
func literal(e ast.Expr) (interface{}, error) {
	switch e := e.(type) {
	case *ast.NullVal:
		return nil, nil
	case *ast.UnaryExpr:
		v, err := literal(e.Expr)
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case int64:
			return -x, nil
		case uint64:
			if x <= 1<<63 {
				return -int64(x), nil
			}
		case float64:
			return -x, nil
		}
		return nil, errors.New("planner: bad negative literal")
	case *ast.SQLVal:
		s := string(e.Val)
		switch e.Type {
		case ast.StrVal:
			return s, nil
		case ast.IntVal:
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, nil
			}
			return strconv.ParseUint(s, 10, 64)
		case ast.FloatVal:
			return strconv.ParseFloat(s, 64)
		}
	}
	return nil, errors.New("planner: not a literal")
}

// literalFits reports whether hashing v as the column type gives the
// partition MySQL's comparison would find the row in: numbers for numeric
// columns, strings for string columns.
func literalFits(v interface{}, t sql.Type) bool {
	_, isString := v.(string)
	switch {
	case sqlIsNumber(t):
		return !isString || isIntegerString(v.(string))
	case sqlIsString(t):
		return isString
	}
	return isString // dates and the like: compared as their string forms
}

func isIntegerString(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

func shardKey(schema sql.Schema, cols []string) (sharding.Key, bool) {
	types := make([]sql.Type, len(cols))
	for i, c := range cols {
		idx := schema.IndexOfColName(c)
		if idx < 0 {
			return sharding.Key{}, false
		}
		types[i] = schema[idx].Type
	}
	return sharding.NewKey(types), true
}

// rewrite renames the distributed database in table references: sharded
// tables to the partition database, everything else in it to the
// database itself (on a leaf the reference tables live under their own
// name).
func rewrite(node ast.SQLNode, in Input, d *meta.Database, partition int) {
	part := meta.PartitionName(d.Name, partition)
	target := func(tn ast.TableName) ast.TableName {
		db := tn.DbQualifier.String()
		if db == "" {
			db = in.CurrentDB
		}
		if !strings.EqualFold(db, d.Name) {
			return tn
		}
		t := d.Table(tn.Name.String())
		if t != nil && !t.Reference {
			tn.DbQualifier = ast.NewTableIdent(part)
		} else {
			tn.DbQualifier = ast.NewTableIdent(d.Name)
		}
		return tn
	}
	ctes := map[string]bool{}
	ast.Walk(func(n ast.SQLNode) (bool, error) {
		switch n := n.(type) {
		case *ast.CommonTableExpr:
			ctes[strings.ToLower(n.As.String())] = true
		case *ast.AliasedTableExpr:
			if tn, ok := n.Expr.(ast.TableName); ok && !(tn.DbQualifier.IsEmpty() && ctes[strings.ToLower(tn.Name.String())]) {
				n.Expr = target(tn)
			}
		case *ast.Insert:
			n.Table = target(n.Table)
		case *ast.ColName:
			if !n.Qualifier.DbQualifier.IsEmpty() {
				n.Qualifier = target(n.Qualifier)
			}
		}
		return true, nil
	}, node)
}

func routed(in Input, s ast.SQLNode, d *meta.Database, p int) (*Plan, error) {
	rewrite(s, in, d, p)
	return &Plan{Kind: Routed, Database: d.Name, Routes: []Route{{Partition: p, SQL: ast.String(s)}}}, nil
}

func broadcast(in Input, parse func() ast.SQLNode, d *meta.Database) *Plan {
	pl := &Plan{Kind: Broadcast, Database: d.Name}
	for p := range d.Partitions {
		s := parse()
		rewrite(s, in, d, p)
		pl.Routes = append(pl.Routes, Route{Partition: p, SQL: ast.String(s)})
	}
	return pl
}

// clone re-parses a statement so that each partition can rewrite its own.
func clone(s ast.Statement) func() ast.SQLNode {
	text := ast.String(s)
	return func() ast.SQLNode {
		c, err := ast.Parse(text)
		if err != nil {
			panic(fmt.Sprintf("planner: re-parse %q: %v", text, err))
		}
		return c
	}
}
