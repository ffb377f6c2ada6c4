package aggregator

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dolthub/vitess/go/sqltypes"
)

// Confirming masters after a pause (DESIGN.md §3 Replication, Fencing).
// A leaf that notices a pause of its own (storage fence.go) takes no
// writes on its master partitions until the master aggregator confirms
// them, and changes its incarnation. The heartbeat (CANOPY PING) reads the
// incarnation; when it changes (or is first read), the master aggregator
// forgets that it promoted that leaf's masters, so promoteMasters sends
// each one the metadata still names there PROMOTE … EPOCH e INCARNATION i
// again: the leaf's copy at term e is confirmed, if i is still its
// incarnation. A partition that failed over meanwhile is not named, so its
// copy stays fenced until the attach drops it.

// reconfirmEvery spaces the confirmations asked for while a leaf reports
// suspect masters and its incarnation does not change (a confirmation
// lost to a race, or a copy the metadata does not name there).
const reconfirmEvery = 5 * time.Second

// noteIncarnation reads a CANOPY PING answer; called under h.mu.
func (b *beat) noteIncarnation(res *sqltypes.Result) {
	if res == nil || len(res.Rows) != 1 || len(res.Rows[0]) < 2 {
		return
	}
	inc, err := strconv.ParseUint(res.Rows[0][0].ToString(), 10, 64)
	if err != nil {
		return
	}
	suspect, _ := strconv.Atoi(res.Rows[0][1].ToString())
	if inc != b.incarnation || (suspect > 0 && time.Since(b.reconfirmedAt) >= reconfirmEvery) {
		b.reconfirm, b.reconfirmedAt = true, time.Now()
	}
	b.incarnation = inc
}

// incarnation is a node's incarnation as its heartbeat last read it (0:
// not known yet).
func (h *heartbeats) incarnation(addr string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b := h.nodes[addr]; b != nil {
		return b.incarnation
	}
	return 0
}

// takeReconfirm lists the nodes whose masters are to be confirmed again.
func (h *heartbeats) takeReconfirm() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for addr, b := range h.nodes {
		if b.reconfirm {
			b.reconfirm = false
			out = append(out, addr)
		}
	}
	return out
}

// reconfirmLeaves, on the master aggregator, has the masters of every leaf
// whose incarnation changed promoted (confirmed) again.
func (a *Aggregator) reconfirmLeaves() {
	leaves := a.beats.takeReconfirm()
	if len(leaves) == 0 || !a.IsMaster() {
		return
	}
	forget := map[string]bool{}
	for _, l := range leaves {
		forget[l] = true
	}
	a.ha.promoteMu.Lock()
	for k := range a.ha.promoted {
		if forget[k.master] {
			delete(a.ha.promoted, k)
		}
	}
	a.ha.promoteMu.Unlock()
	a.signal()
}

// confirmOn runs PROMOTE PARTITION … EPOCH on a leaf, naming the leaf's
// incarnation when its heartbeat has read it (which also confirms a
// master suspect since a pause), and returns that incarnation (0: none
// named) and the leaf's own error (a *mysql.SQLError when the leaf
// refused it).
func (a *Aggregator) confirmOn(leaf, quotedName string, epoch uint64) (uint64, error) {
	lp, err := a.leafPool(leaf)
	if err != nil {
		return 0, err
	}
	stmt := fmt.Sprintf("CANOPY PROMOTE PARTITION %s EPOCH %d", quotedName, epoch)
	inc := a.beats.incarnation(leaf)
	if inc != 0 {
		stmt += fmt.Sprintf(" INCARNATION %d", inc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = lp.Exec(ctx, stmt, 10)
	return inc, err
}
