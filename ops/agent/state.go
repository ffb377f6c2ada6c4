package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/canopydb/canopy/ops/jobs"
)

// Roles of an agent.
const (
	RolePrimary  = "primary"
	RoleFollower = "follower"
)

// Roles of a node.
const (
	NodeMaster     = "master"
	NodeAggregator = "aggregator"
	NodeLeaf       = "leaf"
	// NodeStandalone is a node outside the cluster: a seeded copy of
	// another node's data (seed.go)
	NodeStandalone = "standalone"
)

// NodeSpec is a node an agent deployed: what it takes to run it again.
type NodeSpec struct {
	ID      string            `json:"id"`
	Host    string            `json:"host"`
	Port    int               `json:"port"`
	Role    string            `json:"role"`
	Group   int               `json:"group,omitempty"` // availability group of a leaf
	Wanted  bool              `json:"wanted"`          // should run (not stopped by an operator)
	Config  map[string]string `json:"config,omitempty"`
	Created time.Time         `json:"created"`
}

// Addr is host:port of the node's MySQL port.
func (n NodeSpec) Addr() string { return fmt.Sprintf("%s:%d", n.Host, n.Port) }

// AgentInfo is an agent of the deployment, as the primary knows it.
type AgentInfo struct {
	Host     string    `json:"host"`
	Port     int       `json:"port"`
	Role     string    `json:"role"`
	Token    string    `json:"-"` // its API token: the primary calls it with it
	LastSeen time.Time `json:"last_seen"`
	Version  string    `json:"version,omitempty"`
}

// Addr is the agent's host:port.
func (a AgentInfo) Addr() string { return fmt.Sprintf("%s:%d", a.Host, a.Port) }

// state is what an agent keeps in its home (agent.json, mode 0600).
type state struct {
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Token string `json:"token"` // this agent's API token, new at every start
	// Security: how the API is served, for the CLI (TLS, basic auth)
	Security Security `json:"security,omitzero"`
	// GrantKey signs the transfer grants of this host's snapshots
	// (snapshots.go); it stays across restarts, so a grant does too
	GrantKey string `json:"grant_key"`
	Role     string `json:"role"`
	// Primary: the primary's host:port, on a follower.
	Primary string `json:"primary,omitempty"`
	// Secret is the deployment's secret: a follower presents it to its
	// primary; the primary accepts agents that know it.
	Secret string `json:"secret"`
	// RootPassword is root's password on every node of the deployment.
	RootPassword  string `json:"root_password"`
	ManualControl bool   `json:"manual_control"`
	// Agents (primary): every agent of the deployment, itself included.
	Agents []AgentInfo `json:"agents,omitempty"`
	// AgentTokens (primary): the followers' API tokens, by host:port.
	AgentTokens map[string]string `json:"agent_tokens,omitempty"`
	// Nodes: on the primary every node of the deployment, on a follower
	// its own.
	Nodes []NodeSpec    `json:"nodes,omitempty"`
	Jobs  *jobs.Journal `json:"jobs,omitempty"`
}

const stateFile = "agent.json"

func loadState(home string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(home, stateFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(home, stateFile), err)
	}
	if st.Jobs == nil {
		st.Jobs = &jobs.Journal{}
	}
	if st.AgentTokens == nil {
		st.AgentTokens = map[string]string{}
	}
	return &st, nil
}

// save writes the state atomically: a crash leaves the old file or the
// new one, never half of one.
func (st *state) save(home string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(home, stateFile), b, 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (st *state) node(id string) (int, bool) {
	for i, n := range st.Nodes {
		if n.ID == id {
			return i, true
		}
	}
	return -1, false
}

func (st *state) master() (NodeSpec, bool) {
	for _, n := range st.Nodes {
		if n.Role == NodeMaster {
			return n, true
		}
	}
	return NodeSpec{}, false
}

func (st *state) agent(host string) (int, bool) {
	for i, a := range st.Agents {
		if a.Host == host {
			return i, true
		}
	}
	return -1, false
}
