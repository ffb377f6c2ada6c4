package node

import (
	"context"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/mysql_db"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/internal/failpoint"
	"github.com/canopydb/canopy/internal/linkauth"
	"github.com/canopydb/canopy/internal/privilege"
	"github.com/canopydb/canopy/sqlcmd"
)

// What the node knows of a client connection beyond GMS's session: whether
// it is a cluster link (another node that proved it knows the cluster
// secret), and the state of its challenge.

type connInfo struct {
	mu sync.Mutex
	// linkSecret is the secret the connection proved, nil if none: it is a
	// link while the node still has that secret (not after it left the
	// cluster, or joined another)
	linkSecret []byte
	nonce      []byte           // the last CANOPY CHALLENGE's
	key        *ecdh.PrivateKey // the last CANOPY CHALLENGE's ephemeral key
	// original is a link's own client while it impersonates another
	original *sql.Client
}

func (n *Node) connInfo(c *mysql.Conn) *connInfo {
	v, _ := n.conns.LoadOrStore(c.ConnectionID, &connInfo{})
	return v.(*connInfo)
}

// isLinkID reports whether a connection is a cluster link, and not acting
// as a client (impersonating).
func (n *Node) isLinkID(id uint32) bool {
	v, ok := n.conns.Load(id)
	if !ok {
		return false
	}
	ci := v.(*connInfo)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return ci.original == nil && n.provedSecret(ci)
}

func (n *Node) isLink(c *mysql.Conn) bool { return n.isLinkID(c.ConnectionID) }

// provedSecret reports whether the connection proved the node's current
// secret (ci.mu held).
func (n *Node) provedSecret(ci *connInfo) bool {
	s := n.clusterSecret()
	return s != nil && ci.linkSecret != nil && hmac.Equal(s, ci.linkSecret)
}

// connUser is the account a connection logged in as.
func connUser(c *mysql.Conn) (user, host string) {
	if u, ok := c.UserData.(sql.MysqlConnectionUser); ok {
		return u.User, u.Host
	}
	return c.User, ""
}

// sqlContext is a context with the connection's GMS session (made now if
// the connection has run nothing yet).
func (n *Node) sqlContext(ctx context.Context, c *mysql.Conn) (*sql.Context, error) {
	return n.server.SessionManager().NewContextWithQuery(ctx, c, "")
}

// hasPrivilege reports whether the connection's user holds one of the
// global privileges.
func (n *Node) hasPrivilege(ctx context.Context, c *mysql.Conn, privs ...sql.PrivilegeType) bool {
	sctx, err := n.sqlContext(ctx, c)
	if err != nil {
		return false
	}
	db := n.mysqlDb()
	for _, p := range privs {
		if db.UserHasPrivileges(sctx, sql.NewPrivilegedOperation(sql.PrivilegeCheckSubject{}, p)) {
			return true
		}
	}
	return false
}

func (n *Node) mysqlDb() *mysql_db.MySQLDb { return n.engine.Analyzer.Catalog.MySQLDb }

// authorizeCommand decides whether a connection may run one of Canopy's
// own statements (sqlcmd.AccessOf).
func (n *Node) authorizeCommand(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Command) error {
	switch sqlcmd.AccessOf(cmd) {
	case sqlcmd.AccessChecked:
		return nil
	case sqlcmd.AccessProcess:
		if n.isLink(c) || n.hasPrivilege(ctx, c, sql.PrivilegeType_Super, sql.PrivilegeType_Process) {
			return nil
		}
		return privilege.Denied("PROCESS")
	case sqlcmd.AccessSuper:
		if n.isLink(c) || n.hasPrivilege(ctx, c, sql.PrivilegeType_Super) {
			return nil
		}
		return privilege.Denied("SUPER")
	case sqlcmd.AccessLinkRead:
		if n.isLink(c) || n.hasPrivilege(ctx, c, sql.PrivilegeType_Super, sql.PrivilegeType_Process) {
			return nil
		}
		return privilege.Denied("PROCESS")
	}
	if n.isLink(c) {
		return nil
	}
	if _, ok := cmd.(sqlcmd.Impersonate); ok {
		ci := n.connInfo(c)
		ci.mu.Lock()
		link := n.provedSecret(ci)
		ci.mu.Unlock()
		if link {
			return nil // a link acting as a client goes back to itself
		}
	}
	if (n.clusterSecret() == nil || failpoint.Enabled("client-internal-access")) && n.hasPrivilege(ctx, c, sql.PrivilegeType_Super) {
		return nil // a node in no cluster: its SUPER users manage it (ADD LEAF arrives so)
	}
	return mysql.NewSQLError(mysql.ERSpecifiedAccessDenied, "42000",
		"Access denied: this node belongs to a cluster, and its CANOPY commands are for the cluster's own nodes; use the cluster statements on an aggregator")
}

// challenge answers CANOPY CHALLENGE: the node's cluster, a nonce (none
// when the node is in no cluster) and an ephemeral public key for this
// connection.
func (n *Node) challenge(c *mysql.Conn) (*sqltypes.Result, error) {
	m, err := n.membership()
	if err != nil {
		return nil, err
	}
	key, err := linkauth.NewKey()
	if err != nil {
		return nil, err
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("Cluster_ID"), varcharField("Nonce"), varcharField("Key")}}
	ci := n.connInfo(c)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	ci.key = key
	ci.nonce = nil
	nonce := sqltypes.NULL
	if n.clusterSecret() != nil {
		ci.nonce = make([]byte, 32)
		rand.Read(ci.nonce)
		nonce = strValue(hex.EncodeToString(ci.nonce))
	}
	res.Rows = [][]sqltypes.Value{{strValue(m.ClusterID), nonce, strValue(hex.EncodeToString(key.PublicKey().Bytes()))}}
	return res, nil
}

