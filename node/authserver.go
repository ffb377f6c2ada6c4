package node

import (
	"net"

	"github.com/dolthub/go-mysql-server/server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
)

// authServer wraps GMS's authentication so a login ends as MySQL's does:
// an unknown account gets 1045 Access denied (GMS's methods decline it,
// and vitess then answers 2012 "No authentication methods available"), an
// account that REQUIRE SSL and a node with --require-secure-transport
// refuse a connection without TLS at login, and refusals name the
// account and host.
type authServer struct {
	n       *Node
	inner   mysql.AuthServer
	methods []mysql.AuthMethod
}

func newAuthServer(n *Node, inner mysql.AuthServer) *authServer {
	a := &authServer{n: n, inner: inner}
	for _, m := range inner.AuthMethods() {
		a.methods = append(a.methods, checkedMethod{AuthMethod: m, n: n})
	}
	a.methods = append(a.methods, unknownAccount{others: inner.AuthMethods()})
	return a
}

func (a *authServer) AuthMethods() []mysql.AuthMethod { return a.methods }

func (a *authServer) DefaultAuthMethodDescription() mysql.AuthMethodDescription {
	return a.inner.DefaultAuthMethodDescription()
}

// listenerFactory makes the MySQL listener with the wrapped
// authentication.
func (n *Node) listenerFactory(cfg server.Config, lc mysql.ListenerConfig, sel server.ServerEventListener) (server.ProtocolListener, error) {
	lc.AuthServer = newAuthServer(n, lc.AuthServer)
	return server.MySQLProtocolListenerFactory(cfg, lc, sel)
}

func accessDenied(user string, addr net.Addr, password bool) error {
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		host = addr.String()
	}
	using := "NO"
	if password {
		using = "YES"
	}
	return mysql.NewSQLError(mysql.ERAccessDeniedError, mysql.SSAccessDeniedError,
		"Access denied for user '%s'@'%s' (using password: %s)", user, host, using)
}

// checkedMethod is one of GMS's methods, with the checks that need the
// connection.
type checkedMethod struct {
	mysql.AuthMethod
	n *Node
}

func (m checkedMethod) HandleAuthPluginData(c *mysql.Conn, user string, serverData, clientData []byte, addr net.Addr) (mysql.Getter, error) {
	password := len(clientData) > 0 && !(len(clientData) == 1 && clientData[0] == 0)
	got, err := m.AuthMethod.HandleAuthPluginData(c, user, serverData, clientData, addr)
	if err != nil {
		if se, ok := err.(*mysql.SQLError); ok && se.Num == mysql.ERAccessDeniedError {
			return nil, accessDenied(user, addr, password)
		}
		return nil, err
	}
	if !c.TLSEnabled() {
		if m.n.cfg.RequireSecureTransport {
			return nil, mysql.NewSQLError(3159, "HY000", "Connections using insecure transport are prohibited while --require_secure_transport=ON.")
		}
		if u, ok := got.(sql.MysqlConnectionUser); ok && m.n.users.requiresTLS(u.User, u.Host) {
			return nil, accessDenied(user, addr, password)
		}
	}
	m.n.watchPrepares(c) // logged in: see prepare.go
	return got, nil
}

// unknownAccount takes the logins no other method takes (accounts that
// do not exist) and refuses them as MySQL does.
type unknownAccount struct{ others []mysql.AuthMethod }

func (unknownAccount) Name() mysql.AuthMethodDescription { return mysql.MysqlNativePassword }
func (unknownAccount) AllowClearTextWithoutTLS() bool    { return true }
func (unknownAccount) AuthPluginData() ([]byte, error)   { return mysql.NewSalt() }

// HandleUser takes a login only when no real method does: a client that
// starts with mysql_native_password for a caching_sha2_password account
// must get the switch to that method, not a refusal.
func (u unknownAccount) HandleUser(c *mysql.Conn, user string) bool {
	for _, m := range u.others {
		if m.HandleUser(c, user) {
			return false
		}
	}
	return true
}
func (unknownAccount) HandleAuthPluginData(_ *mysql.Conn, user string, _, clientData []byte, addr net.Addr) (mysql.Getter, error) {
	return nil, accessDenied(user, addr, len(clientData) > 0)
}
