// Package testutil starts real canopy processes for integration tests:
// the binary is built once per test binary, every node gets free loopback
// ports and a temporary data directory, and every process is killed when
// the test ends.
package testutil

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ModuleRoot is the repository root (where go.mod is).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds cmd/canopy once and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("CANOPY_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "canopy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "canopy")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/canopy")
		cmd.Dir = ModuleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Node is a canopy node process.
type Node struct {
	t            testing.TB
	Port         int
	InternalPort int
	HTTPPort     int
	DataDir      string
	LogPath      string
	Args         []string // extra flags
	Env          []string // extra environment (KEY=value), e.g. CANOPY_FAILPOINT
	// RootPassword is root's password, for tests that set one.
	RootPassword string
	cmd          *exec.Cmd
	exited       chan struct{}
	dbs          []*sql.DB
}

// StartNode starts a node on free ports with a fresh data directory.
func StartNode(t testing.TB, extraArgs ...string) *Node {
	t.Helper()
	return StartNodeEnv(t, nil, extraArgs...)
}

// StartNodeEnv starts a node with extra environment (KEY=value), e.g.
// CANOPY_FAILPOINT.
func StartNodeEnv(t testing.TB, env []string, extraArgs ...string) *Node {
	t.Helper()
	return StartNodeEnvPassword(t, env, "", extraArgs...)
}

// StartNodeEnvPassword starts a node whose root has a password from its
// first start (--root-password-file).
func StartNodeEnvPassword(t testing.TB, env []string, rootPassword string, extraArgs ...string) *Node {
	t.Helper()
	// a free port can be taken by another process before the node binds
	// it (tests of other packages run at the same time): try other ports
	for attempt := 1; ; attempt++ {
		ports := FreePorts(t, 3)
		dir := t.TempDir()
		n := &Node{
			t: t, Port: ports[0], InternalPort: ports[1], HTTPPort: ports[2],
			DataDir: filepath.Join(dir, "data"), LogPath: filepath.Join(dir, "node.log"), Args: extraArgs, Env: env,
			RootPassword: rootPassword,
		}
		t.Cleanup(n.cleanup)
		err := n.start()
		if err == nil {
			return n
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
	}
}

// errPortTaken: a node could not bind one of its ports.
var errPortTaken = errors.New("a port was taken")

// Metric reads a counter or gauge without labels from the node's
// /metrics endpoint.
func (n *Node) Metric(name string) float64 {
	n.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", n.HTTPPort))
	if err != nil {
		n.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				n.t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	n.t.Fatalf("metric %s not found", name)
	return 0
}

// Addr is the node's MySQL address.
func (n *Node) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// Start (re)starts the process on the same ports and data directory and
// waits until it answers SELECT 1.
func (n *Node) Start() {
	n.t.Helper()
	if err := n.start(); err != nil {
		n.t.Fatal(err)
	}
}

// TryStart is Start that returns the error instead of failing the test
// (a node that cannot start again is a finding of a fault test, reported
// with the rest).
func (n *Node) TryStart() error { return n.start() }

func (n *Node) start() error {
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"node",
		"--port", strconv.Itoa(n.Port), "--internal-port", strconv.Itoa(n.InternalPort),
		"--http-port", strconv.Itoa(n.HTTPPort), "--data-dir", n.DataDir, "--cache-mb", "32",
	}, n.Args...)
	n.cmd = exec.Command(Binary(n.t), args...)
	n.cmd.Env = append(os.Environ(), n.Env...)
	n.cmd.Stdout = logf
	n.cmd.Stderr = logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		n.cmd = nil // nothing to stop
		return err
	}
	exited := make(chan struct{})
	n.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		logf.Close()
		close(exited)
	}(n.cmd)
	return n.waitReady(30 * time.Second)
}

// WaitReady waits until the node answers SELECT 1.
func (n *Node) WaitReady(timeout time.Duration) {
	n.t.Helper()
	if err := n.waitReady(timeout); err != nil {
		n.t.Fatal(err)
	}
}

