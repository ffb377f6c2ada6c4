package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Seeding a host from a snapshot (seed 004). The target's agent pulls the
// snapshot's files from the source's agent with a grant the primary got
// for it, into HOME/seeds/ID/data: per file from the last byte it has (a
// cut link resumes), at a capped rate, then checks every file's SHA-256.
// Installing moves the verified data into a node's home at once (a
// rename) and leaves a marker, so that the node adopts the data as its
// own when it starts (node.SeededMarker).

// seededMarker is node.SeededMarker: the agent reaches the node only by
// its files and its ports, so the name is repeated here.
const seededMarker = "canopy-seeded"

// SeedPull asks a target agent to pull a snapshot.
type SeedPull struct {
	ID             string         `json:"id"`
	Source         string         `json:"source"` // the source agent's host:port
	Snapshot       string         `json:"snapshot"`
	Grant          string         `json:"grant"`
	Files          []SnapshotFile `json:"files"`
	BandwidthBytes int64          `json:"bandwidth_bytes,omitempty"` // per second; 0: no cap
	StallSeconds   int            `json:"stall_seconds,omitempty"`   // no progress this long fails the seed
	// Mode "command": the ReceiveSeedDataCommand receives the files
	// (hooks.go); "": this agent pulls them over HTTP
	Mode string `json:"mode,omitempty"`
}

// SeedStatus is where a pull stands.
type SeedStatus struct {
	ID         string  `json:"id"`
	Snapshot   string  `json:"snapshot"`
	State      string  `json:"state"` // receiving, verifying, done, failed, aborted
	Total      int64   `json:"total"`
	Done       int64   `json:"done"`
	Files      int     `json:"files"`
	FilesDone  int     `json:"files_done"`
	Rate       float64 `json:"rate"` // bytes per second, this pull
	ETASeconds float64 `json:"eta_seconds"`
	Resumes    int     `json:"resumes"` // times a file went on from where a cut left it
	Error      string  `json:"error,omitempty"`
	// Port: where the receive command listens (mode "command")
	Port int `json:"port,omitempty"`
	// ReceiveSeconds, VerifySeconds: how long the two took
	ReceiveSeconds float64 `json:"receive_seconds,omitempty"`
	VerifySeconds  float64 `json:"verify_seconds,omitempty"`
}

type seedRecv struct {
	mu     sync.Mutex
	st     SeedStatus
	cancel context.CancelFunc
	ended  chan struct{}
}

func (s *seedRecv) status() SeedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (a *Agent) seedDir(id string) string { return filepath.Join(a.cfg.Home, "seeds", id) }

// nodeIDPattern: ids newNodeID makes.
var nodeIDPattern = regexp.MustCompile(`^[A-F0-9]{10}$`)

