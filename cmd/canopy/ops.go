package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/canopydb/canopy/ops/agent"
	"github.com/canopydb/canopy/ops/jobs"
	"github.com/canopydb/canopy/ops/metrics"
)

const opsUsage = `canopy ops: deploy, supervise and monitor Canopy nodes, one agent per host

Agents:
  start [--bind IP] [--port 9000] [--home DIR]   run this host's agent (the first one is the primary)
  agent-secret                                   print the deployment secret (on the primary)
  root-password                                  print the password of root on the deployment's nodes
  agent-follow --host H [--port 9000] --secret S make this host's agent follow the primary at H
  agent-unfollow                                 stop following; a primary of its own again
  agent-list                                     the agents of the deployment
  agent-stop [--stop-nodes]                      stop this host's agent (its nodes keep running)
  host-info                                      every host: free disk, each node's data and snapshots, LVM volumes
  ui-link [PAGE]                                 a one-time login link to the web interface (PAGE: /nodes, …)
Nodes:
  node-deploy --role master|aggregator|leaf --port P [--host H] [--availability-group 1|2]
  node-list [--role ROLE] [-q]                   (-q: ids only)
  node-start|node-stop|node-restart ID|--all
  node-delete ID [--keep-data] [--no-prompt]
  node-replace ID --target HOST [--port P] [--seed] [--no-prompt]   a new leaf on HOST in the old one's group takes its place
                                                 (--seed: started from its pair's snapshot, its copies catch up from there)
  node-update-config ID --key K --value V [--restart]   a canopy node flag (at the next start) or a global variable (now)
  cluster-manual-control --enable|--disable      no automatic restarts while enabled
  enable-high-availability --hosts H1,H2,… [--no-prompt]   redundancy 2: group-2 leaves on those hosts, every database rebalanced
Snapshots and seeds:
  snapshot-create NODE_ID                        a consistent checkpoint of the node's data on its host
  snapshot-list, snapshot-delete ID
  seed --source [HOST:]NODE_ID --target HOST [--port P] [--snapshot ID] [--force] [--bandwidth-mb N] [--stall-minutes N] [--detach]
                                                 copy a node's data to a new node on HOST (checks, snapshot, transfer, verify,
                                                 install, start, catch up); --force replaces a stopped node's data there
  seed-list                                      seeds being received; seed-abort JOB_ID stops one and removes what it received
Jobs and metrics:
  job-list, job-logs ID, job-cancel ID, job-retry ID   (retry: a failed multi-step job, from the step that failed)
  metrics [--source host/IP|node/ID --metric M [--since 1h] [--rollups]]   series, or one series' points

Every command takes --home DIR (default $CANOPY_OPS_HOME or /var/lib/canopy-ops) to find
this host's agent, and --json. The MemSQL Ops spellings memsql-deploy, memsql-list
(--memsql-role), memsql-start, memsql-stop and memsql-delete work too.
`

// opsAliases maps the seed's memsql-ops spellings to ours.
var opsAliases = map[string]string{
	"memsql-deploy": "node-deploy", "memsql-list": "node-list", "memsql-start": "node-start",
	"memsql-stop": "node-stop", "memsql-restart": "node-restart", "memsql-delete": "node-delete",
	"memsql-update-config": "node-update-config", "memsql-enable-high-availability": "enable-high-availability",
	"agent-start": "start",
}

