package aggregator

import (
	"context"
	"errors"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/internal/privilege"
	"github.com/canopydb/canopy/storage"
)

// Privileges of statements the aggregator runs without planning them in
// its engine (routed, split, broadcast, schema changes, cluster DDL): the
// parser's authorization annotations, checked with the engine's handler,
// so that a client gets what the engine would have told it, before
// anything runs anywhere. Local and gathered statements are checked by
// the engine itself.

// clientContext is a context with a client's session (which the node
// makes if the connection has run nothing yet).
func (a *Aggregator) clientContext(ctx context.Context, c *mysql.Conn) (*sql.Context, error) {
	if s := a.host.Session(c.ConnectionID); s != nil {
		return storage.NewContext(ctx, sql.WithSession(s)), nil
	}
	return a.host.SQLContext(ctx, c)
}

// authorize checks a statement's privileges for a client.
func (a *Aggregator) authorize(ctx context.Context, c *mysql.Conn, stmt ast.SQLNode) error {
	err := a.authorizeInfos(ctx, c, privilege.Collect(stmt))
	var se *mysql.SQLError
	if ddl, ok := stmt.(*ast.DDL); ok && ddl.Action == ast.CreateStr && !ddl.Table.IsEmpty() &&
		errors.As(err, &se) && se.Num == mysql.ERDBAccessDenied {
		// the parser annotates CREATE TABLE with its database only; MySQL
		// names the table
		if sctx, cerr := a.clientContext(ctx, c); cerr == nil {
			return privilege.TableDenied(sctx, ast.AuthType_CREATE, ddl.Table.Name.String())
		}
	}
	return err
}

func (a *Aggregator) authorizeInfos(ctx context.Context, c *mysql.Conn, infos []ast.AuthInformation) error {
	if len(infos) == 0 {
		return nil
	}
	sctx, err := a.clientContext(ctx, c)
	if err != nil {
		return err
	}
	return privilege.Infos(sctx, a.host.Engine().Analyzer.Catalog.AuthorizationHandler(), infos)
}

// authorizeGlobal checks that a client holds a global privilege.
func (a *Aggregator) authorizeGlobal(ctx context.Context, c *mysql.Conn, priv sql.PrivilegeType, name string) error {
	sctx, err := a.clientContext(ctx, c)
	if err != nil {
		return err
	}
	if a.host.Engine().Analyzer.Catalog.MySQLDb.UserHasPrivileges(sctx, sql.NewPrivilegedOperation(sql.PrivilegeCheckSubject{}, priv)) {
		return nil
	}
	return privilege.Denied(name)
}

// authorizeDatabase checks CREATE or DROP DATABASE as the engine does (a
// global privilege: the statement runs in the engine too, after the
// partitions), refused with MySQL's 1044 naming the database.
func (a *Aggregator) authorizeDatabase(ctx context.Context, c *mysql.Conn, authType, db string) error {
	err := a.authorizeInfos(ctx, c, []ast.AuthInformation{{AuthType: authType, TargetType: ast.AuthTargetType_Global}})
	return databaseDenied(ctx, a, c, err, db)
}

// databaseDenied names the database in a refusal of a statement on it.
func databaseDenied(ctx context.Context, a *Aggregator, c *mysql.Conn, err error, db string) error {
	var se *mysql.SQLError
	if !errors.As(err, &se) || se.Num != mysql.ERSpecifiedAccessDenied {
		return err
	}
	sctx, cerr := a.clientContext(ctx, c)
	if cerr != nil {
		return err
	}
	return mysql.NewSQLError(mysql.ERDBAccessDenied, "42000", "Access denied for user %s to database '%s'", privilege.Account(sctx), db)
}

// isAccountStatement: statements that change accounts and grants, which
// only the master aggregator runs (the cluster shares its accounts).
func isAccountStatement(stmt ast.Statement) bool {
	switch s := stmt.(type) {
	case *ast.CreateUser, *ast.DropUser, *ast.RenameUser, *ast.CreateRole, *ast.DropRole,
		*ast.GrantPrivilege, *ast.GrantRole, *ast.GrantProxy, *ast.RevokePrivilege,
		*ast.RevokeAllPrivileges, *ast.RevokeRole, *ast.RevokeProxy:
		return true
	case *ast.DDL:
		return s.Action == ast.AlterStr && s.User.Name != ""
	}
	return false
}
