package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/canopydb/canopy/sqlcmd"
	"github.com/canopydb/canopy/storage"
)

// A leaf's part of BACKUP and RESTORE DATABASE (the master aggregator
// runs them: aggregator/backup.go). BACKUP SNAPSHOT takes storage
// snapshots of the leaf's master partitions at one instant, while the
// aggregators' commit gates are closed; BACKUP WRITE then writes them,
// at leisure, one file per partition (storage.WriteBackupFile).

type heldBackup struct {
	names []string
	snaps []*storage.Snapshot
	timer *time.Timer // releases them if nobody writes them
}

type backupHolds struct {
	mu    sync.Mutex
	byTag map[string]*heldBackup
}

// backupHoldLimit: snapshots held longer than this are let go (the
// master aggregator that asked for them is gone).
const backupHoldLimit = 10 * time.Minute

func (n *Node) backupSnapshot(cmd sqlcmd.BackupSnapshot) (*sqltypes.Result, error) {
	snaps, err := n.store.OpenBackupSnapshots(cmd.Databases)
	if err != nil {
		return nil, err
	}
	h := &heldBackup{names: cmd.Databases, snaps: snaps}
	n.backups.mu.Lock()
	if n.backups.byTag == nil {
		n.backups.byTag = map[string]*heldBackup{}
	}
	if old := n.backups.byTag[cmd.Tag]; old != nil {
		n.backups.mu.Unlock()
		for _, s := range snaps {
			s.Close()
		}
		return nil, fmt.Errorf("backup %s is held here already", cmd.Tag)
	}
	n.backups.byTag[cmd.Tag] = h
	h.timer = time.AfterFunc(backupHoldLimit, func() { n.releaseBackup(cmd.Tag) })
	n.backups.mu.Unlock()
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("Database"), intField("Term"), intField("LSN"), intField("Commits")}}
	for i, s := range snaps {
		res.Rows = append(res.Rows, []sqltypes.Value{strValue(cmd.Databases[i]), uintValue(s.Pos.Term), uintValue(s.Pos.LSN), uintValue(s.Commits)})
	}
	return res, nil
}

func (n *Node) takeBackup(tag string) *heldBackup {
	n.backups.mu.Lock()
	defer n.backups.mu.Unlock()
	h := n.backups.byTag[tag]
	delete(n.backups.byTag, tag)
	if h != nil {
		h.timer.Stop()
	}
	return h
}

func (n *Node) releaseBackup(tag string) {
	if h := n.takeBackup(tag); h != nil {
		for _, s := range h.snaps {
			s.Close()
		}
	}
}

// releaseBackups lets every held backup go (the node is stopping).
func (n *Node) releaseBackups() {
	n.backups.mu.Lock()
	var tags []string
	for t := range n.backups.byTag {
		tags = append(tags, t)
	}
	n.backups.mu.Unlock()
	for _, t := range tags {
		n.releaseBackup(t)
	}
}

// backupWrite writes the snapshots held under a tag into dir.
func (n *Node) backupWrite(cmd sqlcmd.BackupWrite) (*sqltypes.Result, error) {
	h := n.takeBackup(cmd.Tag)
	if h == nil {
		return nil, fmt.Errorf("no backup %s is held here", cmd.Tag)
	}
	defer func() {
		for _, s := range h.snaps {
			s.Close()
		}
	}()
	if !filepath.IsAbs(cmd.Dir) || filepath.Clean(cmd.Dir) != cmd.Dir {
		return nil, mysql.NewSQLError(1105, "HY000", "backup path %q: an absolute, clean path", cmd.Dir)
	}
	if err := os.MkdirAll(cmd.Dir, 0o700); err != nil {
		return nil, err
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("Database"), intField("Bytes")}}
	for i, s := range h.snaps {
		name := h.names[i]
		if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
			return nil, fmt.Errorf("backup of %q: not a database name", name)
		}
		size, err := storage.WriteBackupFile(filepath.Join(cmd.Dir, name+".snap"), name, s)
		if err != nil {
			return nil, fmt.Errorf("backup of %s: %w", name, err)
		}
		res.Rows = append(res.Rows, []sqltypes.Value{strValue(name), intValue(size)})
	}
	return res, nil
}

// restorePartition loads a partition's backup file into this leaf's
// master copy of it, which must hold no rows: the file is installed as a
// scratch copy (the way a replica is provisioned), then its tables' rows
// are inserted into the partition by ordinary commits, so that the
// partition's replicas and log get them as any write.
func (n *Node) restorePartition(ctx context.Context, c *mysql.Conn, cmd sqlcmd.RestorePartition) (*sqltypes.Result, error) {
	// the statements run in the calling link's session: the aggregator's,
	// which writes partitions
	run := func(q string) ([][]sqltypes.Value, error) {
		var rows [][]sqltypes.Value
		err := n.RunLocal(ctx, c, q, func(res *sqltypes.Result, _ bool) error {
			if res != nil {
				rows = append(rows, res.Rows...)
			}
			return nil
		})
		return rows, err
	}
	if !n.store.HasDatabase(cmd.Database) || n.store.IsReplica(cmd.Database) {
		return nil, fmt.Errorf("restore into %s: no master copy of it here", cmd.Database)
	}
	scratch := "__restore_" + cmd.Database
	defer n.store.DropDatabase(scratch)
	if _, err := n.store.InstallBackupFile(cmd.File, scratch); err != nil {
		return nil, fmt.Errorf("restore %s: %w", cmd.Database, err)
	}
	tables, err := run("SHOW TABLES FROM " + quoteName(scratch))
	if err != nil {
		return nil, err
	}
	var rows int64
	for _, t := range tables {
		name := t[0].ToString()
		// a restore fills empty tables only: it never mixes rows
		had, err := run(fmt.Sprintf("SELECT COUNT(*) FROM %s.%s", quoteName(cmd.Database), quoteName(name)))
		if err != nil {
			return nil, fmt.Errorf("restore %s.%s: %w", cmd.Database, name, err)
		}
		if len(had) != 1 || had[0][0].ToString() != "0" {
			return nil, fmt.Errorf("restore %s.%s: the table holds rows already", cmd.Database, name)
		}
		if _, err := run(fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", quoteName(cmd.Database), quoteName(name),
			quoteName(scratch), quoteName(name))); err != nil {
			return nil, fmt.Errorf("restore %s.%s: %w", cmd.Database, name, err)
		}
		got, err := run(fmt.Sprintf("SELECT COUNT(*) FROM %s.%s", quoteName(cmd.Database), quoteName(name)))
		if err == nil && len(got) == 1 {
			var k int64
			fmt.Sscan(got[0][0].ToString(), &k)
			rows += k
		}
	}
	res := &sqltypes.Result{Fields: []*querypb.Field{varcharField("Database"), intField("Rows")}}
	res.Rows = [][]sqltypes.Value{{strValue(cmd.Database), intValue(rows)}}
	return res, nil
}

func quoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
