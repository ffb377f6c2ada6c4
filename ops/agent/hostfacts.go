package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Host facts (seed 004: operating system, file system and LVM
// information): the disk of the agent's home, the space each node's data
// and snapshots take, the mounts, and LVM's volumes where `lvs` exists.

// HostFacts is what an agent says of its host.
type HostFacts struct {
	Host       string      `json:"host"`
	Hostname   string      `json:"hostname"`
	Home       string      `json:"home"`
	FreeBytes  uint64      `json:"free_bytes"`
	TotalBytes uint64      `json:"total_bytes"`
	Nodes      []NodeDisk  `json:"nodes"`
	Mounts     []Mount     `json:"mounts"`
	LVM        *LVMVolumes `json:"lvm,omitempty"` // nil: no lvs on this host
}

// NodeDisk is the disk a node of the host takes.
type NodeDisk struct {
	ID             string `json:"id"`
	DataBytes      int64  `json:"data_bytes"`
	SnapshotsBytes int64  `json:"snapshots_bytes"`
}

// Mount is a mounted file system.
type Mount struct {
	Device string `json:"device"`
	Path   string `json:"path"`
	Type   string `json:"type"`
}

// LVMVolumes is `lvs --reportformat json` as it printed it.
type LVMVolumes struct {
	Report json.RawMessage `json:"report"`
}

// apiHostname: GET /api/hostname, open like /api/status.
func (a *Agent) apiHostname(*http.Request) (any, error) {
	name, err := os.Hostname()
	a.mu.Lock()
	defer a.mu.Unlock()
	return map[string]string{"hostname": name, "host": a.st.Host}, err
}

// apiLocalHostFacts: GET /api/local/host.
func (a *Agent) apiLocalHostFacts(r *http.Request) (any, error) {
	f := HostFacts{Home: a.cfg.Home, Nodes: []NodeDisk{}, Mounts: []Mount{}}
	f.Hostname, _ = os.Hostname()
	a.mu.Lock()
	f.Host = a.st.Host
	var ids []string
	for id := range a.procs {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	f.FreeBytes, _ = freeBytes(a.cfg.Home)
	f.TotalBytes, _ = totalBytes(a.cfg.Home)
	sort.Strings(ids)
	for _, id := range ids {
		f.Nodes = append(f.Nodes, NodeDisk{ID: id, DataBytes: stagedBytes(filepath.Join(a.nodeDir(id), "data")),
			SnapshotsBytes: stagedBytes(filepath.Join(a.nodeDir(id), "snapshots"))})
	}
	if m, err := os.Open("/proc/self/mounts"); err == nil {
		sc := bufio.NewScanner(m)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) >= 3 {
				f.Mounts = append(f.Mounts, Mount{Device: fs[0], Path: fs[1], Type: fs[2]})
			}
		}
		m.Close()
	}
	if lvs, err := exec.LookPath("lvs"); err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, lvs, "--reportformat", "json").Output(); err == nil && json.Valid(out) {
			f.LVM = &LVMVolumes{Report: out}
		}
	}
	return f, nil
}

// apiHostFacts (primary): every host's facts.
func (a *Agent) apiHostFacts(r *http.Request) (any, error) {
	out := []HostFacts{}
	for _, host := range a.agentHosts() {
		var f HostFacts
		if err := a.onHost(r.Context(), host, "GET", "/api/local/host", nil, &f); err != nil {
			f = HostFacts{Host: host, Hostname: "(" + err.Error() + ")"}
		}
		out = append(out, f)
	}
	return out, nil
}
