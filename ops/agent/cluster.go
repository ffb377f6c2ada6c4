package agent

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
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
	if err := a.readCluster(ctx, db, &v); err != nil {
		v.Error = fmt.Sprintf("the master aggregator %s: %v", master.Addr(), err)
		return v, nil
	}
	v.Reachable = true
	return v, nil
}

func (a *Agent) readCluster(ctx context.Context, db *sql.DB, v *ClusterView) error {
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
		rs, err := db.QueryContext(ctx, "SHOW REBALANCE STATUS ON "+quoteIdent(name))
		if err != nil {
			continue
		}
		cols, _ := rs.Columns()
		idx := map[string]int{}
		for i, c := range cols {
			idx[c] = i
		}
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		get := func(c string) string {
			if i, ok := idx[c]; ok {
				return vals[i].String
			}
			return ""
		}
		for rs.Next() {
			if rs.Scan(ptrs...) != nil {
				break
			}
			var s RebalanceStep
			s.Database, s.Action, s.Status = name, get("Action"), get("Status")
			fmt.Sscan(get("Ordinal"), &s.Ordinal)
			fmt.Sscan(get("Phase"), &s.Phase)
			s.Target = get("Target_Host") + ":" + get("Target_Port")
			v.Rebalance = append(v.Rebalance, s)
		}
		rs.Close()
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
// since as events: leaves changing state, partitions changing master
// (failover, hand-over, attach).
type clusterWatch struct {
	leaves  map[string]string // host:port → state
	masters map[string]string // db:ordinal → master host:port
}

// watchCluster reads the cluster and records its changes as events (the
// primary, every metrics interval).
func (a *Agent) watchCluster(ctx context.Context, w *clusterWatch) {
	db, _, err := a.masterDB()
	if err != nil {
		return
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v ClusterView
	if err := a.readCluster(cctx, db, &v); err != nil {
		return
	}
	leaves, masters := map[string]string{}, map[string]string{}
	for _, l := range v.Leaves {
		leaves[fmt.Sprintf("%s:%d", l.Host, l.Port)] = l.State
	}
	for _, p := range v.Partitions {
		if p.Role == "Master" {
			masters[fmt.Sprintf("%s:%d", p.Database, p.Ordinal)] = fmt.Sprintf("%s:%d", p.Host, p.Port)
		}
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
		for _, k := range sortedKeys(masters) {
			if old, ok := w.masters[k]; ok && old != masters[k] {
				a.eventf("cluster: partition %s master %s → %s", k, old, masters[k])
			}
		}
		for _, k := range sortedKeys(w.masters) {
			if _, ok := masters[k]; !ok {
				a.eventf("cluster: partition %s has no master (was on %s)", k, w.masters[k])
			}
		}
	}
	w.leaves, w.masters = leaves, masters
}
