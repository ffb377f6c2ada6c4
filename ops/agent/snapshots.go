package agent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Snapshots (seed 004): a consistent checkpoint of a node's store, taken
// by the node itself (POST /admin/snapshot on its HTTP port, with the
// admin token this agent wrote beside it) under
// HOME/nodes/ID/snapshots/SNAP/{data,manifest.json}. The agent lists,
// deletes and prunes them, and serves their files to a seeding agent
// that holds a grant for that snapshot.

// Snapshot is a snapshot of a node, as its host's agent lists it.
type Snapshot struct {
	ID        string             `json:"id"`
	Node      string             `json:"node"` // the node's id
	Host      string             `json:"host"`
	NodeAddr  string             `json:"node_addr"`
	Taken     time.Time          `json:"taken"`
	TookMs    float64            `json:"took_ms"` // commits on the node waited this long
	Bytes     int64              `json:"bytes"`   // of its files (hard links share them with the node's data)
	Files     int                `json:"files"`
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

// SnapshotFile is a file of a snapshot's data, with its checksum.
type SnapshotFile struct {
	Path   string `json:"path"` // relative to the data directory, with '/'
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// snapshotIDs: NODEID-YYYYMMDDTHHMMSSZ-xxxx; the node id says which agent
// holds it.
var snapshotID = regexp.MustCompile(`^([A-F0-9]{10})-([0-9]{8}T[0-9]{6}Z)-([0-9a-f]{4})$`)

func snapshotNode(id string) (string, error) {
	m := snapshotID.FindStringSubmatch(id)
	if m == nil {
		return "", badRequest("%q is not a snapshot id (NODE-YYYYMMDDTHHMMSSZ-xxxx)", id)
	}
	return m[1], nil
}

func (a *Agent) snapshotDir(id string) (string, error) {
	nodeID, err := snapshotNode(id)
	if err != nil {
		return "", err
	}
	return filepath.Join(a.nodeDir(nodeID), "snapshots", id), nil
}

// SnapshotRequest names the node to snapshot.
type SnapshotRequest struct {
	Node string `json:"node"`
}

// apiSnapshotCreate (primary): snapshot-create NODE_ID, on the node's host.
func (a *Agent) apiSnapshotCreate(r *http.Request) (any, error) {
	var req SnapshotRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	spec, err := a.nodeSpec(req.Node)
	if err != nil {
		return nil, err
	}
	var snap Snapshot
	err = a.onHost(r.Context(), spec.Host, "POST", "/api/local/snapshots", req, &snap)
	return snap, err
}

// apiSnapshots (primary): every snapshot of the deployment.
func (a *Agent) apiSnapshots(r *http.Request) (any, error) {
	out := []Snapshot{}
	for _, host := range a.agentHosts() {
		var list []Snapshot
		if err := a.onHost(r.Context(), host, "GET", "/api/local/snapshots", nil, &list); err != nil {
			a.log.Warn("snapshots of a host", "host", host, "err", err) // the others' still count
			continue
		}
		out = append(out, list...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Taken.Before(out[j].Taken) })
	return out, nil
}

// apiSnapshotDelete (primary): snapshot-delete ID.
func (a *Agent) apiSnapshotDelete(r *http.Request) (any, error) {
	nodeID, err := snapshotNode(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	spec, err := a.nodeSpec(nodeID)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"deleted": true}, a.onHost(r.Context(), spec.Host, "POST", "/api/local/snapshots/"+r.PathValue("id")+"/delete", nil, nil)
}

func (a *Agent) agentHosts() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var hosts []string
	for _, ag := range a.st.Agents {
		hosts = append(hosts, ag.Host)
	}
	return hosts
}

// apiLocalSnapshotCreate: the node takes a checkpoint of its store.
func (a *Agent) apiLocalSnapshotCreate(r *http.Request) (any, error) {
	var req SnapshotRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	snap, err := a.takeSnapshot(r.Context(), req.Node)
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func (a *Agent) takeSnapshot(ctx context.Context, nodeID string) (Snapshot, error) {
	a.mu.Lock()
	p, ok := a.procs[nodeID]
	var spec NodeSpec
	if ok {
		spec = p.spec
	}
	a.mu.Unlock()
	if !ok {
		return Snapshot{}, notFound("no node %s on this host", nodeID)
	}
	id := fmt.Sprintf("%s-%s-%s", nodeID, time.Now().UTC().Format("20060102T150405Z"), randomHex(2))
	if cmd := a.cfg.Commands.CreateSnapshot; cmd != "" {
		if err := a.commandSnapshot(ctx, spec, id, cmd); err != nil {
			return Snapshot{}, err
		}
	} else if err := a.nodeSnapshot(ctx, spec, id); err != nil {
		return Snapshot{}, err
	}
	snap, err := a.readSnapshot(id)
	if err != nil {
		return Snapshot{}, err
	}
	a.log.Info("snapshot taken", "snapshot", id, "node", nodeID, "bytes", snap.Bytes, "commits_paused_ms", snap.TookMs)
	a.pruneSnapshots(nodeID)
	return snap, nil
}

// nodeSnapshot asks the node for a checkpoint of its store.
func (a *Agent) nodeSnapshot(ctx context.Context, spec NodeSpec, id string) error {
	token, err := os.ReadFile(filepath.Join(a.nodeDir(spec.ID), "admin-token"))
	if err != nil {
		return conflict("node %s has no admin token yet (restart it with this agent): %v", spec.ID, err)
	}
	url := fmt.Sprintf("http://%s:%d/admin/snapshot?name=%s", spec.Host, spec.Port+nodeHTTPOffset, id)
	req, err := http.NewRequestWithContext(ctx, "POST", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("snapshot of node %s: %w", spec.ID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("snapshot of node %s: %s: %s", spec.ID, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// commandSnapshot runs the CreateSnapshotCommand, which fills the
// snapshot's data directory; the agent writes the manifest (no
// positions: the node was not asked).
func (a *Agent) commandSnapshot(ctx context.Context, spec NodeSpec, id, command string) error {
	dir, err := a.snapshotDir(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	start := time.Now()
	err = a.runHook(ctx, "CreateSnapshotCommand", command, envVar("CANOPY_NODE_ID", spec.ID),
		envVar("CANOPY_DATA_DIR", filepath.Join(a.nodeDir(spec.ID), "data")), envVar("CANOPY_SNAPSHOT_DIR", dir),
		envVar("CANOPY_SNAPSHOT_ID", id))
	if err == nil {
		if info, serr := os.Stat(filepath.Join(dir, "data")); serr != nil || !info.IsDir() {
			err = fmt.Errorf("CreateSnapshotCommand left no directory %s", filepath.Join(dir, "data"))
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	m, _ := json.Marshal(map[string]any{"name": id, "node": spec.Addr(), "taken": start.UTC(),
		"took_ms": float64(time.Since(start).Microseconds()) / 1000, "databases": []SnapshotDatabase{}, "command": true})
	return writeFileAtomic(filepath.Join(dir, "manifest.json"), m, 0o600)
}

// readSnapshot reads a snapshot's manifest and sizes its files.
func (a *Agent) readSnapshot(id string) (Snapshot, error) {
	dir, err := a.snapshotDir(id)
	if err != nil {
		return Snapshot{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return Snapshot{}, notFound("snapshot %s: %v", id, err)
	}
	var m struct {
		Node      string             `json:"node"`
		Taken     time.Time          `json:"taken"`
		TookMs    float64            `json:"took_ms"`
		Databases []SnapshotDatabase `json:"databases"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s manifest: %w", id, err)
	}
	nodeID, _ := snapshotNode(id)
	s := Snapshot{ID: id, Node: nodeID, NodeAddr: m.Node, Taken: m.Taken, TookMs: m.TookMs, Databases: m.Databases}
	a.mu.Lock()
	s.Host = a.st.Host
	a.mu.Unlock()
	err = filepath.WalkDir(filepath.Join(dir, "data"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		s.Bytes += info.Size()
		s.Files++
		return nil
	})
	return s, err
}

func (a *Agent) localSnapshots() ([]Snapshot, error) {
	dirs, _ := filepath.Glob(filepath.Join(a.cfg.Home, "nodes", "*", "snapshots", "*", "manifest.json"))
	out := []Snapshot{}
	for _, m := range dirs {
		s, err := a.readSnapshot(filepath.Base(filepath.Dir(m)))
		if err != nil {
			continue // being written or deleted
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Taken.Before(out[j].Taken) })
	return out, nil
}

func (a *Agent) apiLocalSnapshots(*http.Request) (any, error) { return a.localSnapshots() }

func (a *Agent) apiLocalSnapshotDelete(r *http.Request) (any, error) {
	id := r.PathValue("id")
	dir, err := a.snapshotDir(id)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, notFound("no snapshot %s on this host", id)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return map[string]bool{"deleted": true}, nil
}

// pruneSnapshots keeps a node's newest --snapshot-keep snapshots, and
// none older than --snapshot-keep-days.
func (a *Agent) pruneSnapshots(nodeID string) {
	all, _ := a.localSnapshots()
	var mine []Snapshot
	for _, s := range all {
		if s.Node == nodeID {
			mine = append(mine, s)
		}
	}
	for i, s := range mine {
		tooMany := a.cfg.SnapshotKeep > 0 && i < len(mine)-a.cfg.SnapshotKeep
		tooOld := a.cfg.SnapshotKeepDays > 0 && time.Since(s.Taken) > time.Duration(a.cfg.SnapshotKeepDays)*24*time.Hour
		if (tooMany || tooOld) && i < len(mine)-1 { // the newest stays
			if dir, err := a.snapshotDir(s.ID); err == nil {
				os.RemoveAll(dir)
				a.log.Info("snapshot pruned", "snapshot", s.ID, "too_many", tooMany, "too_old", tooOld)
			}
		}
	}
}

// snapshotFiles lists a snapshot's data files with their checksums,
// computed once (a checkpoint's files never change) and kept in
// files.json.
func (a *Agent) snapshotFiles(id string) ([]SnapshotFile, error) {
	dir, err := a.snapshotDir(id)
	if err != nil {
		return nil, err
	}
	cache := filepath.Join(dir, "files.json")
	if b, err := os.ReadFile(cache); err == nil {
		var files []SnapshotFile
		if json.Unmarshal(b, &files) == nil {
			return files, nil
		}
	}
	data := filepath.Join(dir, "data")
	var files []SnapshotFile
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(data, path)
		if err != nil {
			return err
		}
		sum, size, err := fileSHA256(path)
		if err != nil {
			return err
		}
		files = append(files, SnapshotFile{Path: filepath.ToSlash(rel), Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound("no snapshot %s on this host", id)
		}
		return nil, err
	}
	b, _ := json.Marshal(files)
	writeFileAtomic(cache, b, 0o600)
	return files, nil
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// Transfer grants: the primary asks a snapshot's agent for a grant and
// hands it to the seeding agent, which can then read that snapshot's
// files and nothing else, until the grant expires. A grant is
// EXPIRY.MAC, the MAC an HMAC-SHA256 of the snapshot id and the expiry
// under this agent's grant key: it needs no state, so it outlives a
// restart of the agent (a cut transfer resumes across one).

const grantLife = 24 * time.Hour

func (a *Agent) grantMAC(id string, expiry int64) string {
	a.mu.Lock()
	key := a.st.GrantKey
	a.mu.Unlock()
	m := hmac.New(sha256.New, []byte(key))
	fmt.Fprintf(m, "snapshot-grant\x00%s\x00%d", id, expiry)
	return hex.EncodeToString(m.Sum(nil))
}

// apiLocalSnapshotGrant issues a grant to read a snapshot's files.
func (a *Agent) apiLocalSnapshotGrant(r *http.Request) (any, error) {
	id := r.PathValue("id")
	files, err := a.snapshotFiles(id)
	if err != nil {
		return nil, err
	}
	expiry := time.Now().Add(grantLife).Unix()
	return map[string]any{"grant": fmt.Sprintf("%d.%s", expiry, a.grantMAC(id, expiry)), "files": files,
		"send_command": a.cfg.Commands.SendSeedData != ""}, nil
}

// granted checks a transfer call's grant for the snapshot.
func (a *Agent) granted(r *http.Request, id string) bool {
	exp, mac, ok := strings.Cut(bearer(r), ".")
	if !ok {
		return false
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Now().Unix() > expiry {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(a.grantMAC(id, expiry)))
}

// transferFile: GET /api/transfer/{id}/file?path=P&offset=N streams a file
// of the snapshot from offset N. The path must be one of the snapshot's
// files (never a path from the network as it is).
func (a *Agent) transferFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.granted(r, id) {
		a.audit(r, "grant", http.StatusUnauthorized)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized: a transfer needs a grant for this snapshot"})
		return
	}
	a.audit(r, "grant", http.StatusOK)
	files, err := a.snapshotFiles(id)
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	path := r.URL.Query().Get("path")
	var file *SnapshotFile
	for i := range files {
		if files[i].Path == path {
			file = &files[i]
		}
	}
	if file == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("snapshot %s has no file %q", id, path)})
		return
	}
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || offset < 0 || offset > file.Size {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "offset: 0 to the file's size"})
		return
	}
	dir, _ := a.snapshotDir(id)
	f, err := os.Open(filepath.Join(dir, "data", filepath.FromSlash(file.Path)))
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	// the cap is kept here, at the source, so that a capped link holds
	// no more than a socket buffer in flight
	rate, _ := strconv.ParseInt(r.URL.Query().Get("rate"), 10, 64)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(file.Size-offset, 10))
	buf := make([]byte, 64<<10)
	start, sent := time.Now(), int64(0)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			throttle(r.Context(), start, sent, rate)
		}
		if err != nil {
			return
		}
	}
}

// nextDaily is the next time of day at (hours and minutes since
// midnight, UTC) strictly after now.
func nextDaily(now time.Time, at time.Duration) time.Time {
	now = now.UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	next := day.Add(at)
	if !next.After(now) {
		next = day.AddDate(0, 0, 1).Add(at)
	}
	return next
}

// dailySnapshots takes a snapshot of every running node of this host each
// day at the configured time (--snapshot-daily), pruned as always.
func (a *Agent) dailySnapshots(ctx context.Context, at time.Duration) {
	for {
		next := nextDaily(time.Now(), at)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		a.mu.Lock()
		var ids []string
		for id, p := range a.procs {
			if p.pid != 0 {
				ids = append(ids, id)
			}
		}
		a.mu.Unlock()
		for _, id := range ids {
			if snap, err := a.takeSnapshot(ctx, id); err != nil {
				a.log.Warn("daily snapshot", "node", id, "err", err)
				a.mu.Lock()
				a.eventf("daily snapshot of node %s failed: %v", id, err)
				a.mu.Unlock()
			} else {
				a.log.Info("daily snapshot", "node", id, "snapshot", snap.ID)
			}
		}
	}
}
