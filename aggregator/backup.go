package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// BACKUP DATABASE db TO 'path' and RESTORE DATABASE db FROM 'path', run by
// the master aggregator.
//
// A backup is one cut across the database's partitions: no distributed
// transaction is in it on some partitions and not on others. Every
// aggregator's commit gate is closed (a distributed commit holds the gate
// from its decision to its last COMMIT PREPARED, so closing it waits for
// those in flight and keeps new ones from deciding), every leaf takes a
// storage snapshot of its master partitions at one instant, and the gates
// open again: commits wait for the time the snapshots take, not for the
// files. The leaves then write one file per partition into path (on their
// own file system: path is shared storage in a cluster of several hosts);
// a transaction prepared but undecided at the cut is not in it (the cut
// rolls it back, as presumed abort would). The master aggregator writes
// manifest.json: the database, its partition count and replication mode,
// each table's definition as SHOW CREATE TABLE gives it (shard key
// included), each partition's position. The reference tables' rows are
// this aggregator's copy of the database, snapshotted within the cut.
//
// A restore creates the database (same partition count, on the cluster's
// leaves now, whatever their number), its tables, then has each
// partition's master load its file: the rows come back as ordinary
// commits, so replicas and logs get them like any write.

// backupManifest is path/manifest.json.
type backupManifest struct {
	Format     int                       `json:"format"`
	Database   string                    `json:"database"`
	Partitions int                       `json:"partitions"`
	Sync       bool                      `json:"sync"`
	Tables     []backupTable             `json:"tables"`
	Positions  map[string]backupPosition `json:"positions"` // by partition database
	Files      map[string]int64          `json:"files"`     // bytes, by file (partition database)
	// ReferenceFile: the reference tables' rows, the master aggregator's
	// copy of the database at the cut ("" for none)
	ReferenceFile string    `json:"reference_file,omitempty"`
	Taken         time.Time `json:"taken"`
	CutMs         float64   `json:"cut_ms"` // commits waited this long
}

type backupTable struct {
	Name      string `json:"name"`
	DDL       string `json:"ddl"`
	Reference bool   `json:"reference,omitempty"`
}

type backupPosition struct {
	Term    uint64 `json:"term"`
	LSN     uint64 `json:"lsn"`
	Commits uint64 `json:"commits"`
}

// backupRun is a row of SHOW BACKUP STATUS.
type backupRun struct {
	Kind, Database, Path, State, Error string
	Started                            time.Time
	Took                               time.Duration
	Partitions                         int
	Bytes                              int64
}

// backupRuns are the backups and restores this aggregator ran, newest
// last; one runs at a time.
type backupRuns struct {
	running sync.Mutex
	mu      sync.Mutex
	list    []*backupRun
}

// commitGate is a read-write lock a backup closes for a moment (see
// above), with the timer that opens it if nobody does.
type commitGate struct {
	sync.RWMutex
	mu    sync.Mutex
	held  bool
	timer *time.Timer
}

// gateWait bounds the wait for distributed commits in flight when the
// gate closes; gateLimit is how long a backup keeps it closed at most.
const (
	gateWait  = 10 * time.Second
	gateLimit = 30 * time.Second
)

// CloseCommitGate waits for the distributed commits past their decision to
// finish and keeps new ones from deciding, for at most limit. It refuses
// while a decided commit is still being delivered (a participant did not
// answer): that transaction would be in the cut on some partitions only.
func (a *Aggregator) CloseCommitGate(limit time.Duration) error {
	locked := make(chan struct{})
	go func() { a.commitGate.Lock(); close(locked) }()
	select {
	case <-locked:
	case <-time.After(gateWait):
		go func() { <-locked; a.commitGate.Unlock() }()
		return mysql.NewSQLError(1205, "HY000", "distributed commits in flight on %s did not finish within %s: try the backup again", a.self, gateWait)
	}
	decisions, err := a.store.Decisions()
	if err == nil && len(decisions) > 0 {
		var xids []string
		for x := range decisions {
			xids = append(xids, x)
		}
		sort.Strings(xids)
		err = mysql.NewSQLError(1205, "HY000", "the commit of %s is still being delivered to its participants: try the backup again once every leaf answers", xids[0])
	}
	if err != nil {
		a.commitGate.Unlock()
		return err
	}
	g := &a.commitGate
	g.mu.Lock()
	g.held = true
	g.timer = time.AfterFunc(limit, a.OpenCommitGate)
	g.mu.Unlock()
	return nil
}

