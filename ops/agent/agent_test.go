package agent_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/ops/agent"
)

// opsAgent is a `canopy ops start` process on a loopback host.
type opsAgent struct {
	t     *testing.T
	host  string
	port  int
	home  string
	cmd   *exec.Cmd
	log   string
	extra []string // more flags of ops start
}

func startAgent(t *testing.T, host, home string, port int, extra ...string) *opsAgent {
	t.Helper()
	a := &opsAgent{t: t, host: host, port: port, home: home, log: filepath.Join(home + ".log"), extra: extra}
	a.start()
	t.Cleanup(func() {
		// stop the agent and every node it runs, whatever the test left
		a.cli("agent-stop", "--stop-nodes")
		if a.cmd != nil {
			a.cmd.Process.Signal(syscall.SIGTERM)
			a.cmd.Wait()
		}
		exec.Command("pkill", "-9", "-f", a.home).Run()
	})
	return a
}

func (a *opsAgent) start() {
	a.t.Helper()
	logf, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	defer logf.Close()
	a.cmd = exec.Command(testutil.Binary(a.t), append([]string{"ops", "start", "--bind", a.host, "--port", strconv.Itoa(a.port), "--home", a.home,
		"--metrics-interval", "1s", "--stop-timeout", "10s"}, a.extra...)...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/api/status", a.host, a.port))
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(a.log)
			a.t.Fatalf("agent %s:%d did not start: %v\n%s", a.host, a.port, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the agent process alone (its nodes keep running).
func (a *opsAgent) stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
	a.cmd = nil
}

func (a *opsAgent) cli(args ...string) (string, error) {
	cmd := exec.Command(testutil.Binary(a.t), append([]string{"ops"}, append(args, "--home", a.home)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (a *opsAgent) must(args ...string) string {
	a.t.Helper()
	out, err := a.cli(args...)
	if err != nil {
		a.t.Fatalf("canopy ops %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (a *opsAgent) nodes() []agent.NodeStatus {
	a.t.Helper()
	var ns []agent.NodeStatus
	out := a.must("node-list", "--json")
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		a.t.Fatalf("node-list --json: %v\n%s", err, out)
	}
	return ns
}

// freeBase picks a MySQL port free on every host along with the ports
// a node derives from it (+10000 internal, +20000 HTTP), all below the
// ephemeral range (32768 up, where outgoing connections take ports at any
// moment) and apart from the demo test's range (3000-6500).
func freeBase(t *testing.T, hosts ...string) int {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for attempt := 0; attempt < 200; attempt++ {
		p := 7000 + rand.Intn(2800)
		// a base handed out before may not be bound yet (TestEnableHighAvailability
		// once got the same base for its master and its leaves)
		ok := !handedOut[p]
		for _, h := range hosts {
			for _, q := range []int{p, p + 10000, p + 20000} {
				l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(q)))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			handedOut[p] = true
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{} // bases freeBase returned in this test binary
)

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func nodeByRole(ns []agent.NodeStatus, role, host string) agent.NodeStatus {
	for _, n := range ns {
		if n.Role == role && (host == "" || n.Host == host) {
			return n
		}
	}
	return agent.NodeStatus{}
}

// TestAgentsDeployAndSupervise runs two agents as two hosts (127.0.0.1
// and 127.0.0.2): the second follows the first; a third agent on a host
// that has one is refused; a master and two leaves are deployed through
// the CLI and form a cluster that takes SQL; a leaf killed with SIGKILL is
// restarted by its agent, and is not under manual control; the primary
// restarted keeps its nodes, jobs and manual control; a node is stopped,
// started and deleted; the API refuses calls without the token.
func TestAgentsDeployAndSupervise(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents and a cluster")
	}
	h1, h2 := "127.0.0.1", "127.0.0.2"
	dir := t.TempDir()
	p1 := testutil.FreePorts(t, 1)[0]
	p2 := freeBase(t, h2)
	prim := startAgent(t, h1, filepath.Join(dir, "h1"), p1)
	fol := startAgent(t, h2, filepath.Join(dir, "h2"), p2)

	secret := strings.TrimSpace(prim.must("agent-secret"))
	if out, err := fol.cli("agent-follow", "--host", h1, "--port", strconv.Itoa(p1), "--secret", "wrong"); err == nil {
		t.Fatalf("follow with a wrong secret: %s", out)
	}
	fol.must("agent-follow", "--host", h1, "--port", strconv.Itoa(p1), "--secret", secret)
	// one agent per host: another agent on 127.0.0.2 is refused
	third := startAgent(t, h2, filepath.Join(dir, "h2b"), freeBase(t, h2))
	if out, err := third.cli("agent-follow", "--host", h1, "--port", strconv.Itoa(p1), "--secret", secret); err == nil || !strings.Contains(out, "one agent per host") {
		t.Fatalf("a second agent on host %s: %v %s", h2, err, out)
	}
	third.must("agent-stop")
	if out := fol.must("agent-list"); !strings.Contains(out, h1) || !strings.Contains(out, h2) || strings.Count(out, "\n") != 3 {
		t.Fatalf("agent-list (through the follower):\n%s", out)
	}

	// the API: open status, everything else needs the token
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/api/nodes", h1, p1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /api/nodes without a token: %s", resp.Status)
	}

	// deploy: a master and a leaf on host 1, a leaf on host 2
	mport, l1port := freeBase(t, h1), freeBase(t, h1)
	l2port := freeBase(t, h2)
	prim.must("node-deploy", "--role", "master", "--port", strconv.Itoa(mport))
	if out, err := prim.cli("node-deploy", "--role", "master", "--port", strconv.Itoa(l1port)); err == nil {
		t.Fatalf("a second master: %s", out)
	}
	prim.must("memsql-deploy", "--memsql-role", "leaf", "--port", strconv.Itoa(l1port))
	fol.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(l2port)) // from host 2: deployed there
	ns := prim.nodes()
	if len(ns) != 3 {
		t.Fatalf("node-list: %+v", ns)
	}
	for _, n := range ns {
		if n.State != "running" || n.PID == 0 || n.ID == "" || n.Version == "" {
			t.Errorf("node %+v", n)
		}
	}
	leaf2 := nodeByRole(ns, "leaf", h2)
	if leaf2.Port != l2port {
		t.Fatalf("no leaf on %s in %+v", h2, ns)
	}
	if ids := strings.Fields(prim.must("memsql-list", "--memsql-role", "leaf", "-q")); len(ids) != 2 {
		t.Fatalf("leaf ids: %v", ids)
	}

	rootPW := readRootPassword(t, prim.home)
	ma, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s:%d)/", rootPW, h1, mport))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM information_schema.LEAVES WHERE STATE = 'online'", "2")
	testutil.Exec(t, ma, "CREATE DATABASE ops PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE ops.t (id INT PRIMARY KEY)")
	testutil.Exec(t, ma, "INSERT INTO ops.t VALUES (1), (2), (3), (4), (5), (6), (7), (8)")

	// metrics: the follower's host and every node have series at the
	// primary; the agents' /metrics parse as Prometheus text
	for i := 0; i < 50; i++ {
		testutil.Exec(t, ma, "SELECT COUNT(*) FROM ops.t")
	}
	waitFor(t, "series of both hosts and the master's query rate", 20*time.Second, func() bool {
		out, err := prim.cli("metrics")
		master := nodeByRole(prim.nodes(), "master", "")
		return err == nil && strings.Contains(out, "host/"+h2) && strings.Contains(out, "host/"+h1) &&
			strings.Contains(out, "node/"+master.ID) && strings.Contains(out, "queries_per_second")
	})
	master := nodeByRole(prim.nodes(), "master", "")
	var series agent.MetricsReply
	out := prim.must("metrics", "--source", "node/"+master.ID, "--metric", "queries_per_second", "--json")
	if err := json.Unmarshal([]byte(out), &series.Points); err != nil || len(series.Points) == 0 {
		t.Fatalf("master's query rate: %v %s", err, out)
	}
	out = prim.must("metrics", "--source", "host/"+h2, "--metric", "mem_used_bytes", "--rollups", "--json")
	if err := json.Unmarshal([]byte(out), &series.Points); err != nil || len(series.Points) == 0 || series.Points[0].Max == 0 {
		t.Fatalf("host 2 memory rollups: %v %s", err, out)
	}
	for _, ag := range []*opsAgent{prim, fol} {
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/metrics", ag.host, ag.port))
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s /metrics: %v", ag.host, err)
		}
		if fams["canopy_ops_host_mem_used_bytes"] == nil || fams["canopy_ops_node_up"] == nil {
			t.Errorf("%s /metrics: %d families, no host memory or node up", ag.host, len(fams))
		}
	}

	// a leaf killed comes back by itself within 10 s
	syscall.Kill(leaf2.PID, syscall.SIGKILL)
	waitFor(t, "the killed leaf restarted by its agent", 10*time.Second, func() bool {
		n := nodeByRole(prim.nodes(), "leaf", h2)
		return n.State == "running" && n.PID != leaf2.PID && n.PID != 0
	})
	waitFor(t, "every row readable again", 30*time.Second, func() bool {
		rows, err := testutil.RenderRows(ma, ",", "SELECT COUNT(*) FROM ops.t")
		return err == nil && len(rows) == 1 && rows[0] == "8"
	})

	// under manual control it stays down; an operator's start brings it back
	prim.must("cluster-manual-control", "--enable")
	waitFor(t, "the follower learns manual control", 5*time.Second, func() bool {
		var st agent.Status
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/api/status", h2, p2))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&st)
		return st.ManualControl
	})
	leaf2 = nodeByRole(prim.nodes(), "leaf", h2)
	syscall.Kill(leaf2.PID, syscall.SIGKILL)
	time.Sleep(4 * time.Second)
	if n := nodeByRole(prim.nodes(), "leaf", h2); n.State != "stopped" || n.PID != 0 {
		t.Fatalf("under manual control the killed leaf is %s (pid %d)", n.State, n.PID)
	}
	fol.must("node-start", leaf2.ID)
	if n := nodeByRole(prim.nodes(), "leaf", h2); n.State != "running" {
		t.Fatalf("after node-start: %+v", n)
	}

	// the primary restarted keeps everything and adopts its running nodes
	before := prim.nodes()
	prim.stop()
	prim.start()
	after := prim.nodes()
	if len(after) != len(before) {
		t.Fatalf("after the primary's restart: %+v", after)
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].PID != before[i].PID || after[i].State != "running" {
			t.Errorf("node %s: before %s pid %d, after %s pid %d", before[i].ID, before[i].State, before[i].PID, after[i].State, after[i].PID)
		}
	}
	var st agent.Status
	if resp, err := http.Get(fmt.Sprintf("http://%s:%d/api/status", h1, p1)); err == nil {
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
	}
	if !st.ManualControl {
		t.Error("manual control lost with the primary's restart")
	}
	prim.must("cluster-manual-control", "--disable")

	// config: a global variable is set now and after every start; a flag
	// waits for a restart; a bad key changes nothing
	if out := prim.must("node-update-config", master.ID, "--key", "leaf_failure_timeout_ms", "--value", "4000"); !strings.Contains(out, "now") {
		t.Errorf("update a global: %s", out)
	}
	testutil.ExpectRows(t, ma, "SELECT @@GLOBAL.leaf_failure_timeout_ms", "4000")
	if out, err := prim.cli("node-update-config", master.ID, "--key", "no_such_variable", "--value", "1"); err == nil {
		t.Errorf("an unknown variable: %s", out)
	}
	if out := prim.must("memsql-update-config", leaf2.ID, "--key", "cache-mb", "--value", "64", "--no-prompt"); !strings.Contains(out, "restarts") {
		t.Errorf("update a flag: %s", out)
	}
	// kept across the follower's restart, and used at the node's next start
	fol.stop()
	fol.start()
	if cfg := nodeConfig(t, fol.home, leaf2.ID); cfg["cache-mb"] != "64" {
		t.Errorf("the follower's config of %s after its restart: %v", leaf2.ID, cfg)
	}
	prim.must("node-restart", leaf2.ID)
	waitFor(t, "the leaf restarted with --cache-mb 64", 10*time.Second, func() bool {
		n := nodeByRole(prim.nodes(), "leaf", h2)
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n.PID))
		return strings.Contains(string(cmdline), "--cache-mb\x0064")
	})

	// stop, start, delete
	leaf1 := nodeByRole(after, "leaf", h1)
	prim.must("node-stop", leaf1.ID)
	if n := nodeByRole(prim.nodes(), "leaf", h1); n.State != "stopped" {
		t.Fatalf("after node-stop: %+v", n)
	}
	time.Sleep(1500 * time.Millisecond) // the supervisor leaves a stopped node alone
	if n := nodeByRole(prim.nodes(), "leaf", h1); n.State != "stopped" {
		t.Fatalf("a stopped node was started again: %+v", n)
	}
	prim.must("node-start", leaf1.ID)
	testutil.Exec(t, ma, "DROP DATABASE ops") // so that the leaf can be removed
	prim.must("node-delete", leaf2.ID, "--no-prompt")
	if n := nodeByRole(prim.nodes(), "leaf", h2); n.ID != "" {
		t.Fatalf("deleted node still listed: %+v", n)
	}
	if _, err := os.Stat(filepath.Join(fol.home, "nodes", leaf2.ID)); !os.IsNotExist(err) {
		t.Errorf("the deleted node's data is still there: %v", err)
	}
	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM information_schema.LEAVES", "1")
	// the follower, with no nodes left, leaves the deployment
	fol.must("agent-unfollow")
	if out := prim.must("agent-list"); strings.Contains(out, h2) {
		t.Errorf("agent-list after agent-unfollow:\n%s", out)
	}

	// the journal
	jobsOut := prim.must("job-list")
	for _, kind := range []string{"node-deploy", "node-stop", "node-delete", "cluster-manual-control"} {
		if !strings.Contains(jobsOut, kind) {
			t.Errorf("job-list has no %s:\n%s", kind, jobsOut)
		}
	}
	if !strings.Contains(jobsOut, "failed") {
		t.Errorf("job-list shows no failed job (the second master):\n%s", jobsOut)
	}
	if logs := prim.must("job-logs", "1"); !strings.Contains(logs, "answers SQL") {
		t.Errorf("job-logs 1:\n%s", logs)
	}

	// agent-stop --stop-nodes returns once the agent and its nodes are gone
	var pids []int
	for _, n := range prim.nodes() {
		if n.Host == h1 && n.PID > 0 {
			pids = append(pids, n.PID)
		}
	}
	prim.must("agent-stop", "--stop-nodes")
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
				t.Errorf("node process %d still runs after agent-stop --stop-nodes returned", pid)
			}
		}
	}
	if len(pids) == 0 {
		t.Error("the primary ran no node to stop")
	}
}

