// Package benchutil starts the servers a benchmark compares (canopy nodes
// and a MariaDB server from Debian's packages) and runs sysbench against
// them. Everything lives in a temporary directory and is stopped at the end.
package benchutil

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

// Server is a running database process.
type Server struct {
	Name     string
	Port     int
	HTTPPort int // canopy's metrics endpoint (0 for MariaDB)
	cmd      *exec.Cmd
	// Peers are the other processes serving through this one (a
	// cluster's leaves behind its aggregator); CPU counts them too.
	Peers []*Server
}

// FreePort returns a free loopback port.
func FreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a command and waits until it accepts MySQL connections.
func Start(name string, port int, logPath string, bin string, args ...string) (*Server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &Server{Name: name, Port: port, cmd: cmd}
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, _ := sql.Open("mysql", s.DSN(""))
		err := db.Ping()
		db.Close()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s not ready: %v\n%s", name, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DSN for go-sql-driver.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?interpolateParams=true", s.Port, db)
}

// Pid of the server process.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop terminates the server.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
}

// CPU is the user+system CPU the server and its peers have used.
func (s *Server) CPU() time.Duration {
	t := CPUTime(s.Pid())
	for _, p := range s.Peers {
		t += p.CPU()
	}
	return t
}

// CPUTime is the user+system CPU the process has used.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// StartMariaDB initialises a datadir and starts mariadbd on a free port
// with durable commits (innodb_flush_log_at_trx_commit=1, the default).
func StartMariaDB(dir string, bufferPoolMB int) (*Server, error) {
	bin, err := lookPath("mariadbd", "/usr/sbin/mariadbd", "/usr/sbin/mysqld")
	if err != nil {
		return nil, fmt.Errorf("mariadbd not found (apt-get install mariadb-server): %w", err)
	}
	install, err := lookPath("mariadb-install-db", "/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "mariadb")
	out, err := exec.Command(install, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	port := FreePort()
	return Start("mariadb", port, filepath.Join(dir, "mariadb.log"), bin, "--no-defaults",
		"--datadir="+data, "--user=root", "--bind-address=127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--socket="+filepath.Join(dir, "mariadb.sock"), "--skip-log-bin", "--skip-name-resolve",
		fmt.Sprintf("--innodb-buffer-pool-size=%dM", bufferPoolMB), "--innodb-flush-log-at-trx-commit=1",
		"--max-connections=500")
}

// StartCanopy starts a canopy node (a leaf unless extra says otherwise).
func StartCanopy(bin, dir, name string, cacheMB int, extra ...string) (*Server, error) {
	port, httpPort := FreePort(), FreePort()
	args := append([]string{"node", "--port", strconv.Itoa(port), "--internal-port", strconv.Itoa(FreePort()),
		"--http-port", strconv.Itoa(httpPort), "--data-dir", filepath.Join(dir, name),
		"--cache-mb", strconv.Itoa(cacheMB), "--log-level", "warn"}, extra...)
	s, err := Start(name, port, filepath.Join(dir, name+".log"), bin, args...)
	if s != nil {
		s.HTTPPort = httpPort
	}
	return s, err
}

func lookPath(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %v found", names)
}

// Exec runs statements on a server.
func Exec(s *Server, db string, stmts ...string) error {
	conn, err := sql.Open("mysql", s.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range stmts {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			return fmt.Errorf("%s on %s: %w", q, s.Name, err)
		}
	}
	return nil
}

// SysbenchResult is what one sysbench run reports.
type SysbenchResult struct {
	QPS, TPS     float64
	AvgLatencyMs float64
	P95LatencyMs float64
	Errors       float64
	ServerCPU    time.Duration
	Queries      float64
}

var (
	reQueries = regexp.MustCompile(`queries:\s+(\d+)\s+\(([\d.]+) per sec`)
	reTx      = regexp.MustCompile(`transactions:\s+\d+\s+\(([\d.]+) per sec`)
	reAvg     = regexp.MustCompile(`avg:\s+([\d.]+)`)
	reP95     = regexp.MustCompile(`95th percentile:\s+([\d.]+)`)
	reErrors  = regexp.MustCompile(`ignored errors:\s+\d+\s+\(([\d.]+) per sec`)
)

// Sysbench runs one sysbench command ("prepare" or "run") and parses it.
func Sysbench(s *Server, workload, phase string, threads int, seconds int, extra ...string) (SysbenchResult, error) {
	args := append([]string{workload, "--mysql-host=127.0.0.1", fmt.Sprintf("--mysql-port=%d", s.Port),
		"--mysql-user=root", "--mysql-db=sbtest", fmt.Sprintf("--threads=%d", threads),
		fmt.Sprintf("--time=%d", seconds), "--report-interval=0"}, extra...)
	args = append(args, phase)
	cpu0 := s.CPU()
	cmd := exec.Command("sysbench", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := SysbenchResult{ServerCPU: s.CPU() - cpu0}
	if err != nil {
		return res, fmt.Errorf("sysbench %s %s on %s: %v\n%s", workload, phase, s.Name, err, out.String())
	}
	text := out.String()
	if m := reQueries.FindStringSubmatch(text); m != nil {
		res.Queries, _ = strconv.ParseFloat(m[1], 64)
		res.QPS, _ = strconv.ParseFloat(m[2], 64)
	}
	if m := reTx.FindStringSubmatch(text); m != nil {
		res.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reAvg.FindStringSubmatch(text); m != nil {
		res.AvgLatencyMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reP95.FindStringSubmatch(text); m != nil {
		res.P95LatencyMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reErrors.FindStringSubmatch(text); m != nil {
		res.Errors, _ = strconv.ParseFloat(m[1], 64)
	}
	return res, nil
}

// ReplaceSection swaps the text between <!-- name:begin --> and
// <!-- name:end --> in a file.
func ReplaceSection(path, name, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	i, j := bytes.Index(b, []byte(begin)), bytes.Index(b, []byte(end))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s section", path, begin, end)
	}
	out := append(append(append([]byte{}, b[:i+len(begin)]...), "\n"+body...), b[j:]...)
	return os.WriteFile(path, out, 0o644)
}

// Metric reads a counter without labels from a canopy server's /metrics.
func (s *Server) Metric(name string) float64 {
	if s.HTTPPort == 0 {
		return 0
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.HTTPPort))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

// BuildCanopy builds the canopy binary of this checkout into dir and
// returns its path.
func BuildCanopy(dir string) (string, error) {
	bin := filepath.Join(dir, "canopy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/canopy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build canopy: %w", err)
	}
	return bin, nil
}
