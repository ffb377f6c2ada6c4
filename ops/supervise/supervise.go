// Package supervise decides when an agent (re)starts the nodes of its
// host. It is pure: Decide maps a node's process history and the
// deployment's manual control to what to do; the agent runs processes.
package supervise

import "time"

// Proc is what the agent knows of one node's process.
type Proc struct {
	// Wanted: the node should run (deployed or started, not stopped by an
	// operator).
	Wanted  bool
	Running bool
	// LastStart and LastExit: the last process start and exit; Failures
	// counts exits in a row that came soon after their start.
	LastStart time.Time
	LastExit  time.Time
	Failures  int
}

// Decision is what to do with a node now.
type Decision struct {
	Start bool
	// Retry, when not Start: the node should be started at this time (zero:
	// nothing to do).
	Retry  time.Time
	Reason string
}

const (
	// FirstBackoff is the wait before the first restart of a node that
	// died; it doubles with each quick failure up to MaxBackoff.
	FirstBackoff = time.Second
	MaxBackoff   = 30 * time.Second
	// Stable is how long a process must live for its exit not to count as
	// a quick failure (the backoff starts over).
	Stable = time.Minute
)

// Exited records a process exit in p and returns it.
func Exited(p Proc, now time.Time) Proc {
	p.Running, p.LastExit = false, now
	if now.Sub(p.LastStart) < Stable {
		p.Failures++
	} else {
		p.Failures = 1
	}
	return p
}

// Started records a process start.
func Started(p Proc, now time.Time) Proc {
	p.Running, p.LastStart = true, now
	return p
}

// Backoff is the wait after n quick failures in a row.
func Backoff(n int) time.Duration {
	d := FirstBackoff
	for i := 1; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Decide says whether to start a node that should run and does not.
// Manual control stops every automatic start; an operator's start is not
// automatic and does not ask.
func Decide(p Proc, manualControl bool, now time.Time) Decision {
	switch {
	case p.Running || !p.Wanted:
		return Decision{}
	case manualControl:
		return Decision{Reason: "manual control is on: not restarted automatically"}
	case p.LastExit.IsZero():
		return Decision{Start: true, Reason: "not running"}
	}
	at := p.LastExit.Add(Backoff(p.Failures))
	if now.Before(at) {
		return Decision{Retry: at, Reason: "backing off after an exit"}
	}
	return Decision{Start: true, Reason: "restart after an exit"}
}
