package aggregator_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/sharding"
)

// The nemesis test (issue 16): a seeded random schedule of faults against
// a real redundancy-2 cluster (a master aggregator, two child aggregators
// so that losing the master elects another, four leaves in two pairs,
// every leaf's MySQL and internal ports behind toxiproxy), while three
// workloads run through every aggregator on a database with synchronous
// replication:
//
//   - bank: transfers between 24 accounts in a sharded table; the total
//     must be intact at the end;
//   - register: reads, blind writes and compare-and-sets of single-row
//     registers; every key's history must be linearizable (porcupine);
//   - an insert log: every insert the client got OK for must be there at
//     the end.
//
// Faults: kill -9 (or SIGTERM) of a leaf and its restart, SIGSTOP/SIGCONT,
// a leaf's links cut (refused) or stalled (toxiproxy) from the aggregators,
// into its internal port, or both; double failures (a leaf's pair fails
// while the leaf is down, then they come back in either order); restarts
// of a child aggregator; kills of the master aggregator (another is
// elected), alone or while a leaf is down. At the end everything is
// healed; every partition must have a master again, and the properties
// above must hold.
//
// An operation the client got an error for has an unknown outcome: it
// may or may not have committed (only an error from dialing, or
// driver.ErrBadConn, says nothing was sent). Unknown inserts may be there
// or not; an unknown register write or CAS returns "at infinity" for
// porcupine (concurrent with everything after its call).
//
// Environment:
//
//	CANOPY_NEMESIS_SEED=n     replay a schedule (default: random, always logged)
//	CANOPY_NEMESIS_MINUTES=n  a long run of about n minutes of faults
//	                          (default: a short schedule of 5 episodes,
//	                          one of them a double failure)
//	CANOPY_NEMESIS_FAULTS=a,b restrict the schedule to these episode kinds
//	                          (nemKinds), leaf faults (nemLeafFaults) and
//	                          aggregator signals (nemAggSignals); a category
//	                          the list names nothing of stays whole, e.g.
//	                          "double,kill" or "leaf,master,aggkill";
//	                          "none" runs the workloads without faults
//	CANOPY_NEMESIS_SETTLE=1   wait for a healthy cluster after every episode
//	CANOPY_NEMESIS_EPISODES=n the short schedule's number of episodes
//
// A failure prints the timeline (every fault and what the cluster did, with
// times since the start), the first lost insert with where its partition's
// copies are, and the first non-linearizable key with its operations.
func TestNemesis(t *testing.T) {
	// the driver logs every broken connection: hundreds of lines here
	mysql.SetLogger(log.New(io.Discard, "", 0))
	t.Cleanup(func() { mysql.SetLogger(log.New(os.Stderr, "[mysql] ", log.Ldate|log.Ltime|log.Lshortfile)) })
	cfg := nemesisConfig(t)
	nm := startNemesisCluster(t, cfg)
	nm.logf("setup", "cluster ready in %s; seed %d; schedule:\n%s", time.Since(nm.t0).Round(time.Millisecond), cfg.seed, cfg.describeSchedule())

	nm.startMonitor()
	nm.startWorkloads()
	time.Sleep(2 * time.Second) // a baseline before the first fault

	nm.runSchedule()

	nm.healAll()
	nm.waitRecovered()
	time.Sleep(2 * time.Second) // the workloads on the healed cluster
	nm.stopWorkloads()
	nm.stopMonitor()
	nm.check()
}

// nemChoice is one of the things the schedule draws, with its weight.
type nemChoice struct {
	name   string
	weight int
}

// nemKinds are the episode kinds.
var nemKinds = []nemChoice{
	{"leaf", 6},       // one leaf fails (any leaf fault) and comes back
	{"double", 3},     // a leaf fails, then its pair; they return in either order
	{"child", 2},      // a child aggregator restarts (kill -9 or SIGTERM)
	{"master", 2},     // the master aggregator is killed, another is elected, it returns
	{"leafmaster", 1}, // a leaf fails and the master aggregator is killed while it is down
}

// nemLeafFaults are the ways a leaf fails, with weights.
var nemLeafFaults = []nemChoice{
	{"kill", 4},     // kill -9, restarted later
	{"term", 1},     // SIGTERM, restarted later
	{"pause", 3},    // SIGSTOP, SIGCONT later
	{"isolate", 1},  // its MySQL and internal ports refuse (toxiproxy cut)
	{"stall", 1},    // its MySQL and internal ports stall (toxiproxy timeout; the connections close on heal)
	{"aggcut", 1},   // the aggregators' link to it refuses; replication goes on
	{"aggstall", 1}, // the aggregators' link to it stalls
	{"replcut", 1},  // replication into it refuses; the aggregators reach it
}

// nemAggSignals are how an aggregator is stopped.
var nemAggSignals = []nemChoice{{"aggkill", 2}, {"aggterm", 1}}

// The faults of a double failure's leaves and of a leaf whose master
// aggregator is killed: the leaf must stop taking part, so no link-only
// faults.
var nemStopFaults = map[string]bool{"kill": true, "term": true, "pause": true, "isolate": true, "stall": true}

const (
	nemPartitions = 8
	nemKeys       = 32
	nemOpTimeout  = 25 * time.Second // a sync commit may wait 30 s for a dead replica; failover cuts it short
	nemFailureMs  = 2000             // leaf_failure_timeout_ms
)

type nemConfig struct {
	seed   int64
	long   time.Duration // 0: the short schedule
	settle bool
	kinds  map[string]bool // episode kinds allowed
	// leaf faults and aggregator signals allowed
	leafFaults, signals map[string]bool
	schedule            []nemEpisode // the short schedule, made up front
	rng                 *rand.Rand   // the schedule's random source (the long run draws as it goes)
}

func nemesisConfig(t *testing.T) *nemConfig {
	cfg := &nemConfig{seed: time.Now().UnixNano() % 1_000_000_000, kinds: map[string]bool{}}
	if s := os.Getenv("CANOPY_NEMESIS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("CANOPY_NEMESIS_SEED=%q: %v", s, err)
		}
		cfg.seed = v
	}
	t.Logf("CANOPY_NEMESIS_SEED=%d", cfg.seed)
	if s := os.Getenv("CANOPY_NEMESIS_MINUTES"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("CANOPY_NEMESIS_MINUTES=%q: %v", s, err)
		}
		cfg.long = time.Duration(v * float64(time.Minute))
	}
	cfg.settle = os.Getenv("CANOPY_NEMESIS_SETTLE") != ""
	// CANOPY_NEMESIS_FAULTS names episode kinds, leaf faults and aggregator
	// signals; a category it names nothing of stays whole
	cfg.kinds, cfg.leafFaults, cfg.signals = map[string]bool{}, map[string]bool{}, map[string]bool{}
	listed := map[string]bool{}
	none := false
	if s := os.Getenv("CANOPY_NEMESIS_FAULTS"); s != "" {
		for _, f := range strings.Split(s, ",") {
			f = strings.TrimSpace(f)
			listed[f] = true
			none = none || f == "none"
		}
	}
	for _, cat := range []struct {
		set     map[string]bool
		choices []nemChoice
	}{{cfg.kinds, nemKinds}, {cfg.leafFaults, nemLeafFaults}, {cfg.signals, nemAggSignals}} {
		for _, c := range cat.choices {
			if listed[c.name] {
				cat.set[c.name] = true
				delete(listed, c.name)
			}
		}
		if len(cat.set) == 0 {
			for _, c := range cat.choices {
				cat.set[c.name] = true
			}
		}
	}
	delete(listed, "none")
	for f := range listed {
		t.Fatalf("CANOPY_NEMESIS_FAULTS: unknown name %q (episodes: %v, leaf faults: %v, aggregator signals: %v)", f, nemKinds, nemLeafFaults, nemAggSignals)
	}
	if none {
		cfg.kinds = map[string]bool{}
	}
	// a double failure and a leaf under a master kill need a fault that stops the leaf
	stops := false
	for f := range cfg.leafFaults {
		stops = stops || nemStopFaults[f]
	}
	if !stops {
		delete(cfg.kinds, "double")
		delete(cfg.kinds, "leafmaster")
	}
	cfg.rng = rand.New(rand.NewSource(cfg.seed))
	if cfg.long == 0 {
		n := 5
		if s := os.Getenv("CANOPY_NEMESIS_EPISODES"); s != "" {
			n, _ = strconv.Atoi(s)
		}
		if len(cfg.kinds) == 0 {
			n = 0
		}
		for i := 0; i < n; i++ {
			cfg.schedule = append(cfg.schedule, cfg.nextEpisode(true))
		}
		// the short schedule holds at least one double failure
		hasDouble := false
		for _, e := range cfg.schedule {
			hasDouble = hasDouble || e.kind == "double"
		}
		if !hasDouble && cfg.kinds["double"] && n > 0 {
			cfg.schedule[cfg.rng.Intn(n)] = cfg.episode("double", true)
		}
	}
	return cfg
}

func (cfg *nemConfig) describeSchedule() string {
	if cfg.long > 0 {
		return fmt.Sprintf("  a long run: episodes drawn until %s have passed (%s, settle %v)", cfg.long, cfg.kindNames(), cfg.settle)
	}
	if len(cfg.schedule) == 0 {
		return "  no faults"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  (%s)\n", cfg.kindNames())
	for i, e := range cfg.schedule {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, e)
	}
	return strings.TrimRight(b.String(), "\n")
}

