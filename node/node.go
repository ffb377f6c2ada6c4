// Package node is one Canopy database process: the pebble store, the SQL
// engine, the MySQL protocol server, and the HTTP endpoint for metrics and
// health. A node is a leaf until cluster commands make it an aggregator.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/vitess/go/mysql"
	"github.com/sirupsen/logrus"

	"github.com/canopydb/canopy/aggregator"
	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/internal/gmsfix"
	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/internal/privilege"
	"github.com/canopydb/canopy/replication"
	"github.com/canopydb/canopy/storage"
)

// Config of a node process.
type Config struct {
	// Bind is the address the node listens on.
	Bind string
	// Port is the MySQL protocol port.
	Port int
	// InternalPort carries node-to-node data streams (replication,
	// partition copies). Default Port+10000.
	InternalPort int
	// HTTPPort serves /metrics and /healthz. Default Port+20000.
	HTTPPort int
	// DataDir holds the node's pebble store.
	DataDir string
	// CacheMB is the storage block cache size.
	CacheMB int
	// LockWait is the default row lock wait (innodb_lock_wait_timeout).
	LockWait time.Duration
	// AdvertiseHost is the address other nodes reach this node at.
	// Default: Bind, or 127.0.0.1 when binding every interface.
	AdvertiseHost string
	// AdvertiseInternalPort is the internal port other nodes dial, when a
	// port forward or a proxy stands in front of InternalPort. Default
	// InternalPort.
	AdvertiseInternalPort int
	// MasterAggregator makes a new node the master aggregator of a new
	// cluster (a no-op once it is one).
	MasterAggregator bool
	// PauseFence is the shortest gap in this process's scheduling that a
	// leaf takes for a pause: its master partitions then take no writes
	// until the master aggregator confirms them (DESIGN.md §3, Fencing).
	// 0: DefaultPauseFence; below 0: off.
	PauseFence time.Duration
	// LogRetain is how many records of each database's log are kept,
	// more while a connected copy still needs them (0: DefaultLogRetain).
	// A copy further behind is provisioned from a snapshot.
	LogRetain int
	// TLSCert and TLSKey are the MySQL port's certificate and key (PEM
	// files). Without them the node generates a self-signed certificate
	// on first start and keeps it in DataDir/tls, as MySQL 8 does.
	TLSCert, TLSKey string
	// RequireSecureTransport refuses client connections without TLS.
	RequireSecureTransport bool
	// NodeTLS makes this node's links to other nodes TLS (internal port
	// and aggregator connections); its internal port then refuses
	// plain links.
	NodeTLS bool
	// RootPasswordFile holds root's password for a node's first start.
	RootPasswordFile string
	// PProf serves /debug/pprof on the HTTP port (off by default: it
	// reveals memory contents and costs CPU on request).
	PProf bool
	// SnapshotDir is where POST /admin/snapshot writes checkpoints of the
	// store ("": the endpoint is off).
	SnapshotDir string
	// AdminTokenFile holds the token the HTTP admin endpoints require
	// ("": they are off). The Ops agent writes it beside the node.
	AdminTokenFile string
}

// DefaultLogRetain is Config.LogRetain's default.
const DefaultLogRetain = 10000

// Defaults for ports derived from the MySQL port.
const (
	InternalPortOffset = 10000
	HTTPPortOffset     = 20000
)

// WithDefaults fills in derived settings.
func (c Config) WithDefaults() (Config, error) {
	if c.Bind == "" {
		c.Bind = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 3306
	}
	if c.InternalPort == 0 {
		c.InternalPort = c.Port + InternalPortOffset
	}
	if c.AdvertiseInternalPort == 0 {
		c.AdvertiseInternalPort = c.InternalPort
	}
	if c.LogRetain <= 0 {
		c.LogRetain = DefaultLogRetain
	}
	if c.HTTPPort == 0 {
		c.HTTPPort = c.Port + HTTPPortOffset
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--port", c.Port}, {"--internal-port", c.InternalPort}, {"--http-port", c.HTTPPort}} {
		if p.v <= 0 || p.v > 65535 {
			return c, fmt.Errorf("%s %d is not a valid port (with --port above %d, set --internal-port and --http-port explicitly)",
				p.name, p.v, 65535-HTTPPortOffset)
		}
	}
	if c.DataDir == "" {
		return c, errors.New("--data-dir is required")
	}
	if c.AdvertiseHost == "" {
		c.AdvertiseHost = c.Bind
		if ip := net.ParseIP(c.Bind); ip != nil && ip.IsUnspecified() {
			c.AdvertiseHost = "127.0.0.1"
		}
	}
	if c.CacheMB == 0 {
		c.CacheMB = 128
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together")
	}
	return c, nil
}

