package deploy

import (
	"strings"
	"testing"
)

func TestPlanHA(t *testing.T) {
	two := []Leaf{{ID: "B", Host: "10.0.0.2", Port: 3307, Group: 1}, {ID: "A", Host: "10.0.0.1", Port: 3307, Group: 1}}
	agents := map[string]bool{"10.0.0.1": true, "10.0.0.2": true, "10.0.0.3": true, "10.0.0.4": true}
	for _, c := range []struct {
		name string
		in   HAInput
		want string // the plan, one step per line, or the error's words
	}{
		{"two leaves to four", HAInput{Leaves: two, Redundancy: 1, NewHosts: []string{"10.0.0.3", "10.0.0.4"}, Agents: agents,
			FreeDisk: map[string]float64{"10.0.0.3": 1 << 30}, NeedDisk: 1 << 20, Databases: []string{"b", "a"}},
			"SET GLOBAL redundancy_level = 2\n" +
				"deploy a leaf on 10.0.0.3:3307 into availability group 2 (pair of 10.0.0.1:3307)\n" +
				"deploy a leaf on 10.0.0.4:3307 into availability group 2 (pair of 10.0.0.2:3307)\n" +
				"REBALANCE PARTITIONS ON a\nREBALANCE PARTITIONS ON b"},
		{"no leaves", HAInput{}, "deploy the leaves of availability group 1 first"},
		{"no hosts", HAInput{Leaves: two}, "name the hosts for the 2 group-2 leaves"},
		{"odd", HAInput{Leaves: two, NewHosts: []string{"10.0.0.3"}, Agents: agents}, "1 hosts named for 2 group-1 leaves"},
		{"already", HAInput{Leaves: append(two, Leaf{Host: "10.0.0.3", Port: 3307, Group: 2}, Leaf{Host: "10.0.0.4", Port: 3307, Group: 2}), Redundancy: 2},
			"high availability is on already"},
		{"no agent, same host, disk", HAInput{Leaves: two, NewHosts: []string{"10.0.0.9", "10.0.0.2"}, Agents: agents,
			FreeDisk: map[string]float64{"10.0.0.2": 1 << 20}, NeedDisk: 1 << 30},
			"host 10.0.0.9 has no agent (agent-follow there first); host 10.0.0.2 holds the leaf 10.0.0.2:3307 already: a pair on one host does not survive the host's loss; host 10.0.0.2 has 1 MiB free, a copy of the leaf 10.0.0.2:3307 needs 1024 MiB"},
		{"port taken", HAInput{Leaves: two, NewHosts: []string{"10.0.0.3", "10.0.0.4"}, Agents: agents, Used: map[string]bool{"10.0.0.4:3307": true}},
			"10.0.0.4:3307 is taken"},
	} {
		steps, err := PlanHA(c.in)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var lines []string
			for _, s := range steps {
				lines = append(lines, s.String())
			}
			got = strings.Join(lines, "\n")
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got: %s\nwant: %s", c.name, got, c.want)
		}
	}
}
