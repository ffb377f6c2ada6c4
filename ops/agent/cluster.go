package agent

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ClusterView is what the master aggregator says of the cluster: its
// leaves and aggregators, and every database's partition map, read by
// column name from information_schema.
type ClusterView struct {
	Master      string          `json:"master"`
	Reachable   bool            `json:"reachable"`
	Error       string          `json:"error,omitempty"`
	Redundancy  int             `json:"redundancy"`
	Leaves      []LeafView      `json:"leaves"`
	Aggregators []AggView       `json:"aggregators"`
	Partitions  []PartitionView `json:"partitions"`
	Rebalance   []RebalanceStep `json:"rebalance,omitempty"`
}

// LeafView is a row of information_schema.LEAVES.
type LeafView struct {
	Host      string  `json:"host"`
	Port      int     `json:"port"`
	Group     int     `json:"group"`
	PairHost  string  `json:"pair_host,omitempty"`
	PairPort  int     `json:"pair_port,omitempty"`
	State     string  `json:"state"`
	LatencyMs float64 `json:"latency_ms"`
}

// AggView is a row of information_schema.AGGREGATORS.
type AggView struct {
	Host   string `json:"host"`
	Port   int    `json:"port"`
	State  string `json:"state"`
	Master bool   `json:"master"`
}

