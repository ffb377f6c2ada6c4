// Package deploy plans the Ops operations that take several steps
// through the master aggregator. It is pure: a plan is a function of the
// deployment's state, tested with tables; the agent executes it as a job.
package deploy

import (
	"fmt"
	"sort"
	"strings"
)

// Leaf is a leaf of the deployment.
type Leaf struct {
	ID    string
	Host  string
	Port  int
	Group int
}

// HAInput is what enable-high-availability plans from.
type HAInput struct {
	Leaves     []Leaf
	Redundancy int
	// NewHosts: deploy the group-2 leaves there, one per group-1 leaf, in
	// the order of the group-1 leaves (by host and port).
	NewHosts []string
	// Agents: the hosts with an agent of the deployment.
	Agents map[string]bool
	// FreeDisk: free bytes on each host, as its agent last sampled them
	// (a host missing has not reported yet).
	FreeDisk map[string]float64
	// NeedDisk: what each new leaf needs (the largest leaf's data).
	NeedDisk float64
	// Used: host:port pairs in use by nodes of the deployment.
	Used      map[string]bool
	Databases []string
}

// Step actions of an enable-HA plan.
const (
	SetRedundancy = "set-redundancy"
	DeployLeaf    = "deploy-leaf"
	Rebalance     = "rebalance"
)

// Step is one step of a plan.
type Step struct {
	Action   string `json:"action"`
	Host     string `json:"host,omitempty"`
	Port     int    `json:"port,omitempty"`
	Group    int    `json:"group,omitempty"`
	Pair     string `json:"pair,omitempty"` // the group-1 leaf a new leaf pairs with
	Database string `json:"database,omitempty"`
}

func (s Step) String() string {
	switch s.Action {
	case SetRedundancy:
		return "SET GLOBAL redundancy_level = 2"
	case DeployLeaf:
		return fmt.Sprintf("deploy a leaf on %s:%d into availability group %d (pair of %s)", s.Host, s.Port, s.Group, s.Pair)
	case Rebalance:
		return "REBALANCE PARTITIONS ON " + s.Database
	}
	return s.Action
}

// PlanHA plans enable-high-availability (seed 003): redundancy 2, a
// group-2 leaf for every group-1 leaf on the hosts named, then every
// database rebalanced online. It refuses, saying why, what it cannot do.
func PlanHA(in HAInput) ([]Step, error) {
	var g1, g2 []Leaf
	for _, l := range in.Leaves {
		if l.Group == 2 {
			g2 = append(g2, l)
		} else {
			g1 = append(g1, l)
		}
	}
	sort.Slice(g1, func(i, j int) bool {
		return g1[i].Host < g1[j].Host || g1[i].Host == g1[j].Host && g1[i].Port < g1[j].Port
	})
	switch {
	case len(g1) == 0:
		return nil, fmt.Errorf("no leaves: deploy the leaves of availability group 1 first")
	case len(g2) > 0 && len(g2) == len(g1) && in.Redundancy >= 2:
		return nil, fmt.Errorf("high availability is on already: redundancy %d, %d leaves in each group", in.Redundancy, len(g1))
	case len(g2) > 0:
		return nil, fmt.Errorf("availability group 2 has %d leaves and group 1 has %d: enable-high-availability starts from group 1 alone", len(g2), len(g1))
	case len(in.NewHosts) == 0:
		return nil, fmt.Errorf("name the hosts for the %d group-2 leaves (--hosts H1,H2,…), one per group-1 leaf", len(g1))
	case len(in.NewHosts) != len(g1):
		return nil, fmt.Errorf("%d hosts named for %d group-1 leaves: the leaves are paired, so the groups must be the same size", len(in.NewHosts), len(g1))
	}
	var problems []string
	var steps []Step
	steps = append(steps, Step{Action: SetRedundancy})
	taken := map[string]bool{}
	for k := range in.Used {
		taken[k] = true
	}
	for i, h := range in.NewHosts {
		pair := g1[i]
		addr := fmt.Sprintf("%s:%d", h, pair.Port)
		switch {
		case !in.Agents[h]:
			problems = append(problems, fmt.Sprintf("host %s has no agent (agent-follow there first)", h))
		case h == pair.Host:
			problems = append(problems, fmt.Sprintf("host %s holds the leaf %s:%d already: a pair on one host does not survive the host's loss", h, pair.Host, pair.Port))
		case taken[addr]:
			problems = append(problems, fmt.Sprintf("%s is taken (the new leaf takes its pair's port %d)", addr, pair.Port))
		}
		if free, ok := in.FreeDisk[h]; ok && free < in.NeedDisk {
			problems = append(problems, fmt.Sprintf("host %s has %.0f MiB free, a copy of the leaf %s:%d needs %.0f MiB", h, free/(1<<20), pair.Host, pair.Port, in.NeedDisk/(1<<20)))
		}
		taken[addr] = true
		steps = append(steps, Step{Action: DeployLeaf, Host: h, Port: pair.Port, Group: 2, Pair: fmt.Sprintf("%s:%d", pair.Host, pair.Port)})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("cannot enable high availability: %s", strings.Join(problems, "; "))
	}
	dbs := append([]string(nil), in.Databases...)
	sort.Strings(dbs)
	for _, d := range dbs {
		steps = append(steps, Step{Action: Rebalance, Database: d})
	}
	return steps, nil
}
