package docker_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

// compose runs docker-compose for one test deployment.
type compose struct {
	t       *testing.T
	project string
	subnet  string
	dir     string
}

func (c *compose) run(args ...string) (string, error) {
	cmd := exec.Command("docker-compose", append([]string{"-p", c.project}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "CANOPY_SUBNET="+c.subnet)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *compose) container(host int) string { return fmt.Sprintf("%s_host%d_1", c.project, host) }
func (c *compose) ip(host int) string        { return fmt.Sprintf("%s.%d", c.subnet, 10+host) }

// ops runs `canopy ops …` on a host (its container).
func (c *compose) ops(host int, args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", c.container(host), "/canopy", "ops"}, args...)...).CombinedOutput()
	return string(out), err
}

func (c *compose) must(host int, args ...string) string {
	c.t.Helper()
	out, err := c.ops(host, args...)
	if err != nil {
		c.t.Fatalf("host%d: canopy ops %s: %v\n%s", host, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

type nodeRow struct {
	ID    string `json:"id"`
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Role  string `json:"role"`
	Group int    `json:"group"`
	State string `json:"state"`
}

// TestComposeDeployment brings up deploy/docker's five hosts, deploys a
// master, a child aggregator and two leaves through the CLI, enables high
// availability onto two more hosts, and writes while one host is killed
// (docker kill) and another cut from the network (docker network
// disconnect): node-list, SHOW LEAVES and the data agree, and no
// acknowledged write is lost.
func TestComposeDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("brings up five containers")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("Docker is not available (docker info: %v): the five-host deployment test needs it", err)
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose is not installed: the five-host deployment test needs it")
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "canopy"), "./cmd/canopy")
	build.Dir = filepath.Join(dir, "..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	if out, err := exec.Command("docker", "build", "-q", "-t", "canopy:local", dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	c := &compose{t: t, dir: dir, project: fmt.Sprintf("canopye2e%d", os.Getpid())}
	for attempt := 0; ; attempt++ {
		c.subnet = fmt.Sprintf("172.%d.%d", 20+rand.Intn(12), rand.Intn(256))
		out, err := c.run("up", "-d")
		if err == nil {
			break
		}
		c.run("down", "-v", "-t", "1")
		if attempt == 4 {
			t.Fatalf("docker-compose up: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for h := 1; h <= 5; h++ {
				out, _ := exec.Command("docker", "logs", "--tail", "40", c.container(h)).CombinedOutput()
				t.Logf("host%d agent log:\n%s", h, out)
			}
		}
		c.run("down", "-v", "-t", "5")
	})
	// the agents answer
	deadline := time.Now().Add(30 * time.Second)
	for h := 1; h <= 5; h++ {
		for {
			if _, err := c.ops(h, "agent-list"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("host%d's agent does not answer", h)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	secret := c.must(1, "agent-secret")
	for h := 2; h <= 5; h++ {
		c.must(h, "agent-follow", "--host", c.ip(1), "--secret", secret)
	}
	if out := c.must(1, "agent-list"); strings.Count(out, "online") != 5 {
		t.Fatalf("agent-list:\n%s", out)
	}
	c.must(1, "node-deploy", "--role", "master", "--port", "3306")
	c.must(1, "node-deploy", "--role", "aggregator", "--port", "3307")
	c.must(1, "node-deploy", "--role", "leaf", "--port", "3306", "--host", c.ip(2))
	c.must(3, "node-deploy", "--role", "leaf", "--port", "3306") // from host 3's own CLI

	pw := c.must(1, "root-password")
	db, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s:3306)/?timeout=5s&readTimeout=30s&writeTimeout=30s", pw, c.ip(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustExec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec("CREATE DATABASE e2e PARTITIONS 8")
	mustExec("CREATE TABLE e2e.t (id BIGINT PRIMARY KEY, v INT)")
	var acked sync.Map
	var next atomic.Int64
	write := func() bool {
		id := next.Add(1)
		if _, err := db.Exec("INSERT INTO e2e.t VALUES (?, ?)", id, id%97); err != nil {
			return false
		}
		acked.Store(id, true)
		return true
	}
	for i := 0; i < 500; i++ {
		if !write() {
			t.Fatal("a write before any fault failed")
		}
	}
	c.must(1, "enable-high-availability", "--hosts", c.ip(4)+","+c.ip(5), "--no-prompt")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if !write() {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	}()
	time.Sleep(2 * time.Second)
	if out, err := exec.Command("docker", "kill", c.container(5)).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	leafState := func(ip string) string {
		var s string
		db.QueryRow("SELECT STATE FROM information_schema.LEAVES WHERE HOST = ?", ip).Scan(&s)
		return s
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s", what)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	waitFor("host5's leaf offline", func() bool { return leafState(c.ip(5)) == "offline" })
	network := c.project + "_canopy"
	if out, err := exec.Command("docker", "network", "disconnect", network, c.container(4)).CombinedOutput(); err != nil {
		t.Fatalf("docker network disconnect: %v %s", err, out)
	}
	waitFor("host4's leaf offline", func() bool { return leafState(c.ip(4)) == "offline" })
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	// no acknowledged write lost
	present := map[int64]bool{}
	rows, err := db.Query("SELECT id FROM e2e.t")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		present[id] = true
	}
	rows.Close()
	lost, total := 0, 0
	acked.Range(func(k, _ any) bool {
		total++
		if !present[k.(int64)] {
			lost++
		}
		return true
	})
	if lost > 0 || total < 500 {
		t.Errorf("%d of %d acknowledged writes lost", lost, total)
	}
	t.Logf("%d acknowledged writes, all there", total)
	// node-list and SHOW LEAVES agree
	var nodes []nodeRow
	if err := json.Unmarshal([]byte(c.must(1, "node-list", "--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 6 {
		t.Fatalf("node-list: %+v", nodes)
	}
	for _, n := range nodes {
		cut := n.Host == c.ip(4) || n.Host == c.ip(5)
		if cut != (n.State == "unknown") {
			t.Errorf("node-list: %s %s:%d is %s", n.Role, n.Host, n.Port, n.State)
		}
		if n.Role == "leaf" {
			if want := map[bool]string{true: "offline", false: "online"}[cut]; leafState(n.Host) != want {
				t.Errorf("SHOW LEAVES: %s is %s, node-list says %s", n.Host, leafState(n.Host), n.State)
			}
		}
	}
}