func (cfg *nemConfig) kindNames() string {
	var out []string
	for _, cat := range []struct {
		set     map[string]bool
		choices []nemChoice
	}{{cfg.kinds, nemKinds}, {cfg.leafFaults, nemLeafFaults}, {cfg.signals, nemAggSignals}} {
		var names []string
		for _, c := range cat.choices {
			if cat.set[c.name] {
				names = append(names, c.name)
			}
		}
		out = append(out, strings.Join(names, ","))
	}
	return fmt.Sprintf("episodes %s; leaf faults %s; aggregator signals %s", out[0], out[1], out[2])
}

// nemEpisode is one step of the schedule. Leaves are indexes into the
// cluster's leaves (pairs are 0-1 and 2-3); child picks among the
// aggregators that are not master at the time.
type nemEpisode struct {
	kind    string
	leaf    int
	fault   string
	down    time.Duration // how long the (first) fault lasts
	fault2  string        // double: the pair's fault
	gap     time.Duration // double: from the leaf seen offline to the pair's fault; leafmaster: from the leaf's fault to the master kill
	down2   time.Duration // double: how long the pair is down before the first return
	pairOut bool          // double: the pair (the second to fail) returns first
	between time.Duration // double: between the two returns
	child   int
	signal  string        // aggregator faults: kill or term
	aggDown time.Duration // aggregator faults: how long it stays down
	settle  bool          // wait for a healthy cluster afterwards
	rest    time.Duration // then rest this long
}

func (e nemEpisode) String() string {
	var s string
	switch e.kind {
	case "leaf":
		s = fmt.Sprintf("leaf %d: %s for %s", e.leaf, e.fault, e.down)
	case "double":
		first, second := "the first", "its pair"
		if e.pairOut {
			first, second = "its pair", "the first"
		}
		s = fmt.Sprintf("double failure: leaf %d %s, %s after it is offline its pair leaf %d %s; %s later %s returns, %s after that %s",
			e.leaf, e.fault, e.gap, e.leaf^1, e.fault2, e.down2, first, e.between, second)
	case "child":
		s = fmt.Sprintf("child aggregator #%d: %s, down %s", e.child, e.signal, e.aggDown)
	case "master":
		s = fmt.Sprintf("master aggregator: %s, down %s", e.signal, e.aggDown)
	case "leafmaster":
		s = fmt.Sprintf("leaf %d: %s for %s; %s after the fault the master aggregator: %s, down %s", e.leaf, e.fault, e.down, e.gap, e.signal, e.aggDown)
	}
	if e.settle {
		s += "; then wait until healthy"
	}
	return s + fmt.Sprintf("; rest %s", e.rest)
}

func weighted[T any](rng *rand.Rand, items []T, weight func(T) int, ok func(T) bool) T {
	total := 0
	for _, it := range items {
		if ok(it) {
			total += weight(it)
		}
	}
	n := rng.Intn(total)
	for _, it := range items {
		if !ok(it) {
			continue
		}
		if n -= weight(it); n < 0 {
			return it
		}
	}
	panic("unreachable")
}

func (cfg *nemConfig) nextEpisode(short bool) nemEpisode {
	return cfg.episode(cfg.pick(nemKinds, cfg.kinds, nil), short)
}

// pick draws one of the choices allowed (and in only, if not nil).
func (cfg *nemConfig) pick(choices []nemChoice, allowed, only map[string]bool) string {
	return weighted(cfg.rng, choices, func(c nemChoice) int { return c.weight }, func(c nemChoice) bool {
		return allowed[c.name] && (only == nil || only[c.name])
	}).name
}

func (cfg *nemConfig) episode(kind string, short bool) nemEpisode {
	rng := cfg.rng
	dur := func(lo, hi float64) time.Duration { // seconds
		if short {
			hi = lo + (hi-lo)/2
		}
		return time.Duration((lo + rng.Float64()*(hi-lo)) * float64(time.Second)).Round(100 * time.Millisecond)
	}
	leafFault := func(only map[string]bool) string { return cfg.pick(nemLeafFaults, cfg.leafFaults, only) }
	signal := func() string { return strings.TrimPrefix(cfg.pick(nemAggSignals, cfg.signals, nil), "agg") }
	e := nemEpisode{kind: kind, leaf: rng.Intn(4)}
	switch kind {
	case "leaf":
		e.fault = leafFault(nil)
		e.down = dur(1, 10)
	case "double":
		e.fault = leafFault(nemStopFaults)
		e.fault2 = leafFault(nemStopFaults)
		e.gap = dur(0.5, 4)
		e.down2 = dur(1, 6)
		e.pairOut = rng.Intn(2) == 0
		e.between = dur(0, 6)
	case "child":
		e.child = rng.Intn(2)
		e.signal = signal()
		e.aggDown = dur(0.5, 6)
	case "master":
		e.signal = signal()
		e.aggDown = dur(0.5, 8)
	case "leafmaster":
		e.fault = leafFault(nemStopFaults)
		e.down = dur(2, 10)
		e.gap = dur(0, 3)
		e.signal = signal()
		e.aggDown = dur(1, 6)
		if e.down < e.gap+time.Second {
			e.down = e.gap + time.Second
		}
	}
	e.settle = cfg.settle || rng.Intn(2) == 0
	e.rest = dur(0.5, 4)
	return e
}

// ---------------------------------------------------------------- cluster

type nemLeaf struct {
	idx        int
	n          *testutil.Node
	sqlp, intp *testutil.Proxy
	port       int    // the port the cluster knows it by (its MySQL proxy)
	fault      string // the nemesis fault it is under, "" when healthy
}

type nemAgg struct {
	idx   int
	n     *testutil.Node
	db    *sql.DB // the workloads' pool, database nem
	admin *sql.DB // the nemesis's pool (read timeouts)
	down  atomic.Bool
}

type nemEvent struct {
	at   time.Duration
	who  string
	what string
}

type nemesis struct {
	t      *testing.T
	cfg    *nemConfig
	t0     time.Time
	leaves []*nemLeaf
	aggs   []*nemAgg
	key    sharding.Key

	mu         sync.Mutex
	timeline   []nemEvent
	master     int            // the aggregator the monitor last saw as master (-1: none)
	lastMaster int            // the last aggregator it saw as master
	leafState  map[int]string // cluster port → SHOW LEAVES state, as the monitor last saw it
	parts      map[int]string // ordinal → master port ("" none), as the monitor last saw it
	replicas   map[int]string // ordinal → replica ports
	counts     nemCounts
	polls      int // successful polls of the monitor

	monStop, monDone chan struct{}
	wlStop           chan struct{}
	wl               sync.WaitGroup

	// workloads
	nextID  atomic.Int64
	inserts map[int64]*nemInsert
	// every transfer as its client saw it (traceBank)
	transfers []nemTransferOp
	history   []porcupine.Operation
	failures  []string
	warnings  []string       // what the properties do not cover but a person should look at
	errs      map[string]int // operation errors by kind, for the summary
}

type nemCounts struct {
	episodes, doubles, staleFirst, masterKills, childRestarts, leafFaults int
	leafOffline, failovers, handovers, toNoMaster, fromNoMaster           int
	aggElections                                                          int
	insertOK, insertUnknown, insertNotSent                                int
	transferOK, transferUnknown, transferNotSent                          int
	regReads, regReadFail, regWrites, regCAS, regCASFail                  int
	regUnknown, regNotSent, regMissing                                    int
	faultWhilePairDegraded                                                int
}

type nemInsert struct {
	id        int64
	agg       int
	call, ret time.Duration
	outcome   nemOutcome
	err       string
}

type nemOutcome int

const (
	nemOK      nemOutcome = iota
	nemNotSent            // certainly not applied: never reached the server
	nemUnknown            // may or may not have been applied
)

func (o nemOutcome) String() string { return [...]string{"ok", "not sent", "unknown"}[o] }

// nemClassify says what an error tells of an operation's outcome.
func nemClassify(err error) nemOutcome {
	if err == nil {
		return nemOK
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return nemNotSent
	}
	if errors.Is(err, driver.ErrBadConn) {
		return nemNotSent
	}
	return nemUnknown
}

// countErr counts an operation's error by kind (the caller holds mu).
func (nm *nemesis) countErr(op string, err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	if me := testutil.MySQLError(err); me != nil {
		msg = fmt.Sprintf("%d %s", me.Number, me.Message)
	}
	// numbers (partitions, ports, ids) vary: keep the words
	msg = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, msg)
	if r := []rune(msg); len(r) > 90 {
		msg = string(r[:90]) + "…"
	}
	nm.errs[op+": "+msg]++
}

func (nm *nemesis) since() time.Duration { return time.Since(nm.t0) }

func (nm *nemesis) logf(who, format string, args ...interface{}) {
	ev := nemEvent{at: nm.since(), who: who, what: fmt.Sprintf(format, args...)}
	nm.mu.Lock()
	nm.timeline = append(nm.timeline, ev)
	nm.mu.Unlock()
	if who != "monitor" {
		nm.t.Logf("[%7.2fs] %-8s %s", ev.at.Seconds(), who, ev.what)
	}
}

