// Package privilege checks MySQL privileges with go-mysql-server's users
// and grants, and reports refusals as MySQL does: 1142 for a table, 1044
// for a database, 1227 for a global privilege (GMS reports them all as
// 1105 "command denied"). It also checks statements that never reach the
// engine's planner: an aggregator routes most statements straight to the
// leaves, so it checks the parsed statement's authorization information
// (the parser annotates every node) with the same handler the engine uses.
package privilege

import (
	"fmt"
	"strings"
	"sync"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/plan"
	_ "github.com/dolthub/go-mysql-server/sql/planbuilder" // installs GMS's default authorization handler
	"github.com/dolthub/vitess/go/mysql"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"
)

var installOnce sync.Once

// Install makes every catalog created afterwards report refusals with
// MySQL's error numbers. Call it before creating the engine.
func Install() {
	installOnce.Do(func() {
		sql.SetAuthorizationHandlerFactory(factory{inner: sql.GetAuthorizationHandlerFactory()})
	})
}

type factory struct {
	inner sql.AuthorizationHandlerFactory
}

func (f factory) CreateHandler(cat sql.Catalog) sql.AuthorizationHandler {
	return handler{inner: f.inner.CreateHandler(cat)}
}

// handler wraps GMS's handler; only the errors change.
type handler struct{ inner sql.AuthorizationHandler }

func (h handler) NewQueryState(ctx *sql.Context) sql.AuthorizationQueryState {
	return h.inner.NewQueryState(ctx)
}

func (h handler) HandleAuth(ctx *sql.Context, state sql.AuthorizationQueryState, auth ast.AuthInformation) error {
	err := h.inner.HandleAuth(ctx, state, auth)
	if err == nil {
		return nil
	}
	return h.translate(ctx, state, auth, err)
}

func (h handler) HandleAuthNode(ctx *sql.Context, state sql.AuthorizationQueryState, node sql.AuthorizationCheckerNode) error {
	err := h.inner.HandleAuthNode(ctx, state, node)
	if err == nil || !sql.ErrPrivilegeCheckFailed.Is(err) {
		return translateKind(err)
	}
	return grantDenied(ctx, node)
}

// grantDenied refuses GRANT or REVOKE without the privileges to give as
// MySQL does, at the level they name.
func grantDenied(ctx *sql.Context, node any) error {
	var level plan.PrivilegeLevel
	cmd := "GRANT"
	switch g := node.(type) {
	case *plan.Grant:
		level = g.PrivilegeLevel
	case *plan.Revoke:
		level, cmd = g.PrivilegeLevel, "REVOKE"
	default: // roles, proxies, REVOKE ALL
		return Denied("GRANT OPTION")
	}
	db := level.Database
	if db == "" {
		db = ctx.GetCurrentDatabase()
	}
	switch {
	case db != "*" && db != "" && level.TableRoutine != "*" && level.TableRoutine != "":
		return tableDenied(ctx, cmd, level.TableRoutine)
	case db != "*" && db != "":
		return mysql.NewSQLError(mysql.ERDBAccessDenied, "42000", "Access denied for user %s to database '%s'", Account(ctx), db)
	}
	return Denied("GRANT OPTION")
}

func (h handler) CheckDatabase(ctx *sql.Context, state sql.AuthorizationQueryState, db string) error {
	return translateKind(h.inner.CheckDatabase(ctx, state, db))
}

func (h handler) CheckSchema(ctx *sql.Context, state sql.AuthorizationQueryState, db, schema string) error {
	return translateKind(h.inner.CheckSchema(ctx, state, db, schema))
}

func (h handler) CheckTable(ctx *sql.Context, state sql.AuthorizationQueryState, db, schema, table string) error {
	return translateKind(h.inner.CheckTable(ctx, state, db, schema, table))
}

// translateKind maps GMS's access errors that name their object.
func translateKind(err error) error {
	switch {
	case err == nil:
		return nil
	case sql.ErrDatabaseAccessDeniedForUser.Is(err):
		return mysql.NewSQLError(mysql.ERDBAccessDenied, "42000", "%s", err.Error())
	case sql.ErrTableAccessDeniedForUser.Is(err):
		return mysql.NewSQLError(erTableAccessDenied, "42000", "%s", err.Error())
	}
	return err
}

