package node

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Snapshots of a node's data for the Ops agent (seeding a new or broken
// host, seed 004). The agent calls the node's HTTP port with the token it
// wrote to the node's --admin-token-file; the node writes the checkpoint
// under its own --snapshot-dir, never to a path from the network.

// SeededMarker is the file an installer leaves in a data directory it
// seeded from another node's snapshot: the node's next start adopts the
// data as its own (adoptSeed).
const SeededMarker = "canopy-seeded"

// SnapshotManifest describes a snapshot: <snapshot-dir>/<name>/manifest.json
// beside the checkpoint in <snapshot-dir>/<name>/data.
type SnapshotManifest struct {
	Name      string             `json:"name"`
	Node      string             `json:"node"` // host:port of the node it was taken of
	Taken     time.Time          `json:"taken"`
	TookMs    float64            `json:"took_ms"` // commits waited this long
	Databases []SnapshotDatabase `json:"databases"`
}

// SnapshotDatabase is a database in a snapshot, at its log position.
type SnapshotDatabase struct {
	Name    string `json:"name"`
	Term    uint64 `json:"term"`
	LSN     uint64 `json:"lsn"`
	Commits uint64 `json:"commits"`
	Replica bool   `json:"replica"`
}

var snapshotName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// adminAllowed checks the bearer token of an /admin call.
func (n *Node) adminAllowed(r *http.Request) error {
	if n.cfg.AdminTokenFile == "" {
		return errors.New("the admin endpoints are off: start the node with --admin-token-file")
	}
	want, err := os.ReadFile(n.cfg.AdminTokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	w := strings.TrimSpace(string(want))
	if !ok || w == "" || subtle.ConstantTimeCompare([]byte(got), []byte(w)) != 1 {
		return errUnauthorized
	}
	return nil
}

var errUnauthorized = errors.New("unauthorized")

// handleSnapshot: POST /admin/snapshot?name=N writes a checkpoint of the
// store and its manifest, and answers the manifest.
func (n *Node) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := n.adminAllowed(r); err != nil {
		status := http.StatusForbidden
		if errors.Is(err, errUnauthorized) {
			status = http.StatusUnauthorized
		}
		http.Error(w, err.Error(), status)
		return
	}
	if n.cfg.SnapshotDir == "" {
		http.Error(w, "snapshots are off: start the node with --snapshot-dir", http.StatusForbidden)
		return
	}
	name := r.URL.Query().Get("name")
	if !snapshotName.MatchString(name) {
		http.Error(w, "name: letters, digits, '_', '.', '-', at most 64", http.StatusBadRequest)
		return
	}
	m, err := n.snapshot(name)
	if err != nil {
		n.log.Warn("snapshot", "name", name, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m)
}

func (n *Node) snapshot(name string) (*SnapshotManifest, error) {
	dir := filepath.Join(n.cfg.SnapshotDir, name)
	if err := os.MkdirAll(n.cfg.SnapshotDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	start := time.Now()
	infos, err := n.store.Checkpoint(filepath.Join(dir, "data"))
	took := time.Since(start)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	host, port := n.Self()
	m := &SnapshotManifest{Name: name, Node: net.JoinHostPort(host, strconv.Itoa(port)), Taken: start.UTC(), TookMs: float64(took.Microseconds()) / 1000}
	for _, d := range infos {
		m.Databases = append(m.Databases, SnapshotDatabase{Name: d.Name, Term: d.Pos.Term, LSN: d.Pos.LSN, Commits: d.Commits, Replica: d.Replica})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n.log.Info("snapshot taken", "name", name, "databases", len(m.Databases), "commits_paused", took)
	return m, nil
}

// adoptSeed makes data seeded from another node's snapshot this node's
// own: what said who the other node was (its cluster membership, its
// master aggregator, the replicas it shipped to) is forgotten, so the
// seeded node starts outside any cluster and ships to no one; the rows
// stay. A leaf's partitions become replicas at their positions: added to
// the cluster, the leaf's copies catch up from there (node-replace).
func (n *Node) adoptSeed() error {
	marker := filepath.Join(n.cfg.DataDir, SeededMarker)
	if _, err := os.Stat(marker); err != nil {
		return nil
	}
	m, err := n.membership()
	if err != nil {
		return fmt.Errorf("adopt seeded data: %w", err)
	}
	if m.Role == "leaf" {
		// a leaf's partitions: copies to be caught up by the cluster,
		// never masters by themselves
		for _, d := range n.store.DatabaseInfos() {
			if !d.Replica {
				if err := n.store.MarkReplica(d.Name); err != nil {
					return fmt.Errorf("adopt seeded data: %w", err)
				}
			}
		}
	}
	for _, k := range []string{membershipKey, masterKey, replicationKey} {
		if err := n.store.SetLocal(k, nil); err != nil {
			return fmt.Errorf("adopt seeded data: %w", err)
		}
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("adopt seeded data: %w", err)
	}
	n.log.Info("adopted data seeded from another node's snapshot: it is outside any cluster now", "data_dir", n.cfg.DataDir)
	return nil
}
