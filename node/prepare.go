package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/sqlcmd"
)

// Prepared statements (COM_STMT_PREPARE / COM_STMT_EXECUTE).
//
// vitess parses a statement to prepare before the handler sees it, to
// count its parameters, and answers a statement it cannot parse itself
// (1105 "unknown error"). So the node reads every COM_STMT_PREPARE first
// (prepareReader, under vitess' reader of the connection): one vitess
// cannot parse is set aside and vitess gets a stand-in that it parses, and
// whose prepare gives the set-aside text to prepare(). There the node
// answers as MySQL does (1064 and 1065 for what no grammar accepts, 1295
// for statements of its own that return rows) or prepares Canopy's DDL
// (CREATE TABLE … SHARD KEY, CREATE REFERENCE TABLE, CREATE DATABASE …
// PARTITIONS on an aggregator), which then runs as text.

var errNotPreparable = mysql.NewSQLError(1295, "HY000", "This command is not supported in the prepared statement protocol yet")

// unparsedStandIn is what vitess gets to prepare in place of a statement
// it cannot parse.
const unparsedStandIn = "SELECT 'canopy: statement set aside for the node to prepare'"

// ownPrepared are the statements of one connection that the node runs
// itself, by statement id. Only the connection's goroutine uses it.
type ownPrepared map[uint32]ownStatement

// ownStatement is a prepared statement the node runs: an EXPLAIN of a
// query (explain) with its parameters, or a statement run as text.
type ownStatement struct {
	text    string
	explain bool
}

// prepare answers COM_STMT_PREPARE.
func (h *handler) prepare(ctx context.Context, c *mysql.Conn, query string, prepare *mysql.PrepareData) ([]*querypb.Field, error) {
	if query == unparsedStandIn {
		if v, ok := h.n.unparsed.LoadAndDelete(c.ConnectionID); ok {
			return h.prepareUnparsed(c, v.(string), prepare)
		}
	}
	if err := h.n.checkSetGlobal(ctx, c, query); err != nil {
		return nil, err
	}
	if rewritten, err := rewriteStatement(query); err != nil || rewritten != query {
		if err != nil {
			return nil, err
		}
		return h.prepareRewritten(ctx, c, rewritten, prepare)
	}
	if stmt := accountStatement(query); stmt != nil {
		// account statements run as text, where the node adds what GMS lacks
		return nil, errNotPreparable
	}
	if cmd := sqlcmd.Parse(query); cmd != nil {
		ex, ok := cmd.(sqlcmd.Explain)
		if !ok {
			return nil, errNotPreparable // Canopy's own statements that return rows
		}
		return h.prepareExplain(ctx, c, ex, prepare)
	}
	return h.prepareSQL(ctx, c, query, prepare)
}

// prepareSQL prepares a statement in the engine.
func (h *handler) prepareSQL(ctx context.Context, c *mysql.Conn, query string, prepare *mysql.PrepareData) ([]*querypb.Field, error) {
	fields, err := h.Handler.ComPrepare(ctx, c, query, prepare)
	if agg := h.n.aggregator(); agg != nil && engineRefusesUpsert(err) {
		// the aggregator routes REPLACE and ON DUPLICATE KEY UPDATE of a
		// sharded table itself; the engine checks them on the definitions
		err = agg.PrepareOnDefinitions(c.ConnectionID, func() error {
			var err error
			fields, err = h.Handler.ComPrepare(ctx, c, query, prepare)
			return err
		})
	}
	return fields, translateError(err, h.currentDB(c))
}

// engineRefusesUpsert reports whether the engine refused a REPLACE or an
// ON DUPLICATE KEY UPDATE because the table takes plain inserts only.
func engineRefusesUpsert(err error) bool {
	se, ok := err.(*mysql.SQLError)
	if !ok {
		return false
	}
	return se.Message == plan.ErrReplaceIntoNotSupported.New().Error() ||
		se.Message == plan.ErrOnDuplicateKeyUpdateNotSupported.New().Error()
}

// prepareExplain prepares EXPLAIN of a query, which the node answers (one
// operator per row): vitess counts no parameters below an EXPLAIN, so the
// node counts them, and the query is checked as its own prepare would be.
func (h *handler) prepareExplain(ctx context.Context, c *mysql.Conn, ex sqlcmd.Explain, prepare *mysql.PrepareData) ([]*querypb.Field, error) {
	opts, err := h.Handler.ParserOptionsForConnection(c)
	if err != nil {
		return nil, err
	}
	stmt, err := ast.ParseWithOptions(ctx, ex.Query, opts)
	if err != nil {
		return nil, translateError(err, h.currentDB(c))
	}
	inner := &mysql.PrepareData{StatementID: prepare.StatementID, PrepareStmt: ex.Query}
	if _, err := h.prepareSQL(ctx, c, ex.Query, inner); err != nil {
		return nil, err
	}
	n := countParams(stmt)
	prepare.ParamsCount = n
	prepare.ParamsType = make([]int32, n)
	prepare.BindVars = make(map[string]*querypb.BindVariable, n)
	h.ownStatements(c)[prepare.StatementID] = ownStatement{text: ex.Query, explain: true}
	return []*querypb.Field{varcharField("EXPLAIN")}, nil
}