// authenticate answers CANOPY AUTHENTICATE: a right proof makes the
// connection a cluster link, and the node proves itself in turn. A nonce
// is good for one attempt; proofs are bound to the TLS session.
func (n *Node) authenticate(c *mysql.Conn, cmd sqlcmd.Authenticate) (*sqltypes.Result, error) {
	ci := n.connInfo(c)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	nonce := ci.nonce
	ci.nonce = nil
	secret := n.clusterSecret()
	theirs, err1 := hex.DecodeString(cmd.Nonce)
	proof, err2 := hex.DecodeString(cmd.Proof)
	binding := linkauth.Binding(c.Conn)
	if secret == nil || nonce == nil || err1 != nil || err2 != nil || len(theirs) < 16 ||
		!hmac.Equal(proof, linkauth.Proof(secret, linkauth.Dialer, nonce, theirs, binding)) {
		return nil, mysql.NewSQLError(mysql.ERAccessDeniedError, mysql.SSAccessDeniedError,
			"Access denied: not a node of this node's cluster (CANOPY CHALLENGE first, then prove the cluster secret)")
	}
	ci.linkSecret = secret
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("Proof")}}
	res.Rows = [][]sqltypes.Value{{strValue(hex.EncodeToString(linkauth.Proof(secret, linkauth.Answerer, nonce, theirs, binding)))}}
	return res, nil
}

// joinSecret opens the cluster secret a JOIN sent sealed for this
// connection's ephemeral key.
func (n *Node) joinSecret(c *mysql.Conn, cmd sqlcmd.JoinCluster) (string, error) {
	ci := n.connInfo(c)
	ci.mu.Lock()
	key := ci.key
	ci.mu.Unlock()
	pub, err1 := hex.DecodeString(cmd.Key)
	sealed, err2 := hex.DecodeString(cmd.Secret)
	if key == nil || err1 != nil || err2 != nil {
		return "", mysql.NewSQLError(1105, "HY000", "CANOPY JOIN CLUSTER needs the cluster secret, sealed for this connection's CANOPY CHALLENGE key")
	}
	secret, err := linkauth.Open(key, pub, sealed)
	if err != nil {
		return "", mysql.NewSQLError(1105, "HY000", "CANOPY JOIN CLUSTER: the sealed secret does not open: %v", err)
	}
	return hex.EncodeToString(secret), nil
}

// impersonate makes a cluster link run statements with a client's
// privileges (a child aggregator forwarding a client's statement), or
// back with its own.
func (n *Node) impersonate(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Impersonate) error {
	sctx, err := n.sqlContext(ctx, c)
	if err != nil {
		return err
	}
	sess := sctx.Session
	ci := n.connInfo(c)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if ci.original == nil {
		own := sess.Client()
		ci.original = &own
	}
	next := *ci.original
	if cmd.None {
		ci.original = nil
		sess.SetCurrentDatabase("")
	} else {
		// resolve the account as the child did (the same accounts), and
		// act as exactly that entry
		db := n.mysqlDb()
		rd := db.Reader()
		usr := db.GetUser(rd, cmd.User, cmd.Host, false)
		rd.Close()
		if usr == nil || usr.User != cmd.User {
			sess.SetClient(*ci.original)
			ci.original = nil
			return mysql.NewSQLError(mysql.ERAccessDeniedError, mysql.SSAccessDeniedError, "Access denied: no account '%s'@'%s' to act for", cmd.User, cmd.Host)
		}
		next.User, next.Address = usr.User, usr.Host
		// the client's current database, checked when it chose it on the
		// child; none is none, whatever the link's last client used
		sess.SetCurrentDatabase(cmd.Database)
	}
	sess.SetClient(next)
	sess.SetPrivilegeSet(nil, 0) // privileges are looked up again for the new user
	return nil
}

// checkSetGlobal refuses SET GLOBAL (or PERSIST) to a client without
// SUPER, as MySQL does (GMS checks nothing there).
func (n *Node) checkSetGlobal(ctx context.Context, c *mysql.Conn, query string) error {
	l := strings.ToLower(query)
	if !strings.Contains(l, "global") && !strings.Contains(l, "persist") {
		return nil // cheap: most statements
	}
	stmt, err := ast.Parse(query)
	if err != nil {
		stmt, err = ast.ParseWithOptions(ctx, query, ast.ParserOptions{AnsiQuotes: true})
	}
	set, ok := stmt.(*ast.Set)
	if err != nil || !ok {
		return nil
	}
	for _, e := range set.Exprs {
		scope := e.Scope
		if e.Name != nil && scope != ast.SetScope_Global && scope != ast.SetScope_Persist && scope != ast.SetScope_PersistOnly {
			if _, s, _, err := ast.VarScopeForColName(e.Name); err == nil {
				scope = s
			}
		}
		if scope == ast.SetScope_Global || scope == ast.SetScope_Persist || scope == ast.SetScope_PersistOnly {
			if n.isLink(c) || n.hasPrivilege(ctx, c, sql.PrivilegeType_Super) {
				return nil
			}
			return privilege.Denied("SUPER or SYSTEM_VARIABLES_ADMIN")
		}
	}
	return nil
}
