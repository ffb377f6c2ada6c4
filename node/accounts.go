package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/internal/linkauth"
	"github.com/canopydb/canopy/sqlcmd"
)

// Account statements: the engine runs them (on a child aggregator the
// aggregator forwards them to the master, whose accounts the cluster
// shares); the node adds what GMS lacks: SET PASSWORD, REQUIRE SSL, and
// the reserved internal account.

// accountStatement returns a statement's parse when it creates, changes
// or drops accounts, roles or grants (nil otherwise). It parses with and
// without ANSI_QUOTES, so that no session mode hides one from it.
func accountStatement(query string) ast.Statement {
	l := strings.ToLower(query)
	if !strings.Contains(l, "user") && !strings.Contains(l, "grant") && !strings.Contains(l, "revoke") && !strings.Contains(l, "role") {
		return nil // cheap: most statements
	}
	for _, ansi := range []bool{false, true} {
		stmt, err := ast.ParseWithOptions(context.Background(), query, ast.ParserOptions{AnsiQuotes: ansi})
		if err != nil {
			continue
		}
		if len(accountNames(stmt)) > 0 {
			return stmt
		}
		return nil
	}
	return nil
}

// accountNames are the accounts an account statement names (none for
// any other statement).
func accountNames(stmt ast.Statement) []ast.AccountName {
	var out []ast.AccountName
	switch s := stmt.(type) {
	case *ast.CreateUser:
		for _, u := range s.Users {
			out = append(out, u.AccountName)
		}
		out = append(out, s.DefaultRoles...)
	case *ast.DropUser:
		out = s.AccountNames
	case *ast.RenameUser:
		for _, r := range s.Accounts {
			out = append(out, r.From, r.To)
		}
	case *ast.CreateRole:
		out = s.Roles
	case *ast.DropRole:
		out = s.Roles
	case *ast.GrantPrivilege:
		out = s.To
	case *ast.RevokePrivilege:
		out = s.From
	case *ast.RevokeAllPrivileges:
		out = s.From
	case *ast.GrantRole:
		out = append(append(out, s.Roles...), s.To...)
	case *ast.RevokeRole:
		out = append(append(out, s.Roles...), s.From...)
	case *ast.GrantProxy:
		out = append(append(out, s.On), s.To...)
	case *ast.RevokeProxy:
		out = append(append(out, s.On), s.From...)
	case *ast.DDL:
		if s.Action == ast.AlterStr && s.User.Name != "" {
			out = append(out, s.User)
		}
	}
	return out
}

// namesReservedAccount reports whether an account statement names the
// internal account.
func namesReservedAccount(stmt ast.Statement) bool {
	for _, a := range accountNames(stmt) {
		if strings.EqualFold(a.Name, linkauth.InternalUser) {
			return true
		}
	}
	return false
}

var errReservedAccount = mysql.NewSQLError(mysql.ERSpecifiedAccessDenied, "42000",
	"Access denied: the account '%s' is reserved for the links between the cluster's nodes", linkauth.InternalUser)

// runsAccountsHere reports whether account statements take effect on
// this node (a child aggregator forwards them to the master).
func (n *Node) runsAccountsHere() bool {
	a := n.aggregator()
	return a == nil || a.IsMaster()
}

// afterAccountStatement records what GMS parsed but does not keep:
// CREATE USER … REQUIRE SSL. If that fails, the accounts are dropped
// again: an account must not exist without the TLS it requires.
func (n *Node) afterAccountStatement(ctx context.Context, c *mysql.Conn, stmt ast.Statement) error {
	if !n.runsAccountsHere() {
		return nil
	}
	cu, ok := stmt.(*ast.CreateUser)
	if !ok || cu.TLSOptions == nil || !(cu.TLSOptions.SSL || cu.TLSOptions.X509) {
		return nil
	}
	sctx, err := n.sqlContext(ctx, c)
	if err != nil {
		return err
	}
	var names []string
	for _, u := range cu.Users {
		host := u.AccountName.Host
		if host == "" {
			host = "%"
		}
		names = append(names, quoteString(u.AccountName.Name)+"@"+quoteString(host))
		if err == nil {
			err = n.users.setRequireSSL(sctx, u.AccountName.Name, host, true)
		}
	}
	if err != nil {
		drop := "DROP USER IF EXISTS " + strings.Join(names, ", ")
		if derr := n.gms.ComQuery(ctx, c, drop, func(*sqltypes.Result, bool) error { return nil }); derr != nil {
			n.log.Error("dropping accounts created without their TLS requirement", "accounts", names, "err", derr)
		}
		return fmt.Errorf("record REQUIRE SSL (the accounts were not created): %w", err)
	}
	return nil
}