// PartitionView is a copy of a partition (information_schema.DISTRIBUTED_PARTITIONS).
type PartitionView struct {
	Database string `json:"database"`
	Ordinal  int    `json:"ordinal"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Role     string `json:"role"`
	Locked   bool   `json:"locked"`
	// with ?detail=1: the copy's rows and bytes over its tables
	// (information_schema.TABLE_STATISTICS), its log position and, for a
	// replica, how many log records it is behind its master (SHOW CLUSTER
	// STATUS); nil where its leaf did not say
	Rows     *int64 `json:"rows,omitempty"`
	Bytes    *int64 `json:"bytes,omitempty"`
	Position string `json:"position,omitempty"`
	Lag      *int64 `json:"lag,omitempty"`
}

// readCopyDetail adds to each copy of v.Partitions its rows, size,
// position and lag.
func readCopyDetail(ctx context.Context, db *sql.DB, v *ClusterView) error {
	type key struct {
		db   string
		ord  int
		addr string
	}
	idx := map[key]int{}
	for i, p := range v.Partitions {
		idx[key{p.Database, p.Ordinal, fmt.Sprintf("%s:%d", p.Host, p.Port)}] = i
	}
	stats, err := queryMaps(ctx, db, "SELECT DATABASE_NAME, ORDINAL, HOST, PORT, SUM(`ROWS`) AS R, SUM(DATA_LENGTH) AS B FROM information_schema.TABLE_STATISTICS GROUP BY 1, 2, 3, 4")
	if err != nil {
		return fmt.Errorf("table statistics: %w", err)
	}
	for _, m := range stats {
		ord, _ := strconv.Atoi(m["ORDINAL"])
		if i, ok := idx[key{m["DATABASE_NAME"], ord, m["HOST"] + ":" + m["PORT"]}]; ok {
			r, errR := strconv.ParseInt(m["R"], 10, 64)
			b, errB := strconv.ParseInt(m["B"], 10, 64)
			if errR == nil && errB == nil {
				v.Partitions[i].Rows, v.Partitions[i].Bytes = &r, &b
			}
		}
	}
	copies, err := queryMaps(ctx, db, "SHOW CLUSTER STATUS")
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	// a copy's position is term:lsn; the lsn counts the partition's log
	// records across terms
	// SHOW CLUSTER STATUS names a copy by its database on the leaf, db_N
	byName := map[string]int{}
	for i, p := range v.Partitions {
		byName[fmt.Sprintf("%s_%d@%s:%d", p.Database, p.Ordinal, p.Host, p.Port)] = i
	}
	masterLSN := map[string]int64{}
	for _, m := range copies {
		i, found := byName[m["Database"]+"@"+m["Host"]+":"+m["Port"]]
		if !found {
			continue
		}
		p := &v.Partitions[i]
		p.Position = m["Position"]
		if p.Role == "Master" {
			masterLSN[fmt.Sprintf("%s_%d", p.Database, p.Ordinal)] = lsnOf(m["Position"])
		}
	}
	for i, p := range v.Partitions {
		if p.Role == "Master" || p.Position == "" {
			continue
		}
		if m, ok := masterLSN[fmt.Sprintf("%s_%d", p.Database, p.Ordinal)]; ok {
			lag := max(0, m-lsnOf(p.Position))
			v.Partitions[i].Lag = &lag
		}
	}
	return nil
}

// lsnOf is the log sequence number of a position "term:lsn".
func lsnOf(pos string) int64 {
	_, lsn, _ := strings.Cut(pos, ":")
	n, _ := strconv.ParseInt(lsn, 10, 64)
	return n
}

// RebalanceStep is a row of SHOW REBALANCE STATUS.
type RebalanceStep struct {
	Database string `json:"database"`
	Action   string `json:"action"`
	Ordinal  int    `json:"ordinal"`
	Target   string `json:"target"`
	Phase    int    `json:"phase"`
	Status   string `json:"status"`
}

func (a *Agent) apiCluster(r *http.Request) (any, error) {
	a.mu.Lock()
	master, ok := a.st.master()
	pw := a.st.RootPassword
	a.mu.Unlock()
	v := ClusterView{Leaves: []LeafView{}, Aggregators: []AggView{}, Partitions: []PartitionView{}}
	if !ok {
		v.Error = "no master aggregator deployed"
		return v, nil
	}
	v.Master = master.Addr()
	db, err := rootDB(master.Addr(), pw)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.readCluster(ctx, db, &v, r.URL.Query().Get("detail") == "1"); err != nil {
		v.Error = fmt.Sprintf("the master aggregator %s: %v", master.Addr(), err)
		return v, nil
	}
	v.Reachable = true
	return v, nil
}

// readCluster fills v from the master aggregator; with detail, also every
// copy's rows, size and replication lag, which ask every leaf.
func (a *Agent) readCluster(ctx context.Context, db *sql.DB, v *ClusterView, detail bool) error {
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.redundancy_level").Scan(&v.Redundancy); err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, "SELECT HOST, PORT, AVAILABILITY_GROUP, COALESCE(PAIR_HOST, ''), COALESCE(PAIR_PORT, 0), STATE, AVERAGE_ROUNDTRIP_LATENCY_MS FROM information_schema.LEAVES ORDER BY HOST, PORT")
	if err != nil {
		return err
	}
	for rows.Next() {
		var l LeafView
		var lat sql.NullFloat64
		if err := rows.Scan(&l.Host, &l.Port, &l.Group, &l.PairHost, &l.PairPort, &l.State, &lat); err != nil {
			rows.Close()
			return err
		}
		l.LatencyMs = lat.Float64
		v.Leaves = append(v.Leaves, l)
	}
	rows.Close()
	rows, err = db.QueryContext(ctx, "SELECT HOST, PORT, STATE, MASTER_AGGREGATOR FROM information_schema.AGGREGATORS ORDER BY MASTER_AGGREGATOR DESC, HOST, PORT")
	if err != nil {
		return err
	}
	for rows.Next() {
		var g AggView
		if err := rows.Scan(&g.Host, &g.Port, &g.State, &g.Master); err != nil {
			rows.Close()
			return err
		}
		v.Aggregators = append(v.Aggregators, g)
	}
	rows.Close()
	rows, err = db.QueryContext(ctx, "SELECT DATABASE_NAME, ORDINAL, HOST, PORT, ROLE, LOCKED FROM information_schema.DISTRIBUTED_PARTITIONS ORDER BY DATABASE_NAME, ORDINAL, ROLE")
	if err != nil {
		return err
	}
	dbs := map[string]bool{}
	for rows.Next() {
		var p PartitionView
		if err := rows.Scan(&p.Database, &p.Ordinal, &p.Host, &p.Port, &p.Role, &p.Locked); err != nil {
			rows.Close()
			return err
		}
		dbs[p.Database] = true
		v.Partitions = append(v.Partitions, p)
	}
	rows.Close()
	for name := range dbs {
		steps, err := queryMaps(ctx, db, "SHOW REBALANCE STATUS ON "+quoteIdent(name))
		if err != nil {
			continue
		}
		for _, m := range steps {
			s := RebalanceStep{Database: name, Action: m["Action"], Status: m["Status"], Target: m["Target_Host"] + ":" + m["Target_Port"]}
			s.Ordinal, _ = strconv.Atoi(m["Ordinal"])
			s.Phase, _ = strconv.Atoi(m["Phase"])
			v.Rebalance = append(v.Rebalance, s)
		}
	}
	if detail {
		return readCopyDetail(ctx, db, v)
	}
	return nil
}

// apiMySQLLogin checks a MySQL account for the web interface's login: it
// must log in to the master aggregator and hold SUPER (or ALL) there.
func (a *Agent) apiMySQLLogin(r *http.Request) (any, error) {
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	master, ok := a.st.master()
	a.mu.Unlock()
	if !ok {
		return nil, conflict("no master aggregator to check the account with")
	}
	db, err := accountDB(master.Addr(), req.User, req.Password)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return map[string]any{"ok": false, "why": "the master aggregator refused the login"}, nil
	}
	defer rows.Close()
	super := false
	for rows.Next() {
		var g string
		if rows.Scan(&g) == nil {
			up := strings.ToUpper(g)
			if strings.Contains(up, " ON *.*") && (strings.Contains(up, "ALL PRIVILEGES") || strings.Contains(up, "SUPER")) {
				super = true
			}
		}
	}
	if !super {
		return map[string]any{"ok": false, "why": "the account lacks SUPER on the cluster"}, nil
	}
	return map[string]any{"ok": true}, nil
}

// queryMaps runs a query and returns its rows by column name (the agent
// never reads a command's output by column position).
func queryMaps(ctx context.Context, db *sql.DB, q string) ([]map[string]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []map[string]string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := map[string]string{}
		for i, c := range cols {
			m[c] = vals[i].String
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (a *Agent) masterDB() (*sql.DB, string, error) {
	a.mu.Lock()
	master, ok := a.st.master()
	pw := a.st.RootPassword
	a.mu.Unlock()
	if !ok {
		return nil, "", conflict("no master aggregator deployed")
	}
	db, err := rootDB(master.Addr(), pw)
	return db, master.Addr(), err
}

// apiExplainRebalance: EXPLAIN REBALANCE PARTITIONS ON db, as steps.
func (a *Agent) apiExplainRebalance(r *http.Request) (any, error) {
	name := r.PathValue("db")
	db, _, err := a.masterDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rows, err := queryMaps(ctx, db, "EXPLAIN REBALANCE PARTITIONS ON "+quoteIdent(name))
	if err != nil {
		return nil, badRequest("EXPLAIN REBALANCE PARTITIONS ON %s: %v", name, err)
	}
	out := []RebalanceStep{}
	for _, m := range rows {
		s := RebalanceStep{Database: name, Action: m["Action"], Target: m["Target_Host"] + ":" + m["Target_Port"], Status: "planned"}
		fmt.Sscan(m["Ordinal"], &s.Ordinal)
		fmt.Sscan(m["Phase"], &s.Phase)
		out = append(out, s)
	}
	return out, nil
}

// apiRebalance runs REBALANCE PARTITIONS ON db as a job, logging its
// progress.
func (a *Agent) apiRebalance(r *http.Request) (any, error) {
	name := r.PathValue("db")
	return a.job("rebalance", map[string]string{"database": name}, func(ctx context.Context, logf func(string, ...any)) error {
		db, _, err := a.masterDB()
		if err != nil {
			return err
		}
		defer db.Close()
		done := make(chan struct{})
		go a.logRebalance(db, name, logf, done)
		_, err = db.ExecContext(ctx, "REBALANCE PARTITIONS ON "+quoteIdent(name))
		close(done)
		return err
	})
}

// clusterWatch remembers the cluster as last seen, to record what it did
// since as events: leaves coming, going and changing state (from
// information_schema.LEAVES), and every event the master aggregator
// logged (information_schema.MV_EVENTS: failovers, hand-overs, attaches,
// rebalances), however quickly they followed each other.
type clusterWatch struct {
	leaves map[string]string // host:port → state
	// lastEvent: per master aggregator, the ID of its last event
	// recorded; from a master not seen before, the events since since
	lastEvent map[string]uint64
	since     time.Time
}

// watchCluster reads the cluster and records its changes as events (the
// primary, every metrics interval).
func (a *Agent) watchCluster(ctx context.Context, w *clusterWatch) {
	db, master, err := a.masterDB()
	if err != nil {
		return
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v ClusterView
	if err := a.readCluster(cctx, db, &v, false); err != nil {
		return
	}
	leaves := map[string]string{}
	for _, l := range v.Leaves {
		leaves[fmt.Sprintf("%s:%d", l.Host, l.Port)] = l.State
	}
	if w.lastEvent == nil {
		w.lastEvent = map[string]uint64{}
	}
	if w.since.IsZero() {
		w.since = time.Now().Add(-time.Minute)
	}
	evs, err := queryMaps(cctx, db, fmt.Sprintf("SELECT ID, EVENT_TIME, SEVERITY, EVENT_TYPE, DETAILS FROM information_schema.MV_EVENTS WHERE ID > %d AND EVENT_TIME >= '%s' ORDER BY ID",
		w.lastEvent[master], w.since.UTC().Format("2006-01-02 15:04:05")))
	if err != nil {
		evs = nil // an older master aggregator: the leaves' changes still tell
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.leaves != nil {
		for _, k := range sortedKeys(leaves) {
			if old, ok := w.leaves[k]; !ok {
				a.eventf("cluster: leaf %s added (%s)", k, leaves[k])
			} else if old != leaves[k] {
				a.eventf("cluster: leaf %s %s → %s", k, old, leaves[k])
			}
		}
		for k := range w.leaves {
			if _, ok := leaves[k]; !ok {
				a.eventf("cluster: leaf %s removed", k)
			}
		}
	}
	for _, e := range evs {
		id, err := strconv.ParseUint(e["ID"], 10, 64)
		if err != nil {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.999999", e["EVENT_TIME"])
		if err != nil {
			at = time.Now()
		}
		text := "cluster: " + e["EVENT_TYPE"]
		if e["DETAILS"] != "" {
			text += " (" + e["DETAILS"] + ")"
		}
		if e["SEVERITY"] != "NOTICE" {
			text = e["SEVERITY"] + " " + text
		}
		a.eventAt(at, text)
		w.lastEvent[master] = id
	}
	w.leaves = leaves
}