// OpenCommitGate lets distributed commits go on.
func (a *Aggregator) OpenCommitGate() {
	g := &a.commitGate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.held = false
		g.timer.Stop()
		g.Unlock()
	}
}

// BackupCommand runs BACKUP DATABASE, RESTORE DATABASE and SHOW BACKUP
// STATUS on the master aggregator.
func (a *Aggregator) BackupCommand(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Command) (*sqltypes.Result, error) {
	switch cmd := cmd.(type) {
	case sqlcmd.ShowBackupStatus:
		return a.backups.status(), nil
	case sqlcmd.Backup:
		return a.runBackupJob("BACKUP", cmd.Database, cmd.Path, func(r *backupRun) error { return a.backup(ctx, c, cmd, r) })
	case sqlcmd.Restore:
		return a.runBackupJob("RESTORE", cmd.Database, cmd.Path, func(r *backupRun) error { return a.restore(ctx, c, cmd, r) })
	}
	return nil, fmt.Errorf("not a backup command: %T", cmd)
}

func (a *Aggregator) runBackupJob(kind, db, path string, run func(*backupRun) error) (*sqltypes.Result, error) {
	if !a.backups.running.TryLock() {
		return nil, mysql.NewSQLError(1105, "HY000", "%s DATABASE %s: another backup or restore is running (SHOW BACKUP STATUS)", kind, db)
	}
	defer a.backups.running.Unlock()
	r := &backupRun{Kind: kind, Database: db, Path: path, State: "running", Started: time.Now()}
	a.backups.mu.Lock()
	a.backups.list = append(a.backups.list, r)
	if len(a.backups.list) > 100 {
		a.backups.list = a.backups.list[len(a.backups.list)-100:]
	}
	a.backups.mu.Unlock()
	err := run(r)
	a.backups.mu.Lock()
	r.Took = time.Since(r.Started)
	if err != nil {
		r.State, r.Error = "failed", err.Error()
	} else {
		r.State = "success"
	}
	a.backups.mu.Unlock()
	if err != nil {
		a.log.Warn(kind+" DATABASE failed", "database", db, "path", path, "err", err)
		return nil, err
	}
	a.log.Info(kind+" DATABASE", "database", db, "path", path, "partitions", r.Partitions, "bytes", r.Bytes, "took", r.Took)
	return &sqltypes.Result{RowsAffected: uint64(r.Partitions)}, nil
}

// finished records what a run moved: the backup's files and partitions.
func (b *backupRuns) finished(r *backupRun, m backupManifest, partitions int) {
	var total int64
	for _, n := range m.Files {
		total += n
	}
	b.mu.Lock()
	r.Bytes, r.Partitions = total, partitions
	b.mu.Unlock()
}

func (b *backupRuns) status() *sqltypes.Result {
	res := &sqltypes.Result{Fields: []*querypb.Field{
		{Name: "Kind", Type: querypb.Type_VARCHAR}, {Name: "Database", Type: querypb.Type_VARCHAR}, {Name: "Path", Type: querypb.Type_VARCHAR},
		{Name: "State", Type: querypb.Type_VARCHAR}, {Name: "Started", Type: querypb.Type_VARCHAR}, {Name: "Duration_ms", Type: querypb.Type_INT64},
		{Name: "Partitions", Type: querypb.Type_INT64}, {Name: "Bytes", Type: querypb.Type_INT64}, {Name: "Error", Type: querypb.Type_VARCHAR},
	}}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.list {
		took := r.Took
		if r.State == "running" {
			took = time.Since(r.Started)
		}
		res.Rows = append(res.Rows, []sqltypes.Value{str(r.Kind), str(r.Database), str(r.Path), str(r.State),
			str(r.Started.UTC().Format("2006-01-02 15:04:05")), num(took.Milliseconds()), num(int64(r.Partitions)), num(r.Bytes), str(r.Error)})
	}
	return res
}

func checkBackupPath(kind, path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return mysql.NewSQLError(1105, "HY000", "%s: the path %q must be absolute and clean", kind, path)
	}
	return nil
}

