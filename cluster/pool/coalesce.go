package pool

import "net"

// coalescingConn sends a MySQL packet header together with its payload.
// The vitess client writes them with two Write calls on an unbuffered
// connection: with TCP_NODELAY that is two segments and two wake-ups of
// the receiving node per statement, which on loopback costs about as much
// as the rest of a routed point query.
type coalescingConn struct {
	net.Conn
	header [4]byte
	held   bool
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		buf := make([]byte, 0, 4+len(p))
		buf = append(append(buf, c.header[:]...), p...)
		n, err := c.Conn.Write(buf)
		return max(n-4, 0), err
	}
	// A header announcing a payload: hold it until the payload comes. An
	// empty packet's header (the one that may end a maximal packet) goes
	// out at once, since no payload write may follow it.
	if len(p) == 4 && (p[0] != 0 || p[1] != 0 || p[2] != 0) {
		copy(c.header[:], p)
		c.held = true
		return 4, nil
	}
	return c.Conn.Write(p)
}