// translate turns a refusal of one annotated node into MySQL's error.
func (h handler) translate(ctx *sql.Context, state sql.AuthorizationQueryState, auth ast.AuthInformation, err error) error {
	if !sql.ErrPrivilegeCheckFailed.Is(err) && !sql.ErrDatabaseAccessDeniedForUser.Is(err) && !sql.ErrTableAccessDeniedForUser.Is(err) {
		return err
	}
	if _, ok := auth.Extra.(sql.AuthorizationCheckerNode); ok && sql.ErrPrivilegeCheckFailed.Is(err) {
		return grantDenied(ctx, auth.Extra)
	}
	switch auth.TargetType {
	case ast.AuthTargetType_SingleTableIdentifier, ast.AuthTargetType_TableColumn:
		if len(auth.TargetNames) >= 2 {
			return tableDenied(ctx, auth.AuthType, auth.TargetNames[1])
		}
	case ast.AuthTargetType_MultipleTableIdentifiers:
		// name the first table refused
		for i := 0; i+1 < len(auth.TargetNames); i += 2 {
			one := auth
			one.TargetNames = auth.TargetNames[i : i+2]
			if h.inner.HandleAuth(ctx, state, one) != nil {
				return tableDenied(ctx, auth.AuthType, auth.TargetNames[i+1])
			}
		}
	case ast.AuthTargetType_DatabaseIdentifiers:
		for _, db := range auth.TargetNames {
			one := auth
			one.TargetNames = []string{db}
			if h.inner.HandleAuth(ctx, state, one) != nil {
				if db == "" {
					db = ctx.GetCurrentDatabase()
				}
				return mysql.NewSQLError(mysql.ERDBAccessDenied, "42000", "Access denied for user %s to database '%s'", Account(ctx), db)
			}
		}
	}
	if auth.AuthType == ast.AuthType_RENAME && len(auth.TargetNames) >= 2 {
		return tableDenied(ctx, "ALTER", auth.TargetNames[1])
	}
	if !sql.ErrPrivilegeCheckFailed.Is(err) {
		return translateKind(err)
	}
	return Denied(privilegeName(auth.AuthType))
}

// TableDenied is MySQL's refusal of a command on a table.
func TableDenied(ctx *sql.Context, authType, table string) error {
	return tableDenied(ctx, authType, table)
}

func tableDenied(ctx *sql.Context, authType, table string) error {
	return mysql.NewSQLError(erTableAccessDenied, "42000", "%s command denied to user %s for table '%s'",
		commandName(authType), Account(ctx), table)
}

// Denied is MySQL's refusal of an operation that needs a global privilege.
func Denied(privs string) error {
	return mysql.NewSQLError(mysql.ERSpecifiedAccessDenied, "42000",
		"Access denied; you need (at least one of) the %s privilege(s) for this operation", privs)
}

// Account is the session's user as MySQL prints it: 'user'@'host'.
func Account(ctx *sql.Context) string {
	c := ctx.Session.Client()
	return fmt.Sprintf("'%s'@'%s'", c.User, c.Address)
}

func commandName(authType string) string {
	switch authType {
	case ast.AuthType_REPLACE:
		return "INSERT"
	case ast.AuthType_CREATE_VIEW:
		return "CREATE VIEW"
	case ast.AuthType_LOCK:
		return "LOCK TABLES"
	case ast.AuthType_FOREIGN_KEY:
		return "REFERENCES"
	}
	return strings.ReplaceAll(authType, "_", " ")
}

func privilegeName(authType string) string {
	switch authType {
	case ast.AuthType_ALTER_USER, ast.AuthType_CREATE_USER:
		return "CREATE USER"
	case ast.AuthType_CREATE_ROLE:
		return "CREATE ROLE, CREATE USER"
	case ast.AuthType_DROP_ROLE:
		return "DROP ROLE, CREATE USER"
	case ast.AuthType_REPLICATION:
		return "REPLICATION_SLAVE_ADMIN"
	case ast.AuthType_GRANT_PRIVILEGE, ast.AuthType_GRANT_ROLE, ast.AuthType_GRANT_PROXY,
		ast.AuthType_REVOKE_ALL, ast.AuthType_REVOKE_PRIVILEGE, ast.AuthType_REVOKE_PROXY, ast.AuthType_REVOKE_ROLE:
		return "GRANT OPTION"
	}
	return commandName(authType)
}

// Infos checks already collected authorization information (a planned
// template keeps its statement's).
func Infos(ctx *sql.Context, h sql.AuthorizationHandler, infos []ast.AuthInformation) error {
	if len(infos) == 0 {
		return nil
	}
	state := h.NewQueryState(ctx)
	if err := state.Error(); err != nil {
		return err
	}
	for _, info := range infos {
		if err := h.HandleAuth(ctx, state, info); err != nil {
			return err
		}
	}
	return nil
}

// Collect lists a statement's authorization information. GRANT and
// REVOKE are left out: the engine checks them on its plan (their
// annotations carry it), and always runs them itself.
func Collect(stmt ast.SQLNode) []ast.AuthInformation {
	var infos []ast.AuthInformation
	ast.Walk(func(n ast.SQLNode) (bool, error) {
		if an, ok := n.(ast.AuthNode); ok {
			if info := an.GetAuthInformation(); info.AuthType != "" && !checkedOnPlan[info.AuthType] {
				infos = append(infos, info)
			}
		}
		return true, nil
	}, stmt)
	return infos
}

var checkedOnPlan = map[string]bool{
	ast.AuthType_GRANT_PRIVILEGE: true, ast.AuthType_GRANT_PROXY: true, ast.AuthType_GRANT_ROLE: true,
	ast.AuthType_REVOKE_ALL: true, ast.AuthType_REVOKE_PRIVILEGE: true, ast.AuthType_REVOKE_PROXY: true, ast.AuthType_REVOKE_ROLE: true,
}

// erTableAccessDenied is ER_TABLEACCESS_DENIED_ERROR (vitess has no name for it).
const erTableAccessDenied = 1142