func (nm *nemesis) fail(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	nm.mu.Lock()
	nm.failures = append(nm.failures, msg)
	nm.mu.Unlock()
	nm.logf("FAIL", "%s", msg)
}

// warn records something wrong that is not one of the properties the
// test asserts (a partition's redundancy not restored, say).
func (nm *nemesis) warn(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	nm.mu.Lock()
	nm.warnings = append(nm.warnings, msg)
	nm.mu.Unlock()
	nm.logf("WARN", "%s", msg)
}

func nemPool(t *testing.T, n *testutil.Node, db string, readTimeout time.Duration, maxOpen int) *sql.DB {
	c, err := mysql.ParseDSN(n.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 2 * time.Second
	c.ReadTimeout, c.WriteTimeout = readTimeout, readTimeout
	d, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(maxOpen)
	d.SetMaxIdleConns(maxOpen)
	d.SetConnMaxLifetime(time.Minute)
	t.Cleanup(func() { d.Close() })
	return d
}

func startNemesisCluster(t *testing.T, cfg *nemConfig) *nemesis {
	nm := &nemesis{t: t, cfg: cfg, t0: time.Now(), master: 0, leafState: map[int]string{}, parts: map[int]string{},
		replicas: map[int]string{}, key: sharding.NewKey([]gmssql.Type{types.Int64}), inserts: map[int64]*nemInsert{}, errs: map[string]int{}}
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator"))
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "SET GLOBAL redundancy_level = 2")
	testutil.Exec(t, ma, fmt.Sprintf("SET GLOBAL leaf_failure_timeout_ms = %d", nemFailureMs))
	for i := 0; i < 4; i++ {
		l := nm.startProxiedLeaf(i)
		l.port = l.sqlp.Port
		testutil.Exec(t, ma, fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.port))
		nm.leaves = append(nm.leaves, l)
	}
	c.AddAggregator(testutil.StartNode(t))
	c.AddAggregator(testutil.StartNode(t))
	for i, n := range append([]*testutil.Node{c.MA}, c.Children...) {
		nm.aggs = append(nm.aggs, &nemAgg{idx: i, n: n, db: nemPool(t, n, "nem", nemOpTimeout+5*time.Second, 16),
			admin: nemPool(t, n, "", 5*time.Second, 4)})
	}
	want := strings.Join([]string{port(c.MA), port(c.Children[0]), port(c.Children[1])}, ",")
	eventually(t, 20*time.Second, func() string {
		if v := raftVoters(ma); v != want {
			return fmt.Sprintf("raft voters %q, want %q", v, want)
		}
		return ""
	})
	// pairs: SHOW LEAVES pairs leaves in ADD LEAF order (0-1, 2-3)
	for _, r := range testutil.Rows(t, ma, "SHOW LEAVES") {
		f := strings.Split(r, ",")
		p, _ := strconv.Atoi(f[1])
		pp, _ := strconv.Atoi(f[4])
		a, b := nm.leafByPort(p), nm.leafByPort(pp)
		if a == nil || b == nil || a.idx^1 != b.idx {
			t.Fatalf("SHOW LEAVES row %s: the nemesis expects leaves 0-1 and 2-3 paired", r)
		}
	}
	testutil.Exec(t, ma, fmt.Sprintf("CREATE DATABASE nem WITH SYNC REPLICATION PARTITIONS %d", nemPartitions))
	db := c.MA.DB("nem")
	testutil.Exec(t, db, "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	testutil.Exec(t, db, "CREATE TABLE r (k INT PRIMARY KEY, v BIGINT NOT NULL)")
	testutil.Exec(t, db, "CREATE TABLE log (id BIGINT PRIMARY KEY, agg INT NOT NULL)")
	// every transfer also writes its row here, in its transaction: a
	// wrong total is traced to the transfers whose parts disagree
	testutil.Exec(t, db, "CREATE TABLE ledger (id BIGINT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL, agg INT NOT NULL, ms BIGINT NOT NULL)")
	var rows []string
	for i := 0; i < bankAccounts; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d)", i, bankStart))
	}
	testutil.Exec(t, db, "INSERT INTO accounts VALUES "+strings.Join(rows, ","))
	rows = nil
	for k := 0; k < nemKeys; k++ {
		rows = append(rows, fmt.Sprintf("(%d, 0)", k))
	}
	testutil.Exec(t, db, "INSERT INTO r VALUES "+strings.Join(rows, ","))
	for _, a := range nm.aggs[1:] {
		c.WaitCaughtUp(a.n, 10*time.Second)
	}
	// registered last, so it runs first: the workloads and the monitor
	// end before the processes do
	t.Cleanup(func() {
		nm.stopWorkloads()
		nm.stopMonitor()
		nm.printTimeline()
		if dir := os.Getenv("CANOPY_KEEP_LOGS"); dir != "" && len(nm.warnings) > 0 && !t.Failed() {
			// testutil keeps the logs of a failed test; keep those of warnings too
			os.MkdirAll(dir, 0o755)
			for _, n := range nm.nodes() {
				os.WriteFile(fmt.Sprintf("%s/TestNemesis-%d.log", dir, n.Port), []byte(n.Log()), 0o644)
			}
		}
	})
	nm.logf("setup", "leaves (cluster port/real port): %s; aggregators: %s", nm.describeLeaves(), nm.describeAggs())
	return nm
}

// startProxiedLeaf starts a node whose MySQL and internal ports are
// behind proxies; the internal port it advertises is its proxy's, chosen
// before the node starts, so when another process takes that port in
// between, it starts another node.
func (nm *nemesis) startProxiedLeaf(i int) *nemLeaf {
	t := nm.t
	for attempt := 1; ; attempt++ {
		internalPort := testutil.FreePorts(t, 1)[0]
		n := testutil.StartNode(t, "--advertise-internal-port", strconv.Itoa(internalPort))
		intp, err := testutil.TryStartProxy(t, internalPort, fmt.Sprintf("127.0.0.1:%d", n.InternalPort))
		if err != nil {
			n.Kill()
			if attempt == 3 {
				t.Fatalf("proxy to the internal port of a leaf: %v", err)
			}
			continue
		}
		var sqlp *testutil.Proxy
		for try := 1; sqlp == nil; try++ {
			if sqlp, err = testutil.TryStartProxy(t, 0, n.Addr()); err != nil && try == 3 {
				t.Fatalf("proxy to a leaf: %v", err)
			}
		}
		return &nemLeaf{idx: i, n: n, sqlp: sqlp, intp: intp}
	}
}

func (nm *nemesis) nodes() []*testutil.Node {
	var out []*testutil.Node
	for _, a := range nm.aggs {
		out = append(out, a.n)
	}
	for _, l := range nm.leaves {
		out = append(out, l.n)
	}
	return out
}

func (nm *nemesis) describeLeaves() string {
	var out []string
	for _, l := range nm.leaves {
		out = append(out, fmt.Sprintf("leaf %d = %d/%d", l.idx, l.port, l.n.Port))
	}
	return strings.Join(out, ", ")
}

func (nm *nemesis) describeAggs() string {
	var out []string
	for _, a := range nm.aggs {
		out = append(out, fmt.Sprintf("#%d = %d", a.idx, a.n.Port))
	}
	return strings.Join(out, ", ")
}

func (nm *nemesis) leafByPort(p int) *nemLeaf {
	for _, l := range nm.leaves {
		if l.port == p {
			return l
		}
	}
	return nil
}

// leafName names a cluster port for the timeline.
func (nm *nemesis) leafName(p string) string {
	if p == "" {
		return "none"
	}
	n, _ := strconv.Atoi(p)
	if l := nm.leafByPort(n); l != nil {
		return fmt.Sprintf("L%d", l.idx)
	}
	return p
}

// ---------------------------------------------------------------- monitor

// The monitor reads SHOW LEAVES and SHOW PARTITIONS on the master
// aggregator every 250 ms and records every change in the timeline: leaf
// states, partition masters (failovers, hand-overs, partitions left
// without master) and who is master aggregator.
func (nm *nemesis) startMonitor() {
	nm.monStop, nm.monDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(nm.monDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-nm.monStop:
				return
			case <-tick.C:
			}
			nm.poll()
		}
	}()
}

func (nm *nemesis) stopMonitor() {
	if nm.monStop == nil {
		return
	}
	select {
	case <-nm.monStop:
	default:
		close(nm.monStop)
	}
	<-nm.monDone
}

// findMaster is the aggregator that says it is master, or -1.
func (nm *nemesis) findMaster() int {
	nm.mu.Lock()
	cur := nm.master
	nm.mu.Unlock()
	if cur >= 0 && !nm.aggs[cur].down.Load() && nodeRole(nm.aggs[cur].admin) == "master aggregator" {
		return cur
	}
	for _, a := range nm.aggs {
		if !a.down.Load() && nodeRole(a.admin) == "master aggregator" {
			return a.idx
		}
	}
	return -1
}

