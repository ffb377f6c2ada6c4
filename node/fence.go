package node

import (
	"encoding/json"
	"fmt"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
)

// A leaf witnesses who the master aggregator is (DESIGN.md, Metadata):
// each master aggregator records on every leaf its address and master
// epoch (a number the metadata log raises at every takeover), the leaf
// keeps the newest durably and refuses control commands (CANOPY
// REPLICATE, PROMOTE/DEMOTE/DROP PARTITION) that carry an older epoch.
// A master aggregator replaced while it was away asks the leaves before
// it stands for election again.

// masterRecord is the newest master aggregator this node has seen.
type masterRecord struct {
	ClusterID string `json:"cluster_id"`
	Addr      string `json:"addr"`
	Epoch     uint64 `json:"epoch"`
}

const masterKey = "master-aggregator"

// masterRecordLocked reads the record (of this node's current cluster:
// one kept from another cluster counts as none). n.masterMu is held.
func (n *Node) masterRecordLocked() (masterRecord, error) {
	var r masterRecord
	m, err := n.membership()
	if err != nil {
		return r, err
	}
	v, ok, err := n.store.GetLocal(masterKey)
	if err != nil || !ok || len(v) == 0 {
		return masterRecord{}, err
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("master aggregator record: %w", err)
	}
	if r.ClusterID != m.ClusterID {
		return masterRecord{}, nil
	}
	return r, nil
}

// recordMaster runs CANOPY MASTER AGGREGATOR 'addr' EPOCH n: it keeps
// the newer of the record and the claim, and refuses a claim of an older
// epoch, or another aggregator's of the same one.
func (n *Node) recordMaster(addr string, epoch uint64) (*sqltypes.Result, error) {
	n.masterMu.Lock()
	defer n.masterMu.Unlock()
	r, err := n.masterRecordLocked()
	if err != nil {
		return nil, err
	}
	switch {
	case epoch < r.Epoch || epoch == r.Epoch && addr != r.Addr:
		n.log.Warn("refused a master aggregator replaced by a newer one", "aggregator", addr, "epoch", epoch, "master", r.Addr, "master_epoch", r.Epoch)
		return nil, fencedError(addr, epoch, r)
	case epoch > r.Epoch:
		m, err := n.membership()
		if err != nil {
			return nil, err
		}
		r = masterRecord{ClusterID: m.ClusterID, Addr: addr, Epoch: epoch}
		b, _ := json.Marshal(r)
		if err := n.store.SetLocal(masterKey, b); err != nil {
			return nil, err
		}
		n.log.Info("master aggregator", "aggregator", addr, "epoch", epoch)
	}
	return masterResult(r), nil
}

// showMaster answers CANOPY MASTER AGGREGATOR.
func (n *Node) showMaster() (*sqltypes.Result, error) {
	n.masterMu.Lock()
	defer n.masterMu.Unlock()
	r, err := n.masterRecordLocked()
	if err != nil {
		return nil, err
	}
	return masterResult(r), nil
}

// fence refuses a control command of master epoch epoch when this node
// has seen a newer master (0: the sender gave none).
func (n *Node) fence(epoch uint64) error {
	if epoch == 0 {
		return nil
	}
	n.masterMu.Lock()
	defer n.masterMu.Unlock()
	r, err := n.masterRecordLocked()
	if err != nil {
		return err
	}
	if epoch < r.Epoch {
		return fencedError("", epoch, r)
	}
	return nil
}

func fencedError(addr string, epoch uint64, r masterRecord) error {
	who := "an aggregator"
	if addr != "" {
		who = "aggregator " + addr
	}
	return mysql.NewSQLError(1105, "HY000",
		"Refused: %s claims master epoch %d, but this node follows master aggregator %s since master epoch %d (the sender was replaced as master)",
		who, epoch, r.Addr, r.Epoch)
}

func masterResult(r masterRecord) *sqltypes.Result {
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("Master_Aggregator"), intField("Master_Epoch")}}
	res.Rows = [][]sqltypes.Value{{strValue(r.Addr), uintValue(r.Epoch)}}
	return res
}