// Node is a running database process.
type Node struct {
	cfg      Config
	log      *slog.Logger
	store    *storage.Store
	engine   *sqle.Engine
	server   *server.Server
	gms      mysql.Handler // GMS's handler, behind ours
	http     *http.Server
	mux      *mux.Mux // the internal port
	agg      atomic.Pointer[aggregatorTier]
	self     string                 // an aggregator's address (its raft id)
	sessions sync.Map               // connection id → *storage.Session
	conns    sync.Map               // connection id → *connInfo
	prepared sync.Map               // connection id → ownPrepared (prepare.go)
	unparsed sync.Map               // connection id → statement set aside for prepare (prepare.go)
	secret   atomic.Pointer[[]byte] // the cluster secret; nil in no cluster
	dialer   mux.Dialer
	users    *users
	tls      *tls.Config // the node's certificate
	inflight sync.WaitGroup
	// retainDone is closed when the log truncation loop has stopped
	retainDone chan struct{}
	metrics    *metrics
	done       chan struct{}
	backups    backupHolds // storage snapshots a backup holds (backup.go)

	// partition replication (partitions.go)
	hub         *replication.Hub
	receiver    *replication.Receiver
	replMu      sync.Mutex
	syncTargets map[string][]string // database → its synchronous replicas
	// masterMu serializes the master aggregator record (fence.go)
	masterMu sync.Mutex
}

// Start opens the store and starts serving.
func Start(cfg Config, log *slog.Logger) (*Node, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		logrus.SetLevel(logrus.DebugLevel)
	} else {
		// GMS logs failed statements at warning and error level; the client
		// gets the error, so the log would only repeat it.
		logrus.SetLevel(logrus.FatalLevel)
	}
	store, err := storage.Open(cfg.DataDir, storage.Options{
		CacheBytes: int64(cfg.CacheMB) << 20,
		LockWait:   cfg.LockWait,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	if store.HasDatabase(aggregator.ScratchDB) {
		// rows shipped for joins that were running when the node stopped
		if err := store.DropDatabase(aggregator.ScratchDB); err != nil {
			store.Close()
			return nil, fmt.Errorf("drop %s: %w", aggregator.ScratchDB, err)
		}
	}
	n := &Node{cfg: cfg, log: log, store: store, done: make(chan struct{}), retainDone: make(chan struct{})}
	if err := n.adoptSeed(); err != nil {
		store.Close()
		return nil, err
	}
	n.metrics = newMetrics(n)
	if n.tls, err = loadTLS(cfg); err != nil {
		store.Close()
		return nil, err
	}
	m, err := n.membership()
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("read cluster membership: %w", err)
	}
	if err := n.setSecret(m.Secret); err != nil {
		store.Close()
		return nil, err
	}
	n.dialer = mux.Dialer{Secret: n.clusterSecret, TLS: cfg.NodeTLS}
	aggregator.RegisterVariables()
	setServerIdentity()
	gmsfix.InstallFunctions()
	privilege.Install()
	gmsfix.Install(analyzer.Rule{Id: aggregator.BulkLoadRuleID, Apply: aggregator.BulkLoad})
	sp := storage.NewProvider(store)
	sp.Union = meta.PartitionSetOf
	a := analyzer.NewBuilder(aggregator.NewProvider(sp, n.aggregator)).
		AddPostAnalyzeRule(gmsfix.HashKeysRuleID, gmsfix.ComparableHashKeys).
		AddPostAnalyzeRule(gmsfix.ExactSumsRuleID, gmsfix.ExactSums). // before PushAggregates, which splits its aggregates
		AddPostAnalyzeRule(gmsfix.SchemaIsDatabaseRuleID, gmsfix.SchemaIsDatabase).
		AddPostAnalyzeRule(gmsfix.BinaryStringsRuleID, gmsfix.BinaryStrings).
		// The aggregator's rewrites come after GMS's validation, which
		// must judge the client's statement as a leaf would, not the
		// rewritten plan (a partial GroupBy groups by its own columns).
		AddPostValidationRule(aggregator.PushdownRuleID, aggregator.PushFilters).
		AddPostValidationRule(aggregator.JoinRuleID, aggregator.PushJoins).
		AddPostValidationRule(aggregator.AggregateRuleID, aggregator.PushAggregates).
		AddPostValidationRule(aggregator.TopNRuleID, aggregator.PushTopN).
		AddPostValidationRule(aggregator.SortRuleID, aggregator.PushSort).
		AddPostValidationRule(aggregator.RescanRuleID, aggregator.CacheRescans).
		// last: the aggregator's rules print expressions for the leaves
		AddPostValidationRule(gmsfix.IntegerModRuleID, gmsfix.IntegerMod).Build()
	a.ExecBuilder = gmsfix.NewExecBuilder()
	a.Catalog.InfoSchema = aggregator.NewInfoSchema(a.Catalog.InfoSchema, n.aggregator)
	n.engine = sqle.New(a, &sqle.Config{})
	n.engine.ProcessList = &processList{ProcessList: n.engine.ProcessList, n: n}
	n.users = &users{n: n}
	if err := n.users.start(cfg.RootPasswordFile); err != nil {
		store.Close()
		return nil, err
	}
	if ip := net.ParseIP(cfg.Bind); (ip == nil || !ip.IsLoopback()) && n.users.rootWithoutPassword() {
		log.Warn("root has no password and this node listens beyond this machine: set one (ALTER USER root IDENTIFIED BY '…', or --root-password-file on a node's first start)", "bind", cfg.Bind)
	}

	internal := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.InternalPort))
	iln, err := net.Listen("tcp", internal)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("listen on %s (internal): %w", internal, err)
	}
	n.mux = mux.New(iln, log, mux.Auth{Secret: n.clusterSecret, TLS: n.tls, RequireTLS: cfg.NodeTLS})
	n.receiver = replication.NewReceiver(store, log)
	go n.receiver.Serve(n.mux.Listen(mux.TagReplication))
	n.hub = replication.NewHub(store, n.InternalAddr(), n.dialer, log.With("component", "partition-replication"))
	n.hub.OnDeposed(func(db string, term uint64) { store.Depose(db, term) })
	store.SetReplicaWaiter(n.waitReplicas)
	if err := n.loadReplication(); err != nil {
		n.mux.Close()
		store.Close()
		return nil, err
	}

	addr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	srvCfg := server.Config{
		Protocol: "tcp",
		Address:  addr,
		// A plain listener: GMS then skips its per-query poll for closed
		// connections (a dup, readlink and close per query; deps.md §2).
		Listener:                plainListener{ln},
		Version:                 serverVersion,
		TLSConfig:               n.tls,
		ProtocolListenerFactory: n.listenerFactory,
	}
	n.server, err = server.NewServerWithHandler(srvCfg, n.engine, storage.NewContext, n.newSession, nil,
		func(h mysql.Handler) (mysql.Handler, error) {
			n.gms = h
			return &handler{Handler: h, n: n}, nil
		})
	if err != nil {
		ln.Close()
		n.mux.Close()
		store.Close()
		return nil, fmt.Errorf("start MySQL server: %w", err)
	}
	if err := n.startRole(); err != nil {
		n.server.Close()
		n.mux.Close()
		store.Close()
		return nil, err
	}
	go func() {
		if err := n.server.Start(); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("MySQL server stopped", "err", err)
		}
	}()
	if err := n.startHTTP(); err != nil {
		n.server.Close()
		store.Close()
		return nil, err
	}
	go n.retainLogs()
	log.Info("node started", "port", cfg.Port, "http_port", cfg.HTTPPort, "internal_port", cfg.InternalPort, "data_dir", cfg.DataDir)
	return n, nil
}

