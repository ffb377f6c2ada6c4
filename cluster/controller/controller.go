// Package controller is the master aggregator's cluster controller as a
// pure function: from the metadata (raft's state) and what heartbeats
// and earlier actions have observed, it decides what to do next (fail a
// leaf over, attach one that returned, promote a master at its epoch).
// It does no I/O; the cluster manager's loop (package cluster/manager)
// gathers the observations, calls Decide and performs the actions (raft
// proposals, RPCs to leaves), and the datadriven scripts in testdata pin
// its decisions for sequences of failures without processes.
package controller

import (
	"fmt"
	"strings"
	"time"

	"github.com/canopydb/canopy/cluster/meta"
)

// Health is what heartbeats know of a leaf.
type Health struct {
	Known bool // at least one heartbeat has completed
	// Failing: how long the current run of failed heartbeats has lasted
	// (0 while the leaf answers); Refused: the last failure was a refused
	// connection (the process is gone, not hung)
	Failing  time.Duration
	Refused  bool
	OKStreak int // heartbeats answered in a row
}

// PromoteKey is one master the metadata names at one epoch.
type PromoteKey struct {
	DB      string
	Ordinal int
	Master  string
	Epoch   uint64
}

// Observed is what the controller knows beyond the metadata.
type Observed struct {
	Health map[string]Health
	// Attaching: leaves whose attach is running or waits out its retry
	// interval after a failure
	Attaching map[string]bool
	// Promoted: masters confirmed promoted at their epoch, or being
	// promoted now
	Promoted map[PromoteKey]bool
}

// Action is one thing the controller decided.
type Action interface{ String() string }

// LeafDown: take the leaves out of service and fail their partitions
// over (one raft command, meta.LeafDown: leaves failing together are
// taken down together, so that none is made master in another's place).
type LeafDown struct{ Leaves []Failed }

// Failed is a leaf that stopped answering, and how.
type Failed struct {
	Leaf    string
	Failing time.Duration
	Refused bool
}

// Addrs lists the leaves.
func (a LeafDown) Addrs() []string {
	var out []string
	for _, f := range a.Leaves {
		out = append(out, f.Leaf)
	}
	return out
}

// Detach: the leaf answers again but auto_attach is off; it waits,
// detached, for ATTACH LEAF.
type Detach struct{ Leaf string }

// Attach: the leaf answers again; attach it (meta.PlanAttach).
type Attach struct{ Leaf string }

// Promote: tell the master the metadata names for a partition to take
// writes at the partition's epoch.
type Promote struct{ PromoteKey }

func (a LeafDown) String() string {
	var parts []string
	for _, f := range a.Leaves {
		parts = append(parts, fmt.Sprintf("%s (failing %s, refused %t)", f.Leaf, f.Failing, f.Refused))
	}
	return "leaf-down " + strings.Join(parts, ", ")
}
func (a Detach) String() string { return "detach " + a.Leaf }
func (a Attach) String() string { return "attach " + a.Leaf }
func (a Promote) String() string {
	return fmt.Sprintf("promote %s on %s at epoch %d", meta.PartitionName(a.DB, a.Ordinal), a.Master, a.Epoch)
}

// Decide is what the master aggregator does next, given the metadata and
// what it observed:
//   - an online leaf whose heartbeats have failed for the failure timeout
//     (the refused timeout when connections are refused) goes down, when
//     failure detection is on;
//   - an offline leaf that answered two heartbeats in a row is attached
//     (auto_attach) or detached;
//   - a leaf left attaching with no attach running (its master aggregator
//     died) is attached again, or taken down if it stopped answering;
//   - every partition master on a leaf that is up and not yet confirmed
//     at its epoch is promoted (after a failover, after a change of
//     master aggregator, again after a failed try); not on a leaf this
//     decision takes down.
func Decide(st *meta.State, obs Observed) []Action {
	var out []Action
	var failed LeafDown
	down := map[string]bool{}
	refusedAfter := millis(st, "leaf_refused_timeout_ms")
	failedAfter := millis(st, "leaf_failure_timeout_ms")
	for _, l := range st.Leaves {
		addr := l.Addr()
		h := obs.Health[addr]
		if !h.Known {
			continue
		}
		switch l.State {
		case meta.LeafOnline:
			if st.Variable("leaf_failure_detection") != "ON" || h.Failing == 0 {
				continue
			}
			if (h.Refused && h.Failing >= refusedAfter) || h.Failing >= failedAfter {
				failed.Leaves = append(failed.Leaves, Failed{Leaf: addr, Failing: h.Failing, Refused: h.Refused})
				down[addr] = true
			}
		case meta.LeafAttaching:
			// an attach that runs deals with its leaf's failure itself; one
			// left behind by a master aggregator that died is taken up
			if obs.Attaching[addr] {
				continue
			}
			if h.Failing > 0 && ((h.Refused && h.Failing >= refusedAfter) || h.Failing >= failedAfter) {
				failed.Leaves = append(failed.Leaves, Failed{Leaf: addr, Failing: h.Failing, Refused: h.Refused})
				down[addr] = true
			} else if h.OKStreak >= 2 {
				out = append(out, Attach{Leaf: addr})
			}
		case meta.LeafOffline:
			if h.OKStreak < 2 || obs.Attaching[addr] {
				continue
			}
			if st.Variable("auto_attach") != "ON" {
				out = append(out, Detach{Leaf: addr})
			} else {
				out = append(out, Attach{Leaf: addr})
			}
		}
	}
	if len(failed.Leaves) > 0 {
		out = append([]Action{failed}, out...)
	}
	for _, act := range Promotions(st, obs.Promoted) {
		if !down[act.(Promote).Master] {
			out = append(out, act)
		}
	}
	return out
}

// Promotions are the Promote actions of Decide: the masters not yet
// known to have been promoted at their partition's epoch, on leaves that
// are online or being attached. (A partition's first master, epoch 0,
// was created as one; it is confirmed all the same: a leaf that paused or
// restarted takes no writes on its masters until confirmed.)
func Promotions(st *meta.State, promoted map[PromoteKey]bool) []Action {
	var out []Action
	for _, name := range st.DatabaseNames() {
		d := st.Database(name)
		for _, p := range d.Partitions {
			if p.Master == "" {
				continue
			}
			k := PromoteKey{d.Name, p.Ordinal, p.Master, p.Epoch}
			if promoted[k] {
				continue
			}
			if l, ok := st.Leaf(p.Master); !ok || (l.State != meta.LeafOnline && l.State != meta.LeafAttaching) {
				continue
			}
			out = append(out, Promote{k})
		}
	}
	return out
}

// millis reads a cluster variable in milliseconds.
func millis(st *meta.State, name string) time.Duration {
	var n int
	if _, err := fmt.Sscan(st.Variable(name), &n); err != nil {
		fmt.Sscan(meta.DefaultVariables[name], &n)
	}
	return time.Duration(n) * time.Millisecond
}