func (nm *nemesis) poll() {
	m := nm.findMaster()
	nm.mu.Lock()
	prev := nm.master
	if m != prev {
		nm.master = m
		if m >= 0 && m != nm.lastMaster {
			nm.counts.aggElections++
		}
		if m >= 0 {
			nm.lastMaster = m
		}
	}
	nm.mu.Unlock()
	if m != prev {
		nm.logf("monitor", "master aggregator: #%d → #%d", prev, m)
	}
	if m < 0 {
		return
	}
	db := nm.aggs[m].admin
	leaves, err := testutil.RenderRows(db, ",", "SHOW LEAVES")
	if err != nil {
		return
	}
	parts, err := testutil.RenderRows(db, ",", "SHOW PARTITIONS ON nem")
	if err != nil {
		return
	}
	var changes []string
	nm.mu.Lock()
	for _, r := range leaves {
		f := strings.Split(r, ",")
		p, _ := strconv.Atoi(f[1])
		if old := nm.leafState[p]; old != f[5] {
			if old != "" {
				changes = append(changes, fmt.Sprintf("%s %s→%s", nm.leafName(f[1]), old, f[5]))
			}
			if f[5] == "offline" {
				nm.counts.leafOffline++
			}
			nm.leafState[p] = f[5]
		}
	}
	masters, replicas := map[int]string{}, map[int]string{}
	for _, r := range parts {
		f := strings.Split(r, ",") // Ordinal,Host,Port,Role,Locked
		o, _ := strconv.Atoi(f[0])
		switch f[3] {
		case "Master":
			masters[o] = f[2]
		case "Slave":
			if replicas[o] != "" {
				replicas[o] += "+"
			}
			replicas[o] += f[2]
		}
	}
	first := len(nm.parts) == 0
	var moved []string
	for o := 0; o < nemPartitions; o++ {
		old, cur := nm.parts[o], masters[o]
		if !first && old != cur {
			moved = append(moved, fmt.Sprintf("%d: %s→%s", o, nm.leafName(old), nm.leafName(cur)))
			switch {
			case cur == "":
				nm.counts.toNoMaster++
			case old == "":
				nm.counts.fromNoMaster++
			case nm.leafState[atoi(old)] != "online":
				nm.counts.failovers++ // its master left
			default:
				nm.counts.handovers++ // a planned hand-over (rebalance within a pair)
			}
		}
		if !first && nm.replicas[o] != replicas[o] {
			// replica changes are frequent (attach, copies): only in the timeline
			var names []string
			for _, p := range strings.Split(replicas[o], "+") {
				names = append(names, nm.leafName(p))
			}
			moved = append(moved, fmt.Sprintf("%d replica→%s", o, strings.Join(names, "+")))
		}
		nm.parts[o] = cur
		nm.replicas[o] = replicas[o]
	}
	nm.polls++
	nm.mu.Unlock()
	if len(moved) > 0 {
		changes = append(changes, "partitions "+strings.Join(moved, ", "))
	}
	if len(changes) > 0 {
		nm.logf("monitor", "%s", strings.Join(changes, "; "))
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// nemHealth is how far the cluster has recovered, as the monitor saw it.
type nemHealth int

const (
	nemMastered  nemHealth = iota // every partition has a master
	nemAllOnline                  // … and every leaf is online
	nemRedundant                  // … and every partition has a replica
)

// waitHealthy waits until two polls of the monitor that started after
// the call see the cluster at level h; it reports what is missing.
func (nm *nemesis) waitHealthy(h nemHealth, timeout time.Duration) (bool, string) {
	nm.mu.Lock()
	from := nm.polls
	nm.mu.Unlock()
	var why string
	ok := nm.waitFor(timeout, func() bool {
		var fresh bool
		fresh, why = nm.health(h, from+2)
		return fresh && why == ""
	})
	return ok, why
}

// health says whether the monitor has polled at least minPolls times and
// what keeps the cluster from level h ("" nothing).
func (nm *nemesis) health(h nemHealth, minPolls int) (bool, string) {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	if nm.master < 0 {
		return nm.polls >= minPolls, "no master aggregator"
	}
	var why []string
	for o := 0; o < nemPartitions; o++ {
		if nm.parts[o] == "" {
			why = append(why, fmt.Sprintf("partition %d has no master", o))
		} else if h >= nemRedundant && nm.replicas[o] == "" {
			why = append(why, fmt.Sprintf("partition %d has no replica", o))
		}
	}
	if h >= nemAllOnline {
		for _, l := range nm.leaves {
			if s := nm.leafState[l.port]; s != "online" {
				why = append(why, fmt.Sprintf("L%d %s", l.idx, s))
			}
		}
	}
	return nm.polls >= minPolls, strings.Join(why, ", ")
}

// waitFor polls cond until it holds or the timeout passes; it does not
// fail the test (the caller says what it means).
func (nm *nemesis) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (nm *nemesis) leafStateOf(l *nemLeaf) string {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	return nm.leafState[l.port]
}

// ---------------------------------------------------------------- faults

func (nm *nemesis) injectLeaf(l *nemLeaf, fault string) {
	pair := nm.leaves[l.idx^1]
	if pair.fault != "" {
		nm.mu.Lock()
		nm.counts.doubles++
		nm.mu.Unlock()
	} else if s := nm.leafStateOf(pair); s != "online" {
		nm.mu.Lock()
		nm.counts.faultWhilePairDegraded++
		nm.mu.Unlock()
		nm.logf("nemesis", "(L%d's pair L%d is %s: not yet attached again)", l.idx, pair.idx, s)
	}
	nm.mu.Lock()
	nm.counts.leafFaults++
	nm.mu.Unlock()
	nm.logf("nemesis", "L%d: %s", l.idx, fault)
	l.fault = fault
	switch fault {
	case "kill":
		l.n.Kill()
	case "term":
		start := time.Now()
		l.n.Stop()
		if took := time.Since(start); took > time.Second {
			nm.logf("nemesis", "L%d took %s to exit", l.idx, took.Round(10*time.Millisecond))
		}
	case "pause":
		l.n.Pause()
	case "isolate":
		l.sqlp.Cut()
		l.intp.Cut()
	case "stall":
		nm.must(l.sqlp.Blackhole())
		nm.must(l.intp.Blackhole())
	case "aggcut":
		l.sqlp.Cut()
	case "aggstall":
		nm.must(l.sqlp.Blackhole())
	case "replcut":
		l.intp.Cut()
	default:
		nm.t.Fatalf("unknown leaf fault %q", fault)
	}
}

func (nm *nemesis) must(err error) {
	if err != nil {
		nm.t.Fatal(err)
	}
}

// restore listens again on a proxy's port; another process may hold it
// for a moment (a port freed by a cut is free for anyone).
func (nm *nemesis) restore(listen func() error) {
	var err error
	for try := 0; try < 50; try++ {
		if err = listen(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	nm.t.Fatalf("a proxy cannot listen again: %v", err)
}

func (nm *nemesis) healLeaf(l *nemLeaf) {
	if l.fault == "" {
		return
	}
	nm.logf("nemesis", "L%d: heal %s", l.idx, l.fault)
	switch l.fault {
	case "kill", "term":
		if err := l.n.TryStart(); err != nil {
			nm.fail("L%d does not start again: %v", l.idx, err)
		}
	case "pause":
		l.n.Resume()
	case "isolate":
		nm.restore(l.sqlp.Restore)
		nm.restore(l.intp.Restore)
	case "stall":
		// the blackhole dropped what it held: those connections end
		nm.restore(l.sqlp.HealClosing)
		nm.restore(l.intp.HealClosing)
	case "aggcut":
		nm.restore(l.sqlp.Restore)
	case "aggstall":
		nm.restore(l.sqlp.HealClosing)
	case "replcut":
		nm.restore(l.intp.Restore)
	}
	l.fault = ""
}

func (nm *nemesis) stopAgg(a *nemAgg, signal string) {
	nm.logf("nemesis", "aggregator #%d (port %d): %s", a.idx, a.n.Port, signal)
	a.down.Store(true)
	start := time.Now()
	if signal == "term" {
		a.n.Stop()
	} else {
		a.n.Kill()
	}
	if took := time.Since(start); took > time.Second {
		nm.logf("nemesis", "aggregator #%d took %s to exit", a.idx, took.Round(10*time.Millisecond))
	}
}

func (nm *nemesis) startAgg(a *nemAgg) {
	if !a.down.Load() {
		return
	}
	nm.logf("nemesis", "aggregator #%d: start", a.idx)
	if err := a.n.TryStart(); err != nil {
		nm.fail("aggregator #%d does not start again: %v", a.idx, err)
		return
	}
	a.down.Store(false)
	// it answers; wait (bounded) until it knows its role in the cluster
	if !nm.waitFor(30*time.Second, func() bool {
		r := nodeRole(a.admin)
		return r == "aggregator" || r == "master aggregator"
	}) {
		nm.logf("nemesis", "aggregator #%d has no aggregator role 30 s after its start", a.idx)
	}
}

// waitMaster waits until some aggregator is master; false after the
// timeout.
func (nm *nemesis) waitMaster(timeout time.Duration) int {
	m := -1
	nm.waitFor(timeout, func() bool {
		m = nm.findMaster()
		return m >= 0
	})
	return m
}

// waitOffline waits until the master aggregator reports the leaf other
// than online (it saw the fault), bounded.
func (nm *nemesis) waitNotOnline(l *nemLeaf, timeout time.Duration) {
	start := time.Now()
	if nm.waitFor(timeout, func() bool { return nm.leafStateOf(l) != "online" }) {
		nm.logf("nemesis", "L%d seen %s after %s", l.idx, nm.leafStateOf(l), time.Since(start).Round(10*time.Millisecond))
	} else {
		nm.logf("nemesis", "L%d still online %s after its fault", l.idx, timeout)
	}
}

func (nm *nemesis) runSchedule() {
	cfg := nm.cfg
	if cfg.long > 0 {
		end := time.Now().Add(cfg.long)
		for i := 1; time.Now().Before(end); i++ {
			nm.runEpisode(i, cfg.nextEpisode(false))
		}
		return
	}
	for i, e := range cfg.schedule {
		nm.runEpisode(i+1, e)
	}
}

func (nm *nemesis) runEpisode(i int, e nemEpisode) {
	nm.mu.Lock()
	nm.counts.episodes++
	nm.mu.Unlock()
	nm.logf("nemesis", "episode %d: %s", i, e)
	switch e.kind {
	case "leaf":
		l := nm.leaves[e.leaf]
		nm.injectLeaf(l, e.fault)
		time.Sleep(e.down)
		nm.healLeaf(l)
	case "double":
		a, b := nm.leaves[e.leaf], nm.leaves[e.leaf^1]
		nm.injectLeaf(a, e.fault)
		// the pair takes over and acknowledges writes alone
		nm.waitNotOnline(a, 15*time.Second)
		time.Sleep(e.gap)
		nm.injectLeaf(b, e.fault2)
		time.Sleep(e.down2)
		first, second := a, b
		if e.pairOut {
			first, second = b, a
		} else {
			nm.mu.Lock()
			nm.counts.staleFirst++ // the copy that failed first, without the pair's last writes, returns first
			nm.mu.Unlock()
		}
		nm.healLeaf(first)
		time.Sleep(e.between)
		nm.healLeaf(second)
	case "child", "master", "leafmaster":
		if m := nm.waitMaster(20 * time.Second); m < 0 {
			nm.logf("nemesis", "no master aggregator: episode skipped")
			break
		}
		var l *nemLeaf
		leafAt := time.Now()
		if e.kind == "leafmaster" {
			l = nm.leaves[e.leaf]
			nm.injectLeaf(l, e.fault)
			time.Sleep(e.gap)
		}
		m := nm.findMaster()
		var victim *nemAgg
		switch {
		case e.kind == "child":
			var children []*nemAgg
			for _, a := range nm.aggs {
				if a.idx != m {
					children = append(children, a)
				}
			}
			victim = children[e.child%len(children)]
			nm.mu.Lock()
			nm.counts.childRestarts++
			nm.mu.Unlock()
		case m >= 0:
			victim = nm.aggs[m]
			nm.mu.Lock()
			nm.counts.masterKills++
			nm.mu.Unlock()
		default:
			nm.logf("nemesis", "no master aggregator to kill")
		}
		aggAt := time.Now()
		if victim != nil {
			nm.stopAgg(victim, e.signal)
			if e.kind != "child" {
				if nm.waitMaster(20*time.Second) >= 0 {
					nm.logf("nemesis", "a new master aggregator after %s", time.Since(aggAt).Round(10*time.Millisecond))
				} else {
					nm.logf("nemesis", "no new master aggregator 20 s after the kill")
				}
			}
		}
		// the aggregator's return and the leaf's heal, in time order
		steps := []struct {
			at time.Time
			do func()
		}{{aggAt.Add(e.aggDown), func() {
			if victim != nil {
				nm.startAgg(victim)
			}
		}}}
		if l != nil {
			steps = append(steps, struct {
				at time.Time
				do func()
			}{leafAt.Add(e.down), func() { nm.healLeaf(l) }})
			sort.Slice(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
		}
		for _, st := range steps {
			time.Sleep(time.Until(st.at))
			st.do()
		}
	}
	if e.settle {
		start := time.Now()
		ok, why := nm.waitHealthy(nemRedundant, nm.patience(60*time.Second))
		if ok {
			nm.logf("nemesis", "healthy after %s", time.Since(start).Round(10*time.Millisecond))
		} else {
			nm.warn("not healthy %s after episode %d: %s", nm.patience(60*time.Second), i, why)
		}
	}
	time.Sleep(e.rest)
}

// healAll ends every fault left (none, unless the schedule stopped half-way).
func (nm *nemesis) healAll() {
	for _, l := range nm.leaves {
		nm.healLeaf(l)
	}
	for _, a := range nm.aggs {
		nm.startAgg(a)
	}
}

// patience is how long to wait for the cluster to recover: d in a long
// run, a third of it in the short one (CI), where a cluster that is stuck
// stays stuck anyway.
func (nm *nemesis) patience(d time.Duration) time.Duration {
	if nm.cfg.long > 0 {
		return d
	}
	return d / 3
}

// waitRecovered waits until every partition has a master: the cluster
// must get there by itself once every copy is back. A leaf that does not
// come back online, or a partition left without replica, is a warning.
func (nm *nemesis) waitRecovered() {
	start := time.Now()
	ok, why := nm.waitHealthy(nemMastered, nm.patience(90*time.Second))
	if !ok {
		nm.fail("partitions without master %s after every fault healed: %s", nm.patience(90*time.Second), why)
		nm.dumpCluster()
		return
	}
	nm.logf("check", "every partition has a master %s after healing", time.Since(start).Round(10*time.Millisecond))
	if ok, why = nm.waitHealthy(nemAllOnline, nm.patience(30*time.Second)); !ok {
		nm.warn("leaves not online %s later: %s", nm.patience(30*time.Second), why)
		nm.dumpCluster()
	} else if ok, why = nm.waitHealthy(nemRedundant, nm.patience(30*time.Second)); !ok {
		nm.warn("redundancy not restored %s later: %s", nm.patience(30*time.Second), why)
		nm.dumpCluster()
	} else {
		nm.logf("check", "every leaf online and every partition with a replica %s after healing", time.Since(start).Round(10*time.Millisecond))
	}
}

// dumpCluster logs the master aggregator's view of the cluster.
func (nm *nemesis) dumpCluster() {
	m := nm.findMaster()
	if m < 0 {
		nm.logf("check", "no master aggregator")
		return
	}
	db := nm.aggs[m].admin
	for _, q := range []string{"SHOW LEAVES", "SHOW PARTITIONS ON nem", "SHOW CLUSTER STATUS", "SHOW REBALANCE STATUS ON nem"} {
		rows, err := testutil.RenderRows(db, ",", q)
		nm.logf("check", "%s on #%d (err %v):\n    %s", q, m, err, strings.Join(rows, "\n    "))
	}
}

// ---------------------------------------------------------------- workloads

func (nm *nemesis) stopped() bool {
	select {
	case <-nm.wlStop:
		return true
	default:
		return false
	}
}

func (nm *nemesis) startWorkloads() {
	nm.wlStop = make(chan struct{})
	for w := 0; w < 3; w++ {
		nm.wl.Add(2)
		go nm.insertWorker(w)
		go nm.bankWorker(w)
	}
	for c := 0; c < 6; c++ {
		nm.wl.Add(1)
		go nm.registerClient(c)
	}
}

func (nm *nemesis) stopWorkloads() {
	if nm.wlStop == nil {
		return
	}
	select {
	case <-nm.wlStop:
	default:
		close(nm.wlStop)
	}
	nm.wl.Wait()
}

// backoff after a failed operation, so that an outage does not pile up
// operations of unknown outcome (porcupine's search grows with them).
func (nm *nemesis) backoff(fails int) {
	if fails == 0 {
		return
	}
	d := time.Duration(50<<min(fails, 5)) * time.Millisecond // 100 ms … 1.6 s
	select {
	case <-nm.wlStop:
	case <-time.After(d):
	}
}

func (nm *nemesis) pickAgg(rng *rand.Rand) *nemAgg { return nm.aggs[rng.Intn(len(nm.aggs))] }

func (nm *nemesis) insertWorker(w int) {
	defer nm.wl.Done()
	rng := rand.New(rand.NewSource(nm.cfg.seed*1000 + 100 + int64(w)))
	fails := 0
	for !nm.stopped() {
		a := nm.pickAgg(rng)
		id := nm.nextID.Add(1)
		ins := &nemInsert{id: id, agg: a.idx, call: nm.since()}
		ctx, cancel := context.WithTimeout(context.Background(), nemOpTimeout)
		_, err := a.db.ExecContext(ctx, "INSERT INTO log VALUES (?, ?)", id, a.idx)
		cancel()
		ins.ret, ins.outcome = nm.since(), nemClassify(err)
		if err != nil {
			ins.err = err.Error()
		}
		nm.mu.Lock()
		nm.countErr("insert", err)
		nm.inserts[id] = ins
		switch ins.outcome {
		case nemOK:
			nm.counts.insertOK++
		case nemNotSent:
			nm.counts.insertNotSent++
		default:
			nm.counts.insertUnknown++
		}
		nm.mu.Unlock()
		if err != nil {
			fails++
		} else {
			fails = 0
		}
		nm.backoff(fails)
	}
}

// nemTransferOp is a transfer as its client saw it.
type nemTransferOp struct {
	id               int64
	from, to, amount int
	agg              int
	call, ret        time.Duration
	outcome          nemOutcome
	err              string
}

// nemTransfer moves amount between two accounts in one transaction,
// which also writes the transfer's row to the ledger (id > 0).
func nemTransfer(ctx context.Context, db *sql.DB, from, to, amount int, id int64, agg int, ms int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if id > 0 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?)", id, from, to, amount, agg, ms); err != nil {
			tx.Rollback()
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, from); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, to); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (nm *nemesis) bankWorker(w int) {
	defer nm.wl.Done()
	rng := rand.New(rand.NewSource(nm.cfg.seed*1000 + 200 + int64(w)))
	fails := 0
	for !nm.stopped() {
		from, to := rng.Intn(bankAccounts), rng.Intn(bankAccounts)
		if from == to {
			continue
		}
		a := nm.pickAgg(rng)
		ctx, cancel := context.WithTimeout(context.Background(), nemOpTimeout)
		op := nemTransferOp{id: nm.nextID.Add(1), from: from, to: to, amount: 1 + rng.Intn(50), agg: a.idx, call: nm.since()}
		err := nemTransfer(ctx, a.db, op.from, op.to, op.amount, op.id, op.agg, op.call.Milliseconds())
		cancel()
		op.ret = nm.since()
		nm.mu.Lock()
		nm.countErr("transfer", err)
		op.outcome = nemClassify(err)
		if err != nil {
			op.err = err.Error()
		}
		nm.transfers = append(nm.transfers, op)
		switch nemClassify(err) {
		case nemOK:
			nm.counts.transferOK++
		case nemNotSent:
			nm.counts.transferNotSent++
		default:
			nm.counts.transferUnknown++
		}
		nm.mu.Unlock()
		if err != nil {
			fails++
		} else {
			fails = 0
		}
		nm.backoff(fails)
	}
}

// The register model: reads, blind writes and compare-and-sets of one
// key (the model partitions the history by key).

type nemRegKind int

const (
	nemRead nemRegKind = iota
	nemWrite
	nemCAS
)

type nemRegIn struct {
	kind     nemRegKind
	key      int
	value    int64 // write, CAS: the new value
	old      int64 // CAS: the expected value
	agg      int
	clientOp int64
}

type nemRegOut struct {
	value   int64 // read
	ok      bool  // CAS: swapped
	unknown bool  // write, CAS: the outcome is unknown (returns at infinity)
	missing bool  // read, write: acknowledged, but the row was not there
}

var nemRegisterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(nemRegIn).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() interface{} { return int64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in, out := state.(int64), input.(nemRegIn), output.(nemRegOut)
		switch in.kind {
		case nemRead:
			return !out.missing && out.value == s, s
		case nemWrite:
			return !out.missing, in.value // the row is never deleted: a write that found none is wrong
		default: // CAS
			if out.unknown {
				// linearized where the register holds old it swaps; an
				// unknown CAS that never happened is linearized last
				if s == in.old {
					return true, in.value
				}
				return true, s
			}
			if out.ok {
				return s == in.old, in.value
			}
			return s != in.old, s
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(nemRegIn), output.(nemRegOut)
		var s string
		switch in.kind {
		case nemRead:
			s = fmt.Sprintf("read(%d) → %s", in.key, nemVal(out.value))
			if out.missing {
				s = fmt.Sprintf("read(%d) → no row", in.key)
			}
		case nemWrite:
			s = fmt.Sprintf("write(%d, %s)", in.key, nemVal(in.value))
			if out.missing {
				s += " → no row"
			}
		default:
			s = fmt.Sprintf("cas(%d, %s → %s) → %v", in.key, nemVal(in.old), nemVal(in.value), out.ok)
		}
		if out.unknown {
			s += " ?"
		}
		return fmt.Sprintf("%s via #%d", s, in.agg)
	},
}

// nemVal shows a register value as client.sequence.
func nemVal(v int64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("c%d.%d", v>>32, v&0xffffffff)
}

func (nm *nemesis) registerClient(c int) {
	defer nm.wl.Done()
	rng := rand.New(rand.NewSource(nm.cfg.seed*1000 + 300 + int64(c)))
	last := map[int]int64{} // the last value this client saw per key
	fails := 0
	for seq := int64(1); !nm.stopped(); seq++ {
		a := nm.pickAgg(rng)
		in := nemRegIn{key: rng.Intn(nemKeys), agg: a.idx, clientOp: seq}
		switch r := rng.Intn(10); {
		case r < 4:
			in.kind = nemRead
		case r < 7:
			in.kind = nemWrite
		default:
			in.kind = nemCAS
			in.old = last[in.key]
		}
		if in.kind != nemRead {
			in.value = int64(c+1)<<32 | seq
		}
		op := porcupine.Operation{ClientId: c, Input: in, Call: int64(nm.since())}
		ctx, cancel := context.WithTimeout(context.Background(), nemOpTimeout)
		var err error
		var out nemRegOut
		switch in.kind {
		case nemRead:
			err = a.db.QueryRowContext(ctx, "SELECT v FROM r WHERE k = ?", in.key).Scan(&out.value)
			if errors.Is(err, sql.ErrNoRows) {
				err, out.missing = nil, true
			}
		case nemWrite:
			var res sql.Result
			res, err = a.db.ExecContext(ctx, "UPDATE r SET v = ? WHERE k = ?", in.value, in.key)
			if err == nil {
				var n int64
				n, err = res.RowsAffected()
				out.missing = n == 0 // every value is new: a write changes the row it finds
			}
		case nemCAS:
			var res sql.Result
			res, err = a.db.ExecContext(ctx, "UPDATE r SET v = ? WHERE k = ? AND v = ?", in.value, in.key, in.old)
			if err == nil {
				var n int64
				n, err = res.RowsAffected()
				out.ok = n == 1
			}
		}
		cancel()
		op.Return = int64(nm.since())
		outcome := nemClassify(err)
		nm.mu.Lock()
		nm.countErr([...]string{"read", "write", "cas"}[in.kind], err)
		switch {
		case in.kind == nemRead && err != nil:
			nm.counts.regReadFail++
		case outcome == nemNotSent:
			nm.counts.regNotSent++
		case outcome == nemUnknown:
			nm.counts.regUnknown++
			out.unknown = true
			op.Return = math.MaxInt64
		case in.kind == nemRead:
			nm.counts.regReads++
		case in.kind == nemWrite:
			nm.counts.regWrites++
		case out.ok:
			nm.counts.regCAS++
		default:
			nm.counts.regCASFail++
		}
		if out.missing {
			nm.counts.regMissing++
		}
		// a failed read and an operation that was never sent constrain nothing
		if err == nil || outcome == nemUnknown && in.kind != nemRead {
			op.Output = out
			nm.history = append(nm.history, op)
		}
		nm.mu.Unlock()
		if err == nil {
			switch {
			case in.kind == nemRead && !out.missing:
				last[in.key] = out.value
			case in.kind == nemWrite || out.ok:
				last[in.key] = in.value
			}
			fails = 0
		} else {
			fails++
		}
		nm.backoff(fails)
	}
}

// ---------------------------------------------------------------- checks

// masterDB is the master aggregator's pool for database nem (waits for one).
func (nm *nemesis) masterDB() *sql.DB {
	m := nm.waitMaster(30 * time.Second)
	if m < 0 {
		nm.t.Fatalf("no master aggregator for the final checks")
	}
	return nm.aggs[m].db
}

func (nm *nemesis) query(db *sql.DB, q string) []string {
	var rows []string
	var err error
	if !nm.waitFor(30*time.Second, func() bool {
		rows, err = testutil.RenderRows(db, ",", q)
		return err == nil
	}) {
		nm.fail("%s fails for 30 s: %v", q, err)
		return nil
	}
	return rows
}

func (nm *nemesis) check() {
	t := nm.t
	db := nm.masterDB()
	nm.checkInserts(db)
	nm.checkBank(db)
	nm.checkRegisters(db)
	nm.checkInDoubt()
	c := nm.counts
	t.Logf("seed %d, %s: %d episodes: %d leaf faults, %d double failures (%d with the first to fail back first), %d faults while the pair was not yet attached again, %d master aggregator kills (%d elections seen), %d child aggregator restarts",
		nm.cfg.seed, nm.since().Round(time.Second), c.episodes, c.leafFaults, c.doubles, c.staleFirst, c.faultWhilePairDegraded, c.masterKills, c.aggElections, c.childRestarts)
	t.Logf("cluster: %d leaf offline events, %d failovers (a partition's master moved off a leaf not online), %d hand-overs, %d times a partition was left without master, %d masters named again",
		c.leafOffline, c.failovers, c.handovers, c.toNoMaster, c.fromNoMaster)
	t.Logf("inserts: %d acknowledged, %d unknown, %d not sent; transfers: %d acknowledged, %d unknown, %d not sent",
		c.insertOK, c.insertUnknown, c.insertNotSent, c.transferOK, c.transferUnknown, c.transferNotSent)
	t.Logf("registers: %d reads (%d failed), %d writes, %d CAS swapped, %d CAS refused, %d unknown, %d not sent; %d acknowledged reads or writes found no row",
		c.regReads, c.regReadFail, c.regWrites, c.regCAS, c.regCASFail, c.regUnknown, c.regNotSent, c.regMissing)
	type kv struct {
		k string
		n int
	}
	var errs []kv
	for k, n := range nm.errs {
		errs = append(errs, kv{k, n})
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].n > errs[j].n || errs[i].n == errs[j].n && errs[i].k < errs[j].k })
	var lines []string
	for _, e := range errs[:min(len(errs), 12)] {
		lines = append(lines, fmt.Sprintf("%6d %s", e.n, e.k))
	}
	if len(lines) > 0 {
		t.Logf("most frequent errors:\n  %s", strings.Join(lines, "\n  "))
	}
	if len(nm.warnings) > 0 {
		t.Logf("warnings (not failures):\n  %s", strings.Join(nm.warnings, "\n  "))
	}
	if len(nm.failures) > 0 {
		t.Errorf("seed %d (replay: CANOPY_NEMESIS_SEED=%d%s): %d properties failed:\n  %s",
			nm.cfg.seed, nm.cfg.seed, nm.replayEnv(), len(nm.failures), strings.Join(nm.failures, "\n  "))
	}
	if c.insertOK < 100 || c.transferOK < 20 || c.regReads+c.regWrites < 100 {
		t.Errorf("the workloads hardly ran: %+v", c)
	}
}

func (nm *nemesis) replayEnv() string {
	var s string
	for _, k := range []string{"CANOPY_NEMESIS_MINUTES", "CANOPY_NEMESIS_FAULTS", "CANOPY_NEMESIS_SETTLE", "CANOPY_NEMESIS_EPISODES"} {
		if v := os.Getenv(k); v != "" {
			s += fmt.Sprintf(" %s=%s", k, v)
		}
	}
	return s
}

func (nm *nemesis) checkInserts(db *sql.DB) {
	present := map[int64]bool{}
	for _, r := range nm.query(db, "SELECT id FROM log") {
		id, _ := strconv.ParseInt(r, 10, 64)
		present[id] = true
	}
	var lost []*nemInsert
	unknownThere, unknownGone, phantoms := 0, 0, 0
	for id := range present {
		if ins := nm.inserts[id]; ins == nil || ins.outcome == nemNotSent {
			phantoms++
		}
	}
	for _, ins := range nm.inserts {
		switch {
		case ins.outcome == nemOK && !present[ins.id]:
			lost = append(lost, ins)
		case ins.outcome == nemUnknown && present[ins.id]:
			unknownThere++
		case ins.outcome == nemUnknown:
			unknownGone++
		}
	}
	nm.logf("check", "insert log: %d rows; of the inserts of unknown outcome %d are there, %d not", len(present), unknownThere, unknownGone)
	if phantoms > 0 {
		nm.fail("insert log: %d rows no acknowledged or unknown insert wrote", phantoms)
	}
	if len(lost) == 0 {
		nm.logf("check", "insert log: every acknowledged insert is there")
		return
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].ret < lost[j].ret })
	perPart := map[int]int{}
	for _, ins := range lost {
		p, _ := nm.key.Partition([]interface{}{ins.id}, nemPartitions)
		perPart[p]++
	}
	// bursts of losses (acknowledged within a second of each other) tell
	// the faults apart: which aggregators acknowledged them, on which
	// partitions
	type burst struct {
		from, to time.Duration
		n        int
		aggs     map[int]int
		parts    map[int]int
	}
	var bursts []*burst
	for _, ins := range lost {
		if len(bursts) == 0 || ins.ret-bursts[len(bursts)-1].to > time.Second {
			bursts = append(bursts, &burst{from: ins.ret, aggs: map[int]int{}, parts: map[int]int{}})
		}
		b := bursts[len(bursts)-1]
		b.to = ins.ret
		b.n++
		b.aggs[ins.agg]++
		p, _ := nm.key.Partition([]interface{}{ins.id}, nemPartitions)
		b.parts[p]++
	}
	for _, b := range bursts {
		nm.logf("check", "  lost: %d inserts acknowledged in %.2fs–%.2fs, through aggregators (#: count) %v, on partitions %v", b.n, b.from.Seconds(), b.to.Seconds(), b.aggs, b.parts)
	}
	f := lost[0]
	p, _ := nm.key.Partition([]interface{}{f.id}, nemPartitions)
	nm.fail("insert log: %d acknowledged inserts lost (per partition %v) in %d bursts (listed above); the first acknowledged at %.2fs: id %d (partition %d) through aggregator #%d, called at %.2fs; the last lost acknowledged at %.2fs",
		len(lost), perPart, len(bursts), f.ret.Seconds(), f.id, p, f.agg, f.call.Seconds(), lost[len(lost)-1].ret.Seconds())
	// where the copies of that partition are and what they hold
	for _, l := range nm.leaves {
		if !l.n.Running() {
			continue
		}
		var w sql.NullInt64
		err := l.n.DB("").QueryRow(fmt.Sprintf("SELECT agg FROM nem_%d.log WHERE id = %d", p, f.id)).Scan(&w)
		roles, _ := testutil.RenderRows(l.n.DB(""), " ", "SHOW DATABASES EXTENDED")
		var mine []string
		for _, r := range roles {
			if strings.HasPrefix(r, fmt.Sprintf("nem_%d ", p)) {
				mine = append(mine, r)
			}
		}
		nm.logf("check", "  L%d: row %v (err %v); its copy: %q", l.idx, w, err, mine)
	}
}