// Close stops accepting connections, lets running statements finish (for
// a few seconds), and closes the store.
func (n *Node) Close() error {
	select {
	case <-n.done:
		return nil
	default:
		close(n.done)
	}
	n.server.Close()
	<-n.retainDone
	if t := n.agg.Load(); t != nil {
		n.agg.Store(nil)
		t.close()
	}
	n.hub.Close()
	n.mux.Close()
	n.releaseBackups() // their storage snapshots go before the store
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	n.http.Shutdown(shutdownCtx)
	cancel()
	waited := make(chan struct{})
	go func() { n.inflight.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		n.log.Warn("statements still running at shutdown")
	}
	err := n.store.Close()
	n.log.Info("node stopped")
	return err
}

// startRole resumes the node's cluster role, or founds a cluster with
// --master-aggregator.
func (n *Node) startRole() error {
	m, err := n.membership()
	if err != nil {
		return fmt.Errorf("read cluster membership: %w", err)
	}
	switch {
	case m.Role == "aggregator":
		return n.startAggregator(m, false, false)
	case m.Role == "" && n.cfg.MasterAggregator:
		m = membership{Role: "aggregator", ClusterID: newClusterID(), Self: net.JoinHostPort(n.cfg.AdvertiseHost, strconv.Itoa(n.cfg.Port)),
			Secret: newSecret()}
		if err := n.setMembership(&m); err != nil {
			return err
		}
		if err := n.setSecret(m.Secret); err != nil {
			return err
		}
		return n.startAggregator(m, true, false)
	case m.Role == "leaf" && n.cfg.MasterAggregator:
		return fmt.Errorf("--master-aggregator: this node is a leaf of cluster %s", m.ClusterID)
	case m.Role == "leaf":
		n.enableFencing()
	}
	return nil
}

// Config returns the node's settings.
func (n *Node) Config() Config { return n.cfg }

func (n *Node) newSession(ctx context.Context, conn *mysql.Conn, addr string) (sql.Session, error) {
	host, user := "", ""
	if u, ok := conn.UserData.(sql.MysqlConnectionUser); ok {
		host, user = u.Host, u.User
	}
	base := sql.NewBaseSessionWithClientServer(addr, sql.Client{Address: host, User: user, Capabilities: conn.Capabilities}, conn.ConnectionID)
	s := storage.NewSession(base, n.store)
	s.SetGuard(leafGuard{n: n, connID: conn.ConnectionID})
	s.SetRouted(func() bool { return n.isLinkID(conn.ConnectionID) })
	n.sessions.Store(conn.ConnectionID, s)
	return s, nil
}

func (n *Node) session(id uint32) *storage.Session {
	if v, ok := n.sessions.Load(id); ok {
		return v.(*storage.Session)
	}
	return nil
}

// plainListener hides the *net.TCPListener type from GMS (see Start).
type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}
