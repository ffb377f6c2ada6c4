package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/canopydb/canopy/ops/supervise"
)

// proc is a node of this host and its process.
type proc struct {
	spec   NodeSpec
	sup    supervise.Proc
	pid    int
	child  bool          // started by this agent (else adopted after a restart)
	exited chan struct{} // closed when a child's process ended
	note   string        // the supervisor's last word on it
}

func (a *Agent) nodeDir(id string) string { return filepath.Join(a.cfg.Home, "nodes", id) }

// startProc starts the node's process (the caller holds a.mu).
func (a *Agent) startProc(p *proc) error {
	dir := a.nodeDir(p.spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pw := filepath.Join(dir, "root-password")
	if err := writeFileAtomic(pw, []byte(a.st.RootPassword), 0o600); err != nil {
		return err
	}
	// the token of the node's /admin endpoints (snapshots): the agent
	// reads it from here when it calls them
	tokenFile := filepath.Join(dir, "admin-token")
	if _, err := os.Stat(tokenFile); err != nil {
		if err := writeFileAtomic(tokenFile, []byte(randomHex(32)), 0o600); err != nil {
			return err
		}
	}
	args := []string{"node", "--bind", p.spec.Host, "--port", strconv.Itoa(p.spec.Port),
		"--http-port", strconv.Itoa(p.spec.Port + nodeHTTPOffset),
		"--data-dir", filepath.Join(dir, "data"), "--root-password-file", pw,
		"--admin-token-file", tokenFile, "--snapshot-dir", filepath.Join(dir, "snapshots")}
	if p.spec.Role == NodeMaster {
		args = append(args, "--master-aggregator")
	}
	for _, k := range sortedKeys(p.spec.Config) {
		if nodeFlags[k] {
			args = append(args, "--"+k, p.spec.Config[k])
		}
	}
	logf, err := os.OpenFile(filepath.Join(dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(a.cfg.Exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// its own session: a signal to the agent (Ctrl-C) does not reach it,
	// and it outlives an agent restart
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node %s: %w", p.spec.ID, err)
	}
	now := time.Now()
	p.pid, p.child = cmd.Process.Pid, true
	p.sup = supervise.Started(p.sup, now)
	p.exited = make(chan struct{})
	os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(p.pid)), 0o600)
	a.log.Info("node started", "node", p.spec.ID, "role", p.spec.Role, "addr", p.spec.Addr(), "pid", p.pid)
	exited := p.exited
	go a.applyGlobals(p.spec, a.st.RootPassword)
	go func() {
		err := cmd.Wait()
		a.mu.Lock()
		if p.pid == cmd.Process.Pid {
			p.sup = supervise.Exited(p.sup, time.Now())
			p.pid = 0
			if p.sup.Wanted {
				a.log.Warn("node exited", "node", p.spec.ID, "addr", p.spec.Addr(), "err", err, "failures in a row", p.sup.Failures)
				a.eventf("node %s (%s %s) exited: %v", p.spec.ID, p.spec.Role, p.spec.Addr(), err)
			}
		}
		a.mu.Unlock()
		close(exited)
	}()
	return nil
}

// nodeFlags are the config keys passed to `canopy node` as flags.
var nodeFlags = map[string]bool{"cache-mb": true, "lock-wait-timeout": true, "log-retain": true,
	"pause-fence": true, "log-level": true, "require-secure-transport": true}

// adopt takes over a node process left running by an earlier run of the
// agent: its pid file names a live canopy process on the node's data
// directory.
func (a *Agent) adopt(p *proc) {
	dir := a.nodeDir(p.spec.ID)
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(filepath.Join(dir, "data"))) {
		return
	}
	p.pid, p.child = pid, false
	p.sup = supervise.Started(p.sup, time.Now())
	a.log.Info("node adopted", "node", p.spec.ID, "pid", pid)
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// a zombie is dead
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

// stopProc stops the node's process: SIGTERM, then SIGKILL after the
// timeout. The caller must not hold a.mu.
func (a *Agent) stopProc(p *proc, timeout time.Duration) error {
	a.mu.Lock()
	p.sup.Wanted = false
	pid, child, exited := p.pid, p.child, p.exited
	a.mu.Unlock()
	if pid == 0 {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if child {
			select {
			case <-exited:
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		} else if !alive(pid) {
			break
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if alive(pid) {
		a.log.Warn("node did not stop in time: killed", "node", p.spec.ID, "pid", pid, "timeout", timeout)
		syscall.Kill(pid, syscall.SIGKILL)
		if child {
			<-exited
		}
	}
	a.mu.Lock()
	if p.pid == pid {
		p.pid = 0
		p.sup.Running = false
	}
	a.mu.Unlock()
	return nil
}

// superviseLoop starts the nodes that should run and do not, as
// supervise.Decide says.
func (a *Agent) superviseLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		now := time.Now()
		for _, p := range a.procs {
			if p.pid != 0 && !p.child && !alive(p.pid) { // an adopted process ended
				p.pid = 0
				p.sup = supervise.Exited(p.sup, now)
				if p.sup.Wanted {
					a.eventf("node %s (%s %s) exited", p.spec.ID, p.spec.Role, p.spec.Addr())
				}
			}
			d := supervise.Decide(p.sup, a.st.ManualControl, now)
			p.note = d.Reason
			if d.Start {
				if p.sup.LastExit.IsZero() {
					a.log.Info("starting node", "node", p.spec.ID)
				} else {
					a.log.Warn("restarting node", "node", p.spec.ID, "failures in a row", p.sup.Failures)
					a.eventf("node %s (%s %s) restarted by its agent", p.spec.ID, p.spec.Role, p.spec.Addr())
				}
				if err := a.startProc(p); err != nil {
					a.log.Error("start node", "node", p.spec.ID, "err", err)
					p.sup = supervise.Exited(supervise.Started(p.sup, now), now)
				}
			}
		}
		a.mu.Unlock()
	}
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections after %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// NodeStatus is a node with the state of its process.
type NodeStatus struct {
	NodeSpec
	State    string `json:"state"` // running, stopped, restarting, unknown
	PID      int    `json:"pid"`
	Version  string `json:"version"`
	Uptime   string `json:"uptime,omitempty"`
	Failures int    `json:"failures_in_a_row,omitempty"` // quick exits in a row
	Note     string `json:"note,omitempty"`
}

func (a *Agent) statusOf(p *proc) NodeStatus {
	s := NodeStatus{NodeSpec: p.spec, PID: p.pid, Version: a.cfg.Version, Failures: p.sup.Failures, Note: p.note}
	switch {
	case p.pid != 0:
		s.State = "running"
		s.Uptime = time.Since(p.sup.LastStart).Round(time.Second).String()
	case p.sup.Wanted && !a.st.ManualControl:
		s.State = "restarting"
	default:
		s.State = "stopped"
	}
	return s
}

var errNoNode = errors.New("no such node on this host")