func nodeConfig(t *testing.T, home, id string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Nodes []struct {
			ID     string            `json:"id"`
			Config map[string]string `json:"config"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.ID == id {
			return n.Config
		}
	}
	return nil
}

func readRootPassword(t *testing.T, home string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		RootPassword string `json:"root_password"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.RootPassword
}

// TestEnableHighAvailability: two leaves on two hosts become four on four
// (seed 003's enable-HA) with every row intact and every partition with a
// replica. The first run fails at a host whose agent is down; job-retry
// finishes it from the step that failed.
func TestEnableHighAvailability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four agents and a cluster")
	}
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	dir := t.TempDir()
	var agents []*opsAgent
	p1 := testutil.FreePorts(t, 1)[0]
	prim := startAgent(t, hosts[0], filepath.Join(dir, "h1"), p1)
	agents = append(agents, prim)
	secret := strings.TrimSpace(prim.must("agent-secret"))
	for i, h := range hosts[1:] {
		a := startAgent(t, h, filepath.Join(dir, fmt.Sprintf("h%d", i+2)), freeBase(t, h))
		a.must("agent-follow", "--host", hosts[0], "--port", strconv.Itoa(p1), "--secret", secret)
		agents = append(agents, a)
	}
	lport := freeBase(t, hosts...)
	prim.must("node-deploy", "--role", "master", "--port", strconv.Itoa(freeBase(t, hosts[0])))
	prim.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(lport))
	prim.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(lport), "--host", hosts[1])
	master := nodeByRole(prim.nodes(), "master", "")
	ma, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", readRootPassword(t, prim.home), master.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	testutil.Exec(t, ma, "CREATE DATABASE ha PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE ha.t (id INT PRIMARY KEY, v INT)")
	var vals []string
	for i := 0; i < 200; i++ {
		vals = append(vals, fmt.Sprintf("(%d, %d)", i, i*i))
	}
	testutil.Exec(t, ma, "INSERT INTO ha.t VALUES "+strings.Join(vals, ","))
	sum := testutil.Rows(t, ma, "SELECT COUNT(*), SUM(v) FROM ha.t")

	// refusals say why
	if out, err := prim.cli("enable-high-availability", "--hosts", hosts[2], "--no-prompt"); err == nil || !strings.Contains(out, "1 hosts named for 2 group-1 leaves") {
		t.Fatalf("one host for two leaves: %v %s", err, out)
	}
	if out, err := prim.cli("enable-high-availability", "--hosts", hosts[0]+","+hosts[2], "--no-prompt"); err == nil || !strings.Contains(out, "does not survive the host's loss") {
		t.Fatalf("a pair on one host: %v %s", err, out)
	}
	// the agent of host 4 is down: the job fails at its step
	agents[3].stop()
	out, err := prim.cli("enable-high-availability", "--hosts", hosts[2]+","+hosts[3], "--no-prompt")
	if err == nil {
		t.Fatalf("enable-HA with host 4's agent down: %s", out)
	}
	var js []struct {
		ID    int    `json:"id"`
		Kind  string `json:"kind"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(prim.must("job-list", "--json")), &js); err != nil {
		t.Fatal(err)
	}
	last := js[len(js)-1]
	if last.Kind != "enable-high-availability" || last.State != "failed" {
		t.Fatalf("last job %+v", last)
	}
	agents[3].start()
	prim.must("job-retry", strconv.Itoa(last.ID))
	if logs := prim.must("job-logs", strconv.Itoa(last.ID)); !strings.Contains(logs, "retried from step 3/4") || !strings.Contains(logs, "REBALANCE PARTITIONS ON ha") {
		t.Errorf("job-logs:\n%s", logs)
	}

	testutil.ExpectRows(t, ma, "SELECT COUNT(*) FROM information_schema.LEAVES WHERE STATE = 'online'", "4")
	testutil.ExpectRows(t, ma, "SELECT AVAILABILITY_GROUP, COUNT(*) FROM information_schema.LEAVES GROUP BY 1 ORDER BY 1", "1,2", "2,2")
	testutil.ExpectRows(t, ma, "SELECT @@GLOBAL.redundancy_level", "2")
	testutil.ExpectRows(t, ma, "SELECT ROLE, COUNT(*) FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'ha' GROUP BY 1 ORDER BY 1", "Master,4", "Slave,4")
	if got := testutil.Rows(t, ma, "SELECT COUNT(*), SUM(v) FROM ha.t"); strings.Join(got, "") != strings.Join(sum, "") {
		t.Errorf("rows after enable-HA: %v, before %v", got, sum)
	}
	if leaves := strings.Fields(prim.must("node-list", "--role", "leaf", "-q")); len(leaves) != 4 {
		t.Errorf("node-list leaves: %v", leaves)
	}
}