func runOps(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, opsUsage)
		return nil
	}
	cmd := args[0]
	if c, ok := opsAliases[cmd]; ok {
		cmd = c
	}
	fs := flag.NewFlagSet("ops "+cmd, flag.ContinueOnError)
	home := fs.String("home", "", "the agent home (default $CANOPY_OPS_HOME or "+agent.HomeDefault+")")
	asJSON := fs.Bool("json", false, "print JSON")
	o := &opsCmd{out: stdout}
	switch cmd {
	case "start":
		cfg := agent.Config{Version: version, Bind: "127.0.0.1", Port: 9000, SnapshotKeep: 5, SnapshotKeepDays: 7}
		// the configuration file first, the flags over it
		exe, _ := os.Executable()
		fc, file, err := agent.LoadFileConfig(agent.ConfigFilePaths(exe))
		if err != nil {
			return err
		}
		fc.Apply(&cfg)
		if cfg.Home != "" && *home == "" {
			*home = cfg.Home
		}
		var basicPassFile string
		fs.StringVar(&cfg.Bind, "bind", cfg.Bind, "this host's IP address: the agent and its nodes listen on it")
		fs.IntVar(&cfg.Port, "port", cfg.Port, "the agent's HTTP port")
		fs.IntVar(&cfg.SnapshotKeep, "snapshot-keep", cfg.SnapshotKeep, "keep a node's newest N snapshots (0: all)")
		fs.IntVar(&cfg.SnapshotKeepDays, "snapshot-keep-days", cfg.SnapshotKeepDays, "delete a node's snapshots older than this many days, but its newest (0: never)")
		fs.StringVar(&cfg.SnapshotDaily, "snapshot-daily", cfg.SnapshotDaily, "snapshot every node of this host each day at HH:MM UTC")
		fs.DurationVar(&cfg.Resubmit, "resubmit", cmp.Or(cfg.Resubmit, time.Hour), "a follower registers with its primary again this often (and when it starts)")
		fs.StringVar(&cfg.Security.CertFile, "tls-cert", cfg.Security.CertFile, "serve the API and web interface over TLS with this certificate (PEM); every agent of the deployment must")
		fs.StringVar(&cfg.Security.KeyFile, "tls-key", cfg.Security.KeyFile, "the key (PEM) of --tls-cert")
		fs.StringVar(&cfg.Security.CAFile, "tls-ca", cfg.Security.CAFile, "mutual TLS: callers must present a certificate this CA signed; other agents' certificates are checked against it")
		fs.BoolVar(&cfg.Security.SkipVerify, "tls-skip-verify", cfg.Security.SkipVerify, "do not check other agents' certificates")
		fs.StringVar(&cfg.Security.BasicUser, "basic-auth-user", cfg.Security.BasicUser, "require HTTP basic auth with this user too (with --basic-auth-password-file)")
		fs.StringVar(&basicPassFile, "basic-auth-password-file", "", "file holding the basic auth password")
		fs.StringVar(&cfg.Commands.CreateSnapshot, "create-snapshot-command", cfg.Commands.CreateSnapshot, "sh command that fills $CANOPY_SNAPSHOT_DIR/data from $CANOPY_DATA_DIR instead of the node's checkpoint (an LVM snapshot script, say)")
		fs.StringVar(&cfg.Commands.SendSeedData, "send-seed-command", cfg.Commands.SendSeedData, "sh command that sends $CANOPY_SNAPSHOT_DATA to $CANOPY_TARGET_HOST:$CANOPY_SEED_PORT (with --receive-seed-command on the target)")
		fs.StringVar(&cfg.Commands.ReceiveSeedData, "receive-seed-command", cfg.Commands.ReceiveSeedData, "sh command that fills $CANOPY_SEED_DIR, listening on $CANOPY_SEED_HOST:$CANOPY_SEED_PORT")
		fs.StringVar(&cfg.Commands.PostCopy, "post-copy-command", cfg.Commands.PostCopy, "sh command run in $CANOPY_SEED_DIR after a seed's files arrived, before they are checked")
		fs.StringVar(&cfg.Follow, "follow", cfg.Follow, "follow the primary at HOST:PORT as the agent starts (with --follow-secret-file)")
		followSecretFile := fs.String("follow-secret-file", "", "file holding the deployment secret of --follow")
		fs.DurationVar(&cfg.MetricsInterval, "metrics-interval", 10*time.Second, "how often the host and its nodes are sampled")
		fs.DurationVar(&cfg.Retention.Raw, "metrics-retention", metrics.DefaultRetention.Raw, "the primary keeps every sample this long")
		fs.DurationVar(&cfg.Retention.Rollups, "metrics-rollup-retention", metrics.DefaultRetention.Rollups, "the primary keeps 5-minute rollups this long")
		fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 30*time.Second, "a node stopping gets this long after SIGTERM before SIGKILL")
		fs.BoolVar(&cfg.OpenUI, "open-ui", false, "let anyone view the web interface (read-only) without logging in")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		for _, f := range []struct {
			file string
			to   *string
		}{{basicPassFile, &cfg.Security.BasicPass}, {*followSecretFile, &cfg.FollowSecret}} {
			if f.file == "" {
				continue
			}
			b, err := os.ReadFile(f.file)
			if err != nil {
				return err
			}
			*f.to = strings.TrimSpace(string(b))
		}
		if cfg.Security.BasicUser != "" && cfg.Security.BasicPass == "" {
			return errors.New("--basic-auth-user needs a password (--basic-auth-password-file, or HTTPAuthPassword in the configuration file)")
		}
		if file != "" {
			fmt.Fprintf(stdout, "configuration file: %s\n", file)
		}
		cfg.Home = agent.Home(*home)
		return opsStart(cfg, stdout)
	case "agent-secret", "root-password":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		c, err := agent.ReadCredentials(agent.Home(*home))
		if err != nil {
			return err
		}
		if cmd == "root-password" {
			fmt.Fprintln(stdout, c.RootPassword)
		} else {
			fmt.Fprintln(stdout, c.Secret)
		}
		return nil
	}
	var (
		host, role, secret           string
		port, group                  int
		all, quiet, noPrompt, remove bool
		enable, disable, stopNodes   bool
		since                        time.Duration
		seedReq                      agent.SeedRequest
	)
	switch cmd {
	case "agent-follow":
		fs.StringVar(&host, "host", "", "the primary agent's host")
		fs.IntVar(&port, "port", 9000, "the primary agent's port")
		fs.StringVar(&secret, "secret", "", "the deployment secret (agent-secret on the primary prints it)")
	case "agent-stop":
		fs.BoolVar(&stopNodes, "stop-nodes", false, "stop this host's nodes too")
	case "node-deploy":
		fs.StringVar(&role, "role", "leaf", "master, aggregator or leaf")
		fs.StringVar(&role, "memsql-role", "leaf", "same as --role")
		fs.IntVar(&port, "port", 3306, "the node's MySQL port")
		fs.StringVar(&host, "host", "", "the host to deploy on (default: this agent's host)")
		fs.IntVar(&group, "availability-group", 0, "a leaf's availability group (1 or 2)")
	case "node-list":
		fs.StringVar(&role, "role", "", "only nodes of this role")
		fs.StringVar(&role, "memsql-role", "", "same as --role")
		fs.BoolVar(&quiet, "q", false, "print the ids only")
	case "node-start", "node-stop", "node-restart":
		fs.BoolVar(&all, "all", false, "every node")
	case "node-delete":
		fs.BoolVar(&noPrompt, "no-prompt", false, "do not ask (the node's data is removed unless --keep-data)")
		fs.BoolVar(&remove, "keep-data", false, "keep the node's data directory on its host")
	case "cluster-manual-control":
		fs.BoolVar(&enable, "enable", false, "turn manual control on")
		fs.BoolVar(&disable, "disable", false, "turn manual control off")
	case "node-update-config":
		fs.StringVar(&host, "key", "", "a flag of canopy node (cache-mb, lock-wait-timeout, …) or a global variable")
		fs.StringVar(&role, "value", "", "its value")
		fs.BoolVar(&all, "restart", false, "restart the node now when the key needs it")
		fs.BoolVar(&noPrompt, "no-prompt", false, "do not ask")
	case "metrics":
		fs.StringVar(&host, "source", "", "host/IP or node/ID")
		fs.StringVar(&role, "metric", "", "the metric (metrics with no flags lists them)")
		fs.DurationVar(&since, "since", time.Hour, "how far back")
		fs.BoolVar(&all, "rollups", false, "5-minute rollups instead of every sample")
	case "enable-high-availability":
		fs.StringVar(&host, "hosts", "", "comma-separated hosts for the group-2 leaves, one per group-1 leaf")
		fs.BoolVar(&noPrompt, "no-prompt", false, "do not ask")
	case "node-replace":
		fs.BoolVar(&seedReq.Force, "seed", false, "start the new leaf from a snapshot of the old leaf's pair: its copies catch up from there")
		fs.StringVar(&host, "target", "", "the host of the new leaf")
		fs.IntVar(&port, "port", 0, "the new leaf's port (default the old one's)")
		fs.BoolVar(&noPrompt, "no-prompt", false, "do not ask")
	case "seed":
		fs.StringVar(&seedReq.Source, "source", "", "the node to copy: NODE_ID or HOST:NODE_ID")
		fs.StringVar(&seedReq.Target, "target", "", "the host to seed")
		fs.IntVar(&seedReq.Port, "port", 0, "the new node's port (default the source node's)")
		fs.StringVar(&seedReq.Snapshot, "snapshot", "", "an existing snapshot of the source (default: take one now)")
		fs.BoolVar(&seedReq.Force, "force", false, "replace the data of a stopped node on the target's port")
		fs.Float64Var(&seedReq.BandwidthMB, "bandwidth-mb", 0, "cap the transfer at N MiB/s (0: no cap)")
		fs.Float64Var(&seedReq.StallMinutes, "stall-minutes", 5, "fail the seed after this long without progress")
		fs.BoolVar(&all, "detach", false, "start the seed and return (follow it with job-logs)")
	case "agent-unfollow", "agent-list", "job-list", "job-logs", "job-retry", "job-cancel", "ui-link",
		"snapshot-create", "snapshot-list", "snapshot-delete", "seed-list", "seed-abort", "host-info":
	default:
		return fmt.Errorf("ops: unknown command %q\n\n%s", args[0], opsUsage)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	creds, err := waitAgent(agent.Home(*home))
	if err != nil {
		return err
	}
	if o.c, err = agent.NewClient(creds); err != nil {
		return err
	}
	o.json = *asJSON
	ctx := context.Background()
	switch cmd {
	case "agent-follow":
		if host == "" {
			return errors.New("agent-follow: --host of the primary agent required")
		}
		return o.call(ctx, "POST", "/api/follow", agent.FollowRequest{Host: host, Port: port, Secret: secret}, "now following %s:%d", host, port)
	case "agent-unfollow":
		return o.call(ctx, "POST", "/api/unfollow", nil, "no longer following: this agent is a primary of its own")
	case "agent-stop":
		if err := o.call(ctx, "POST", "/api/stop", map[string]bool{"stop_nodes": stopNodes}, "agent stopping"); err != nil {
			return err
		}
		// the agent answers, then stops (its nodes first, with
		// --stop-nodes): return once it has, so that a script can rely on it
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			c, err := net.DialTimeout("tcp", creds.Addr, time.Second)
			if err != nil {
				return nil
			}
			c.Close()
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("agent-stop: the agent at %s still answers after 2 minutes", creds.Addr)
	case "agent-list":
		var rows []agent.AgentRow
		if err := o.c.Call(ctx, "GET", "/api/agents", nil, &rows); err != nil {
			return err
		}
		return table(o, rows, []string{"HOST", "PORT", "ROLE", "STATE", "VERSION", "LAST SEEN"}, func(r agent.AgentRow) []any {
			return []any{r.Host, r.Port, r.Role, r.State, r.Version, r.LastSeen.Format(time.RFC3339)}
		})
	case "node-deploy":
		if host == "" { // this host: the agent the CLI talks to
			var st agent.Status
			if err := o.c.Call(ctx, "GET", "/api/status", nil, &st); err != nil {
				return err
			}
			host = st.Host
		}
		var reply agent.JobReply
		err := o.c.Call(ctx, "POST", "/api/nodes", agent.DeployRequest{Role: role, Host: host, Port: port, Group: group}, &reply)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(reply)
		}
		fmt.Fprintf(stdout, "deployed %s node %s on %s (job %d)\n", reply.Node.Role, reply.Node.ID, reply.Node.Addr(), reply.Job.ID)
		return nil
	case "node-list":
		nodes, err := o.nodes(ctx, role)
		if err != nil {
			return err
		}
		if quiet {
			for _, n := range nodes {
				fmt.Fprintln(stdout, n.ID)
			}
			return nil
		}
		return table(o, nodes, []string{"ID", "ROLE", "HOST", "PORT", "GROUP", "STATE", "PID", "UPTIME", "VERSION"}, func(n agent.NodeStatus) []any {
			g := "-"
			if n.Group > 0 {
				g = fmt.Sprint(n.Group)
			}
			return []any{n.ID, n.Role, n.Host, n.Port, g, n.State, n.PID, n.Uptime, n.Version}
		})
	case "node-start", "node-stop", "node-restart":
		action := strings.TrimPrefix(cmd, "node-")
		ids := pos
		if all {
			nodes, err := o.nodes(ctx, "")
			if err != nil {
				return err
			}
			ids = nil
			for _, n := range nodes {
				ids = append(ids, n.ID)
			}
		}
		if len(ids) == 0 {
			return fmt.Errorf("%s: name a node id (node-list shows them) or --all", cmd)
		}
		for _, id := range ids {
			if err := o.call(ctx, "POST", "/api/nodes/"+id+"/"+action, nil, "%s: %s", id, action); err != nil {
				return err
			}
		}
		return nil
	case "node-delete":
		if len(pos) != 1 {
			return errors.New("node-delete: name one node id")
		}
		id := pos[0]
		keep := remove
		if !noPrompt {
			fmt.Fprintf(stdout, "Delete node %s: remove it from the cluster (its partitions move to other leaves first) and stop it", id)
			if !keep {
				fmt.Fprint(stdout, ", then REMOVE ITS DATA DIRECTORY (--keep-data keeps it)")
			}
			fmt.Fprint(stdout, "? [y/N] ")
			line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
				return errors.New("node-delete: not confirmed")
			}
		}
		return o.call(ctx, "POST", "/api/nodes/"+id+"/delete", map[string]bool{"remove_data": !keep}, "node %s deleted", id)
	case "cluster-manual-control":
		if enable == disable {
			return errors.New("cluster-manual-control: --enable or --disable")
		}
		return o.call(ctx, "POST", "/api/manual-control", map[string]bool{"enable": enable}, "manual control %s", map[bool]string{true: "enabled", false: "disabled"}[enable])
	case "node-update-config":
		if len(pos) != 1 || host == "" {
			return errors.New("node-update-config: ID --key K --value V")
		}
		var reply agent.ConfigReply
		if err := o.c.Call(ctx, "POST", "/api/nodes/"+pos[0]+"/config", agent.ConfigRequest{Key: host, Value: role, Restart: all}, &reply); err != nil {
			return err
		}
		switch {
		case o.json:
			return o.printJSON(reply)
		case reply.Applied:
			fmt.Fprintf(stdout, "%s = %s: set on node %s now, and kept for its next starts\n", host, role, pos[0])
		case reply.Restarted:
			fmt.Fprintf(stdout, "--%s %s: saved; node %s restarted with it\n", host, role, pos[0])
		default:
			fmt.Fprintf(stdout, "--%s %s: saved; it takes effect when node %s restarts (node-restart %s, or --restart)\n", host, role, pos[0], pos[0])
		}
		return nil
	case "metrics":
		if host == "" || role == "" {
			var list struct {
				Series []map[string]string `json:"series"`
				Disk   uint64              `json:"disk_bytes"`
			}
			if err := o.c.Call(ctx, "GET", "/api/metrics", nil, &list); err != nil {
				return err
			}
			if !o.json {
				fmt.Fprintf(stdout, "%d series, %d bytes on disk\n", len(list.Series), list.Disk)
			}
			return table(o, list.Series, []string{"SOURCE", "METRIC"}, func(m map[string]string) []any { return []any{m["source"], m["metric"]} })
		}
		now := time.Now()
		path := fmt.Sprintf("/api/metrics?source=%s&metric=%s&from=%d&to=%d", url.QueryEscape(host), url.QueryEscape(role), now.Add(-since).Unix(), now.Unix())
		if all {
			path += "&rollups=1"
		}
		var reply agent.MetricsReply
		if err := o.c.Call(ctx, "GET", path, nil, &reply); err != nil {
			return err
		}
		return table(o, reply.Points, []string{"TIME", "VALUE", "MIN", "MAX"}, func(p metrics.Point) []any {
			return []any{time.Unix(p.T, 0).Format(time.RFC3339), p.V, p.Min, p.Max}
		})
	case "enable-high-availability":
		var hosts []string
		for _, h := range strings.Split(host, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		var plan agent.HAReply
		if err := o.c.Call(ctx, "POST", "/api/enable-high-availability", agent.HARequest{Hosts: hosts, PlanOnly: true}, &plan); err != nil {
			return err
		}
		if !noPrompt {
			fmt.Fprintln(stdout, "Enabling high availability:")
			for i, p := range plan.Plan {
				fmt.Fprintf(stdout, "  %d. %s\n", i+1, p)
			}
			fmt.Fprint(stdout, "Go ahead (the databases stay online)? [y/N] ")
			line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
				return errors.New("enable-high-availability: not confirmed")
			}
		}
		var reply agent.HAReply
		if err := o.c.Call(ctx, "POST", "/api/enable-high-availability", agent.HARequest{Hosts: hosts}, &reply); err != nil {
			return err
		}
		if o.json {
			return o.printJSON(reply)
		}
		for _, l := range reply.Job.Log {
			fmt.Fprintf(stdout, "%s %s\n", l.At.Format(time.TimeOnly), l.Text)
		}
		fmt.Fprintf(stdout, "high availability enabled (job %d)\n", reply.Job.ID)
		return nil
	case "node-replace":
		if len(pos) != 1 {
			return errors.New("node-replace: name one leaf's node id")
		}
		req := agent.ReplaceRequest{Target: host, Port: port, PlanOnly: true, Seed: seedReq.Force}
		var plan agent.ReplaceReply
		if err := o.c.Call(ctx, "POST", "/api/nodes/"+pos[0]+"/replace", req, &plan); err != nil {
			return err
		}
		if !noPrompt {
			fmt.Fprintf(stdout, "Replacing leaf %s:\n", pos[0])
			for i, p := range plan.Plan {
				fmt.Fprintf(stdout, "  %d. %s\n", i+1, p)
			}
			fmt.Fprint(stdout, "Go ahead (the databases stay online)? [y/N] ")
			line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
				return errors.New("node-replace: not confirmed")
			}
		}
		req.PlanOnly = false
		var reply agent.ReplaceReply
		if err := o.c.Call(ctx, "POST", "/api/nodes/"+pos[0]+"/replace", req, &reply); err != nil {
			return err
		}
		if o.json {
			return o.printJSON(reply)
		}
		for _, l := range reply.Job.Log {
			fmt.Fprintf(stdout, "%s %s\n", l.At.Format(time.TimeOnly), l.Text)
		}
		fmt.Fprintf(stdout, "leaf %s replaced (job %d)\n", pos[0], reply.Job.ID)
		return nil
	case "ui-link":
		page := "/"
		if len(pos) > 0 {
			page = pos[0]
		}
		var reply struct {
			URL string `json:"url"`
		}
		if err := o.c.Call(ctx, "POST", "/api/ui/link", map[string]string{"page": page}, &reply); err != nil {
			return err
		}
		fmt.Fprintln(stdout, reply.URL)
		return nil
	case "snapshot-create":
		if len(pos) != 1 {
			return errors.New("snapshot-create: name one node id")
		}
		var snap agent.Snapshot
		if err := o.c.Call(ctx, "POST", "/api/snapshots", agent.SnapshotRequest{Node: pos[0]}, &snap); err != nil {
			return err
		}
		if o.json {
			return o.printJSON(snap)
		}
		fmt.Fprintf(stdout, "snapshot %s of node %s: %d databases, %d files, %d MiB; commits paused %.1f ms\n",
			snap.ID, snap.Node, len(snap.Databases), snap.Files, snap.Bytes>>20, snap.TookMs)
		return nil
	case "snapshot-list":
		var snaps []agent.Snapshot
		if err := o.c.Call(ctx, "GET", "/api/snapshots", nil, &snaps); err != nil {
			return err
		}
		return table(o, snaps, []string{"ID", "NODE", "HOST", "TAKEN", "DATABASES", "FILES", "MIB"}, func(s agent.Snapshot) []any {
			return []any{s.ID, s.Node, s.Host, s.Taken.Format(time.RFC3339), len(s.Databases), s.Files, s.Bytes >> 20}
		})
	case "snapshot-delete":
		if len(pos) != 1 {
			return errors.New("snapshot-delete: name one snapshot id")
		}
		return o.call(ctx, "POST", "/api/snapshots/"+pos[0]+"/delete", nil, "snapshot %s deleted", pos[0])
	case "seed":
		var reply agent.JobReply
		if err := o.c.Call(ctx, "POST", "/api/seeds", seedReq, &reply); err != nil {
			return err
		}
		if all {
			return o.call(ctx, "GET", fmt.Sprintf("/api/jobs/%d", reply.Job.ID), nil, "seed started: job %d (job-logs %d follows it, seed-abort %d stops it)", reply.Job.ID, reply.Job.ID, reply.Job.ID)
		}
		return o.follow(ctx, reply.Job.ID)
	case "host-info":
		var hosts []agent.HostFacts
		if err := o.c.Call(ctx, "GET", "/api/hosts", nil, &hosts); err != nil {
			return err
		}
		return table(o, hosts, []string{"HOST", "HOSTNAME", "FREE_MIB", "TOTAL_MIB", "NODES (DATA/SNAPSHOTS MIB)", "LVM"}, func(h agent.HostFacts) []any {
			var nodes []string
			for _, n := range h.Nodes {
				nodes = append(nodes, fmt.Sprintf("%s:%d/%d", n.ID, n.DataBytes>>20, n.SnapshotsBytes>>20))
			}
			lvm := "no lvs"
			if h.LVM != nil {
				lvm = "lvs"
			}
			return []any{h.Host, h.Hostname, h.FreeBytes >> 20, h.TotalBytes >> 20, strings.Join(nodes, " "), lvm}
		})
	case "seed-list":
		var seeds []agent.SeedStatus
		if err := o.c.Call(ctx, "GET", "/api/seeds", nil, &seeds); err != nil {
			return err
		}
		return table(o, seeds, []string{"ID", "SNAPSHOT", "STATE", "MIB", "OF", "MIB/S", "RESUMES", "ERROR"}, func(s agent.SeedStatus) []any {
			return []any{s.ID, s.Snapshot, s.State, s.Done >> 20, s.Total >> 20, fmt.Sprintf("%.1f", s.Rate/(1<<20)), s.Resumes, s.Error}
		})
	case "seed-abort", "job-cancel":
		if len(pos) != 1 {
			return fmt.Errorf("%s: name one job id", cmd)
		}
		return o.call(ctx, "POST", "/api/jobs/"+pos[0]+"/cancel", nil, "job %s: cancel requested", pos[0])
	case "job-retry":
		if len(pos) != 1 {
			return errors.New("job-retry: name one job id")
		}
		return o.call(ctx, "POST", "/api/jobs/"+pos[0]+"/retry", nil, "job %s finished", pos[0])
	case "job-list":
		var js []jobs.Job
		if err := o.c.Call(ctx, "GET", "/api/jobs", nil, &js); err != nil {
			return err
		}
		return table(o, js, []string{"ID", "KIND", "STATE", "CREATED", "ARGS", "ERROR"}, func(j jobs.Job) []any {
			var args []string
			for k, v := range j.Args {
				args = append(args, k+"="+v)
			}
			return []any{j.ID, j.Kind, j.State, j.Created.Format(time.RFC3339), strings.Join(args, " "), j.Error}
		})
	case "job-logs":
		if len(pos) != 1 {
			return errors.New("job-logs: name one job id")
		}
		var j jobs.Job
		if err := o.c.Call(ctx, "GET", "/api/jobs/"+pos[0], nil, &j); err != nil {
			return err
		}
		if o.json {
			return o.printJSON(j)
		}
		for _, l := range j.Log {
			fmt.Fprintf(stdout, "%s %s\n", l.At.Format(time.RFC3339), l.Text)
		}
		return nil
	}
	return nil
}