func (nm *nemesis) checkBank(db *sql.DB) {
	want := bankAccounts * bankStart
	var got int
	wait := nm.patience(45 * time.Second)
	if !nm.waitFor(wait, func() bool {
		rows, err := testutil.RenderRows(db, ",", "SELECT SUM(balance) FROM accounts")
		if err != nil || len(rows) != 1 {
			return false
		}
		got, _ = strconv.Atoi(rows[0])
		return got == want // in-doubt parts may take a moment to resolve
	}) {
		rows, _ := testutil.RenderRows(db, ",", "SELECT id, balance FROM accounts ORDER BY id")
		nm.fail("bank: total %d, want %d (%s after the workloads stopped); balances %v", got, want, wait, rows)
		nm.traceBank(db)
		return
	}
	nm.logf("check", "bank: total intact (%d)", want)
	// every acknowledged transfer left its ledger row
	ids := map[int64]bool{}
	for _, r := range nm.query(db, "SELECT id FROM ledger") {
		id, _ := strconv.ParseInt(r, 10, 64)
		ids[id] = true
	}
	var lost []string
	nm.mu.Lock()
	for _, op := range nm.transfers {
		if op.outcome == nemOK && !ids[op.id] {
			lost = append(lost, fmt.Sprintf("transfer %d (%d → %d, %d, via #%d, %.3fs – %.3fs)", op.id, op.from, op.to, op.amount, op.agg, op.call.Seconds(), op.ret.Seconds()))
		}
	}
	nm.mu.Unlock()
	if len(lost) > 0 {
		nm.fail("bank: %d acknowledged transfers have no ledger row: %s", len(lost), strings.Join(lost[:min(len(lost), 20)], "; "))
		return
	}
	nm.logf("check", "bank: every acknowledged transfer has its ledger row")
}

