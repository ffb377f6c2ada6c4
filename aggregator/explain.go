package aggregator

import (
	"context"
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/aggregator/planner"
	"github.com/canopydb/canopy/cluster/meta"
)

// Explain shows how the cluster runs a statement: which partitions get
// which SQL, and what the aggregator does with the results. analyze plans
// a statement in this node's engine for the client.
func (a *Aggregator) Explain(ctx context.Context, c *mysql.Conn, query string, analyze func(string) (sql.Node, error)) (*sqltypes.Result, error) {
	var lines []string
	add := func(format string, args ...interface{}) { lines = append(lines, fmt.Sprintf(format, args...)) }
	addPlan := func(indent string, n sql.Node) {
		for _, l := range strings.Split(strings.TrimRight(n.String(), "\n"), "\n") {
			lines = append(lines, indent+l)
		}
	}
	stmt, err := ast.Parse(query)
	if err != nil {
		return nil, mysql.NewSQLError(1064, "42000", "You have an error in your SQL syntax; %v", err)
	}
	if err := a.authorize(ctx, c, stmt); err != nil {
		return nil, err // a plan shows what a statement reads
	}
	st := a.State()
	p, err := planner.Make(planner.Input{
		Stmt: stmt, CurrentDB: a.currentDB(c.ConnectionID), Catalog: catalog{a, st},
		NextAutoIncrement: func(string, string) (uint64, error) { return 0, nil }, // EXPLAIN draws no values
		Spread:            func(int) int { return 0 },
		Session:           a.sessionEval(ctx, c), // the partitions' SQL shows the values
	})
	if err != nil {
		return nil, sqlError(err)
	}
	switch p.Kind {
	case planner.Routed:
		r := p.Routes[0]
		leaf, err := routeLeaf(st, p.Database, r.Partition)
		if err != nil {
			return nil, err
		}
		add("Gather partitions:single partition:%d leaf:%s", r.Partition, leaf)
		add("  Partition SQL: %s", r.SQL)
		if lp, err := a.LeafPool(leaf); err == nil {
			if res, err := lp.Exec(ctx, "EXPLAIN "+r.SQL, 1000); err == nil {
				add("  Leaf plan:")
				for _, row := range res.Rows {
					add("    %s", row[0].ToString())
				}
			}
		}
	case planner.InsertSplit:
		var parts []string
		for _, r := range p.Routes {
			parts = append(parts, fmt.Sprint(r.Partition))
		}
		add("Insert partitions:%s (rows split by shard key)", strings.Join(parts, ","))
		for _, r := range p.Routes {
			leaf, _ := routeLeaf(st, p.Database, r.Partition)
			add("  Partition %d on %s: %s", r.Partition, leaf, r.SQL)
		}
	case planner.Broadcast:
		add("Broadcast partitions:all (%d)", len(p.Routes))
		add("  Partition SQL: %s", strings.ReplaceAll(p.Routes[0].SQL, meta.PartitionName(p.Database, 0), p.Database+"_<N>"))
	case planner.Gather:
		n, err := analyze(query)
		if err != nil {
			return nil, err
		}
		add("Gather partitions:all (%s)", p.Reason)
		eachRemote(n, func(r remoteWork) {
			for _, l := range r.explain() {
				add("  %s", l)
			}
		})
		add("Aggregator:")
		addPlan("  ", n)
	case planner.ReferenceWrite:
		add("Reference write: the master aggregator runs it and copies it to every node")
		if n, err := analyze(query); err == nil {
			addPlan("  ", n)
		}
	case planner.DDL:
		add("Schema change: the master aggregator runs it on every partition and copies the definition to every node")
	default:
		add("Local (%s): the aggregator runs it", p.Reason)
		if n, err := analyze(query); err == nil {
			addPlan("  ", n)
		}
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{field("EXPLAIN", querypb.Type_VARCHAR)}}
	for _, l := range lines {
		res.Rows = append(res.Rows, []sqltypes.Value{str(l)})
	}
	return res, nil
}

// remoteWork is a part of a plan that leaves run; explain says what each
// runs, partition names written as db_<N>.
type remoteWork interface {
	explain() []string
}

// eachRemote calls f for every part of a plan that leaves run,
// subqueries included.
func eachRemote(n sql.Node, f func(remoteWork)) {
	transform.Inspect(n, func(n sql.Node) bool {
		if r, ok := n.(remoteWork); ok {
			f(r)
		}
		if rt, ok := n.(*plan.ResolvedTable); ok {
			if dt, ok := rt.UnderlyingTable().(*DistTable); ok {
				f(dt)
			}
		}
		if ex, ok := n.(sql.Expressioner); ok {
			for _, e := range ex.Expressions() {
				transform.InspectExpr(e, func(e sql.Expression) bool {
					if sq, ok := e.(*plan.Subquery); ok && sq.Query != nil {
						eachRemote(sq.Query, f)
					}
					return false
				})
			}
		}
		return true
	})
}
