package aggregator

import (
	"strings"

	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/cluster/pool"
)

// Savepoints. A client's transaction has a part on every leaf it wrote
// through and one in this node's engine; SAVEPOINT, ROLLBACK TO SAVEPOINT
// and RELEASE SAVEPOINT must act on all of them, or a rollback to a
// savepoint would undo the engine's part and keep the leaves' writes. The
// engine's part answers the client (and reports an unknown name), so a
// leaf part runs the statement first. A leaf joining the transaction later
// is given the savepoints set so far right after its BEGIN: it wrote
// nothing before them, so rolling back to one undoes all it did since,
// as on one server.

// leafSavepoint runs a savepoint statement on the leaf parts of a client's
// open transaction and keeps sess.savepoints, the names in the order they
// were set, in step.
func (a *Aggregator) leafSavepoint(sess *session, connID uint32, stmt ast.Statement) error {
	if !a.inTransaction(connID) {
		return nil
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	var name, query string
	switch s := stmt.(type) {
	case *ast.Savepoint:
		name, query = s.Identifier, "SAVEPOINT "+quoteIdent(s.Identifier)
	case *ast.RollbackSavepoint:
		name, query = s.Identifier, "ROLLBACK TO SAVEPOINT "+quoteIdent(s.Identifier)
	case *ast.ReleaseSavepoint:
		name, query = s.Identifier, "RELEASE SAVEPOINT "+quoteIdent(s.Identifier)
	default:
		return nil
	}
	at := -1
	for i, n := range sess.savepoints {
		if strings.EqualFold(n, name) {
			at = i
		}
	}
	if _, set := stmt.(*ast.Savepoint); !set && at < 0 {
		return nil // the engine reports the unknown name
	}
	for leaf, c := range sess.conns {
		if _, err := c.Exec(query, 0); err != nil {
			return leafError(leaf, err)
		}
	}
	switch stmt.(type) {
	case *ast.Savepoint:
		// a name set again moves to the end
		if at >= 0 {
			sess.savepoints = append(sess.savepoints[:at], sess.savepoints[at+1:]...)
		}
		sess.savepoints = append(sess.savepoints, name)
	case *ast.RollbackSavepoint:
		sess.savepoints = sess.savepoints[:at+1] // the later ones are gone
	case *ast.ReleaseSavepoint:
		sess.savepoints = sess.savepoints[:at] // it and the later ones
	}
	return nil
}

// beginLeafPart starts a leaf's part of a client's transaction, with the
// savepoints the transaction has set so far. The caller holds sess.mu.
func beginLeafPart(sess *session, c *pool.Conn) error {
	queries := []string{"BEGIN"}
	for _, n := range sess.savepoints {
		queries = append(queries, "SAVEPOINT "+quoteIdent(n))
	}
	_, err := c.ExecMulti(nil, queries, 0)
	return err
}
