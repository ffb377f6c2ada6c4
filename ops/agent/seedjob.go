package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/canopydb/canopy/ops/jobs"
)

// The seed job (primary): `canopy ops seed --source HOST:NODE_ID --target
// HOST`, in the stages of seed 004's seeding: checks, snapshot, transfer,
// verify, install, start, catch up. The seeded node is a new node on the
// target (or, with --force, a stopped node there whose data it replaces),
// outside any cluster: node.adoptSeed forgets whose data it was.

const kindSeed = "seed"

// SeedRequest asks for a seed.
type SeedRequest struct {
	Source       string  `json:"source"`             // NODE_ID or HOST:NODE_ID
	Snapshot     string  `json:"snapshot,omitempty"` // default: a new one
	Target       string  `json:"target"`             // the target host
	Port         int     `json:"port,omitempty"`     // default: the source node's
	Force        bool    `json:"force,omitempty"`    // replace a stopped node's data there
	BandwidthMB  float64 `json:"bandwidth_mb,omitempty"`
	StallMinutes float64 `json:"stall_minutes,omitempty"` // default 5
	// LeafGroup (node-replace): the seeded node is a leaf of this
	// availability group, to be added to the cluster; 0: a standalone node
	LeafGroup int `json:"leaf_group,omitempty"`
}

var seedSteps = []string{"checks", "snapshot", "transfer", "verify", "install", "start", "catch up"}

// apiSeed starts a seed job and answers at once with it; `job-list`,
// `job-logs` and the UI follow it, `seed-abort JOB` ends it.
func (a *Agent) apiSeed(r *http.Request) (any, error) {
	var req SeedRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	srcHost, srcID, hasHost := strings.Cut(req.Source, ":")
	if !hasHost {
		srcID, srcHost = srcHost, ""
	}
	src, err := a.nodeSpec(srcID)
	if err != nil {
		return nil, err
	}
	if srcHost != "" && srcHost != src.Host {
		return nil, badRequest("seed: node %s is on %s, not %s", srcID, src.Host, srcHost)
	}
	if req.Target == "" {
		return nil, badRequest("seed: --target HOST is required")
	}
	if req.Port == 0 {
		req.Port = src.Port
	}
	if req.Port <= 0 || req.Port > 65535 {
		return nil, badRequest("seed: --port %d is not a port", req.Port)
	}
	if req.Target == src.Host && req.Port == src.Port {
		return nil, badRequest("seed: the target is the source node itself")
	}
	if req.StallMinutes <= 0 {
		req.StallMinutes = 5
	}
	return JobReply{Job: a.startSeed(src, req)}, nil
}

// startSeed starts a seed job and returns a copy of it as it starts.
func (a *Agent) startSeed(src NodeSpec, req SeedRequest) *jobs.Job {
	var steps []jobs.Step
	for _, s := range seedSteps {
		steps = append(steps, jobs.Step{Text: s, State: jobs.Queued})
	}
	args := map[string]string{"source": src.Host + ":" + src.ID, "target": fmt.Sprintf("%s:%d", req.Target, req.Port)}
	if req.Snapshot != "" {
		args["snapshot"] = req.Snapshot
	}
	a.mu.Lock()
	j := a.st.Jobs.Add(kindSeed, args, time.Now())
	j.Steps = steps
	j.Start(time.Now())
	a.saveLocked()
	cp := *j
	a.mu.Unlock()
	go a.runJob(j, func(ctx context.Context, j *jobs.Job, logf func(string, ...any)) error {
		return a.runSeed(ctx, j, src, req, logf)
	})
	return &cp
}

