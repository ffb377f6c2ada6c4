package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeAPI answers the agent API calls the pages make with a fixed
// deployment, and records the actions.
type fakeAPI struct {
	actions []string
}

func (f *fakeAPI) fetch(_ context.Context, method, path string, in, out any) error {
	var body string
	switch {
	case path == "/api/enable-high-availability" && in.(map[string]any)["plan_only"] == true:
		body = `{"plan":["SET GLOBAL redundancy_level = 2","deploy a leaf on 127.0.0.3:3307"]}`
	case path == "/api/ui/mysql-login":
		m := in.(map[string]string)
		body = `{"ok":false,"why":"the account lacks SUPER on the cluster"}`
		if m["user"] == "admin" && m["password"] == "pw" {
			body = `{"ok":true}`
		}
	case method == "POST":
		b, _ := json.Marshal(in)
		f.actions = append(f.actions, method+" "+path+" "+string(b))
		body = `{}`
	case path == "/api/status":
		body = `{"host":"127.0.0.1","role":"primary","manual_control":false}`
	case path == "/api/nodes":
		body = `[{"id":"M1","host":"127.0.0.1","port":3306,"role":"master","state":"running","pid":11,"version":"dev","uptime":"5s"},
			{"id":"L1","host":"127.0.0.1","port":3307,"role":"leaf","group":1,"state":"running","pid":12,"version":"dev","config":{"cache-mb":"64"}},
			{"id":"L2","host":"127.0.0.2","port":3307,"role":"leaf","group":2,"state":"stopped","pid":0,"version":"dev"}]`
	case path == "/api/cluster" || path == "/api/cluster?detail=1":
		body = `{"master":"127.0.0.1:3306","reachable":true,"redundancy":2,
			"leaves":[{"host":"127.0.0.1","port":3307,"group":1,"pair_host":"127.0.0.2","pair_port":3307,"state":"online"},
			          {"host":"127.0.0.2","port":3307,"group":2,"pair_host":"127.0.0.1","pair_port":3307,"state":"offline"}],
			"aggregators":[{"host":"127.0.0.1","port":3306,"state":"online","master":true}],
			"partitions":[{"database":"shop","ordinal":0,"host":"127.0.0.1","port":3307,"role":"Master","rows":100,"bytes":4096},
			              {"database":"shop","ordinal":1,"host":"127.0.0.1","port":3307,"role":"Master","rows":300,"bytes":12288},
			              {"database":"shop","ordinal":1,"host":"127.0.0.2","port":3307,"role":"Slave","locked":true,"lag":7}],
			"rebalance":[{"database":"shop","action":"COPY PARTITION","ordinal":0,"target":"127.0.0.2:3307","phase":1,"status":"running"}]}`
	case path == "/api/agents":
		body = `[{"host":"127.0.0.1","port":9000,"role":"primary","state":"online"},{"host":"127.0.0.2","port":9000,"role":"follower","state":"unreachable"}]`
	case path == "/api/events":
		body = `[{"at":"2026-12-05T10:00:00Z","text":"node L2 (leaf 127.0.0.2:3307) exited"}]`
	case path == "/api/jobs":
		body = `[{"id":1,"kind":"node-deploy","state":"finished","created":"2026-12-05T09:00:00Z"},{"id":2,"kind":"enable-high-availability","state":"failed","error":"disk full","created":"2026-12-05T09:10:00Z"},
			{"id":3,"kind":"seed","args":{"source":"127.0.0.1:L1","target":"127.0.0.2:3307"},"state":"running","steps":[{"text":"checks","state":"finished"},{"text":"transfer","state":"running"}]}]`
	case path == "/api/snapshots":
		body = `[{"id":"L1-20261205T090000Z-abcd","node":"L1","host":"127.0.0.1","node_addr":"127.0.0.1:3307","taken":"2026-12-05T09:00:00Z","took_ms":12.5,"bytes":3145728,"files":7,"databases":[{"name":"shop_0"},{"name":"shop_1"}]}]`
	case path == "/api/seeds":
		body = `[{"id":"seed-3","snapshot":"L1-20261205T090000Z-abcd","state":"receiving","total":3145728,"done":1048576,"rate":524288,"eta_seconds":4,"resumes":1}]`
	case path == "/api/jobs/2":
		body = `{"id":2,"kind":"enable-high-availability","state":"failed","steps":[{"text":"SET GLOBAL redundancy_level = 2","state":"finished"},{"text":"deploy a leaf","state":"failed"}],"log":[{"at":"2026-12-05T09:10:01Z","text":"step 2/2 failed: disk full"}]}`
	case path == "/api/metrics/latest":
		body = `{"node/M1":{"memory_bytes":104857600,"connections":3,"queries_per_second":12.5}}`
	case path == "/api/rebalance/shop":
		body = `[{"action":"COPY PARTITION","ordinal":1,"target":"127.0.0.3:3307","phase":1}]`
	case strings.HasPrefix(path, "/api/metrics"):
		now := time.Now().Unix()
		body = fmt.Sprintf(`{"points":[{"t":%d,"v":1.5},{"t":%d,"v":3},{"t":%d,"v":2}]}`, now-20, now-10, now)
	default:
		return fmt.Errorf("unexpected call %s %s", method, path)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal([]byte(body), out)
}

func newClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPagesNeedALogin(t *testing.T) {
	f := &fakeAPI{}
	s := New(f.fetch)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := newClient(t)
	if code, body := get(t, c, srv.URL+"/nodes"); code != http.StatusUnauthorized || !strings.Contains(body, "ui-link") {
		t.Fatalf("without a login: %d", code)
	}
	link := s.Link("/nodes")
	if code, body := get(t, c, srv.URL+link); code != 200 || !strings.Contains(body, `data-node="L1"`) {
		t.Fatalf("the login link: %d\n%s", code, body)
	}
	// one time: the link no longer works, the session does
	if code, _ := get(t, newClient(t), srv.URL+link); code != http.StatusUnauthorized {
		t.Errorf("a used link logged in again: %d", code)
	}
	if code, _ := get(t, c, srv.URL+"/databases"); code != 200 {
		t.Errorf("the session: %d", code)
	}
	// an action without the form's CSRF token is refused
	resp, err := c.PostForm(srv.URL+"/ui/nodes/L1/stop", url.Values{"csrf": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(f.actions) != 0 {
		t.Errorf("a forged action: %d, actions %v", resp.StatusCode, f.actions)
	}
	// read-only viewing when opened
	s.Open = true
	if code, body := get(t, newClient(t), srv.URL+"/nodes"); code != 200 || strings.Contains(body, "<form") {
		t.Errorf("open viewing: %d, forms shown: %v", code, strings.Contains(body, "<form"))
	}
}

func TestEveryPage(t *testing.T) {
	f := &fakeAPI{}
	s := New(f.fetch)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := newClient(t)
	get(t, c, srv.URL+s.Link("/"))
	for _, p := range []struct {
		path string
		want []string
	}{
		{"/", []string{"1/2</b> leaves online", `<b id="no-master">0</b>`, "redundancy <b>2</b>", "<svg", "Queries per second", "Statement latency", "node L2 (leaf 127.0.0.2:3307) exited"}},
		{"/hosts", []string{"127.0.0.2", "unreachable", "CPU 127.0.0.1", "Memory used", "<path"}},
		{"/nodes", []string{`data-node="M1"`, `data-node="L2"`, "127.0.0.2:3307", "offline", "stopped", "data-confirm=\"Delete node L1", "100 MiB", "12.5"}},
		// rows 100 and 300: mean 200, deviation 100, skew 50%
		{"/databases", []string{"shop", "2 partitions", "1 locked", `<td class="cell Master">M</td>`, `<td class="cell Slave offline">R <b>+7</b></td>`,
			"400 rows", "16 KiB", "row skew 50%", `<td class="num rows">300</td>`, `<td class="num lag">7</td>`}},
		{"/rebalance", []string{"COPY PARTITION", "127.0.0.2:3307", "running", "would run 1 steps", "127.0.0.3:3307", `action="/ui/rebalance/shop"`}},
		{"/settings?ha_hosts=127.0.0.3", []string{"deploy a leaf on 127.0.0.3:3307", `action="/ui/enable-ha"`}},
		{"/events", []string{"node-deploy", "enable-high-availability", "disk full", `href="/events?job=2"`}},
		{"/events?job=2", []string{"Job 2", "SET GLOBAL redundancy_level = 2 (finished)", "step 2/2 failed"}},
		{"/settings", []string{"Manual control is", "turn on", "cache-mb=64"}},
		{"/snapshots", []string{`data-snapshot="L1-20261205T090000Z-abcd"`, "3 MiB", "12.5 ms", `data-seed="seed-3"`, `value="33"`, "1 MiB of 3 MiB", "512 KiB/s",
			`action="/ui/seeds/3/abort"`, `<a href="/events?job=3">3</a>`, "127.0.0.1:L1", `action="/ui/snapshots/L1-20261205T090000Z-abcd/delete"`, `<option>127.0.0.2</option>`}},
	} {
		code, body := get(t, c, srv.URL+p.path)
		if code != 200 {
			t.Errorf("%s: %d", p.path, code)
			continue
		}
		for _, w := range p.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: no %q", p.path, w)
			}
		}
	}
	// the live refresh gets the content alone
	req, _ := http.NewRequest("GET", srv.URL+"/nodes", nil)
	req.Header.Set("X-Canopy-Partial", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "<html") || !strings.Contains(string(b), `data-node="L1"`) {
		t.Errorf("partial refresh: %s", b)
	}
	// actions reach the API
	code, body := get(t, c, srv.URL+"/nodes")
	i := strings.Index(body, `name="csrf" value="`)
	if code != 200 || i < 0 {
		t.Fatal("no csrf in the nodes page")
	}
	csrf := body[i+len(`name="csrf" value="`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	for _, act := range []struct{ path, want string }{
		{"/ui/nodes/L2/start", `POST /api/nodes/L2/start null`},
		{"/ui/nodes/L1/delete", `POST /api/nodes/L1/delete {"remove_data":true}`},
		{"/ui/manual-control", `POST /api/manual-control {"enable":true}`},
		{"/ui/rebalance/shop", `POST /api/rebalance/shop null`},
		{"/ui/enable-ha", `POST /api/enable-high-availability {"hosts":["127.0.0.3","127.0.0.4"]}`},
	} {
		vals := url.Values{"csrf": {csrf}}
		if strings.Contains(act.path, "delete") {
			vals.Set("remove_data", "1")
		}
		if strings.Contains(act.path, "manual") {
			vals.Set("enable", "1")
		}
		if strings.Contains(act.path, "enable-ha") {
			vals.Set("hosts", "127.0.0.3, 127.0.0.4")
		}
		resp, err := c.PostForm(srv.URL+act.path, vals)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := f.actions[len(f.actions)-1]; got != act.want {
			t.Errorf("%s: the API got %q, want %q", act.path, got, act.want)
		}
	}
	if code, _ := get(t, c, srv.URL+"/static/ui.js"); code != 200 {
		t.Errorf("static script: %d", code)
	}
}

func TestChart(t *testing.T) {
	svg := string(lineChart("Memory", "bytes", []Series{{Name: "mem", Points: []Point{{T: 0, V: 1 << 20}, {T: 60, V: 3 << 20}}}}))
	for _, w := range []string{"<svg", "Memory", "4 MiB", "00:01:00", "mem 00:01:00: 3 MiB", "<path"} {
		if !strings.Contains(svg, w) {
			t.Errorf("chart has no %q:\n%s", w, svg)
		}
	}
	if empty := string(lineChart("x", "", nil)); !strings.Contains(empty, "no samples yet") {
		t.Errorf("empty chart: %s", empty)
	}
}

func TestMySQLLoginAndEventFilter(t *testing.T) {
	f := &fakeAPI{}
	s := New(f.fetch)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := newClient(t)
	resp, err := c.PostForm(srv.URL+"/ui/login", url.Values{"user": {"reader"}, "password": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "lacks SUPER") {
		t.Fatalf("an account without SUPER: %d %s", resp.StatusCode, b)
	}
	resp, err = c.PostForm(srv.URL+"/ui/login", url.Values{"user": {"admin"}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, body := get(t, c, srv.URL+"/events?q=enable")
	if code != 200 || !strings.Contains(body, "enable-high-availability") || strings.Contains(body, ">node-deploy<") {
		t.Errorf("filtered events page after a MySQL login: %d", code)
	}
}

// bigAPI is a generated deployment: 100 hosts, 400 nodes (a master, 3
// child aggregators, 396 leaves), 10,000 partitions in 20 databases of
// 500 partitions with a replica each.
func bigAPI() Fetch {
	type js = map[string]any
	var nodes, leaves, aggs, parts, agents []js
	for h := 0; h < 100; h++ {
		host := fmt.Sprintf("10.0.%d.%d", h/250, h%250+1)
		agents = append(agents, js{"host": host, "port": 9000, "role": "follower", "state": "online"})
		for k := 0; k < 4; k++ {
			role := "leaf"
			if h == 0 && k == 0 {
				role = "master"
			} else if h == 0 {
				role = "aggregator"
			}
			port := 3306 + k
			nodes = append(nodes, js{"id": fmt.Sprintf("N%d-%d", h, k), "host": host, "port": port, "role": role, "state": "running", "pid": 100 + k, "group": 1 + k%2})
			if role == "leaf" {
				leaves = append(leaves, js{"host": host, "port": port, "group": 1 + k%2, "state": "online"})
			} else {
				aggs = append(aggs, js{"host": host, "port": port, "state": "online", "master": role == "master"})
			}
		}
	}
	for d := 0; d < 20; d++ {
		for o := 0; o < 500; o++ {
			l := leaves[(d*500+o)%len(leaves)]
			r := leaves[(d*500+o+1)%len(leaves)]
			parts = append(parts, js{"database": fmt.Sprintf("db%d", d), "ordinal": o, "host": l["host"], "port": l["port"], "role": "Master", "rows": 1000 + o, "bytes": 65536},
				js{"database": fmt.Sprintf("db%d", d), "ordinal": o, "host": r["host"], "port": r["port"], "role": "Slave", "rows": 1000 + o, "bytes": 65536, "lag": o % 3})
		}
	}
	answers := map[string][]byte{}
	put := func(path string, v any) { answers[path], _ = json.Marshal(v) }
	put("/api/status", js{"host": "10.0.0.1", "role": "primary"})
	put("/api/nodes", nodes)
	put("/api/agents", agents)
	put("/api/cluster", js{"master": "10.0.0.1:3306", "reachable": true, "redundancy": 2, "leaves": leaves, "aggregators": aggs, "partitions": parts})
	put("/api/events", []js{})
	put("/api/jobs", []js{})
	now := time.Now().Unix()
	var pts []js
	for i := int64(0); i < 180; i++ {
		pts = append(pts, js{"t": now - 1800 + 10*i, "v": float64(i % 17)})
	}
	put("/api/metrics", js{"points": pts})
	return func(_ context.Context, method, path string, in, out any) error {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		b, ok := answers[path]
		if !ok || out == nil {
			return nil
		}
		return json.Unmarshal(b, out)
	}
}

// BenchmarkPages renders every page of a generated deployment of 100
// hosts, 400 nodes and 10,000 partitions (the API's JSON decoded, the
// page model built, the template executed; the agent's API calls
// themselves are not in it).
func BenchmarkPages(b *testing.B) {
	s := New(bigAPI())
	s.Open = true
	h := s.Handler()
	for _, p := range []string{"/", "/hosts", "/nodes", "/databases", "/rebalance", "/events", "/settings"} {
		b.Run(strings.TrimPrefix(p, "/"), func(b *testing.B) {
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
				if w.Code != 200 {
					b.Fatalf("%s: %d", p, w.Code)
				}
			}
		})
	}
}

// TestLargeDeploymentPages: at scale the hosts page lists the hosts (a
// host's charts on its own page) and partition maps are lists.
func TestLargeDeploymentPages(t *testing.T) {
	s := New(bigAPI())
	s.Open = true
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := newClient(t)
	if _, body := get(t, c, srv.URL+"/hosts"); !strings.Contains(body, `href="/hosts?host=10.0.0.5"`) || strings.Contains(body, "<svg") {
		t.Error("hosts page of 100 hosts: not a list")
	}
	if _, body := get(t, c, srv.URL+"/hosts?host=10.0.0.5"); !strings.Contains(body, "<svg") || strings.Contains(body, "10.0.0.6") {
		t.Error("one host's page: no charts, or other hosts")
	}
	if _, body := get(t, c, srv.URL+"/databases"); !strings.Contains(body, `class="plist"`) || strings.Contains(body, `class="pmap"`) || strings.Count(body, "<tr><td>") < 10000 {
		t.Errorf("databases page of 10,000 partitions: not a list of every partition (%d rows, plist %v)", strings.Count(body, "<tr><td>"), strings.Contains(body, `class="plist"`))
	}
}
