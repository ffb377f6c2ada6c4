package compat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
)

// A client program: a language's MySQL driver running testdata/checks.json
// (see clients/README.md for the protocol).
type client struct {
	name string
	// probe exits 0 when the runtime and driver are installed.
	probe []string
	// packages are the Debian packages that provide them.
	packages []string
	// command runs the program; its arguments follow.
	command []string
	// foundRows: the driver sets CLIENT_FOUND_ROWS by default, so an
	// UPDATE counts matched rows, not changed ones.
	foundRows bool
}

// Debian's python3-mysqldb is for the system interpreter, which a PATH
// with pyenv or a virtualenv would hide.
const python = "/usr/bin/python3"

const jdbcJar = "/usr/share/java/mariadb-java-client.jar"

func clients(root string) []client {
	c := filepath.Join(root, "compat", "clients")
	return []client{
		{name: "php-mysqli", probe: []string{"php", "-r", `exit(extension_loaded("mysqli") ? 0 : 1);`},
			packages: []string{"php-cli", "php-mysql"}, command: []string{"php", filepath.Join(c, "php", "compat.php"), "mysqli"}},
		{name: "php-pdo", probe: []string{"php", "-r", `exit(extension_loaded("pdo_mysql") ? 0 : 1);`},
			packages: []string{"php-cli", "php-mysql"}, command: []string{"php", filepath.Join(c, "php", "compat.php"), "pdo"}},
		{name: "perl-dbd-mariadb", probe: []string{"perl", "-MDBD::MariaDB", "-e1"},
			packages: []string{"libdbd-mariadb-perl"}, command: []string{"perl", filepath.Join(c, "perl", "compat.pl")},
			foundRows: true}, // mariadb_client_found_rows is on by default
		{name: "python-mysqldb", probe: []string{python, "-c", "import MySQLdb"},
			packages: []string{"python3-mysqldb"}, command: []string{python, filepath.Join(c, "python", "compat.py")}},
		{name: "ruby-mysql2", probe: []string{"ruby", "-e", `require "mysql2"`},
			packages: []string{"ruby-mysql2"}, command: []string{"ruby", filepath.Join(c, "ruby", "compat.rb")}},
		// java runs the source file directly (JEP 330), which needs a JDK's
		// compiler module: javac is the probe.
		{name: "java-mariadb-jdbc", probe: []string{"sh", "-c", "command -v javac >/dev/null && test -f " + jdbcJar},
			packages:  []string{"openjdk-17-jdk-headless", "libmariadb-java"},
			command:   []string{"java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", jdbcJar, filepath.Join(c, "java", "Compat.java")},
			foundRows: true},
	}
}

type target struct {
	name string
	node *testutil.Node
}

