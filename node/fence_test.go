package node_test

import (
	"strings"
	"testing"

	"github.com/canopydb/canopy/internal/testutil"
)

// TestMasterAggregatorFence: a node keeps the newest master aggregator
// that recorded itself (durably), refuses an older or a rival claim, and
// refuses control commands of an older master epoch.
func TestMasterAggregatorFence(t *testing.T) {
	n := testutil.StartNode(t) // in no cluster: root may run link statements
	db := n.DB("")
	refused := func(q string) {
		t.Helper()
		_, err := db.Exec(q)
		if err == nil || !strings.Contains(err.Error(), "the sender was replaced as master") {
			t.Errorf("%s: got %v, want a refusal", q, err)
		}
	}
	testutil.ExpectRows(t, db, "CANOPY MASTER AGGREGATOR", ",0")
	testutil.ExpectRows(t, db, "CANOPY MASTER AGGREGATOR '127.0.0.1:3306' EPOCH 2", "127.0.0.1:3306,2")
	testutil.ExpectRows(t, db, "CANOPY MASTER AGGREGATOR '127.0.0.1:3306' EPOCH 2", "127.0.0.1:3306,2") // again: fine
	refused("CANOPY MASTER AGGREGATOR '127.0.0.1:3307' EPOCH 2")                                        // a rival of the same epoch
	refused("CANOPY MASTER AGGREGATOR '127.0.0.1:3307' EPOCH 1")
	testutil.ExpectRows(t, db, "CANOPY MASTER AGGREGATOR", "127.0.0.1:3306,2")

	refused("CANOPY DROP PARTITION x_0 MASTER EPOCH 1")
	refused("CANOPY PROMOTE PARTITION x_0 MASTER EPOCH 1")
	refused("CANOPY DEMOTE PARTITION x_0 MASTER EPOCH 1")
	refused("CANOPY REPLICATE '[]' MASTER EPOCH 1")
	testutil.Exec(t, db, "CANOPY DROP PARTITION x_0 MASTER EPOCH 2")
	testutil.Exec(t, db, "CANOPY DROP PARTITION x_0 MASTER EPOCH 3") // newer than the record: a master that has not recorded itself yet
	testutil.Exec(t, db, "CANOPY DROP PARTITION x_0")                // no epoch: not fenced
	testutil.Exec(t, db, "CANOPY REPLICATE '[]' MASTER EPOCH 2")

	testutil.ExpectRows(t, db, "CANOPY MASTER AGGREGATOR '127.0.0.1:3307' EPOCH 5", "127.0.0.1:3307,5")
	n.Stop()
	n.Start()
	db = n.DB("")
	testutil.ExpectRows(t, db, "CANOPY MASTER AGGREGATOR", "127.0.0.1:3307,5")
	refused("CANOPY MASTER AGGREGATOR '127.0.0.1:3306' EPOCH 4")
	refused("CANOPY REPLICATE '[]' MASTER EPOCH 4")
}