func (a *Aggregator) backup(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Backup, r *backupRun) error {
	if err := checkBackupPath("BACKUP DATABASE", cmd.Path); err != nil {
		return err
	}
	d := a.State().Database(cmd.Database)
	if d == nil {
		return mysql.NewSQLError(1049, "42000", "Unknown database '%s'", cmd.Database)
	}
	hasReference := false
	for _, t := range d.Tables {
		hasReference = hasReference || t.Reference
	}
	byLeaf := map[string][]string{}
	for _, p := range d.Partitions {
		if p.Master == "" {
			return mysql.NewSQLError(1105, "HY000", "BACKUP DATABASE %s: partition %d has no master (SHOW PARTITIONS); back up once it has one", d.Name, p.Ordinal)
		}
		byLeaf[p.Master] = append(byLeaf[p.Master], meta.PartitionName(d.Name, p.Ordinal))
	}
	if _, err := os.Stat(filepath.Join(cmd.Path, "manifest.json")); err == nil {
		return mysql.NewSQLError(1105, "HY000", "BACKUP DATABASE %s: %s holds a backup already; choose another path", d.Name, cmd.Path)
	}
	if err := os.MkdirAll(cmd.Path, 0o700); err != nil {
		return fmt.Errorf("BACKUP DATABASE %s: %w", d.Name, err)
	}
	// the definitions first; the tables' schema changes wait until the cut
	// is taken (a table created meanwhile is not in the backup)
	var tableNames []string
	for _, t := range d.Tables {
		tableNames = append(tableNames, t.Name)
	}
	if len(tableNames) > 0 {
		unlock, err := a.ddlGate(ctx, d.Name, tableNames, false)
		if err != nil {
			return fmt.Errorf("BACKUP DATABASE %s: %w", d.Name, err)
		}
		defer unlock()
	}
	m := backupManifest{Format: 1, Database: d.Name, Partitions: len(d.Partitions), Sync: d.Sync,
		Positions: map[string]backupPosition{}, Files: map[string]int64{}}
	var names []string
	for name := range d.Tables {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := d.Tables[name]
		res, err := a.collectLocal(ctx, c, "SHOW CREATE TABLE "+quoteIdent(d.Name)+"."+quoteIdent(t.Name), true)
		if err != nil || len(res.Rows) != 1 || len(res.Rows[0]) < 2 {
			return fmt.Errorf("BACKUP DATABASE %s: the definition of %s: %v", d.Name, t.Name, err)
		}
		var autoInc uint64
		if t.AutoIncrement != "" {
			if max, err := a.maxAutoIncrement(ctx, d, t); err == nil && max > 0 {
				autoInc = max + 1
			}
		}
		m.Tables = append(m.Tables, backupTable{Name: t.Name, DDL: sqlcmd.ShowCreateTable(res.Rows[0][1].ToString(), t.Reference, t.ShardKey, autoInc),
			Reference: t.Reference})
	}

	tag := fmt.Sprintf("backup-%x", time.Now().UnixNano())
	// the gates open by themselves after gateLimit: a cut that takes
	// longer is no cut (snapshots taken after they opened), so the
	// snapshots must all be taken well before
	cutCtx, cutCancel := context.WithTimeout(ctx, gateLimit-5*time.Second)
	defer cutCancel()
	leaves := make([]string, 0, len(byLeaf))
	for l := range byLeaf {
		leaves = append(leaves, l)
	}
	sort.Strings(leaves)
	cutStart := time.Now()
	opened, err := a.closeGates(cutCtx)
	if err != nil {
		return fmt.Errorf("BACKUP DATABASE %s: %w", d.Name, err)
	}
	// the reference tables live in this aggregator's copy of the database
	// (the others replicate it): its snapshot is part of the cut
	var refSnap *storage.Snapshot
	if hasReference {
		snaps, err := a.store.OpenBackupSnapshots([]string{d.Name})
		if err != nil {
			opened()
			return fmt.Errorf("BACKUP DATABASE %s: the reference tables: %w", d.Name, err)
		}
		refSnap = snaps[0]
		defer refSnap.Close()
	}
	var mu sync.Mutex
	errs := parallel(leaves, func(leaf string) error {
		lp, err := a.LeafPool(leaf)
		if err != nil {
			return err
		}
		q := "CANOPY BACKUP SNAPSHOT '" + tag + "'"
		for _, n := range byLeaf[leaf] {
			q += " " + sqlString(n)
		}
		res, err := lp.Exec(cutCtx, q, len(byLeaf[leaf]))
		if err != nil {
			return leafError(leaf, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, row := range res.Rows {
			var p backupPosition
			fmt.Sscan(row[1].ToString(), &p.Term)
			fmt.Sscan(row[2].ToString(), &p.LSN)
			fmt.Sscan(row[3].ToString(), &p.Commits)
			m.Positions[row[0].ToString()] = p
		}
		return nil
	})
	tooLong := time.Since(cutStart) >= gateLimit-5*time.Second
	opened()
	m.CutMs = float64(time.Since(cutStart).Microseconds()) / 1000
	if tooLong {
		errs = append(errs, fmt.Errorf("the cut took %.0f ms, longer than the commit gates stay closed: try again", m.CutMs))
	}
	release := func() {
		parallel(leaves, func(leaf string) error {
			if lp, err := a.LeafPool(leaf); err == nil {
				lp.Exec(context.Background(), "CANOPY BACKUP RELEASE '"+tag+"'", 0)
			}
			return nil
		})
	}
	if err := errors.Join(errs...); err != nil {
		release()
		return fmt.Errorf("BACKUP DATABASE %s: %w", d.Name, err)
	}
	errs = parallel(leaves, func(leaf string) error {
		lp, err := a.LeafPool(leaf)
		if err != nil {
			return err
		}
		res, err := lp.Exec(ctx, "CANOPY BACKUP WRITE '"+tag+"' TO "+sqlString(cmd.Path), len(byLeaf[leaf]))
		if err != nil {
			return leafError(leaf, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, row := range res.Rows {
			var n int64
			fmt.Sscan(row[1].ToString(), &n)
			m.Files[row[0].ToString()] = n
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		release()
		return fmt.Errorf("BACKUP DATABASE %s: %w", d.Name, err)
	}
	if refSnap != nil {
		m.ReferenceFile = d.Name + ".reference.snap"
		n, err := storage.WriteBackupFile(filepath.Join(cmd.Path, m.ReferenceFile), d.Name, refSnap)
		if err != nil {
			return fmt.Errorf("BACKUP DATABASE %s: the reference tables: %w", d.Name, err)
		}
		m.Files[m.ReferenceFile] = n
	}
	m.Taken = cutStart.UTC()
	a.backups.finished(r, m, len(d.Partitions))
	b, _ := json.MarshalIndent(m, "", "  ")
	tmp := filepath.Join(cmd.Path, "manifest.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	// the manifest last: a path with one holds a whole backup
	return os.Rename(tmp, filepath.Join(cmd.Path, "manifest.json"))
}

// closeGates closes every aggregator's commit gate (a cut's moment: at
// most 30 s); the function it returns opens them.
func (a *Aggregator) closeGates(ctx context.Context) (func(), error) {
	const limit = gateLimit
	var closed []string
	open := func() {
		for _, addr := range closed {
			if addr == a.self {
				a.OpenCommitGate()
				continue
			}
			if p, err := a.AggregatorPool(addr); err == nil {
				p.Exec(context.Background(), "CANOPY COMMIT GATE OPEN", 0)
			}
		}
	}
	for _, ag := range a.State().Aggregators {
		addr := ag.Addr()
		var err error
		if addr == a.self {
			err = a.CloseCommitGate(limit)
		} else {
			p, perr := a.AggregatorPool(addr)
			if err = perr; err == nil {
				_, err = p.Exec(ctx, fmt.Sprintf("CANOPY COMMIT GATE CLOSE %d", limit.Milliseconds()), 0)
			}
		}
		if err != nil {
			open()
			return nil, fmt.Errorf("closing the commit gate of aggregator %s: %w", addr, err)
		}
		closed = append(closed, addr)
	}
	return open, nil
}

func (a *Aggregator) restore(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Restore, r *backupRun) error {
	if err := checkBackupPath("RESTORE DATABASE", cmd.Path); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(cmd.Path, "manifest.json"))
	if err != nil {
		return mysql.NewSQLError(1105, "HY000", "RESTORE DATABASE %s: no backup in %s (%v)", cmd.Database, cmd.Path, err)
	}
	var m backupManifest
	if err := json.Unmarshal(b, &m); err != nil || m.Format != 1 || m.Partitions <= 0 {
		return mysql.NewSQLError(1105, "HY000", "RESTORE DATABASE %s: %s/manifest.json is not a backup manifest", cmd.Database, cmd.Path)
	}
	for p := 0; p < m.Partitions; p++ {
		name := meta.PartitionName(m.Database, p)
		if _, err := os.Stat(filepath.Join(cmd.Path, name+".snap")); err != nil {
			return mysql.NewSQLError(1105, "HY000", "RESTORE DATABASE %s: the backup lacks partition %d (%v)", cmd.Database, p, err)
		}
	}
	if a.State().Database(cmd.Database) != nil {
		return mysql.NewSQLError(1007, "HY000", "Can't create database '%s'; database exists (RESTORE DATABASE makes a new one: drop it first, or restore under another name)", cmd.Database)
	}
	create := sqlcmd.CreateDatabase{Name: cmd.Database, Partitions: m.Partitions, Sync: m.Sync}
	mode := "ASYNC"
	if m.Sync {
		mode = "SYNC"
	}
	if err := a.createDatabase(ctx, c, fmt.Sprintf("CREATE DATABASE %s WITH %s REPLICATION PARTITIONS %d", quoteIdent(cmd.Database), mode, m.Partitions), create); err != nil {
		return fmt.Errorf("RESTORE DATABASE %s: %w", cmd.Database, err)
	}
	for _, t := range m.Tables {
		ddl, ok := qualifyCreateTable(t.DDL, cmd.Database)
		if !ok {
			return fmt.Errorf("RESTORE DATABASE %s: the definition of %s is not a CREATE TABLE", cmd.Database, t.Name)
		}
		ct, ok := sqlcmd.ParseCreateTable(ddl)
		if !ok {
			return fmt.Errorf("RESTORE DATABASE %s: the definition of %s does not parse", cmd.Database, t.Name)
		}
		if err := a.createTable(ctx, c, ddl, ct); err != nil {
			return fmt.Errorf("RESTORE DATABASE %s: table %s: %w", cmd.Database, t.Name, err)
		}
	}
	d := a.State().Database(cmd.Database)
	if d == nil {
		return fmt.Errorf("RESTORE DATABASE %s: the database vanished", cmd.Database)
	}
	var ordinals []string
	masterOf := map[string]string{}
	for _, p := range d.Partitions {
		key := fmt.Sprint(p.Ordinal)
		ordinals = append(ordinals, key)
		masterOf[key] = p.Master
	}
	if m.ReferenceFile != "" {
		if err := a.restoreReference(ctx, c, cmd, m); err != nil {
			return fmt.Errorf("RESTORE DATABASE %s: the reference tables: %w (drop the database and restore again)", cmd.Database, err)
		}
	}
	errs := parallel(ordinals, func(key string) error {
		var o int
		fmt.Sscan(key, &o)
		lp, err := a.LeafPool(masterOf[key])
		if err != nil {
			return err
		}
		file := filepath.Join(cmd.Path, meta.PartitionName(m.Database, o)+".snap")
		if _, err := lp.Exec(ctx, "CANOPY RESTORE PARTITION "+quoteIdent(meta.PartitionName(d.Name, o))+" FROM "+sqlString(file), 1); err != nil {
			return leafError(masterOf[key], err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("RESTORE DATABASE %s: %w (drop the database and restore again)", cmd.Database, err)
	}
	a.backups.finished(r, m, len(d.Partitions))
	return nil
}

// restoreReference loads the reference tables' rows: the backup's copy of
// the database is installed here as a scratch copy, and its reference
// tables' rows are inserted as reference writes (this aggregator's copy,
// replicated to every node).
func (a *Aggregator) restoreReference(ctx context.Context, c *mysql.Conn, cmd sqlcmd.Restore, m backupManifest) error {
	scratch := "__restore_ref_" + cmd.Database
	defer a.store.DropDatabase(scratch)
	if _, err := a.store.InstallBackupFile(filepath.Join(cmd.Path, m.ReferenceFile), scratch); err != nil {
		return err
	}
	discard := func(*sqltypes.Result, bool) error { return nil }
	for _, t := range m.Tables {
		if !t.Reference {
			continue
		}
		q := fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", quoteIdent(cmd.Database), quoteIdent(t.Name), quoteIdent(scratch), quoteIdent(t.Name))
		if err := a.host.RunLocal(ctx, c, q, discard); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
	}
	a.waitReplicated(cmd.Database)
	return nil
}

// qualifyCreateTable makes "CREATE [/*!90618 REFERENCE */] TABLE `t` …"
// (SHOW CREATE TABLE's form) create db.t.
func qualifyCreateTable(ddl, db string) (string, bool) {
	i := strings.Index(ddl, "TABLE ")
	if !strings.HasPrefix(ddl, "CREATE ") || i < 0 {
		return "", false
	}
	i += len("TABLE ")
	return ddl[:i] + quoteIdent(db) + "." + ddl[i:], true
}