// follow prints a job's log as it grows, until it ends; a failed or
// cancelled job is an error.
func (o *opsCmd) follow(ctx context.Context, id int) error {
	printed := 0
	for {
		var j jobs.Job
		if err := o.c.Call(ctx, "GET", fmt.Sprintf("/api/jobs/%d", id), nil, &j); err != nil {
			return err
		}
		if !o.json {
			for _, l := range j.Log[min(printed, len(j.Log)):] {
				fmt.Fprintf(o.out, "%s %s\n", l.At.Format("15:04:05"), l.Text)
			}
			printed = len(j.Log)
		}
		if j.State.Done() {
			if o.json {
				o.printJSON(j)
			}
			if j.State != jobs.Finished {
				return fmt.Errorf("job %d %s: %s", j.ID, j.State, j.Error)
			}
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitAgent reads the credentials of the agent whose home is dir and
// waits a little for an agent just started (`canopy ops start &`) until it
// answers.
func waitAgent(dir string) (agent.Credentials, error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		creds, err := agent.ReadCredentials(dir)
		if err == nil {
			c, derr := net.DialTimeout("tcp", creds.Addr, time.Second)
			if derr == nil {
				c.Close()
				return creds, nil
			}
			err = fmt.Errorf("the agent of %s does not answer at %s: %w (is it running? canopy ops start --home %s)", dir, creds.Addr, derr, dir)
		}
		if time.Now().After(deadline) {
			return creds, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseInterspersed parses flags wherever they are among the positional
// arguments (node-delete ID --no-prompt), and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type opsCmd struct {
	c    *agent.Client
	json bool
	out  io.Writer
}

func (o *opsCmd) printJSON(v any) error {
	enc := json.NewEncoder(o.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// call runs an operation and prints its answer (JSON) or the message.
func (o *opsCmd) call(ctx context.Context, method, path string, in any, format string, args ...any) error {
	var out json.RawMessage
	if err := o.c.Call(ctx, method, path, in, &out); err != nil {
		return err
	}
	if o.json {
		_, err := fmt.Fprintf(o.out, "%s\n", out)
		return err
	}
	_, err := fmt.Fprintf(o.out, format+"\n", args...)
	return err
}

func (o *opsCmd) nodes(ctx context.Context, role string) ([]agent.NodeStatus, error) {
	path := "/api/nodes"
	if role != "" {
		path += "?role=" + role
	}
	var nodes []agent.NodeStatus
	return nodes, o.c.Call(ctx, "GET", path, nil, &nodes)
}

func table[T any](o *opsCmd, rows []T, head []string, cells func(T) []any) error {
	if o.json {
		if rows == nil {
			rows = []T{}
		}
		return o.printJSON(rows)
	}
	w := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(head, "\t"))
	for _, r := range rows {
		var s []string
		for _, c := range cells(r) {
			s = append(s, fmt.Sprint(c))
		}
		fmt.Fprintln(w, strings.Join(s, "\t"))
	}
	return w.Flush()
}

func opsStart(cfg agent.Config, stdout io.Writer) error {
	log, err := newLogger("info", "text")
	if err != nil {
		return err
	}
	if cfg.Exe, err = os.Executable(); err != nil {
		return err
	}
	a, err := agent.Start(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "canopy ops agent on %s://%s (home %s)\nweb interface (one-time login link; canopy ops ui-link makes more): %s\n", cfg.Security.Scheme(), a.Addr(), cfg.Home, a.UILink("/"))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("agent stopping; its nodes keep running", "signal", s.String())
		return a.Close(false)
	case <-a.Done():
		return nil
	}
}
