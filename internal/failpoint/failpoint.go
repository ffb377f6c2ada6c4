// Package failpoint lets fault tests crash a node at a named point of a
// protocol (CANOPY_FAILPOINT=name[,name…] in its environment; the process
// exits at once, as if killed, with everything before the point durable),
// make an operation fail (Fail; name*N fails the first N times only, then
// the fault clears), or switch on what no production node does (Enabled),
// such as letting a client stage a fault by hand. name@N crashes at the
// N-th hit of Hit (the earlier ones pass): a point in the middle of a
// loop.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	armed = map[string]bool{}
	mu    sync.Mutex
	left  = map[string]int{} // Fail points armed for a number of hits
	at    = map[string]int{} // Hit points armed for their N-th hit
)

func init() {
	for _, name := range strings.Split(os.Getenv("CANOPY_FAILPOINT"), ",") {
		name = strings.TrimSpace(name)
		if base, n, ok := strings.Cut(name, "*"); ok {
			if times, err := strconv.Atoi(n); err == nil && times > 0 {
				name = base
				left[name] = times
			}
		}
		if base, n, ok := strings.Cut(name, "@"); ok {
			if hit, err := strconv.Atoi(n); err == nil && hit > 0 {
				name = base
				at[name] = hit
			}
		}
		if name != "" {
			armed[name] = true
		}
	}
}

// Fail reports whether the named fault is armed for this hit: the caller
// then fails as the real fault would make it fail. name*N in
// CANOPY_FAILPOINT arms it for the first N hits.
func Fail(name string) bool {
	if !armed[name] {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	n, counted := left[name]
	if !counted {
		return true
	}
	if n == 0 {
		return false
	}
	left[name] = n - 1
	return true
}

// Hit crashes the process if the named failpoint is armed (name@N: at
// its N-th hit).
func Hit(name string) {
	if !armed[name] {
		return
	}
	mu.Lock()
	n, counted := at[name]
	if counted {
		at[name] = n - 1
	}
	mu.Unlock()
	if !counted || n == 1 {
		fmt.Fprintf(os.Stderr, "failpoint %s: exiting\n", name)
		os.Exit(3)
	}
}

// Enabled reports whether a named switch is armed: a fault test's way to
// turn on behaviour a production node never has (e.g. letting a client
// run a node-internal command to stage a fault).
func Enabled(name string) bool { return armed[name] }