// runSeed runs the stages in order.
func (a *Agent) runSeed(ctx context.Context, j *jobs.Job, src NodeSpec, req SeedRequest, logf func(string, ...any)) error {
	seedID := "seed-" + strconv.Itoa(j.ID)
	step := 0
	stage := func(run func() error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		a.mu.Lock()
		j.Steps[step].State = jobs.Running
		a.mu.Unlock()
		err := run()
		a.mu.Lock()
		j.StepEnded(time.Now(), step, err)
		a.saveLocked()
		a.mu.Unlock()
		step++
		return err
	}
	abort := func() {
		if err := a.onHost(context.Background(), req.Target, "POST", "/api/local/seeds/"+seedID+"/abort", nil, nil); err != nil {
			logf("cleaning up on %s: %v", req.Target, err)
		} else {
			logf("removed what %s received", req.Target)
		}
	}
	var check SeedCheck
	if err := stage(func() error {
		if err := a.onHost(ctx, req.Target, "GET", fmt.Sprintf("/api/local/seed-check?port=%d", req.Port), nil, &check); err != nil {
			return fmt.Errorf("target %s: %w", req.Target, err)
		}
		switch {
		case check.Running != "":
			return conflict("node %s runs on %s:%d: a seed never replaces a running node (stop it first)", check.Running, req.Target, req.Port)
		case check.InFlight != "":
			return conflict("%s is receiving %s: one seed per host at a time", req.Target, check.InFlight)
		case check.Stopped != "" && !req.Force:
			return conflict("node %s on %s:%d is stopped with %d MiB of data in %s: --force removes it and installs the seed instead",
				check.Stopped, req.Target, req.Port, check.DataBytes>>20, check.DataDir)
		case check.Stopped != "":
			logf("--force: the data of node %s (%d MiB in %s) will be replaced", check.Stopped, check.DataBytes>>20, check.DataDir)
		}
		logf("target %s:%d: %d MiB free", req.Target, req.Port, check.FreeBytes>>20)
		return nil
	}); err != nil {
		return err
	}
	snapID := req.Snapshot
	if err := stage(func() error {
		if snapID != "" {
			n, err := snapshotNode(snapID)
			if err != nil {
				return err
			}
			if n != src.ID {
				return badRequest("snapshot %s is of node %s, not %s", snapID, n, src.ID)
			}
			logf("using snapshot %s", snapID)
			return nil
		}
		var snap Snapshot
		if err := a.onHost(ctx, src.Host, "POST", "/api/local/snapshots", SnapshotRequest{Node: src.ID}, &snap); err != nil {
			return err
		}
		snapID = snap.ID
		logf("snapshot %s of node %s: %d files, %d MiB, commits paused %.1f ms", snap.ID, src.ID, snap.Files, snap.Bytes>>20, snap.TookMs)
		return nil
	}); err != nil {
		return err
	}
	var grantReply struct {
		Grant       string         `json:"grant"`
		Files       []SnapshotFile `json:"files"`
		SendCommand bool           `json:"send_command"`
	}
	if err := stage(func() error {
		if err := a.onHost(ctx, src.Host, "POST", "/api/local/snapshots/"+snapID+"/grant", nil, &grantReply); err != nil {
			return fmt.Errorf("snapshot %s on %s: %w", snapID, src.Host, err)
		}
		var total int64
		for _, f := range grantReply.Files {
			total += f.Size
		}
		if uint64(total) > check.FreeBytes {
			return conflict("%s has %d MiB free, the snapshot is %d MiB", req.Target, check.FreeBytes>>20, total>>20)
		}
		srcAgent, err := a.agentAddr(src.Host)
		if err != nil {
			return err
		}
		pull := SeedPull{ID: seedID, Source: srcAgent, Snapshot: snapID, Grant: grantReply.Grant, Files: grantReply.Files,
			BandwidthBytes: int64(req.BandwidthMB * (1 << 20)), StallSeconds: int(req.StallMinutes * 60)}
		byCommand := check.ReceiveCommand && grantReply.SendCommand
		if byCommand {
			pull.Mode = "command"
		}
		logf("transferring %d files, %d MiB, from %s to %s%s", len(pull.Files), total>>20, src.Host, req.Target, capText(req.BandwidthMB))
		var st SeedStatus
		if err := a.onHost(ctx, req.Target, "POST", "/api/local/seeds", pull, &st); err != nil {
			return err
		}
		sent := make(chan error, 1)
		if byCommand {
			// the configured pair moves the files: the target's receive
			// command listens, the source's send command sends
			logf("by the configured commands: SendSeedDataCommand on %s to ReceiveSeedDataCommand on %s:%d", src.Host, req.Target, st.Port)
			go func() {
				sent <- a.onHost(ctx, src.Host, "POST", "/api/local/snapshots/"+snapID+"/send", map[string]any{"host": req.Target, "port": st.Port}, nil)
			}()
		}
		last := time.Time{}
		for {
			if st.State == "failed" {
				return fmt.Errorf("transfer: %s", st.Error)
			}
			if st.State == "verifying" || st.State == "done" {
				logf("received %d MiB (%d files, %d resumes after a cut) in %.2f s, %.1f MiB/s", st.Done>>20, st.FilesDone, st.Resumes, st.ReceiveSeconds, st.Rate/(1<<20))
				return nil
			}
			if time.Since(last) >= 2*time.Second {
				logf("transfer %d/%d MiB (%.0f%%), %.1f MiB/s, ETA %s", st.Done>>20, st.Total>>20, percent(st.Done, st.Total), st.Rate/(1<<20),
					(time.Duration(st.ETASeconds) * time.Second).String())
				last = time.Now()
			}
			select {
			case <-ctx.Done():
				abort()
				return ctx.Err()
			case err := <-sent:
				if err != nil {
					abort()
					return fmt.Errorf("send: %w", err)
				}
			case <-time.After(250 * time.Millisecond):
			}
			if err := a.onHost(ctx, req.Target, "GET", "/api/local/seeds/"+seedID, nil, &st); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}); err != nil {
		return err
	}
	if err := stage(func() error {
		var st SeedStatus
		for {
			if err := a.onHost(ctx, req.Target, "GET", "/api/local/seeds/"+seedID, nil, &st); err != nil {
				return err
			}
			switch st.State {
			case "done":
				logf("every file's SHA-256 matches the snapshot's (checked in %.2f s)", st.VerifySeconds)
				return nil
			case "failed":
				return fmt.Errorf("verify: %s", st.Error)
			}
			select {
			case <-ctx.Done():
				abort()
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}); err != nil {
		return err
	}
	spec := NodeSpec{ID: newNodeID(), Host: req.Target, Port: req.Port, Role: NodeStandalone, Wanted: true, Created: time.Now()}
	if req.LeafGroup != 0 {
		spec.Role, spec.Group = NodeLeaf, req.LeafGroup
	}
	if check.Stopped != "" {
		if s, err := a.nodeSpec(check.Stopped); err == nil {
			spec = s
		}
	}
	if err := stage(func() error {
		var status NodeStatus
		if err := a.onHost(ctx, req.Target, "POST", "/api/local/seeds/"+seedID+"/install", SeedInstall{Spec: spec, Force: req.Force}, &status); err != nil {
			return err
		}
		a.mu.Lock()
		if _, ok := a.st.node(spec.ID); !ok {
			a.st.Nodes = append(a.st.Nodes, spec)
		}
		a.saveLocked()
		a.mu.Unlock()
		logf("installed as node %s (%s) on %s and started it", spec.ID, spec.Role, spec.Addr())
		return nil
	}); err != nil {
		return err
	}
	a.mu.Lock()
	pw := a.st.RootPassword
	a.mu.Unlock()
	db, err := rootDB(spec.Addr(), pw)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := stage(func() error {
		if err := waitSQL(ctx, db, 60*time.Second); err != nil {
			return fmt.Errorf("node %s does not answer SQL (see %s): %w", spec.Addr(), NodeLog(a.cfg.Home, spec.ID), err)
		}
		logf("node %s answers SQL", spec.Addr())
		return nil
	}); err != nil {
		return err
	}
	return stage(func() error {
		// every database of the snapshot is there, at least at the
		// snapshot's position
		snaps, err := a.snapshotOn(ctx, src.Host, snapID)
		if err != nil {
			return err
		}
		rows, err := queryMaps(ctx, db, "SHOW DATABASES EXTENDED")
		if err != nil {
			return err
		}
		have := map[string]string{}
		for _, r := range rows {
			have[r["Database"]] = r["Position"]
		}
		for _, d := range snaps.Databases {
			pos, ok := have[d.Name]
			if !ok {
				return fmt.Errorf("database %s of the snapshot is missing on %s", d.Name, spec.Addr())
			}
			if lsnOf(pos) < int64(d.LSN) {
				return fmt.Errorf("database %s on %s is at %s, behind the snapshot's %d:%d", d.Name, spec.Addr(), pos, d.Term, d.LSN)
			}
		}
		logf("all %d databases of the snapshot are on %s at their positions", len(snaps.Databases), spec.Addr())
		return nil
	})
}

// snapshotOn reads a snapshot from its host's agent.
func (a *Agent) snapshotOn(ctx context.Context, host, id string) (Snapshot, error) {
	var list []Snapshot
	if err := a.onHost(ctx, host, "GET", "/api/local/snapshots", nil, &list); err != nil {
		return Snapshot{}, err
	}
	for _, s := range list {
		if s.ID == id {
			return s, nil
		}
	}
	return Snapshot{}, notFound("no snapshot %s on %s", id, host)
}

// agentAddr is the host:port of the agent of host.
func (a *Agent) agentAddr(host string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if host == a.st.Host {
		return net.JoinHostPort(a.st.Host, strconv.Itoa(a.st.Port)), nil
	}
	if i, ok := a.st.agent(host); ok {
		return a.st.Agents[i].Addr(), nil
	}
	return "", notFound("no agent on host %s", host)
}

// apiSeeds: the seeds in flight on every host.
func (a *Agent) apiSeeds(r *http.Request) (any, error) {
	out := []SeedStatus{}
	for _, host := range a.agentHosts() {
		var list []SeedStatus
		if err := a.onHost(r.Context(), host, "GET", "/api/local/seeds", nil, &list); err != nil {
			a.log.Warn("seeds of a host", "host", host, "err", err) // the others' still count
			continue
		}
		out = append(out, list...)
	}
	return out, nil
}

func capText(mb float64) string {
	if mb <= 0 {
		return ""
	}
	return fmt.Sprintf(", at most %g MiB/s", mb)
}

func percent(done, total int64) float64 {
	if total == 0 {
		return 100
	}
	return 100 * float64(done) / float64(total)
}
