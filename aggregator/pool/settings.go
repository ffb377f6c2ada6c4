package pool

import (
	"context"
	"fmt"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
)

// Settings are the session variables a statement needs on the connection
// that runs it (a client's time_zone, sql_mode, …). A connection remembers
// which settings it holds, so a statement sends SET only when the
// connection's last user needed other values.
type Settings struct {
	// Key identifies the values; "" is the node's defaults, which a new
	// connection holds.
	Key string
	// Set gives any connection these values (every variable that any
	// settings carry, the others set to DEFAULT).
	Set string
}

// Defaults are the settings of statements that are no client's (Pool.Exec:
// heartbeats, schema changes, cluster steps): a connection a client with
// other settings left is given the node's defaults back. The aggregator
// sets it; nil leaves connections as they are.
var Defaults *Settings

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

// Apply gives the connection the settings s (nil: whatever it holds),
// with one round trip when it holds other ones.
func (c *Conn) Apply(s *Settings) error {
	if !c.needs(s) {
		return nil
	}
	c.Conn.ClientData = unknownSettings{}
	if _, err := c.Exec(s.Set, 0); err != nil {
		return err
	}
	c.Conn.ClientData = s.Key
	return nil
}

// ExecWith runs one statement under the settings s (nil: whatever the
// connection holds). When the connection holds other settings, the SET
// and the statement go in one multi-statement packet: no extra round
// trip.
func (c *Conn) ExecWith(s *Settings, query string, maxRows int) (*sqltypes.Result, error) {
	if !c.needs(s) {
		return c.Exec(query, maxRows)
	}
	c.Conn.ClientData = unknownSettings{}
	_, status, err := c.Conn.ExecuteFetchMulti(context.Background(), s.Set+"; "+query, 0, false)
	if err != nil {
		return nil, c.Check(err) // the server ran neither statement
	}
	if status&mysql.ServerMoreResultsExists == 0 {
		// a server without multi-statements would have failed the whole
		// text; nothing more is coming
		c.broken = true
		return nil, fmt.Errorf("%s: no result for the statement after SET", c.pool.node.Addr())
	}
	c.Conn.ClientData = s.Key
	res, _, _, err := c.Conn.ReadQueryResult(context.Background(), maxRows, true)
	return res, c.Check(err)
}

// ExecWith borrows a connection, runs one statement under the settings s,
// and gives the connection back.
func (p *Pool) ExecWith(ctx context.Context, s *Settings, query string, maxRows int) (*sqltypes.Result, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	if dl, ok := ctx.Deadline(); ok {
		// as in Exec: the client protocol has no contexts
		c.Conn.Conn.SetDeadline(dl)
		defer c.Conn.Conn.SetDeadline(time.Time{})
	}
	return c.ExecWith(s, query, maxRows)
}
