package pool

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"

	"github.com/canopydb/canopy/sqlcmd"
)

// Settings are the session variables a statement needs on the connection
// that runs it (a client's time_zone, sql_mode, …). A connection remembers
// which settings it holds, so a statement sends SET only when the
// connection's last user needed other values, and then in the same packet
// as the statement: switching costs no round trip.
type Settings struct {
	// Key identifies the values; "" is the node's defaults, which a new
	// connection holds.
	Key string
	// Set gives any connection these values (every variable that any
	// settings carry, the others set to DEFAULT).
	Set string
}

// unknownSettings marks a connection whose settings a failed statement
// left unknown: the next user sets its own.
type unknownSettings struct{}

// held returns the key of the settings the connection holds. It lives in
// the vitess connection's ClientData, which stays with the connection
// while it idles in the pool.
func (c *Conn) held() (string, bool) {
	switch v := c.Conn.ClientData.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	}
	return "", false
}

// needs reports whether the connection must be given s first.
func (c *Conn) needs(s *Settings) bool {
	if s == nil {
		return false
	}
	key, ok := c.held()
	return !ok || key != s.Key
}

// ExecWith runs one statement under the settings s (nil: whatever the
// connection holds). When the connection holds other settings, the SET
// and the statement go in one multi-statement packet.
func (c *Conn) ExecWith(s *Settings, query string, maxRows int) (*sqltypes.Result, error) {
	if !c.needs(s) {
		return c.Exec(query, maxRows)
	}
	results, err := c.ExecMulti(s, []string{query}, maxRows)
	if err != nil {
		return nil, err
	}
	return results[0], nil
}

// ExecMulti runs statements in one multi-statement packet (one round
// trip), after the SET of s when the connection holds other settings, and
// returns each statement's result. The server stops at the first
// statement that fails: the results of the statements before it come
// back with its error, so len(results) tells which one failed.
func (c *Conn) ExecMulti(s *Settings, queries []string, maxRows int) ([]*sqltypes.Result, error) {
	text := strings.Join(queries, statementSeparator)
	set := c.needs(s)
	if set {
		c.Conn.ClientData = unknownSettings{}
		text = s.Set + statementSeparator + text
	}
	res, more, err := c.first(text, maxRows)
	if err != nil {
		return nil, err // the server ran none of the statements
	}
	if set {
		c.Conn.ClientData = s.Key
		if res, more, err = c.next(more, maxRows, 0, len(queries)); err != nil {
			return nil, err
		}
	}
	results := make([]*sqltypes.Result, 0, len(queries))
	results = append(results, res)
	for len(results) < len(queries) {
		if res, more, err = c.next(more, maxRows, len(results), len(queries)); err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// statementSeparator ends a statement of a multi-statement text. The
// newline ends a comment the statement may end with (-- or #), which
// would otherwise run over the statements after it.
const statementSeparator = "\n; "

// first sends a multi-statement text and reads the first result; more
// reports that another follows.
func (c *Conn) first(text string, maxRows int) (*sqltypes.Result, bool, error) {
	res, status, err := c.Conn.ExecuteFetchMulti(context.Background(), text, maxRows, true)
	if err != nil {
		return nil, false, c.Check(err)
	}
	return res, status&mysql.ServerMoreResultsExists != 0, nil
}

// next reads the result of statement i of n, which the server sends only
// if the one before announced more.
func (c *Conn) next(more bool, maxRows, i, n int) (*sqltypes.Result, bool, error) {
	if !more {
		// a server that did not take the text as several statements would
		// have failed it whole: nothing more is coming, and what it
		// answered was not what the caller wanted
		c.broken = true
		return nil, false, fmt.Errorf("%s: no result for statement %d of %d (multi-statements not supported?)", c.pool.node.Addr(), i+1, n)
	}
	res, status, _, err := c.Conn.ReadQueryResult(context.Background(), maxRows, true)
	if err != nil {
		return nil, false, c.Check(err)
	}
	return res, status&mysql.ServerMoreResultsExists != 0, nil
}

// StreamWith starts streaming the rows of query under the settings s
// (read them with FetchNext). A client streams one result per packet, so
// when the connection holds other settings their SET goes in the same
// packet marked silent (sqlcmd.Silent): the node sends no result of its
// own for it, and the query answers for both.
func (c *Conn) StreamWith(s *Settings, query string) error {
	if !c.needs(s) {
		return c.Check(c.ExecuteStreamFetch(query))
	}
	c.Conn.ClientData = unknownSettings{}
	if err := c.ExecuteStreamFetch(sqlcmd.Silent + s.Set + "; " + query); err != nil {
		return c.Check(err) // the SET or the query failed: which one is not known
	}
	c.Conn.ClientData = s.Key
	return nil
}

// ExecWith borrows a connection, runs one statement under the settings s,
// and gives the connection back.
func (p *Pool) ExecWith(ctx context.Context, s *Settings, query string, maxRows int) (*sqltypes.Result, error) {
	c, err := p.acquireFor(ctx)
	if err != nil {
		return nil, err
	}
	defer c.releaseFor()
	return c.ExecWith(s, query, maxRows)
}

// ExecMulti borrows a connection, runs statements in one packet under the
// settings s (see Conn.ExecMulti), and gives the connection back.
func (p *Pool) ExecMulti(ctx context.Context, s *Settings, queries []string, maxRows int) ([]*sqltypes.Result, error) {
	c, err := p.acquireFor(ctx)
	if err != nil {
		return nil, err
	}
	defer c.releaseFor()
	return c.ExecMulti(s, queries, maxRows)
}

// acquireFor borrows a connection for one call under ctx, whose deadline
// bounds the connection's reads and writes: the client protocol has no
// contexts, and a hung node would hold the caller past its deadline (and
// whatever lock it holds) forever. Give it back with releaseFor.
func (p *Pool) acquireFor(ctx context.Context) (*Conn, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.Conn.Conn.SetDeadline(dl)
		c.deadline = true
	}
	return c, nil
}

func (c *Conn) releaseFor() {
	if c.deadline {
		c.Conn.Conn.SetDeadline(time.Time{})
		c.deadline = false
	}
	c.Release()
}

// Exec borrows a connection, runs one statement that is no client's
// (heartbeats, schema changes, cluster steps) under the node's defaults,
// and gives it back: a connection a client with other settings left is
// given the defaults back.
func (p *Pool) Exec(ctx context.Context, query string, maxRows int) (*sqltypes.Result, error) {
	return p.ExecWith(ctx, p.defaults, query, maxRows)
}