func (n *Node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		db, err := sql.Open("mysql", n.DSN(""))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-n.exited:
			log := n.Log()
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("node on port %d: %w; log:\n%s", n.Port, errPortTaken, log)
			}
			return fmt.Errorf("node on port %d exited during start; log:\n%s", n.Port, log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node on port %d not ready after %s: %v; log:\n%s", n.Port, timeout, err, n.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DSN is a go-sql-driver DSN for the node and database.
func (n *Node) DSN(db string) string { return n.dsn(db, true) }

// DBWith is like DB, with session variables set on every connection.
func (n *Node) DBWith(db string, vars map[string]string) *sql.DB {
	c, err := mysql.ParseDSN(n.DSN(db))
	if err != nil {
		n.t.Fatal(err)
	}
	c.Params = vars
	return n.open(c.FormatDSN())
}

func (n *Node) dsn(db string, interpolate bool) string {
	return n.DSNAs("root", n.RootPassword, db, interpolate)
}

// DSNAs is a DSN for the node as another account.
func (n *Node) DSNAs(user, password, db string, interpolate bool) string {
	c := mysql.NewConfig()
	c.User = user
	c.Passwd = password
	c.Net = "tcp"
	for _, a := range n.Args {
		if a == "--require-secure-transport" {
			c.TLSConfig = "skip-verify" // its certificate is self-signed
		}
	}
	c.Addr = n.Addr()
	c.DBName = db
	c.InterpolateParams = interpolate
	c.MultiStatements = true
	c.Timeout = 5 * time.Second
	return c.FormatDSN()
}

// DB opens a connection pool to the node; it is closed with the test.
func (n *Node) DB(db string) *sql.DB { return n.open(n.DSN(db)) }

// PreparingDBAs is PreparingDB as another account.
func (n *Node) PreparingDBAs(user, password, db string) *sql.DB {
	return n.open(n.DSNAs(user, password, db, false))
}

// DBAs opens a connection pool to the node as another account.
func (n *Node) DBAs(user, password, db string) *sql.DB {
	return n.open(n.DSNAs(user, password, db, true))
}

// PreparingDB is like DB, but queries with arguments run as server-side
// prepared statements (the driver does not interpolate them).
func (n *Node) PreparingDB(db string) *sql.DB { return n.open(n.dsn(db, false)) }

func (n *Node) open(dsn string) *sql.DB {
	n.t.Helper()
	d, err := sql.Open("mysql", dsn)
	if err != nil {
		n.t.Fatal(err)
	}
	n.dbs = append(n.dbs, d)
	return d
}

// Log returns the node's log so far.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// Kill sends SIGKILL and waits for the process to die.
func (n *Node) Kill() { n.signal(syscall.SIGKILL, true) }

// Stop sends SIGTERM and waits for a clean exit.
func (n *Node) Stop() { n.signal(syscall.SIGTERM, true) }

// Terminate sends SIGTERM and returns at once: the node shuts down while
// the test goes on.
func (n *Node) Terminate() { n.signal(syscall.SIGTERM, false) }

// Pause and Resume freeze and thaw the process (SIGSTOP, SIGCONT).
func (n *Node) Pause()  { n.signal(syscall.SIGSTOP, false) }
func (n *Node) Resume() { n.signal(syscall.SIGCONT, false) }

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return n.cmd != nil
	}
}

func (n *Node) signal(sig syscall.Signal, wait bool) {
	n.t.Helper()
	if !n.Running() {
		return
	}
	for _, d := range n.dbs {
		d.Close()
	}
	n.dbs = nil
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatal(err)
	}
	if !wait {
		return
	}
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
		n.t.Fatalf("node on port %d did not exit on %s; log:\n%s", n.Port, sig, n.Log())
	}
}

// WaitExit waits until the process ends by itself (a failpoint, a
// crash) and reports whether it did within the timeout.
func (n *Node) WaitExit(timeout time.Duration) bool {
	select {
	case <-n.exited:
		for _, d := range n.dbs {
			d.Close()
		}
		n.dbs = nil
		return true
	case <-time.After(timeout):
		return false
	}
}

// ExitCode is the exit status of a stopped process.
func (n *Node) ExitCode() int {
	<-n.exited
	return n.cmd.ProcessState.ExitCode()
}

func (n *Node) cleanup() {
	for _, d := range n.dbs {
		d.Close()
	}
	if n.Running() {
		n.cmd.Process.Signal(syscall.SIGCONT)
		n.cmd.Process.Kill()
		<-n.exited
	}
	if n.t.Failed() {
		n.t.Logf("log of node on port %d:\n%s", n.Port, tail(n.Log(), 4000))
		// CANOPY_KEEP_LOGS=dir keeps the whole logs of a failed test
		if dir := os.Getenv("CANOPY_KEEP_LOGS"); dir != "" {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(n.t.Name())
			if err := os.MkdirAll(dir, 0o755); err == nil {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, n.Port)), []byte(n.Log()), 0o644)
			}
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
