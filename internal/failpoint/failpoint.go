// Package failpoint lets fault tests crash a node at a named point of a
// protocol (CANOPY_FAILPOINT=name[,name…] in its environment; the process
// exits at once, as if killed, with everything before the point durable),
// or switch on what no production node does (Enabled), such as letting a
// client stage a fault by hand.
package failpoint

import (
	"fmt"
	"os"
	"strings"
)

var armed = map[string]bool{}

func init() {
	for _, name := range strings.Split(os.Getenv("CANOPY_FAILPOINT"), ",") {
		if name = strings.TrimSpace(name); name != "" {
			armed[name] = true
		}
	}
}

// Hit crashes the process if the named failpoint is armed.
func Hit(name string) {
	if armed[name] {
		fmt.Fprintf(os.Stderr, "failpoint %s: exiting\n", name)
		os.Exit(3)
	}
}

// Enabled reports whether a named switch is armed: a fault test's way to
// turn on behaviour a production node never has (e.g. letting a client
// run a node-internal command to stage a fault).
func Enabled(name string) bool { return armed[name] }
