package agent_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/ops/agent"
	"github.com/canopydb/canopy/ops/jobs"
)

// TestSnapshotAndSeed: three hosts (a primary with the master aggregator,
// a leaf's host, an empty one). A snapshot of the leaf taken under a
// write load holds every write acknowledged before it; the API refuses
// calls without the token or the grant; the leaf's data is seeded to the
// third host over a capped link that is cut halfway (the source's agent
// restarts) and resumes; the seeded node serves the snapshot's rows; a
// seed onto a running node is refused; a stopped node's data is replaced
// only with --force; an aborted seed leaves nothing behind.
func TestSnapshotAndSeed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agents and a cluster")
	}
	h1, h2, h3 := "127.0.0.1", "127.0.0.2", "127.0.0.3"
	dir := t.TempDir()
	p1 := testutil.FreePorts(t, 1)[0]
	prim := startAgent(t, h1, filepath.Join(dir, "h1"), p1)
	secret := strings.TrimSpace(prim.must("agent-secret"))
	src := startAgent(t, h2, filepath.Join(dir, "h2"), freeBase(t, h2))
	dst := startAgent(t, h3, filepath.Join(dir, "h3"), freeBase(t, h3))
	for _, f := range []*opsAgent{src, dst} {
		f.must("agent-follow", "--host", h1, "--port", strconv.Itoa(p1), "--secret", secret)
	}
	prim.must("node-deploy", "--role", "master", "--port", strconv.Itoa(freeBase(t, h1)))
	src.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(freeBase(t, h2, h3)))
	leaf := nodeByRole(prim.nodes(), "leaf", h2)
	pw := readRootPassword(t, prim.home)
	ma, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", pw, nodeByRole(prim.nodes(), "master", "").Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	testutil.Exec(t, ma, "CREATE DATABASE s PARTITIONS 4")
	testutil.Exec(t, ma, "CREATE TABLE s.t (id INT PRIMARY KEY, pad VARCHAR(250))")
	// about 6 MiB of rows, so that a capped transfer takes a few seconds
	pad := strings.Repeat("x", 240)
	for i := 0; i < 200; i++ {
		var vals []string
		for k := 0; k < 100; k++ {
			vals = append(vals, fmt.Sprintf("(%d, '%s')", 1_000_000+i*100+k, pad))
		}
		testutil.Exec(t, ma, "INSERT INTO s.t VALUES "+strings.Join(vals, ", "))
	}

	// a writer acknowledges ids in order while the snapshot is taken
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := ma.Exec(fmt.Sprintf("INSERT INTO s.t VALUES (%d, 'w')", i)); err != nil {
				t.Errorf("insert %d: %v", i, err)
				return
			}
			acked.Store(i + 1)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	before := acked.Load()
	var snap agent.Snapshot
	if err := json.Unmarshal([]byte(prim.must("snapshot-create", leaf.ID, "--json")), &snap); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("snapshot %s: %d files, %d bytes, commits paused %.2f ms; %d writes acknowledged before it, %d in all",
		snap.ID, snap.Files, snap.Bytes, snap.TookMs, before, acked.Load())
	if snap.Node != leaf.ID || len(snap.Databases) < 4 || snap.Files == 0 {
		t.Fatalf("snapshot: %+v", snap)
	}
	if list := prim.must("snapshot-list"); !strings.Contains(list, snap.ID) {
		t.Fatalf("snapshot-list:\n%s", list)
	}

	// no token, a wrong token, no grant: 401, nothing changes
	for _, c := range []struct{ method, url, token string }{
		{"GET", fmt.Sprintf("http://%s:%d/api/snapshots", h1, p1), ""},
		{"POST", fmt.Sprintf("http://%s:%d/api/snapshots/%s/delete", h1, p1, snap.ID), "wrong"},
		{"POST", fmt.Sprintf("http://%s:%d/api/local/snapshots/%s/delete", h2, src.port, snap.ID), secret},
		{"GET", fmt.Sprintf("http://%s:%d/api/transfer/%s/file?path=MANIFEST&offset=0", h2, src.port, snap.ID), ""},
		{"GET", fmt.Sprintf("http://%s:%d/api/transfer/%s/file?path=MANIFEST&offset=0", h2, src.port, snap.ID), "1999999999.00"},
	} {
		req, _ := http.NewRequest(c.method, c.url, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with token %q: %s, want 401", c.method, c.url, c.token, resp.Status)
		}
	}
	if list := prim.must("snapshot-list"); !strings.Contains(list, snap.ID) {
		t.Fatalf("the snapshot is gone after refused calls:\n%s", list)
	}
	if audit, err := os.ReadFile(filepath.Join(src.home, "audit.log")); err != nil || !strings.Contains(string(audit), `"status":401`) {
		t.Errorf("the source's audit log has no refused call: %v\n%s", err, audit)
	}

	// seed host 3 over a 2 MiB/s link; the source's agent restarts halfway
	port := leaf.Port
	out := prim.must("seed", "--source", h2+":"+leaf.ID, "--snapshot", snap.ID, "--target", h3, "--bandwidth-mb", "2", "--detach", "--json")
	var started jobs.Job
	if err := json.Unmarshal([]byte(out), &started); err != nil {
		t.Fatalf("seed --detach: %v\n%s", err, out)
	}
	waitLog(t, prim, started.ID, "transfer ", 30*time.Second)
	time.Sleep(time.Second)
	src.cmd.Process.Kill() // SIGKILL: the link is cut mid-file (its nodes run on)
	src.cmd.Wait()
	time.Sleep(time.Second)
	src.start()
	j := waitJob(t, prim, started.ID, 2*time.Minute)
	logs := prim.must("job-logs", strconv.Itoa(started.ID))
	if j.State != jobs.Finished {
		t.Fatalf("seed job %s: %s\n%s", j.State, j.Error, logs)
	}
	if !strings.Contains(logs, "resumes after a cut") || strings.Contains(logs, " 0 resumes after a cut") {
		t.Errorf("the cut transfer did not resume:\n%s", logs)
	}
	t.Logf("seed log:\n%s", logs)
	seeded := nodeByRole(prim.nodes(), agent.NodeStandalone, h3)
	if seeded.ID == "" || seeded.State != "running" || seeded.Port != port {
		t.Fatalf("no running seeded node on %s:%d: %+v", h3, port, prim.nodes())
	}
	sn, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", pw, seeded.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var parts []string
	for o := 0; o < 4; o++ {
		parts = append(parts, fmt.Sprintf("SELECT id FROM s_%d.t", o))
	}
	union := strings.Join(parts, " UNION ALL ")
	// the leaf holds every partition: the seeded node has every row the
	// snapshot had: the bulk rows, and the writer's ids 0..k-1 with
	// k >= the acknowledged count before the snapshot, no gap
	testutil.ExpectRows(t, sn, "SELECT COUNT(*) FROM ("+union+") u WHERE id >= 1000000", "20000")
	row := testutil.Rows(t, sn, "SELECT COUNT(*), COALESCE(MAX(id), -1) FROM ("+union+") u WHERE id < 1000000")
	f := strings.Split(row[0], ",")
	n, _ := strconv.ParseInt(f[0], 10, 64)
	maxID, _ := strconv.ParseInt(f[1], 10, 64)
	if n != maxID+1 || n < before || n > acked.Load() {
		t.Errorf("seeded writer rows: %d up to id %d; %d acknowledged before the snapshot, %d in all", n, maxID, before, acked.Load())
	}
	// outside the cluster: it ships to no one and takes no cluster's orders
	testutil.ExpectRows(t, ma, fmt.Sprintf("SELECT COUNT(*) FROM information_schema.LEAVES WHERE HOST = '%s'", h3), "0")

	// onto a running node: refused at the checks
	if out, err := prim.cli("seed", "--source", leaf.ID, "--snapshot", snap.ID, "--target", h3); err == nil || !strings.Contains(out, "a seed never replaces a running node") {
		t.Errorf("seed onto a running node: %v\n%s", err, out)
	}
	// a stopped node's data: only with --force
	prim.must("node-stop", seeded.ID)
	if out, err := prim.cli("seed", "--source", leaf.ID, "--snapshot", snap.ID, "--target", h3); err == nil || !strings.Contains(out, "--force removes it") {
		t.Errorf("seed onto a stopped node without --force: %v\n%s", err, out)
	}

	// abort: a slow seed stopped halfway leaves nothing on the target
	out = prim.must("seed", "--source", leaf.ID, "--snapshot", snap.ID, "--target", h3, "--force", "--bandwidth-mb", "0.5", "--detach", "--json")
	if err := json.Unmarshal([]byte(out), &started); err != nil {
		t.Fatal(err)
	}
	waitLog(t, prim, started.ID, "transfer ", 30*time.Second)
	prim.must("seed-abort", strconv.Itoa(started.ID))
	if j := waitJob(t, prim, started.ID, 30*time.Second); j.State != jobs.Cancelled {
		t.Errorf("aborted seed: %s", j.State)
	}
	if _, err := os.Stat(filepath.Join(dst.home, "seeds", "seed-"+strconv.Itoa(started.ID))); !os.IsNotExist(err) {
		t.Errorf("an aborted seed left its files: %v", err)
	}
	// the stopped node's data is untouched by the aborted seed
	prim.must("node-start", seeded.ID)
	waitPing(t, sn)
	testutil.ExpectRows(t, sn, "SELECT COUNT(*) FROM ("+union+") u WHERE id >= 1000000", "20000")

	// with --force the stopped node's data is replaced by a fresh snapshot
	prim.must("node-stop", seeded.ID)
	prim.must("seed", "--source", leaf.ID, "--target", h3, "--force")
	waitPing(t, sn)
	testutil.ExpectRows(t, sn, "SELECT COUNT(*) FROM ("+union+") u WHERE id < 1000000", strconv.FormatInt(acked.Load(), 10))
}