// checkInDoubt: once the faults are healed, every in-doubt transaction
// is resolved (a part left in doubt holds its locks, and its transaction
// is neither committed nor rolled back everywhere).
func (nm *nemesis) checkInDoubt() {
	dbs := make([]*sql.DB, len(nm.leaves))
	for i, l := range nm.leaves {
		dbs[i] = l.n.DB("")
	}
	var left []string
	if !nm.waitFor(nm.patience(30*time.Second), func() bool {
		left = nil
		for i, l := range nm.leaves {
			rows, err := testutil.RenderRows(dbs[i], ",", "CANOPY PREPARED TRANSACTIONS")
			if err != nil {
				left = append(left, fmt.Sprintf("leaf %d: %v", l.idx, err))
				continue
			}
			for _, r := range rows {
				left = append(left, fmt.Sprintf("leaf %d: %s", l.idx, r))
			}
		}
		return len(left) == 0
	}) {
		nm.fail("transactions still in doubt after the faults were healed:\n    %s", strings.Join(left, "\n    "))
		return
	}
	nm.logf("check", "in doubt: none left")
}

// traceBank compares each account's balance with the one its ledger rows
// give: an account that differs took part in a transfer that committed
// in part. The transfers of those accounts whose outcome the client did
// not learn are listed with their times (the timeline says what the
// nemesis did then).
func (nm *nemesis) traceBank(db *sql.DB) {
	rows, err := testutil.RenderRows(db, ",", "SELECT id, balance FROM accounts ORDER BY id")
	if err != nil {
		nm.logf("check", "bank trace: %v", err)
		return
	}
	balance := map[int]int{}
	for _, r := range rows {
		f := strings.Split(r, ",")
		balance[atoi(f[0])] = atoi(f[1])
	}
	ledger, err := testutil.RenderRows(db, ",", "SELECT id, src, dst, amount, agg, ms FROM ledger ORDER BY id")
	if err != nil {
		nm.logf("check", "bank trace: %v", err)
		return
	}
	want := map[int]int{}
	for a := 0; a < bankAccounts; a++ {
		want[a] = bankStart
	}
	byAccount := map[int][]string{}
	for _, r := range ledger {
		f := strings.Split(r, ",")
		src, dst, amount := atoi(f[1]), atoi(f[2]), atoi(f[3])
		want[src] -= amount
		want[dst] += amount
		byAccount[src] = append(byAccount[src], r)
		byAccount[dst] = append(byAccount[dst], r)
	}
	inLedger := map[int64]bool{}
	for _, r := range ledger {
		inLedger[int64(atoi(strings.Split(r, ",")[0]))] = true
	}
	nm.logf("check", "bank trace: %d ledger rows", len(ledger))
	for a := 0; a < bankAccounts; a++ {
		off := balance[a] - want[a]
		if off == 0 {
			continue
		}
		nm.logf("check", "  account %d: balance %d, its ledger rows give %d (off by %d)", a, balance[a], want[a], off)
		// the transfers that would explain it: this account's side
		// applied and the rest not (or the reverse), whatever their
		// client heard
		// (logf takes nm.mu: collect first)
		var lines []string
		nm.mu.Lock()
		for _, op := range nm.transfers {
			if op.amount != max(off, -off) || (op.from != a && op.to != a) {
				continue
			}
			lines = append(lines, fmt.Sprintf("    transfer %d: %d → %d, %d, via #%d, %.3fs – %.3fs, ledger row %v; client: %s %s",
				op.id, op.from, op.to, op.amount, op.agg, op.call.Seconds(), op.ret.Seconds(), inLedger[op.id], op.outcome, op.err))
		}
		nm.mu.Unlock()
		for _, l := range lines {
			nm.logf("check", "%s", l)
		}
		for _, r := range byAccount[a] {
			if f := strings.Split(r, ","); atoi(f[3]) == max(off, -off) {
				nm.logf("check", "    ledger row (id,src,dst,amount,agg,ms) %s", r)
			}
		}
	}
}

