// Command canopy is the one binary of a Canopy cluster: database nodes
// (leaves and aggregators), the local demo cluster, and the ops agent.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/canopydb/canopy/node"
)

const usage = `canopy: a distributed, MySQL-compatible SQL database

Usage:
  canopy demo [--port P] [--data-dir D]       run a local cluster: master aggregator, 4 leaves, child aggregator
  canopy node --port P --data-dir D [flags]   run a database node (a leaf by default)
  canopy ops <command> [flags]                 Canopy Ops: agents that deploy and supervise nodes ("canopy ops help")
  canopy version                               print the version

Run "canopy <command> -h" for the flags of a command.
`

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "node":
		err = runNode(os.Args[2:])
	case "demo":
		err = runDemo(os.Args[2:], os.Stdout)
	case "ops":
		err = runOps(os.Args[2:], os.Stdout)
	case "version", "--version":
		fmt.Println("canopy", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "canopy: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "canopy:", err)
		os.Exit(1)
	}
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runNode(args []string) error {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	var cfg node.Config
	fs.StringVar(&cfg.Bind, "bind", "127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
	fs.IntVar(&cfg.Port, "port", 3306, "MySQL protocol port")
	fs.IntVar(&cfg.InternalPort, "internal-port", 0, fmt.Sprintf("port for node-to-node data streams (default --port + %d)", node.InternalPortOffset))
	fs.IntVar(&cfg.HTTPPort, "http-port", 0, fmt.Sprintf("port for /metrics and /healthz (default --port + %d)", node.HTTPPortOffset))
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the node's data (created if missing)")
	fs.IntVar(&cfg.CacheMB, "cache-mb", 128, "storage block cache in MiB")
	fs.IntVar(&cfg.AdvertiseInternalPort, "advertise-internal-port", 0, "internal port other nodes dial, if a proxy or port forward stands in front of --internal-port (default --internal-port)")
	fs.StringVar(&cfg.AdvertiseHost, "advertise-host", "", "host other nodes reach this node at (default --bind, or 127.0.0.1 for 0.0.0.0)")
	fs.IntVar(&cfg.LogRetain, "log-retain", node.DefaultLogRetain, "log records of each database kept (more while a connected copy still needs them); a copy further behind gets a snapshot")
	fs.DurationVar(&cfg.PauseFence, "pause-fence", node.DefaultPauseFence, "on a leaf, a gap this long in the process's scheduling is taken for a pause: its master partitions take no writes until the master aggregator confirms them (0: off)")
	fs.BoolVar(&cfg.MasterAggregator, "master-aggregator", false, "found a new cluster with this node as its master aggregator")
	fs.DurationVar(&cfg.LockWait, "lock-wait-timeout", 50*time.Second, "default row lock wait (innodb_lock_wait_timeout)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (PEM) of the MySQL port (default: a self-signed one made on first start in DATA-DIR/tls)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "the key (PEM) of --tls-cert")
	fs.BoolVar(&cfg.RequireSecureTransport, "require-secure-transport", false, "refuse client connections without TLS")
	fs.BoolVar(&cfg.NodeTLS, "node-tls", false, "use TLS on this node's links to other nodes, and refuse plain links on its internal port (set it on every node)")
	fs.StringVar(&cfg.RootPasswordFile, "root-password-file", "", "file holding root's password, used when the node first starts (default: root has no password)")
	fs.BoolVar(&cfg.PProf, "pprof", false, "serve /debug/pprof on the HTTP port")
	fs.StringVar(&cfg.SnapshotDir, "snapshot-dir", "", "directory where POST /admin/snapshot on the HTTP port writes checkpoints of the data (default: off)")
	fs.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "file holding the token the HTTP port's /admin endpoints require (default: they are off)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	fs.Parse(args)
	if cfg.PauseFence == 0 {
		cfg.PauseFence = -1
	}

	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	n, err := node.Start(cfg, log)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("shutting down", "signal", s.String())
	return n.Close()
}