func waitPing(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for db.Ping() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the node does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitJob(t *testing.T, a *opsAgent, id int, timeout time.Duration) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var js []jobs.Job
		json.Unmarshal([]byte(a.must("job-list", "--json")), &js)
		for _, j := range js {
			if j.ID == id && j.State.Done() {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d did not end:\n%s", id, a.must("job-logs", strconv.Itoa(id)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitLog(t *testing.T, a *opsAgent, id int, text string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		if strings.Contains(a.must("job-logs", strconv.Itoa(id)), text) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %d never logged %q:\n%s", id, text, a.must("job-logs", strconv.Itoa(id)))
}

// TestSeedByCommands: seed 004's configured commands in place of the
// built-in ways: a CreateSnapshotCommand copies a stopped node's data; the
// seed moves it with the SendSeedDataCommand / ReceiveSeedDataCommand
// pair (tar over socat), runs the PostCopyCommand, and still checks every
// file's SHA-256 before the node starts with the rows.
func TestSeedByCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agents and a cluster")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatal("socat is needed (.ci/run installs it)")
	}
	h1, h2, h3 := "127.0.0.1", "127.0.0.2", "127.0.0.3"
	dir := t.TempDir()
	p1 := testutil.FreePorts(t, 1)[0]
	prim := startAgent(t, h1, filepath.Join(dir, "h1"), p1)
	secret := strings.TrimSpace(prim.must("agent-secret"))
	src := startAgent(t, h2, filepath.Join(dir, "h2"), freeBase(t, h2),
		"--create-snapshot-command", `cp -a "$CANOPY_DATA_DIR" "$CANOPY_SNAPSHOT_DIR/data"`,
		"--send-seed-command", `tar -C "$CANOPY_SNAPSHOT_DATA" -cf - . | socat -u STDIN "TCP:$CANOPY_TARGET_HOST:$CANOPY_SEED_PORT,retry=100,interval=0.1"`)
	dst := startAgent(t, h3, filepath.Join(dir, "h3"), freeBase(t, h3),
		"--receive-seed-command", `socat -u "TCP-LISTEN:$CANOPY_SEED_PORT,bind=$CANOPY_SEED_HOST,reuseaddr" STDOUT | tar -x -C "$CANOPY_SEED_DIR"`,
		"--post-copy-command", `echo done > "$CANOPY_SEED_DIR/POSTCOPY"`)
	for _, f := range []*opsAgent{src, dst} {
		f.must("agent-follow", "--host", h1, "--port", strconv.Itoa(p1), "--secret", secret)
	}
	prim.must("node-deploy", "--role", "master", "--port", strconv.Itoa(freeBase(t, h1)))
	src.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(freeBase(t, h2, h3)))
	leaf := nodeByRole(prim.nodes(), "leaf", h2)
	pw := readRootPassword(t, prim.home)
	ma, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", pw, nodeByRole(prim.nodes(), "master", "").Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	testutil.Exec(t, ma, "CREATE DATABASE c PARTITIONS 2")
	testutil.Exec(t, ma, "CREATE TABLE c.t (id INT PRIMARY KEY)")
	testutil.Exec(t, ma, "INSERT INTO c.t VALUES (1), (2), (3), (4), (5)")
	// the command copies files: the node is stopped so that they hold still
	prim.must("node-stop", leaf.ID)
	var snap agent.Snapshot
	if err := json.Unmarshal([]byte(prim.must("snapshot-create", leaf.ID, "--json")), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Files == 0 || len(snap.Databases) != 0 {
		t.Fatalf("a command's snapshot: %+v", snap)
	}
	prim.must("node-start", leaf.ID)
	out := prim.must("seed", "--source", leaf.ID, "--snapshot", snap.ID, "--target", h3)
	if !strings.Contains(out, "by the configured commands") || !strings.Contains(out, "SHA-256 matches") {
		t.Errorf("seed log:\n%s", out)
	}
	seeded := nodeByRole(prim.nodes(), agent.NodeStandalone, h3)
	if b, err := os.ReadFile(filepath.Join(dst.home, "nodes", seeded.ID, "data", "POSTCOPY")); err != nil || strings.TrimSpace(string(b)) != "done" {
		t.Errorf("the PostCopyCommand did not run: %v", err)
	}
	sn, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", pw, seeded.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	waitPing(t, sn)
	testutil.ExpectRows(t, sn, "SELECT SUM(n) FROM (SELECT COUNT(*) AS n FROM c_0.t UNION ALL SELECT COUNT(*) FROM c_1.t) x", "5")
}