// TestClients runs every client program against a leaf and against the
// master aggregator of a two-leaf cluster, both started once.
func TestClients(t *testing.T) {
	root := testutil.ModuleRoot()
	sp, err := loadSpec(filepath.Join(root, "compat", "testdata", "checks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cls []client
	var missing []string
	for _, c := range clients(root) {
		if err := exec.Command(c.probe[0], c.probe[1:]...).Run(); err != nil {
			missing = append(missing, c.name)
			pkgs := strings.Join(c.packages, " ")
			msg := fmt.Sprintf("%s: runtime or driver missing (%v): apt-get install -y --no-install-recommends %s", c.name, err, pkgs)
			if os.Getenv("CANOPY_COMPAT_SKIP_MISSING") == "1" {
				t.Logf("skipped %s", msg)
				continue
			}
			t.Errorf("%s (or CANOPY_COMPAT_SKIP_MISSING=1 to skip it)", msg)
			continue
		}
		cls = append(cls, c)
	}
	if len(cls) == 0 {
		t.Skip("no client installed")
	}
	leaf := testutil.StartNode(t)
	cluster := testutil.StartCluster(t, 2, 0)
	targets := []target{{"leaf", leaf}, {"cluster", cluster.MA}}
	for _, c := range cls {
		c := c
		t.Run(c.name, func(t *testing.T) {
			for _, tg := range targets {
				tg := tg
				t.Run(tg.name, func(t *testing.T) { runClient(t, sp, c, tg) })
			}
		})
	}
}

func runClient(t *testing.T, sp *spec, c client, tg target) {
	db := "compat_" + strings.ReplaceAll(c.name, "-", "_")
	admin := tg.node.DB("")
	testutil.Exec(t, admin, "DROP DATABASE IF EXISTS "+db)
	testutil.Exec(t, admin, "CREATE DATABASE "+db)
	rf, err := sp.runsFor(db)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "runs.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(append([]string{}, c.command[1:]...), path, "127.0.0.1", strconv.Itoa(tg.node.Port), "root", tg.node.RootPassword, db)
	cmd := exec.CommandContext(ctx, c.command[0], args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("%s against %s: %s", c.name, tg.name, time.Since(start).Round(time.Millisecond))

	results := map[string]map[[2]int]result{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r result
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&r); err != nil {
			t.Errorf("unreadable output line %q: %v", line, err)
			continue
		}
		if results[r.Run] == nil {
			results[r.Run] = map[[2]int]result{}
		}
		results[r.Run][[2]int{r.Step, r.Exec}] = r
	}
	if runErr != nil || stderr.Len() > 0 {
		// The checks below say which results are missing.
		t.Errorf("%s: %v\nstderr:\n%s", strings.Join(cmd.Args, " "), runErr, stderr.String())
	}
	byCase := map[string]specCase{}
	for _, sc := range sp.Cases {
		byCase[sc.Name] = sc
	}
	for _, r := range rf.Runs {
		r := r
		sc := byCase[strings.SplitN(r.ID, "/", 2)[0]]
		t.Run(r.ID, func(t *testing.T) {
			var problems []string
			fail := func(format string, args ...interface{}) { problems = append(problems, fmt.Sprintf(format, args...)) }
			defer func() { judge(t, c.name, tg.name, r.ID, problems) }()
			got := results[r.ID]
			if len(got) == 0 {
				fail("no results: the program stopped before this run")
				return
			}
			for i, st := range r.Steps {
				spSt := sc.Steps[i]
				if st.Tx != "" {
					if res, ok := got[[2]int{i, 0}]; !ok {
						fail("step %d (%s): no result", i, st.Tx)
					} else if res.Error != nil {
						fail("step %d (%s): error %d (%s): %s", i, st.Tx, res.Error.Code, res.Error.State, res.Error.Msg)
					}
					continue
				}
				for k := range st.Execs {
					res, ok := got[[2]int{i, k}]
					if !ok {
						fail("step %d (%s) exec %d: no result", i, st.Execs[k].SQL, k)
						continue
					}
					for _, b := range compare(spSt.Expect, spSt, res, db, c.foundRows) {
						b = abbreviate(b)
						fail("step %d: %s\n  %s", i, abbreviate(st.Execs[k].SQL), b)
					}
				}
			}
		})
	}
}

// knownFailures are runs that fail for a reason not fixed yet, by
// "client/target/run" ("*" for any client or target). Such a run must
// still fail: one that passes is reported, so the entry goes.
var knownFailures = map[string]string{}

// judge reports a run's problems, or, for a known failure, that it
// failed as known (or that it passes now).
func judge(t *testing.T, client, target, run string, problems []string) {
	t.Helper()
	reason := ""
	for _, k := range []string{client + "/" + target + "/" + run, "*/" + target + "/" + run, client + "/*/" + run, "*/*/" + run} {
		if r, ok := knownFailures[k]; ok {
			reason = r
			break
		}
	}
	switch {
	case reason != "" && len(problems) == 0:
		t.Errorf("passes now, though listed as a known failure (%s): remove it from knownFailures", reason)
	case reason != "":
		t.Logf("known failure (%s):\n%s", reason, strings.Join(problems, "\n"))
	default:
		for _, p := range problems {
			t.Error(p)
		}
	}
}

func abbreviate(q string) string {
	if len(q) > 300 {
		return q[:300] + "…"
	}
	return q
}
