package agent_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/ops/agent"
)

// screenshotDir is where the browser test saves a PNG of every page
// (README: "Screenshots of the web interface").
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("CANOPY_UI_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "canopy-ui-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestWebInterface drives the agents' web interface in a real browser
// (chromedp and Debian's chromium) against a live deployment: two hosts,
// a master and two leaves. It logs in with a one-time link, opens every
// page and checks the data it shows against the cluster, stops a leaf
// from the UI and watches it go offline and come back, and fails on any
// JavaScript error. Each page is saved as a PNG.
func TestWebInterface(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents, a cluster and a browser")
	}
	browser := chromium()
	if browser == "" {
		t.Skip("no chromium: install Debian's chromium (.ci/run does) to run the browser test")
	}
	h1, h2 := "127.0.0.1", "127.0.0.2"
	dir := t.TempDir()
	p1 := testutil.FreePorts(t, 1)[0]
	prim := startAgent(t, h1, filepath.Join(dir, "h1"), p1)
	fol := startAgent(t, h2, filepath.Join(dir, "h2"), freeBase(t, h2))
	fol.must("agent-follow", "--host", h1, "--port", strconv.Itoa(p1), "--secret", strings.TrimSpace(prim.must("agent-secret")))
	prim.must("node-deploy", "--role", "master", "--port", strconv.Itoa(freeBase(t, h1)))
	prim.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(freeBase(t, h1)))
	l2port := freeBase(t, h2)
	fol.must("node-deploy", "--role", "leaf", "--port", strconv.Itoa(l2port))
	master := nodeByRole(prim.nodes(), "master", "")
	leaf2 := nodeByRole(prim.nodes(), "leaf", h2)
	ma, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/", readRootPassword(t, prim.home), master.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	testutil.Exec(t, ma, "SET GLOBAL leaf_failure_timeout_ms = 2000")
	testutil.Exec(t, ma, "CREATE DATABASE web PARTITIONS 6")
	testutil.Exec(t, ma, "CREATE TABLE web.t (id INT PRIMARY KEY)")
	testutil.Exec(t, ma, "INSERT INTO web.t VALUES (1), (2), (3)")
	masters := len(testutil.Rows(t, ma, "SELECT * FROM information_schema.DISTRIBUTED_PARTITIONS WHERE DATABASE_NAME = 'web' AND ROLE = 'Master'"))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var jsErrors []string
	chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			mu.Lock()
			jsErrors = append(jsErrors, e.ExceptionDetails.Text)
			mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				mu.Lock()
				jsErrors = append(jsErrors, fmt.Sprintf("console.error %v", e.Args))
				mu.Unlock()
			}
		}
	})
	// the node actions ask for a confirmation: accept it
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	shots := screenshotDir(t)
	base := fmt.Sprintf("http://%s:%d", h1, p1)
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	open := func(path string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS("#main"))); err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
	}
	waitText := func(sel, want string, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, _ := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
			cancel()
			if strings.Contains(s, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never showed %q (last: %q)", sel, want, s)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// log in with the link the CLI makes
	link := strings.TrimSpace(prim.must("ui-link", "/"))
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#main"))); err != nil {
		t.Fatal(err)
	}
	if main := text("#main"); !strings.Contains(main, "2/2 leaves online") || !strings.Contains(main, "0 partitions without a master") {
		t.Fatalf("overview:\n%s", main)
	}
	// the latency chart draws once two scrapes of the master aggregator
	// saw statements in between (the agents' own queries are some)
	deadline := time.Now().Add(20 * time.Second)
	for {
		open("/")
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart[aria-label^="Statement latency"] path.line').length`))
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the latency chart has %d lines (want mean and p99): %v", n, err)
		}
		time.Sleep(time.Second)
	}
	shot("overview")

	open("/hosts")
	waitText("#main", h2, 5*time.Second)
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart path.line").length`))
	if err != nil || lines == 0 {
		t.Errorf("no chart drew a line on the hosts page (%d, %v)", lines, err)
	}
	shot("hosts")

	open("/nodes")
	main := text("#main")
	for _, n := range prim.nodes() {
		if !strings.Contains(main, n.ID) || !strings.Contains(main, strconv.Itoa(n.Port)) {
			t.Errorf("nodes page lacks node %s port %d", n.ID, n.Port)
		}
	}
	shot("nodes")

	open("/databases")
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.pmap td.cell.Master").length`))
	if err != nil || cells != masters {
		t.Errorf("partition map: %d master cells, SHOW PARTITIONS has %d (%v)", cells, masters, err)
	}
	// the partitions' rows add up to the table's
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('section[data-db="web"] td.rows')].reduce((s, td) => s + (parseInt(td.textContent) || 0), 0)`))
	if err != nil || rows != 3 {
		t.Errorf("partition map: rows add up to %d, the table has 3 (%v)", rows, err)
	}
	shot("databases")
	for _, p := range []string{"rebalance", "events", "settings"} {
		open("/" + p)
		shot(p)
	}
	// a snapshot of the leaf on host 2, taken from the UI
	open("/snapshots")
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`form[action="/ui/snapshots"] select[name="node"]`), leaf2.ID),
		chromedp.Click(chromedp.CSS(`form[action="/ui/snapshots"] button`))); err != nil {
		t.Fatal(err)
	}
	waitText("table.snapshots", leaf2.ID+"-", 20*time.Second)
	if list := prim.must("snapshot-list"); !strings.Contains(list, leaf2.ID+"-") {
		t.Errorf("the UI's snapshot is not in snapshot-list:\n%s", list)
	}
	shot("snapshots")
	// and a seed of that leaf to host 1, started from the UI
	seedPort := freeBase(t, h1)
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`form[action="/ui/seeds"] select[name="source"]`), leaf2.ID),
		chromedp.SetValue(chromedp.CSS(`form[action="/ui/seeds"] select[name="target"]`), h1),
		chromedp.SetValue(chromedp.CSS(`form[action="/ui/seeds"] input[name="port"]`), strconv.Itoa(seedPort)),
		chromedp.Click(chromedp.CSS(`form[action="/ui/seeds"] button`))); err != nil {
		t.Fatal(err)
	}
	waitText("table.jobs", "finished", 60*time.Second)
	if n := nodeByRole(prim.nodes(), agent.NodeStandalone, h1); n.Port != seedPort || n.State != "running" {
		t.Errorf("the UI's seed made no running node on %s:%d: %+v", h1, seedPort, n)
	}
	shot("snapshots-seeded")

	// stop the leaf on host 2 from the UI: offline without a reload, then
	// start it: online again
	open("/nodes")
	row := fmt.Sprintf(`tr[data-node="%s"]`, leaf2.ID)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+` form[action$="/stop"] button`))); err != nil {
		t.Fatal(err)
	}
	waitText(row, "stopped", 20*time.Second)
	waitText(row, "offline", 30*time.Second)
	shot("nodes-leaf-stopped")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+` form[action$="/start"] button`))); err != nil {
		t.Fatal(err)
	}
	waitText(row, "running", 20*time.Second)
	waitText(row, "online", 60*time.Second)
	shot("nodes-leaf-back")
	// the events page tells what the cluster did
	open("/events?q=cluster")
	waitText("#main", fmt.Sprintf("cluster: leaf %s online → offline", leaf2.Addr()), 10*time.Second)
	// and the master aggregator's own log of it (information_schema.MV_EVENTS)
	waitText("#main", fmt.Sprintf("WARNING cluster: leaf is not answering heartbeats; failing it over (leaf=%s", leaf2.Addr()), 10*time.Second)
	waitText("#main", fmt.Sprintf("cluster: leaf attached (leaf=%s)", leaf2.Addr()), 10*time.Second)
	shot("events-cluster")

	mu.Lock()
	defer mu.Unlock()
	if len(jsErrors) > 0 {
		t.Errorf("JavaScript errors: %v", jsErrors)
	}
	t.Logf("screenshots in %s", shots)
}