func (nm *nemesis) checkRegisters(db *sql.DB) {
	// a final read of every key through the master aggregator pins the
	// outcome of the writes whose outcome the clients did not learn
	history := append([]porcupine.Operation(nil), nm.history...)
	for k := 0; k < nemKeys; k++ {
		call := int64(nm.since())
		rows := nm.query(db, fmt.Sprintf("SELECT v FROM r WHERE k = %d", k))
		if len(rows) != 1 {
			nm.fail("register %d: final read returned %q", k, rows)
			continue
		}
		v, _ := strconv.ParseInt(rows[0], 10, 64)
		history = append(history, porcupine.Operation{ClientId: 99, Input: nemRegIn{kind: nemRead, key: k, agg: -1},
			Output: nemRegOut{value: v}, Call: call, Return: int64(nm.since())})
	}
	history, pruned := nemPruneUnobserved(history)
	byKey := map[int][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(nemRegIn).key
		byKey[k] = append(byKey[k], op)
	}
	prunedByKey := map[int][]porcupine.Operation{}
	for _, op := range pruned {
		k := op.Input.(nemRegIn).key
		prunedByKey[k] = append(prunedByKey[k], op)
	}
	if len(pruned) > 0 {
		nm.logf("check", "registers: %d writes of unknown outcome whose value nobody read left out (put back where a key fails)", len(pruned))
	}
	// bounded: a key whose check times out is reported as unproven
	perKey, budget := 5*time.Second, 30*time.Second
	if nm.cfg.long > 0 {
		perKey, budget = 2*time.Minute, 20*time.Minute
	}
	start := time.Now()
	var bad, unknown []int
	for k := 0; k < nemKeys; k++ {
		left := budget - time.Since(start)
		if left <= 0 {
			unknown = append(unknown, k)
			continue
		}
		res, info := porcupine.CheckOperationsVerbose(nemRegisterModel, byKey[k], min(perKey, left))
		// a write left out may explain a CAS that failed: put back those
		// called before the operation porcupine could not place, and check
		// again (with any subset of them the verdict is still sound)
		for round := 0; res == porcupine.Illegal && round < 4; round++ {
			stuck := byKey[k][nemStuck(byKey[k], info)]
			var back, rest []porcupine.Operation
			for _, op := range prunedByKey[k] {
				if op.Call <= stuck.Return && op.Call >= stuck.Call-int64(30*time.Second) {
					back = append(back, op)
				} else {
					rest = append(rest, op)
				}
			}
			if len(back) == 0 {
				break
			}
			nm.logf("check", "register %d: %d writes left out put back around %.3fs", k, len(back), time.Duration(stuck.Call).Seconds())
			byKey[k], prunedByKey[k] = append(byKey[k], back...), rest
			res, info = porcupine.CheckOperationsVerbose(nemRegisterModel, byKey[k], min(perKey, max(budget-time.Since(start), time.Second)))
		}
		switch res {
		case porcupine.Illegal:
			bad = append(bad, k)
			if len(bad) == 1 {
				nm.reportRegister(k, byKey[k], info)
			}
		case porcupine.Unknown:
			unknown = append(unknown, k)
		}
	}
	nm.logf("check", "registers: %d operations over %d keys checked in %s", len(history), nemKeys, time.Since(start).Round(time.Millisecond))
	if len(unknown) > 0 {
		nm.warn("registers: the check timed out (%s per key, %s in all) on keys %v: not proven either way", perKey, budget, unknown)
	}
	if len(bad) > 0 {
		nm.fail("registers: keys %v are not linearizable (the first is detailed above)", bad)
	} else {
		nm.logf("check", "registers: every key linearizable")
	}
}