// prepareRewritten prepares a statement the node rewrote as it does the
// text one (rewriteStatement: `@x := expr`, SET NAMES … COLLATE): the
// engine and the aggregator see the rewritten text, and the parameters
// are counted in it (vitess counted none in a text it could not parse).
func (h *handler) prepareRewritten(ctx context.Context, c *mysql.Conn, rewritten string, prepare *mysql.PrepareData) ([]*querypb.Field, error) {
	opts, err := h.Handler.ParserOptionsForConnection(c)
	if err != nil {
		return nil, err
	}
	stmt, err := ast.ParseWithOptions(ctx, rewritten, opts)
	if err != nil {
		return nil, translateError(err, h.currentDB(c))
	}
	prepare.PrepareStmt = rewritten
	fields, err := h.prepareSQL(ctx, c, rewritten, prepare)
	if err != nil {
		return nil, err
	}
	n := countParams(stmt)
	prepare.ParamsCount = n
	prepare.ParamsType = make([]int32, n)
	prepare.BindVars = make(map[string]*querypb.BindVariable, n)
	return fields, nil
}

// countParams counts the parameters of a statement as vitess does.
func countParams(stmt ast.Statement) uint16 {
	var n uint16
	_ = ast.Walk(func(node ast.SQLNode) (bool, error) {
		if v, ok := node.(*ast.SQLVal); ok && strings.HasPrefix(string(v.Val), ":v") {
			n++
		}
		return true, nil
	}, stmt)
	return n
}

// prepareUnparsed answers the prepare of a statement vitess could not
// parse.
func (h *handler) prepareUnparsed(c *mysql.Conn, query string, prepare *mysql.PrepareData) ([]*querypb.Field, error) {
	prepare.PrepareStmt = query
	if strings.TrimSpace(strings.TrimRight(strings.TrimSpace(query), ";")) == "" {
		return nil, mysql.NewSQLError(mysql.EREmptyQuery, "42000", "Query was empty")
	}
	if h.n.aggregator() != nil && ownDDL(query) {
		h.ownStatements(c)[prepare.StatementID] = ownStatement{text: query}
		return nil, nil
	}
	if sqlcmd.Parse(query) != nil || sqlcmd.ParseClusterDDL(query) != nil {
		return nil, errNotPreparable
	}
	if rewritten, ok := sqlcmd.RewriteAssignments(query); ok {
		return h.prepareRewritten(context.Background(), c, rewritten, prepare)
	}
	opts, err := h.Handler.ParserOptionsForConnection(c)
	if err != nil {
		return nil, err
	}
	if _, err := ast.ParseWithOptions(context.Background(), query, opts); err != nil {
		return nil, translateError(err, h.currentDB(c))
	}
	// vitess refused it for holding several statements
	_, end, err := ast.ParseOneWithOptions(context.Background(), query, opts)
	if err != nil {
		return nil, translateError(err, h.currentDB(c))
	}
	return nil, mysql.NewSQLError(mysql.ERParseError, "42000",
		"You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '%s' at line 1",
		strings.TrimSpace(query[min(end, len(query)):]))
}

// ownDDL reports whether a statement is DDL of Canopy's grammar that an
// aggregator runs and answers without rows, so it can be prepared.
func ownDDL(query string) bool {
	if _, ok := sqlcmd.ParseCreateTable(query); ok {
		return true
	}
	_, ok := sqlcmd.ParseClusterDDL(query).(sqlcmd.CreateDatabase)
	return ok
}

// ownStatements are the node's own prepared statements of a connection,
// without those the client has closed.
func (h *handler) ownStatements(c *mysql.Conn) ownPrepared {
	v, ok := h.n.prepared.Load(c.ConnectionID)
	if !ok {
		v, _ = h.n.prepared.LoadOrStore(c.ConnectionID, ownPrepared{})
	}
	own := v.(ownPrepared)
	for id := range own {
		if _, open := c.PrepareData[id]; !open {
			delete(own, id)
		}
	}
	return own
}

// executeOwn runs an executed prepared statement that is the node's own;
// handled is false for any other.
func (h *handler) executeOwn(ctx context.Context, c *mysql.Conn, prepare *mysql.PrepareData, callback func(*sqltypes.Result) error) (handled bool, err error) {
	v, ok := h.n.prepared.Load(c.ConnectionID)
	if !ok {
		return false, nil
	}
	st, ok := v.(ownPrepared)[prepare.StatementID]
	if !ok {
		return false, nil
	}
	cb := func(res *sqltypes.Result, _ bool) error { return callback(res) }
	if !st.explain {
		_, err := h.run(ctx, c, st.text, "", cb)
		return true, err
	}
	query, ok := bindQuery(&mysql.PrepareData{PrepareStmt: st.text, BindVars: prepare.BindVars})
	if !ok {
		return true, mysql.NewSQLError(mysql.ERWrongArguments, "HY000", "Incorrect arguments to EXECUTE")
	}
	return true, h.command(ctx, c, "EXPLAIN "+query, sqlcmd.Explain{Query: query}, false, cb)
}