// seedID: the primary names seeds seed-JOBID.
func validSeedID(id string) bool {
	if !strings.HasPrefix(id, "seed-") || len(id) > 32 {
		return false
	}
	for _, c := range id[5:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(id) > 5
}

// stagedPath is where a snapshot file goes: under dir, never elsewhere,
// whatever the name says.
func stagedPath(dir, name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || clean != name {
		return "", badRequest("file name %q is not a plain relative path", name)
	}
	return filepath.Join(dir, filepath.FromSlash(clean)), nil
}

// apiLocalSeedPull starts (or resumes) pulling a snapshot here. One seed
// per host at a time.
func (a *Agent) apiLocalSeedPull(r *http.Request) (any, error) {
	var req SeedPull
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if !validSeedID(req.ID) {
		return nil, badRequest("seed id %q", req.ID)
	}
	if req.StallSeconds <= 0 {
		req.StallSeconds = 300
	}
	dir := filepath.Join(a.seedDir(req.ID), "data")
	var total int64
	for _, f := range req.Files {
		if _, err := stagedPath(dir, f.Path); err != nil {
			return nil, err
		}
		if f.Size < 0 {
			return nil, badRequest("file %s: size %d", f.Path, f.Size)
		}
		total += f.Size
	}
	a.mu.Lock()
	for id, s := range a.seeds {
		st := s.status()
		if id != req.ID && (st.State == "receiving" || st.State == "verifying") {
			a.mu.Unlock()
			return nil, conflict("this host is receiving seed %s: one seed per host at a time (seed-abort it, or wait)", id)
		}
		if id == req.ID && (st.State == "receiving" || st.State == "verifying") {
			a.mu.Unlock()
			return st, nil
		}
	}
	// the seed ends with the agent (Close cancels it)
	ctx, cancel := context.WithCancel(a.ctx)
	s := &seedRecv{st: SeedStatus{ID: req.ID, Snapshot: req.Snapshot, State: "receiving", Total: total, Files: len(req.Files)},
		cancel: cancel, ended: make(chan struct{})}
	a.seeds[req.ID] = s
	host := a.st.Host
	a.mu.Unlock()
	// a seed that cannot start has failed (and holds the host no more)
	failEarly := func(err error) (any, error) {
		cancel()
		s.fail(err)
		close(s.ended)
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return failEarly(err)
	}
	if free, err := freeBytes(a.cfg.Home); err == nil && free < uint64(total-stagedBytes(dir)) {
		return failEarly(conflict("not enough free disk in %s: %d MiB free, the seed needs %d MiB more", a.cfg.Home, free>>20, (total-stagedBytes(dir))>>20))
	}
	port := 0
	if req.Mode == "command" {
		if a.cfg.Commands.ReceiveSeedData == "" {
			return failEarly(conflict("this agent has no ReceiveSeedDataCommand"))
		}
		p, err := freePort(host)
		if err != nil {
			return failEarly(err)
		}
		port = p
		s.mu.Lock()
		s.st.Port = p
		s.mu.Unlock()
	}
	go func() {
		defer close(s.ended)
		defer cancel()
		receive := func() error { return a.pull(ctx, s, req, dir) }
		if req.Mode == "command" {
			receive = func() error { return a.receiveByCommand(ctx, s, dir, port) }
		}
		err := receive()
		if err == nil {
			err = a.finishSeed(ctx, s, req, dir)
		}
		if err != nil {
			if ctx.Err() != nil {
				return // aborted: the abort says so
			}
			a.log.Warn("seed failed", "seed", req.ID, "err", err)
			os.RemoveAll(a.seedDir(req.ID)) // a failed seed cleans up; a cut one resumes within the stall limit
			s.fail(err)
			return
		}
		s.mu.Lock()
		s.st.State = "done"
		s.mu.Unlock()
		a.log.Info("seed received and verified", "seed", req.ID, "snapshot", req.Snapshot, "bytes", total)
	}()
	return s.status(), nil
}

func (s *seedRecv) fail(err error) {
	s.mu.Lock()
	s.st.State, s.st.Error = "failed", err.Error()
	s.mu.Unlock()
}

func stagedBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func freeBytes(dir string) (uint64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return fs.Bavail * uint64(fs.Bsize), nil
}

func totalBytes(dir string) (uint64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return fs.Blocks * uint64(fs.Bsize), nil
}

// pull fetches every file, each from what is already staged, retrying a
// cut link until no byte arrived for the stall limit; then verifies them.
func (a *Agent) pull(ctx context.Context, s *seedRecv, req SeedPull, dir string) error {
	client := &http.Client{Transport: a.http.Transport} // no overall timeout: the stall limit is the bound
	start := time.Now()
	var received atomic.Int64     // this pull's bytes, for the rate
	var lastProgress atomic.Int64 // unix nanoseconds
	lastProgress.Store(time.Now().UnixNano())
	s.mu.Lock()
	s.st.Done = min(stagedBytes(dir), s.st.Total) // what an earlier pull left
	s.mu.Unlock()
	stall := time.Duration(req.StallSeconds) * time.Second
	// several files at once (one stream is far below the disk), the cap
	// shared among them
	workers := min(pullStreams, max(1, len(req.Files)))
	perStream := req.BandwidthBytes / int64(workers)
	if req.BandwidthBytes > 0 && perStream == 0 {
		perStream = 1
	}
	wctx, stop := context.WithCancel(ctx) // one file failing stops the others
	defer stop()
	pullFile := func(f SnapshotFile) error {
		ctx := wctx
		dst, _ := stagedPath(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		for {
			have := int64(0)
			if info, err := os.Stat(dst); err == nil {
				have = info.Size()
			}
			if have > f.Size {
				os.Remove(dst)
				have = 0
			}
			if have == f.Size {
				if f.Size == 0 { // an empty file is there once it exists
					if err := os.WriteFile(dst, nil, 0o600); err != nil {
						return err
					}
				}
				return nil
			}
			if have > 0 {
				s.mu.Lock()
				s.st.Resumes++
				s.mu.Unlock()
			}
			n, err := a.fetch(ctx, client, req, f, dst, have, perStream, func(n int64) {
				lastProgress.Store(time.Now().UnixNano())
				s.progress(n, start, received.Add(n))
			})
			if err == nil && have+n == f.Size {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Since(time.Unix(0, lastProgress.Load())) > stall {
				return fmt.Errorf("no progress for %s (last error: %v)", stall, err)
			}
			a.log.Info("seed transfer cut; resuming", "seed", req.ID, "file", f.Path, "at", have+n, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	files := make(chan SnapshotFile)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for f := range files {
				if err := pullFile(f); err != nil {
					errs <- err
					stop()
					for range files { // drain: the feeder ends
					}
					return
				}
				s.mu.Lock()
				s.st.FilesDone++
				s.mu.Unlock()
			}
			errs <- nil
		}()
	}
feed:
	for _, f := range req.Files {
		select {
		case files <- f:
		case <-wctx.Done():
			break feed
		}
	}
	close(files)
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.st.ReceiveSeconds = time.Since(start).Seconds()
	s.mu.Unlock()
	return nil
}

// pullStreams is how many files a seed pulls at once.
const pullStreams = 4

// finishSeed runs the PostCopyCommand, then checks every file against the
// snapshot's checksums.
func (a *Agent) finishSeed(ctx context.Context, s *seedRecv, req SeedPull, dir string) error {
	if cmd := a.cfg.Commands.PostCopy; cmd != "" {
		if err := a.runHook(ctx, "PostCopyCommand", cmd, envVar("CANOPY_SEED_DIR", dir)); err != nil {
			return err
		}
	}
	verifyStart := time.Now()
	s.mu.Lock()
	s.st.State = "verifying"
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.st.VerifySeconds = time.Since(verifyStart).Seconds()
		s.mu.Unlock()
	}()
	for _, f := range req.Files {
		dst, _ := stagedPath(dir, f.Path)
		sum, size, err := fileSHA256(dst)
		if err != nil {
			return err
		}
		if size != f.Size || sum != f.SHA256 {
			os.Remove(dst)
			return fmt.Errorf("file %s: checksum %s (%d bytes), the snapshot's is %s (%d bytes)", f.Path, sum, size, f.SHA256, f.Size)
		}
	}
	return nil
}

// receiveByCommand runs the ReceiveSeedDataCommand until the sender is
// done, counting what arrives.
func (a *Agent) receiveByCommand(ctx context.Context, s *seedRecv, dir string, port int) error {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			n := stagedBytes(dir)
			s.mu.Lock()
			s.st.Done = min(n, s.st.Total)
			if el := time.Since(start).Seconds(); el > 0 {
				s.st.Rate = float64(n) / el
			}
			s.mu.Unlock()
		}
	}()
	a.mu.Lock()
	host := a.st.Host
	a.mu.Unlock()
	err := a.runHook(ctx, "ReceiveSeedDataCommand", a.cfg.Commands.ReceiveSeedData, envVar("CANOPY_SEED_DIR", dir),
		envVar("CANOPY_SEED_HOST", host), envInt("CANOPY_SEED_PORT", port))
	close(done)
	s.mu.Lock()
	s.st.Done, s.st.ReceiveSeconds = min(stagedBytes(dir), s.st.Total), time.Since(start).Seconds()
	s.mu.Unlock()
	return err
}

// apiLocalSnapshotSend runs the SendSeedDataCommand: the snapshot's data
// to a target's receive command. It answers when the command ends.
func (a *Agent) apiLocalSnapshotSend(r *http.Request) (any, error) {
	id := r.PathValue("id")
	var req struct {
		Host string `json:"host"`
		Port int    `json:"port"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if a.cfg.Commands.SendSeedData == "" {
		return nil, conflict("this agent has no SendSeedDataCommand")
	}
	if net.ParseIP(req.Host) == nil || req.Port <= 0 || req.Port > 65535 {
		return nil, badRequest("send: host (an IP address) and port")
	}
	dir, err := a.snapshotDir(id)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		return nil, notFound("no snapshot %s on this host", id)
	}
	err = a.runHook(r.Context(), "SendSeedDataCommand", a.cfg.Commands.SendSeedData, envVar("CANOPY_SNAPSHOT_DATA", filepath.Join(dir, "data")),
		envVar("CANOPY_TARGET_HOST", req.Host), envInt("CANOPY_SEED_PORT", req.Port))
	return map[string]bool{"sent": err == nil}, err
}

// progress counts n more bytes staged: the rate is this pull's, the ETA
// what is left at that rate.
func (s *seedRecv) progress(n int64, start time.Time, received int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Done = min(s.st.Total, s.st.Done+n)
	if el := time.Since(start).Seconds(); el > 0 {
		s.st.Rate = float64(received) / el
	}
	if s.st.Rate > 0 {
		s.st.ETASeconds = float64(s.st.Total-s.st.Done) / s.st.Rate
	}
}

// fetch appends a file's bytes from offset have to dst; it returns how
// many it wrote.
func (a *Agent) fetch(ctx context.Context, client *http.Client, req SeedPull, f SnapshotFile, dst string, have, rate int64, onBytes func(int64)) (int64, error) {
	u := fmt.Sprintf("%s://%s/api/transfer/%s/file?path=%s&offset=%d&rate=%d", a.cfg.Security.Scheme(), req.Source, url.PathEscape(req.Snapshot),
		url.QueryEscape(f.Path), have, rate)
	hreq, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	a.cfg.Security.authorize(hreq, req.Grant) // the grant in a header, never in the URL
	resp, err := client.Do(hreq)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for n < f.Size-have {
		k, rerr := resp.Body.Read(buf[:min(int64(len(buf)), f.Size-have-n)])
		if k > 0 {
			if _, err := out.Write(buf[:k]); err != nil {
				return n, err
			}
			n += int64(k)
			onBytes(int64(k))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr
		}
	}
	if err := out.Sync(); err != nil {
		return n, err
	}
	return n, nil
}

// throttle sleeps while the pull is ahead of its bandwidth cap.
func throttle(ctx context.Context, start time.Time, received, perSecond int64) {
	if perSecond <= 0 {
		return
	}
	due := start.Add(time.Duration(float64(received) / float64(perSecond) * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// apiLocalSeedStatus: GET /api/local/seeds/{id}.
func (a *Agent) apiLocalSeedStatus(r *http.Request) (any, error) {
	a.mu.Lock()
	s, ok := a.seeds[r.PathValue("id")]
	a.mu.Unlock()
	if !ok {
		return nil, notFound("no seed %s on this host", r.PathValue("id"))
	}
	return s.status(), nil
}

// apiLocalSeeds: the seeds of this host.
func (a *Agent) apiLocalSeeds(*http.Request) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []SeedStatus{}
	for _, id := range sortedKeys(a.seeds) {
		out = append(out, a.seeds[id].status())
	}
	return out, nil
}

// apiLocalSeedAbort stops a pull and removes what it staged.
func (a *Agent) apiLocalSeedAbort(r *http.Request) (any, error) {
	id := r.PathValue("id")
	if !validSeedID(id) {
		return nil, badRequest("seed id %q", id)
	}
	a.mu.Lock()
	s, ok := a.seeds[id]
	a.mu.Unlock()
	if ok {
		s.cancel()
		<-s.ended
		s.mu.Lock()
		s.st.State = "aborted"
		s.mu.Unlock()
	}
	if err := os.RemoveAll(a.seedDir(id)); err != nil {
		return nil, err
	}
	return map[string]bool{"aborted": true}, nil
}

// SeedCheck is what a target host says before a seed.
type SeedCheck struct {
	Running   string `json:"running,omitempty"`  // a running node on the port
	Stopped   string `json:"stopped,omitempty"`  // a stopped node on the port
	DataDir   string `json:"data_dir,omitempty"` // its data, which a seed would replace
	DataBytes int64  `json:"data_bytes,omitempty"`
	FreeBytes uint64 `json:"free_bytes"`
	InFlight  string `json:"in_flight,omitempty"` // a seed being received here
	// ReceiveCommand: this agent has a ReceiveSeedDataCommand
	ReceiveCommand bool `json:"receive_command,omitempty"`
}

// apiLocalSeedCheck: GET /api/local/seed-check?port=P.
func (a *Agent) apiLocalSeedCheck(r *http.Request) (any, error) {
	var port int
	fmt.Sscan(r.URL.Query().Get("port"), &port)
	var c SeedCheck
	a.mu.Lock()
	for _, p := range a.procs {
		if p.spec.Port != port {
			continue
		}
		if p.pid != 0 {
			c.Running = p.spec.ID
		} else {
			c.Stopped = p.spec.ID
			c.DataDir = filepath.Join(a.nodeDir(p.spec.ID), "data")
		}
	}
	for id, s := range a.seeds {
		if st := s.status(); st.State == "receiving" || st.State == "verifying" {
			c.InFlight = id
		}
	}
	a.mu.Unlock()
	if c.DataDir != "" {
		c.DataBytes = stagedBytes(c.DataDir)
	}
	c.ReceiveCommand = a.cfg.Commands.ReceiveSeedData != ""
	free, err := freeBytes(a.cfg.Home)
	c.FreeBytes = free
	return c, err
}

// SeedInstall installs a received seed as a node of this host.
type SeedInstall struct {
	Spec  NodeSpec `json:"spec"`
	Force bool     `json:"force"`
}

// apiLocalSeedInstall moves a verified seed into a node's home and starts
// the node. A stopped node on the same port has its data replaced only
// with force; a running one never.
func (a *Agent) apiLocalSeedInstall(r *http.Request) (any, error) {
	id := r.PathValue("id")
	var req SeedInstall
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if !nodeIDPattern.MatchString(req.Spec.ID) {
		return nil, badRequest("install seed %s: node id %q", id, req.Spec.ID)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Spec.Host != a.st.Host {
		return nil, badRequest("install seed %s: node %s is for host %s, not this one (%s)", id, req.Spec.ID, req.Spec.Host, a.st.Host)
	}
	s, ok := a.seeds[id]
	if !ok || s.status().State != "done" {
		return nil, conflict("seed %s is not received and verified here", id)
	}
	staged := filepath.Join(a.seedDir(id), "data")
	var existing *proc
	for _, p := range a.procs {
		if p.spec.Port == req.Spec.Port {
			existing = p
		}
	}
	spec := req.Spec
	if existing != nil {
		if existing.pid != 0 {
			return nil, conflict("node %s runs on port %d: stop it first (a seed never replaces a running node)", existing.spec.ID, spec.Port)
		}
		if !req.Force {
			return nil, conflict("node %s on port %d has data in %s: --force replaces it", existing.spec.ID, spec.Port, filepath.Join(a.nodeDir(existing.spec.ID), "data"))
		}
		spec = existing.spec
		spec.Wanted = true
	} else if _, err := os.Stat(a.nodeDir(spec.ID)); err == nil {
		return nil, conflict("%s exists: another node's home", a.nodeDir(spec.ID))
	}
	home := a.nodeDir(spec.ID)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	data := filepath.Join(home, "data")
	old := data + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	if existing != nil {
		if err := os.Rename(data, old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("move node %s's data aside: %w", spec.ID, err)
		}
	}
	if err := os.Rename(staged, data); err != nil {
		os.Rename(old, data)
		return nil, fmt.Errorf("install seed %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(data, seededMarker), []byte(id), 0o600); err != nil {
		return nil, err
	}
	go os.RemoveAll(old) // a whole data directory: not under the agent's lock
	os.RemoveAll(a.seedDir(id))
	delete(a.seeds, id)
	p := existing
	if p == nil {
		p = &proc{spec: spec}
		a.procs[spec.ID] = p
		if a.st.Role == RoleFollower {
			a.st.Nodes = append(a.st.Nodes, spec)
		}
	}
	p.spec, p.sup.Wanted, p.sup.Failures = spec, true, 0
	if i, ok := a.st.node(spec.ID); ok {
		a.st.Nodes[i].Wanted = true
	}
	if err := a.startProc(p); err != nil {
		return nil, err
	}
	a.log.Info("seed installed", "seed", id, "node", spec.ID, "addr", spec.Addr())
	return a.statusOf(p), a.saveLocked()
}
