// Package nodeapi holds the typed messages of the control calls between
// nodes: what a leaf reports of its partition copies and replication
// streams to the master aggregator (CANOPY PARTITION STATUS). They travel
// as one JSON document in one column, so neither side depends on the
// column order of a SHOW command meant for people.
package nodeapi

// Status is a node's answer to CANOPY PARTITION STATUS.
type Status struct {
	Copies  []Copy   `json:"copies"`
	Streams []Stream `json:"streams"`
	// Incarnation changes when the node starts and after every pause it
	// notices; Suspect counts its master partitions that take no writes
	// until the master aggregator confirms them (storage fence.go).
	Incarnation uint64 `json:"incarnation"`
	Suspect     int    `json:"suspect,omitempty"`
}

// Copy is one database the node holds.
type Copy struct {
	Database string `json:"database"`
	// Replica: the copy follows a master's log; else it takes its own
	// writes. Sync: the master waits for it (a replica's last stream).
	Replica bool `json:"replica,omitempty"`
	Sync    bool `json:"sync,omitempty"`
	// Pending: a snapshot is being installed in it; it holds nothing
	// usable yet.
	Pending bool `json:"pending,omitempty"`
	// Suspect: a master copy that has not been confirmed since a pause;
	// Deposed: a master copy a newer master replaced (fenced)
	Suspect bool   `json:"suspect,omitempty"`
	Deposed bool   `json:"deposed,omitempty"`
	Term    uint64 `json:"term"`
	LSN     uint64 `json:"lsn"`
	Commits uint64 `json:"commits"`
}

// Stream is one replication stream the node ships.
type Stream struct {
	Database  string `json:"database"`
	Target    string `json:"target"` // the target's internal address
	Sync      bool   `json:"sync,omitempty"`
	Connected bool   `json:"connected,omitempty"`
	AckedLSN  uint64 `json:"acked_lsn"`
	DownMs    int64  `json:"down_ms,omitempty"`
	Error     string `json:"error,omitempty"`
}
