package controller

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/canopydb/canopy/cluster/meta"
)

// The scripts in testdata drive the controller and the metadata state
// machine through sequences of failures, with no processes:
//
//	cluster redundancy=2 leaves=a:1/1,b:2/2   leaves host:port/group
//	create-db name=fs partitions=4 [sync]
//	health leaf=a:1 [failing=1.1s] [refused] [ok=N]
//	decide                    the controller's actions; LeafDown and
//	                          Detach are applied, promotions confirmed
//	new-master                a new master aggregator: nothing confirmed,
//	                          no attach running
//	attaching leaf=a:1        the leaf's attach runs (its state: attaching)
//	attach leaf=a:1 copies=fs_0:replica,fs_1:master [force]
//	                          meta.PlanAttach per database; the plan is
//	                          applied as if every step succeeded
//	cas db=fs ordinal=0 master=b:2 epoch=N
//	                          a step's compare-and-set of one master
//	show                      leaves and partition maps
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var st *meta.State
		obs := Observed{Health: map[string]Health{}, Attaching: map[string]bool{}, Promoted: map[PromoteKey]bool{}}
		apply := func(t *testing.T, cmd any) error {
			b, err := meta.Encode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			n, err := st.Apply(b)
			if err == nil {
				st = n
			}
			return err
		}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(key string) string {
				for _, a := range d.CmdArgs {
					if a.Key == key {
						if len(a.Vals) == 0 {
							return "true"
						}
						return strings.Join(a.Vals, ",")
					}
				}
				return ""
			}
			switch d.Cmd {
			case "cluster":
				st = meta.New()
				st.Variables["redundancy_level"] = arg("redundancy")
				for _, spec := range strings.Split(arg("leaves"), ",") {
					addr, group, _ := strings.Cut(spec, "/")
					host, port, _ := strings.Cut(addr, ":")
					p, _ := strconv.Atoi(port)
					g, _ := strconv.Atoi(group)
					if err := apply(t, meta.AddLeaf{Leaf: meta.Leaf{Host: host, Port: p, Group: g}}); err != nil {
						t.Fatal(err)
					}
					obs.Health[addr] = Health{Known: true, OKStreak: 10}
				}
				return show(st)
			case "create-db":
				n, _ := strconv.Atoi(arg("partitions"))
				masters, replicas := meta.PlaceRedundant(st.Pairs(), n)
				if err := apply(t, meta.CreateDatabase{Name: arg("name"), Masters: masters, Replicas: replicas, Sync: arg("sync") == "true"}); err != nil {
					t.Fatal(err)
				}
				return show(st)
			case "set":
				for _, a := range d.CmdArgs {
					st.Variables[a.Key] = a.Vals[0]
				}
				return ""
			case "health":
				h := Health{Known: true}
				if f := arg("failing"); f != "" {
					dur, err := time.ParseDuration(f)
					if err != nil {
						t.Fatal(err)
					}
					h.Failing = dur
				}
				h.Refused = arg("refused") == "true"
				h.OKStreak, _ = strconv.Atoi(arg("ok"))
				obs.Health[arg("leaf")] = h
				return ""
			case "decide":
				var out []string
				for _, act := range Decide(st, obs) {
					out = append(out, act.String())
					switch act := act.(type) {
					case LeafDown:
						if err := apply(t, meta.LeafDown{Addrs: act.Addrs(), State: meta.LeafOffline}); err != nil {
							out = append(out, "  error: "+err.Error())
						}
					case Detach:
						apply(t, meta.SetLeafState{Addr: act.Leaf, State: meta.LeafDetached})
					case Promote:
						obs.Promoted[act.PromoteKey] = true
					}
				}
				if len(out) == 0 {
					return "nothing\n"
				}
				return strings.Join(out, "\n") + "\n"
			case "new-master":
				obs.Promoted = map[PromoteKey]bool{}
				obs.Attaching = map[string]bool{}
				return ""
			case "attaching":
				if err := apply(t, meta.SetLeafState{Addr: arg("leaf"), State: meta.LeafAttaching}); err != nil {
					t.Fatal(err)
				}
				obs.Attaching[arg("leaf")] = true
				return show(st)
			case "attach":
				leaf := arg("leaf")
				copies := map[string]meta.CopyInfo{}
				if c := arg("copies"); c != "" {
					for _, spec := range strings.Split(c, ",") {
						name, kind, _ := strings.Cut(spec, ":")
						copies[name] = meta.CopyInfo{Replica: kind == "replica", Pending: kind == "pending"}
					}
				}
				var out []string
				plans := map[string][]meta.Step{}
				for _, name := range st.DatabaseNames() {
					steps, err := meta.PlanAttach(st, st.Database(name), leaf, copies, arg("force") == "true")
					if err != nil {
						return "error: " + err.Error() + "\n"
					}
					plans[name] = steps
					for _, s := range steps {
						kind := s.Action
						if s.AsMaster {
							kind += " AS MASTER"
						}
						out = append(out, fmt.Sprintf("phase %d: %s %s:%d on %s", s.Phase, kind, s.DB, s.Ordinal, s.Target))
					}
				}
				if err := apply(t, meta.SetLeafState{Addr: leaf, State: meta.LeafOnline}); err != nil {
					t.Fatal(err)
				}
				for name, steps := range plans {
					after := meta.ApplySteps(st.Database(name), steps)
					if err := apply(t, meta.SetPartitions{Database: name, Partitions: after.Partitions}); err != nil {
						t.Fatal(err)
					}
				}
				obs.Health[leaf] = Health{Known: true, OKStreak: 10}
				// the executor promotes the masters its steps name
				for _, name := range st.DatabaseNames() {
					d := st.Database(name)
					for _, p := range d.Partitions {
						if p.Master != "" {
							obs.Promoted[PromoteKey{d.Name, p.Ordinal, p.Master, p.Epoch}] = true
						}
					}
				}
				if len(out) == 0 {
					out = []string{"no steps"}
				}
				return strings.Join(out, "\n") + "\n" + show(st)
			case "cas":
				d := st.Database(arg("db"))
				o, _ := strconv.Atoi(arg("ordinal"))
				e, _ := strconv.ParseUint(arg("epoch"), 10, 64)
				parts := append([]meta.Partition(nil), d.Partitions...)
				epochs := make([]uint64, len(parts))
				for i, p := range d.Partitions {
					epochs[i] = p.Epoch
				}
				epochs[o] = e
				p := parts[o]
				p.Replicas = nil
				for _, r := range parts[o].Replicas {
					if r != arg("master") {
						p.Replicas = append(p.Replicas, r)
					}
				}
				if m := parts[o].Master; m != "" && m != arg("master") {
					p.Replicas = append(p.Replicas, m)
				}
				p.Master = arg("master")
				parts[o] = p
				if err := apply(t, meta.SetPartitions{Database: d.Name, Partitions: parts, Epochs: epochs}); err != nil {
					return "refused: " + err.Error() + "\n"
				}
				return "ok\n" + show(st)
			case "show":
				return show(st)
			}
			t.Fatalf("unknown command %s", d.Cmd)
			return ""
		})
	})
}

// show prints the leaves and every partition map.
func show(st *meta.State) string {
	var b strings.Builder
	for _, l := range st.Leaves {
		fmt.Fprintf(&b, "leaf %s group %d %s\n", l.Addr(), l.Group, l.State)
	}
	names := st.DatabaseNames()
	sort.Strings(names)
	for _, name := range names {
		d := st.Database(name)
		for _, p := range d.Partitions {
			fmt.Fprintf(&b, "%s:%d master=%s replicas=%v epoch=%d", d.Name, p.Ordinal, or(p.Master, "none"), p.Replicas, p.Epoch)
			if len(p.Candidates) > 0 {
				fmt.Fprintf(&b, " candidates=%v", p.Candidates)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
