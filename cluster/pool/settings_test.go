package pool

import (
	"context"
	"errors"
	"testing"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestSettingsHeld: what a connection holds decides whether a statement
// sends SET: nothing (a new connection) is the defaults, a key is those
// settings, and a connection a failure left unknown takes any settings
// again; nil settings take the connection as it is.
func TestSettingsHeld(t *testing.T) {
	defaults, zone := &Settings{Set: "SET d"}, &Settings{Key: "time_zone='+05:00'", Set: "SET z"}
	c := &Conn{Conn: &mysql.Conn{}}
	if key, ok := c.held(); key != "" || !ok || c.needs(defaults) || !c.needs(zone) || c.needs(nil) {
		t.Errorf("a new connection: held %q %v, needs defaults %v, zone %v, nil %v", key, ok, c.needs(defaults), c.needs(zone), c.needs(nil))
	}
	c.Conn.ClientData = zone.Key
	if !c.needs(defaults) || c.needs(zone) || c.needs(nil) {
		t.Errorf("holding the zone: needs defaults %v, zone %v, nil %v", c.needs(defaults), c.needs(zone), c.needs(nil))
	}
	c.Conn.ClientData = unknownSettings{}
	if _, ok := c.held(); ok || !c.needs(defaults) || !c.needs(zone) || c.needs(nil) {
		t.Errorf("unknown settings: needs defaults %v, zone %v, nil %v", c.needs(defaults), c.needs(zone), c.needs(nil))
	}
}

// TestSettingsOnNode runs ExecWith, ExecMulti and StreamWith against a
// node and counts the statements it runs: a SET goes only where the
// connection holds other settings, in the statement's packet; a SET that
// fails leaves the connection's settings unknown, a statement that fails
// after its SET does not.
func TestSettingsOnNode(t *testing.T) {
	n := testutil.StartNode(t)
	defaults := &Settings{Set: "SET SESSION time_zone = DEFAULT"}
	zone := &Settings{Key: "time_zone='+05:00'", Set: "SET SESSION time_zone = '+05:00'"}
	bad := &Settings{Key: "bad", Set: "SET SESSION no_such_variable = 1"}
	ps := New(4, defaults)
	defer ps.Close()
	p := ps.Get(Node{Host: "127.0.0.1", Port: n.Port, User: "root", Password: n.RootPassword})
	c, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()

	statements := n.Metric("canopy_statements_total")
	// run runs query under s and checks its answer and how many
	// statements the node ran for it
	run := func(s *Settings, query, want string, ran float64) {
		t.Helper()
		res, err := c.ExecWith(s, query, 10)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if got := res.Rows[0][0].ToString(); got != want {
			t.Errorf("%s: %q, want %q", query, got, want)
		}
		now := n.Metric("canopy_statements_total")
		if now-statements != ran {
			t.Errorf("%s: the node ran %v statements, want %v", query, now-statements, ran)
		}
		statements = now
	}
	run(defaults, "SELECT @@time_zone", "SYSTEM", 1) // a new connection holds the defaults
	run(zone, "SELECT @@time_zone", "+05:00", 2)
	run(zone, "SELECT @@time_zone", "+05:00", 1)
	run(nil, "SELECT @@time_zone", "+05:00", 1)
	run(defaults, "SELECT @@time_zone", "SYSTEM", 2)

	// a failed SET: the next user sets its own, even the defaults
	if _, err := c.ExecWith(bad, "SELECT 1", 10); err == nil {
		t.Fatal("SET of an unknown variable succeeded")
	}
	if _, ok := c.held(); ok {
		t.Error("settings known after a failed SET")
	}
	statements = n.Metric("canopy_statements_total")
	run(defaults, "SELECT @@time_zone", "SYSTEM", 2)

	// a statement that fails after its SET: the SET holds
	var se *mysql.SQLError
	if _, err := c.ExecWith(zone, "SELECT * FROM nosuch.t", 10); !errors.As(err, &se) {
		t.Fatalf("a query of no table: %v", err)
	}
	if key, ok := c.held(); !ok || key != zone.Key {
		t.Errorf("after a failed statement the connection holds %q (%v), want the zone", key, ok)
	}
	statements = n.Metric("canopy_statements_total")
	run(zone, "SELECT @@time_zone", "+05:00", 1)

	// several statements in one packet; the node stops at a failure
	res, err := c.ExecMulti(defaults, []string{"SELECT @@time_zone", "SELECT 2 -- a comment", "SELECT 3"}, 10)
	if err != nil || len(res) != 3 || res[0].Rows[0][0].ToString() != "SYSTEM" || res[2].Rows[0][0].ToString() != "3" {
		t.Fatalf("ExecMulti: %v, %v", res, err)
	}
	res, err = c.ExecMulti(nil, []string{"SELECT 1", "SELECT * FROM nosuch.t", "SELECT 3"}, 10)
	if !errors.As(err, &se) || len(res) != 1 {
		t.Fatalf("ExecMulti stopping at the second statement: %v, %v", res, err)
	}

	// streaming: the SET is silent, the query answers
	statements = n.Metric("canopy_statements_total")
	stream := func(s *Settings, want string) {
		t.Helper()
		if err := c.StreamWith(s, "SELECT @@time_zone"); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			row, err := c.FetchNext()
			if err != nil {
				t.Fatal(err)
			}
			if row == nil {
				break
			}
			got = append(got, row[0].ToString())
		}
		c.CloseResult()
		if len(got) != 1 || got[0] != want {
			t.Errorf("streamed %q, want %q", got, want)
		}
	}
	stream(zone, "+05:00")
	stream(zone, "+05:00")
	if now := n.Metric("canopy_statements_total"); now-statements != 3 {
		t.Errorf("two streams, one switching settings: the node ran %v statements, want 3", now-statements)
	}
	if err := c.StreamWith(bad, "SELECT 1"); err == nil {
		t.Fatal("a stream after SET of an unknown variable started")
	}
	if _, ok := c.held(); ok {
		t.Error("settings known after a failed silent SET")
	}
	stream(defaults, "SYSTEM")

	// Pool.Exec: a statement of no client, under the pool's defaults
	if _, err := c.ExecWith(zone, "SELECT 1", 1); err != nil {
		t.Fatal(err)
	}
	c.Release()
	res1, err := p.Exec(context.Background(), "SELECT @@time_zone", 1)
	if err != nil || res1.Rows[0][0].ToString() != "SYSTEM" {
		t.Errorf("Pool.Exec after a client's zone: %v, %v", res1, err)
	}
	c, err = p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
}