// nemPruneUnobserved leaves out the writes and CASes of unknown outcome
// whose value no read returned. Each one stays pending to the end of the
// history (its return is unknown), and a few hundred of them make
// porcupine's search explode on a long run. Leaving one out never turns
// a history that is not linearizable into one that is: with it, the
// checker could linearize it after every other operation, where it
// changes nothing anyone saw, which is the history without it. (It can
// only make the check stricter: such a write might have explained a CAS
// that failed; checkRegisters puts those back where a key fails.)
func nemPruneUnobserved(history []porcupine.Operation) (kept, pruned []porcupine.Operation) {
	seen := map[[2]int64]bool{} // key, value
	for _, op := range history {
		in, out := op.Input.(nemRegIn), op.Output.(nemRegOut)
		if in.kind == nemRead && !out.missing {
			seen[[2]int64{int64(in.key), out.value}] = true
		}
	}
	for _, op := range history {
		in, out := op.Input.(nemRegIn), op.Output.(nemRegOut)
		if out.unknown && in.kind != nemRead && !seen[[2]int64{int64(in.key), in.value}] {
			pruned = append(pruned, op)
			continue
		}
		kept = append(kept, op)
	}
	return kept, pruned
}

// nemLongest is the longest partial linearization porcupine found
// (indexes into the operations checked).
func nemLongest(info porcupine.LinearizationInfo) []int {
	var longest []int
	for _, part := range info.PartialLinearizations() {
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	return longest
}

// nemStuck is the index in ops of the first operation, by call time, that
// porcupine's longest partial linearization does not place.
func nemStuck(ops []porcupine.Operation, info porcupine.LinearizationInfo) int {
	placed := map[int]bool{}
	for _, i := range nemLongest(info) {
		placed[i] = true
	}
	stuck := -1
	for i, op := range ops {
		if !placed[i] && (stuck < 0 || op.Call < ops[stuck].Call) {
			stuck = i
		}
	}
	return max(stuck, 0)
}

func (nm *nemesis) reportRegister(k int, ops []porcupine.Operation, info porcupine.LinearizationInfo) {
	path := fmt.Sprintf("%s/nemesis-register-%d-key%d.html", os.TempDir(), nm.cfg.seed, k)
	if err := porcupine.VisualizePath(nemRegisterModel, info, path); err == nil {
		nm.logf("check", "register %d: porcupine's visualization in %s", k, path)
	}
	// the operations around the first one porcupine's longest partial
	// linearization could not place
	longest := nemLongest(info)
	placed := map[int]bool{}
	for _, i := range longest {
		placed[i] = true
	}
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return ops[order[a]].Call < ops[order[b]].Call })
	stuck := len(order)
	for pos, i := range order {
		if !placed[i] {
			stuck = pos
			break
		}
	}
	var b strings.Builder
	for pos := max(0, stuck-25); pos < min(len(order), stuck+25); pos++ {
		op := ops[order[pos]]
		ret := "∞"
		if op.Return != math.MaxInt64 {
			ret = fmt.Sprintf("%.3fs", time.Duration(op.Return).Seconds())
		}
		mark := " "
		if pos == stuck {
			mark = ">"
		} else if !placed[order[pos]] {
			mark = "-"
		}
		fmt.Fprintf(&b, "\n   %s[%.3fs – %s] client %d: %s", mark, time.Duration(op.Call).Seconds(), ret, op.ClientId, nemRegisterModel.DescribeOperation(op.Input, op.Output))
	}
	nm.logf("check", "register %d is not linearizable: porcupine placed at most %d of its %d operations; by call time, around the first it could not place (>; - not placed either):%s",
		k, len(longest), len(ops), b.String())
}

func (nm *nemesis) printTimeline() {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	var b strings.Builder
	for _, ev := range nm.timeline {
		fmt.Fprintf(&b, "\n[%7.2fs] %-8s %s", ev.at.Seconds(), ev.who, ev.what)
	}
	nm.t.Logf("nemesis timeline (seed %d, leaves %s):%s", nm.cfg.seed, nm.describeLeaves(), b.String())
}
