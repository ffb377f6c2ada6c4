package node

import "time"

// Log retention: a database's log is truncated to its last LogRetain
// records, but never past what a connected copy has (a copy catching up
// through the log is not cut off; one that is away, or too far behind,
// is provisioned from a snapshot when it returns).

const logTruncateInterval = 2 * time.Second

func (n *Node) retainLogs() {
	defer close(n.retainDone)
	tick := time.NewTicker(logTruncateInterval)
	defer tick.Stop()
	truncated := map[string]uint64{} // database → LSN its log was truncated to
	for {
		select {
		case <-n.done:
			return
		case <-tick.C:
		}
		n.truncateLogs(truncated)
	}
}

func (n *Node) truncateLogs(truncated map[string]uint64) {
	keep := uint64(n.cfg.LogRetain)
	infos := n.store.DatabaseInfos()
	present := map[string]bool{}
	for _, info := range infos {
		present[info.Name] = true
		if truncated[info.Name] > info.Pos.LSN {
			delete(truncated, info.Name) // dropped and made again
		}
	}
	for name := range truncated {
		if !present[name] {
			delete(truncated, name)
		}
	}
	for _, info := range infos {
		if info.Pos.LSN <= keep {
			continue
		}
		floor := info.Pos.LSN - keep
		if f, ok := n.hub.LogFloor(info.Name); ok && f < floor {
			floor = f
		}
		if a := n.aggregator(); a != nil {
			if f, ok := a.LogFloor(info.Name); ok && f < floor {
				floor = f
			}
		}
		// the record at floor stays: a copy there is checked against its term
		if floor <= 1 || floor-1 <= truncated[info.Name] {
			continue
		}
		// from the last cut on: range deletions that all start at 0 pile
		// up over each other until a compaction drops them
		if err := n.store.TruncateLog(info.Name, truncated[info.Name], floor-1); err != nil {
			n.log.Warn("truncating a log", "database", info.Name, "err", err)
			continue
		}
		truncated[info.Name] = floor - 1
	}
}