// setPassword runs SET PASSWORD as the ALTER USER it means.
func (n *Node) setPassword(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.SetPassword) (*sqltypes.Result, error) {
	if a := n.aggregator(); a != nil && !a.IsMaster() {
		return a.Forward(ctx, c, query)
	}
	user, host := cmd.User, cmd.Host
	if cmd.Current {
		sctx, err := n.sqlContext(ctx, c)
		if err != nil {
			return nil, err
		}
		client := sctx.Session.Client()
		user, host = client.User, client.Address
	}
	if user == linkauth.InternalUser {
		return nil, errReservedAccount
	}
	alter := "ALTER USER " + quoteString(user) + "@" + quoteString(host) + " IDENTIFIED BY " + quoteString(cmd.Password)
	err := n.gms.ComQuery(ctx, c, alter, func(*sqltypes.Result, bool) error { return nil })
	var se *mysql.SQLError
	if errors.As(err, &se) && se.Num == mysql.ERSpecifiedAccessDenied {
		// MySQL refuses another's password as access to the mysql schema
		u, h := connUser(c)
		return nil, mysql.NewSQLError(mysql.ERDBAccessDenied, "42000", "Access denied for user '%s'@'%s' to database 'mysql'", u, h)
	}
	n.syncChildren()
	return &sqltypes.Result{}, err
}

// alterUserRequire runs ALTER USER … REQUIRE: the rest of the statement
// through the engine, then the TLS requirement.
func (n *Node) alterUserRequire(ctx context.Context, c *mysql.Conn, query string, cmd sqlcmd.AlterUserRequire) (*sqltypes.Result, error) {
	if a := n.aggregator(); a != nil && !a.IsMaster() {
		return a.Forward(ctx, c, query)
	}
	// the account the engine will change is the one it parses out of the
	// rest of the statement (quoting and escapes included)
	rest, err := ast.Parse(cmd.Rest)
	names := accountNames(rest)
	if err != nil || len(names) != 1 {
		return nil, mysql.NewSQLError(1064, "42000", "You have an error in your SQL syntax near ALTER USER")
	}
	if namesReservedAccount(rest) {
		return nil, errReservedAccount
	}
	cmd.User, cmd.Host = names[0].Name, names[0].Host
	if cmd.Host == "" {
		cmd.Host = "%"
	}
	if !n.hasPrivilege(ctx, c, sql.PrivilegeType_CreateUser, sql.PrivilegeType_Super) {
		return nil, mysql.NewSQLError(mysql.ERSpecifiedAccessDenied, "42000",
			"Access denied; you need (at least one of) the CREATE USER privilege(s) for this operation")
	}
	if cmd.Require == "X509" {
		return nil, mysql.NewSQLError(1235, "42000", "REQUIRE X509 is not supported yet: use REQUIRE SSL")
	}
	if cmd.HasMore {
		if err := n.gms.ComQuery(ctx, c, cmd.Rest, func(*sqltypes.Result, bool) error { return nil }); err != nil {
			return nil, err
		}
	}
	sctx, err := n.sqlContext(ctx, c)
	if err != nil {
		return nil, err
	}
	err = n.users.setRequireSSL(sctx, cmd.User, cmd.Host, cmd.Require == "SSL")
	if err != nil && cmd.IfExists && strings.Contains(err.Error(), "Operation ALTER USER failed") {
		err = nil
	}
	n.syncChildren()
	return &sqltypes.Result{}, err
}

// quoteString quotes a string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// syncChildren waits until the child aggregators enforce an account
// change made here (on the master).
func (n *Node) syncChildren() {
	if a := n.aggregator(); a != nil {
		a.SyncChildren()
	}
}