// forgetPrepared drops what the node kept of a connection's prepares.
func (n *Node) forgetPrepared(id uint32) {
	n.prepared.Delete(id)
	n.unparsed.Delete(id)
}

// prepareReader reads a client connection under vitess' buffered reader
// and sets aside each COM_STMT_PREPARE whose statement vitess cannot
// parse (see the top of this file). It follows the packets: a command is
// a packet with sequence number 0; anything else (continuations of long
// packets, LOAD DATA LOCAL contents, authentication) passes untouched.
type prepareReader struct {
	r      io.Reader
	n      *Node
	c      *mysql.Conn
	out    []byte // bytes to hand over before reading on
	remain int    // bytes of the current packet still to pass through
}

// watchPrepares puts a prepareReader under a logged-in connection's
// reader. The client sends nothing between its login and the server's
// answer, so no read-ahead is lost; a connection whose reader is not as
// expected is left alone.
func (n *Node) watchPrepares(c *mysql.Conn) {
	f := reflect.ValueOf(c).Elem().FieldByName("bufferedReader")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*bufio.Reader)(nil)) || f.IsNil() {
		return
	}
	br := (*bufio.Reader)(f.UnsafePointer())
	if br.Buffered() > 0 {
		return
	}
	// its own buffer: a packet's header and command byte are read ahead
	// of the rest, which must not cost a read of the socket each
	br.Reset(&prepareReader{r: bufio.NewReaderSize(c.Conn, 4096), n: n, c: c})
}

func (p *prepareReader) Read(b []byte) (int, error) {
	if len(p.out) > 0 {
		k := copy(b, p.out)
		p.out = p.out[k:]
		return k, nil
	}
	if p.remain > 0 {
		if len(b) > p.remain {
			b = b[:p.remain]
		}
		k, err := p.r.Read(b)
		p.remain -= k
		return k, err
	}
	var head [5]byte
	if _, err := io.ReadFull(p.r, head[:4]); err != nil {
		return 0, err
	}
	length := int(head[0]) | int(head[1])<<8 | int(head[2])<<16
	if head[3] != 0 || length == 0 || length >= mysql.MaxPacketSize {
		p.out, p.remain = head[:4], length
		return p.Read(b)
	}
	if _, err := io.ReadFull(p.r, head[4:]); err != nil {
		return 0, err
	}
	if head[4] != mysql.ComPrepare {
		p.out, p.remain = head[:], length-1
		return p.Read(b)
	}
	payload := make([]byte, 4+length)
	copy(payload, head[:])
	if _, err := io.ReadFull(p.r, payload[5:]); err != nil {
		return 0, err
	}
	if query := string(payload[5:]); !p.n.vitessParses(p.c, query) {
		p.n.unparsed.Store(p.c.ConnectionID, query)
		payload = append(payload[:5], unparsedStandIn...)
		k := len(payload) - 4
		payload[0], payload[1], payload[2] = byte(k), byte(k>>8), byte(k>>16)
	}
	p.out = payload
	return p.Read(b)
}

// vitessParses reports whether vitess accepts a statement to prepare: it
// parses as vitess parses it, one statement when the client may send
// several.
func (n *Node) vitessParses(c *mysql.Conn, query string) bool {
	opts, err := n.gms.ParserOptionsForConnection(c)
	if err != nil {
		return true // vitess fails the same way, and closes the connection
	}
	if !c.DisableClientMultiStatements && c.Capabilities&mysql.CapabilityClientMultiStatements != 0 {
		pieces, err := ast.SplitStatementToPieces(query)
		if err != nil || len(pieces) != 1 {
			return false
		}
	}
	_, err = ast.ParseWithOptions(context.Background(), query, opts)
	return err == nil
}

// binaryParamsAsText is an executed prepared statement as text when one
// of its parameters is a binary value that is not UTF-8 (ok false
// otherwise): GMS turns every parameter into a string literal, so such a
// value became utf8mb4 text and the statement failed ("invalid string for
// charset utf8mb4"), where MySQL reads the bytes. As text the value is a
// hex literal, which is binary.
func binaryParamsAsText(prepare *mysql.PrepareData) (string, bool) {
	found := false
	vars := make(map[string]*querypb.BindVariable, len(prepare.BindVars))
	for k, v := range prepare.BindVars {
		if v != nil && isBinaryParam(v.Type) && !utf8.Valid(v.Value) {
			v = &querypb.BindVariable{Type: querypb.Type_EXPRESSION, Value: []byte("X'" + hex.EncodeToString(v.Value) + "'")}
			found = true
		}
		vars[k] = v
	}
	if !found {
		return "", false
	}
	return bindQuery(&mysql.PrepareData{PrepareStmt: prepare.PrepareStmt, BindVars: vars})
}

func isBinaryParam(t querypb.Type) bool {
	switch t {
	case querypb.Type_VARBINARY, querypb.Type_BINARY, querypb.Type_BLOB:
		return true
	}
	return false
}
