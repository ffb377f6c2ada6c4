package agent_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/ops/metrics"
)

// TestNodeReplace: a leaf of a redundancy-2 cluster loses its data
// directory (SIGKILL, then rm -rf) while writes go on; node-replace puts a
// new leaf on a fourth host in its place. Afterwards SHOW LEAVES lists the
// new host and not the old one, every partition has two copies again,
// and no acknowledged (synchronous) write is missing, even once the old
// leaf's pair dies too and the new leaf's copies take over.
func TestNodeReplace(t *testing.T) { testNodeReplace(t, false) }

// TestNodeReplaceSeeded: the same with --seed: the new leaf starts from a
// snapshot of the old leaf's pair, and its copies catch up from the
// snapshot's positions; none is provisioned whole.
func TestNodeReplaceSeeded(t *testing.T) { testNodeReplace(t, true) }

func testNodeReplace(t *testing.T, seed bool) {
	if testing.Short() {
		t.Skip("starts four agents and a cluster")
	}
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	dir := t.TempDir()
	p1 := testutil.FreePorts(t, 1)[0]
	prim := startAgent(t, hosts[0], filepath.Join(dir, "h1"), p1)
	secret := strings.TrimSpace(prim.must("agent-secret"))
	agents := []*opsAgent{prim}
	for i, h := range hosts[1:] {
		a := startAgent(t, h, filepath.Join(dir, fmt.Sprintf("h%d", i+2)), freeBase(t, h))
		a.must("agent-follow", "--host", hosts[0], "--port", strconv.Itoa(p1), "--secret", secret)
		agents = append(agents, a)
	}
	prim.must("node-deploy", "--role", "master", "--port", strconv.Itoa(freeBase(t, hosts[0])))
	pw := readRootPassword(t, prim.home)
	ma, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", pw, nodeByRole(prim.nodes(), "master", "").Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 2000")
	port := freeBase(t, hosts[1:]...)
	prim.must("node-deploy", "--role", "leaf", "--host", hosts[1], "--port", strconv.Itoa(port), "--availability-group", "1")
	prim.must("node-deploy", "--role", "leaf", "--host", hosts[2], "--port", strconv.Itoa(port), "--availability-group", "2")
	testutil.Exec(t, ma, "CREATE DATABASE r WITH SYNC REPLICATION PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE r.t (id INT PRIMARY KEY)")

	var mu sync.Mutex
	var acked []int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := ma.Exec(fmt.Sprintf("INSERT INTO r.t VALUES (%d)", i)); err == nil {
				mu.Lock()
				acked = append(acked, i)
				mu.Unlock()
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	time.Sleep(time.Second)

	// the leaf on host 2 loses its data: no automatic restart meanwhile
	prim.must("cluster-manual-control", "--enable")
	defer prim.cli("cluster-manual-control", "--disable")
	old := nodeByRole(prim.nodes(), "leaf", hosts[1])
	syscall.Kill(old.PID, syscall.SIGKILL)
	if err := os.RemoveAll(filepath.Join(agents[1].home, "nodes", old.ID, "data")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows := testutil.Rows(t, ma, fmt.Sprintf("SELECT STATE FROM information_schema.LEAVES WHERE HOST = '%s'", hosts[1]))
		masterless := testutil.Rows(t, ma, "SELECT COUNT(*) FROM (SELECT ORDINAL FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'r' GROUP BY 1 HAVING SUM(ROLE = 'Master') = 0) x")
		if len(rows) == 1 && rows[0] == "offline" && masterless[0] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leaf did not fail over: %v %v", rows, masterless)
		}
		time.Sleep(200 * time.Millisecond)
	}

	args := []string{"node-replace", old.ID, "--target", hosts[3], "--no-prompt"}
	if seed {
		args = append(args, "--seed")
	}
	out, err := prim.cli(args...)
	if err != nil {
		var js []string
		for _, l := range strings.Split(prim.must("job-list"), "\n") {
			if strings.Contains(l, "node-replace") {
				js = append(js, strings.Fields(l)[0])
			}
		}
		for _, id := range js {
			t.Logf("job %s:\n%s", id, prim.must("job-logs", id))
		}
		t.Logf("partitions: %v", testutil.Rows(t, ma, "SELECT * FROM information_schema.DISTRIBUTED_PARTITIONS"))
		t.Logf("leaves: %v", testutil.Rows(t, ma, "SELECT * FROM information_schema.LEAVES"))
		t.Fatalf("node-replace: %v\n%s", err, out)
	}
	t.Logf("node-replace:\n%s", out)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	testutil.ExpectRows(t, ma, "SELECT HOST, STATE FROM information_schema.LEAVES ORDER BY HOST", hosts[2]+",online", hosts[3]+",online")
	testutil.ExpectRows(t, ma, "SELECT ROLE, COUNT(*) FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'r' GROUP BY 1 ORDER BY 1", "Master,4", "Slave,4")
	have := map[string]bool{}
	for _, id := range testutil.Rows(t, ma, "SELECT id FROM r.t") {
		have[id] = true
	}
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for _, id := range acked {
		if !have[strconv.Itoa(id)] {
			missing++
		}
	}
	if missing > 0 || len(acked) == 0 {
		t.Errorf("%d of %d acknowledged writes missing", missing, len(acked))
	}
	t.Logf("%d acknowledged writes, all present", len(acked))
	if seed {
		if !strings.Contains(out, "seed job") {
			t.Errorf("node-replace --seed did not seed:\n%s", out)
		}
		// every copy on the new leaf came from the seed and caught up
		// from its position: no snapshot was shipped to it
		nl := nodeByRole(prim.nodes(), "leaf", hosts[3])
		vals, _, err := metrics.Scrape(context.Background(), http.DefaultClient, fmt.Sprintf("http://%s:%d/metrics", nl.Host, nl.Port+20000))
		if err != nil {
			t.Fatal(err)
		}
		if n := vals["canopy_snapshots_received_total"]; n != 0 {
			t.Errorf("the seeded leaf was sent %v whole snapshots", n)
		}
	}
	for _, n := range prim.nodes() {
		if n.ID == old.ID {
			t.Errorf("node-list still has the old leaf %s", old.ID)
		}
	}
	if _, err := os.Stat(filepath.Join(agents[1].home, "nodes", old.ID)); !os.IsNotExist(err) {
		t.Errorf("the old leaf's home is still on its host: %v", err)
	}
	// the old leaf's pair can fail now: the new leaf holds every row
	pair := nodeByRole(prim.nodes(), "leaf", hosts[2])
	syscall.Kill(pair.PID, syscall.SIGKILL)
	deadline = time.Now().Add(30 * time.Second)
	for {
		rows := testutil.Rows(t, ma, "SELECT COUNT(*) FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'r' AND ROLE = 'Master' AND HOST = '"+hosts[3]+"'")
		if rows[0] == "4" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new leaf did not take over: %v", testutil.Rows(t, ma, "SELECT * FROM information_schema.DISTRIBUTED_PARTITIONS"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	have = map[string]bool{}
	for _, id := range testutil.Rows(t, ma, "SELECT id FROM r.t") {
		have[id] = true
	}
	for _, id := range acked {
		if !have[strconv.Itoa(id)] {
			t.Fatalf("after the pair's failure, acknowledged write %d is missing", id)
		}
	}
}
