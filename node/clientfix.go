package node

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// What clients see of the server: its name and version, the metadata of
// result columns, SET NAMES, the process list.

// serverVersion is the version in the handshake and in @@version: a MySQL
// 8 version clients parse (major.minor.patch, then a suffix, as
// distributions' "8.0.31-0ubuntu…").
const serverVersion = "8.0.31-canopy"

// setServerIdentity makes @@version the handshake's version and
// @@version_comment Canopy's (GMS says "Dolt", which clients print in
// their banner).
func setServerIdentity() {
	global := sql.GetMysqlScope(sql.SystemVariableScope_Global)
	sql.SystemVariables.AddSystemVariables([]sql.SystemVariable{
		&sql.MysqlSystemVariable{Name: "version", Scope: global, Type: types.NewSystemStringType("version"), Default: serverVersion},
		&sql.MysqlSystemVariable{Name: "version_comment", Scope: global, Type: types.NewSystemStringType("version_comment"), Default: "Canopy"},
		&sql.MysqlSystemVariable{Name: storage.FoundRowsVar, Scope: sql.GetMysqlScope(sql.SystemVariableScope_Session),
			Dynamic: true, Type: types.NewSystemBoolType(storage.FoundRowsVar), Default: int8(0)},
	})
}

// fixFields gives result columns the character set and flags MySQL sends:
// numbers, dates and times, JSON and geometry are binary (63; GMS sends the
// connection's), JSON, geometry and BLOB/TEXT carry BLOB_FLAG, binary
// strings, temporal values and JSON BINARY_FLAG (GMS sends none of these
// flags). Drivers read them: a JSON column with flags 0 and charset 255
// is text to some, a number with a text charset is a string to others.
// The fields are copied when changed: a cached result's fields are shared.
func fixFields(fields []*querypb.Field) []*querypb.Field {
	var out []*querypb.Field
	for i, f := range fields {
		charset, flags := f.Charset, f.Flags
		const blob, binary = uint32(querypb.MySqlFlag_BLOB_FLAG), uint32(querypb.MySqlFlag_BINARY_FLAG)
		switch t := f.Type; {
		case sqltypes.IsIntegral(t) || sqltypes.IsFloat(t) || t == querypb.Type_DECIMAL || t == querypb.Type_YEAR || t == querypb.Type_BIT:
			charset = 63
		case t == querypb.Type_DATE || t == querypb.Type_DATETIME || t == querypb.Type_TIMESTAMP || t == querypb.Type_TIME:
			charset, flags = 63, flags|binary
		case t == querypb.Type_JSON || t == querypb.Type_GEOMETRY:
			charset, flags = 63, flags|blob|binary
		case t == querypb.Type_BLOB:
			flags |= blob | binary
		case t == querypb.Type_TEXT:
			flags |= blob
		case t == querypb.Type_VARBINARY || t == querypb.Type_BINARY:
			flags |= binary
		}
		if charset == f.Charset && flags == f.Flags {
			continue
		}
		if out == nil {
			out = append([]*querypb.Field(nil), fields...)
		}
		out[i] = &querypb.Field{
			Name: f.Name, Type: f.Type, Table: f.Table, OrgTable: f.OrgTable, Database: f.Database,
			OrgName: f.OrgName, ColumnLength: f.ColumnLength, Charset: charset, Decimals: f.Decimals,
			Flags: flags,
		}
	}
	if out == nil {
		return fields
	}
	return out
}

// fixingFields wraps a result callback with fixFields.
func fixingFields(callback mysql.ResultSpoolFn) mysql.ResultSpoolFn {
	return func(res *sqltypes.Result, more bool) error {
		if res != nil && len(res.Fields) > 0 {
			if fixed := fixFields(res.Fields); &fixed[0] != &res.Fields[0] {
				r := *res
				r.Fields = fixed
				res = &r
			}
		}
		return callback(res, more)
	}
}

var setNamesRe = regexp.MustCompile("(?is)^\\s*SET\\s+NAMES\\s+('[^']*'|\"[^\"]*\"|`[^`]*`|[a-z0-9_]+)" +
	"(?:\\s+COLLATE\\s+('[^']*'|\"[^\"]*\"|`[^`]*`|[a-z0-9_]+))?\\s*$")

// rewriteSetNames completes SET NAMES, whose COLLATE the parser drops and
// whose collation GMS leaves as it was: MySQL sets collation_connection to
// the named collation, or the character set's default.
func rewriteSetNames(query string) (string, error) {
	m := setNamesRe.FindStringSubmatch(query)
	if m == nil {
		return query, nil
	}
	unquote := func(s string) string {
		if len(s) >= 2 && strings.ContainsRune("'\"`", rune(s[0])) {
			return s[1 : len(s)-1]
		}
		return s
	}
	csName := unquote(m[1])
	if strings.EqualFold(csName, "DEFAULT") {
		return query, nil
	}
	cs, err := sql.ParseCharacterSet(csName)
	if err != nil {
		return query, nil // GMS reports the unknown character set
	}
	coll := cs.DefaultCollation()
	if m[2] != "" {
		name := unquote(m[2])
		c, err := sql.ParseCollation("", name, false)
		if err != nil {
			return "", mysql.NewSQLError(1273, "HY000", "Unknown collation: '%s'", name)
		}
		if c.CharacterSet() != cs {
			return "", mysql.NewSQLError(1253, "42000", "COLLATION '%s' is not valid for CHARACTER SET '%s'", c.Name(), cs.Name())
		}
		coll = c
	}
	return fmt.Sprintf("SET NAMES %s, collation_connection = '%s'", cs.Name(), coll.Name()), nil
}

