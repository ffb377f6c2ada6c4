package manager

import (
	"context"
	"fmt"
	"time"

	"github.com/canopydb/canopy/internal/nodeapi"
)

// Confirming masters after a pause (DESIGN.md §3 Replication, Fencing).
// A leaf that notices a pause of its own (storage fence.go) takes no
// writes on its master partitions until the master aggregator confirms
// them, and changes its incarnation. The master aggregator reads the
// incarnation with every CANOPY PARTITION STATUS (every second from the
// replica watch, and before a promotion when it does not know it); when
// it changes, it forgets that it promoted that leaf's masters, so
// promoteMasters sends each one the metadata still names there PROMOTE …
// EPOCH e INCARNATION i again: the leaf's copy at term e is confirmed, if
// i is still its incarnation. A partition that failed over meanwhile is
// not named, so its copy stays fenced until the attach drops it. The
// heartbeats stay SELECT 1, as the seeds have them.

// reconfirmEvery spaces the confirmations asked for while a leaf reports
// suspect masters and its incarnation does not change (a confirmation
// lost to a race, or a copy the metadata does not name there).
const reconfirmEvery = 5 * time.Second

// incarnationSeen is a leaf's incarnation as last read, and when its
// masters were last sent to be confirmed.
type incarnationSeen struct {
	inc           uint64
	reconfirmedAt time.Time
}

// noteIncarnation records what a leaf's status says of its incarnation;
// on the master aggregator, a new one (or suspects that linger) has the
// leaf's masters confirmed again.
func (a *Manager) noteIncarnation(leaf string, st *nodeapi.Status) {
	a.ha.incMu.Lock()
	seen := a.ha.incarnations[leaf]
	reconfirm := st.Incarnation != seen.inc || (st.Suspect > 0 && time.Since(seen.reconfirmedAt) >= reconfirmEvery)
	if reconfirm {
		seen.reconfirmedAt = time.Now()
	}
	seen.inc = st.Incarnation
	a.ha.incarnations[leaf] = seen
	a.ha.incMu.Unlock()
	if !reconfirm || !a.IsMaster() {
		return
	}
	a.ha.promoteMu.Lock()
	for k := range a.ha.promoted {
		if k.Master == leaf {
			delete(a.ha.promoted, k)
		}
	}
	a.ha.promoteMu.Unlock()
	a.Signal()
}

// incarnation is a leaf's incarnation as last read (0: not known).
func (a *Manager) incarnation(leaf string) uint64 {
	a.ha.incMu.Lock()
	defer a.ha.incMu.Unlock()
	return a.ha.incarnations[leaf].inc
}

// confirmOn runs PROMOTE PARTITION … EPOCH on a leaf, naming the leaf's
// incarnation (read first when it is not known), which also confirms a
// master suspect since a pause, and returns that incarnation and the
// leaf's own error (a *mysql.SQLError when the leaf refused it).
func (a *Manager) confirmOn(leaf, quotedName string, epoch uint64) (uint64, error) {
	lp, err := a.LeafPool(leaf)
	if err != nil {
		return 0, err
	}
	inc := a.incarnation(leaf)
	if inc == 0 {
		if _, err := a.leafStatus(leaf); err == nil {
			inc = a.incarnation(leaf)
		}
	}
	stmt := fmt.Sprintf("CANOPY PROMOTE PARTITION %s EPOCH %d", quotedName, epoch)
	if inc != 0 {
		stmt += fmt.Sprintf(" INCARNATION %d", inc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = lp.Exec(ctx, a.Fenced(stmt), 10)
	return inc, err
}