// rewriteStatement makes what GMS cannot parse or gets wrong into what it
// runs as MySQL would: SET NAMES … COLLATE, `@x := expr` outside SET.
func rewriteStatement(query string) (string, error) {
	if q, ok := sqlcmd.RewriteAssignments(query); ok {
		return q, nil
	}
	return rewriteSetNames(query)
}

// processList is GMS's, with what MySQL shows: a connection's user and
// database (GMS registers both only when a connection names a database),
// and no plan text (GMS puts its progress tree, NUL bytes and all, in
// State).
type processList struct {
	sql.ProcessList
	n     *Node
	addrs sync.Map // connection id → the client's host:port
}

func (p *processList) AddConnection(id uint32, addr string) {
	p.addrs.Store(id, addr)
	p.ProcessList.AddConnection(id, addr)
}

func (p *processList) RemoveConnection(id uint32) {
	p.addrs.Delete(id)
	p.ProcessList.RemoveConnection(id)
}

func (p *processList) Processes() []sql.Process {
	procs := p.ProcessList.Processes()
	for i := range procs {
		pr := &procs[i]
		pr.Progress = nil
		if a, ok := p.addrs.Load(pr.Connection); ok {
			pr.Host = a.(string) // GMS puts the account's host there once ready
		}
		if s := p.n.session(pr.Connection); s != nil {
			if pr.Command == sql.ProcessCommandConnect {
				pr.Command = sql.ProcessCommandSleep // authenticated
			}
			pr.User = s.Client().User
			if pr.Database == "" {
				pr.Database = s.GetCurrentDatabase()
			}
		}
	}
	return procs
}

var showProcessListRe = regexp.MustCompile(`(?is)^\s*SHOW\s+(FULL\s+)?PROCESSLIST\s*;?\s*$`)

// showProcessList answers SHOW [FULL] PROCESSLIST as MySQL 8 does: State
// is "executing" for a running statement ("init" for this one), empty for
// an idle connection; Info is cut at 100 characters without FULL; a user
// without PROCESS sees only their own connections.
func (n *Node) showProcessList(ctx context.Context, c *mysql.Conn, query string) (*sqltypes.Result, bool) {
	m := showProcessListRe.FindStringSubmatch(query)
	if m == nil {
		return nil, false
	}
	full := m[1] != ""
	all := n.hasPrivilege(ctx, c, sql.PrivilegeType_Process, sql.PrivilegeType_Super)
	var me string
	if s := n.session(c.ConnectionID); s != nil {
		me = s.Client().User
	}
	procs := n.engine.ProcessList.Processes()
	sort.Slice(procs, func(i, j int) bool { return procs[i].Connection < procs[j].Connection })
	infoLen := uint32(100)
	if full {
		infoLen = 65535
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{
		{Name: "Id", Type: querypb.Type_UINT64, Charset: 63, ColumnLength: 21, Flags: uint32(querypb.MySqlFlag_NOT_NULL_FLAG | querypb.MySqlFlag_UNSIGNED_FLAG)},
		{Name: "User", Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: 32 * 3},
		{Name: "Host", Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: 261 * 3},
		{Name: "db", Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: 64 * 3},
		{Name: "Command", Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: 16 * 3},
		{Name: "Time", Type: querypb.Type_INT32, Charset: 63, ColumnLength: 7},
		{Name: "State", Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: 30 * 3},
		{Name: "Info", Type: querypb.Type_VARCHAR, Charset: 33, ColumnLength: infoLen * 3},
	}}
	now := time.Now()
	for _, p := range procs {
		if !all && p.User != me {
			continue
		}
		state, info := "", sqltypes.NULL
		if p.Connection == c.ConnectionID {
			// this statement, which GMS does not see
			p.Command, p.Query, p.StartedAt = sql.ProcessCommandQuery, query, now
		}
		command := string(p.Command)
		if p.Command == sql.ProcessCommandQuery {
			state = "executing"
			if p.Connection == c.ConnectionID {
				state = "init"
			}
			q := p.Query
			if !full && len([]rune(q)) > 100 {
				q = string([]rune(q)[:100])
			}
			info = sqltypes.NewVarChar(q)
		}
		db := sqltypes.NULL
		if p.Database != "" {
			db = sqltypes.NewVarChar(p.Database)
		}
		res.Rows = append(res.Rows, []sqltypes.Value{
			sqltypes.NewUint64(uint64(p.Connection)), strValue(p.User), strValue(p.Host), db,
			strValue(command), sqltypes.NewInt32(int32(now.Sub(p.StartedAt).Seconds())),
			strValue(state), info,
		})
	}
	return res, true
}

// trackStatement enters a statement the aggregator answers itself (GMS
// never sees it) in the process list, as GMS enters its own, so that SHOW
// PROCESSLIST shows it and KILL QUERY finds it. The context it returns
// ends only when the statement is killed (GMS ends its own at the end of
// every statement, which would kill the leaf connections a transaction
// keeps), and the pool then kills the statement's work on the leaves
// (pool.Killable). done takes the statement out again.
func (n *Node) trackStatement(ctx context.Context, c *mysql.Conn, query string) (_ context.Context, done func()) {
	sctx, err := n.sqlContext(ctx, c)
	if err != nil {
		return ctx, func() {}
	}
	pctx, err := n.engine.ProcessList.BeginQuery(sctx, query)
	if err != nil {
		return ctx, func() {}
	}
	stmt, kill := context.WithCancel(pool.Killable(context.WithoutCancel(ctx)))
	stop := context.AfterFunc(pctx, kill)
	return stmt, func() {
		stop()
		n.engine.ProcessList.EndQuery(pctx)
	}
}
