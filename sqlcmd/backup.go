package sqlcmd

import "strconv"

// Backups: BACKUP DATABASE and RESTORE DATABASE (SingleStore's syntax),
// and the node-to-node steps the master aggregator runs them with.

// Backup is BACKUP DATABASE db TO 'path'.
type Backup struct{ Database, Path string }

// Restore is RESTORE DATABASE db FROM 'path'.
type Restore struct{ Database, Path string }

// ShowBackupStatus is SHOW BACKUP STATUS: the backups and restores this
// master aggregator ran.
type ShowBackupStatus struct{}

// CommitGate is CANOPY COMMIT GATE CLOSE ms | OPEN on an aggregator: while
// closed (at most ms), no distributed commit decides or delivers, so no
// transaction is committed on some partitions and not on others.
type CommitGate struct {
	Close  bool
	Millis int
}

// BackupSnapshot is CANOPY BACKUP SNAPSHOT 'tag' 'db_0' 'db_3' …: a leaf
// takes a storage snapshot of each, now, and keeps them under tag.
type BackupSnapshot struct {
	Tag       string
	Databases []string
}

// BackupWrite is CANOPY BACKUP WRITE 'tag' TO 'dir': a leaf writes the
// snapshots kept under tag as files in dir and lets them go.
type BackupWrite struct{ Tag, Dir string }

// BackupRelease is CANOPY BACKUP RELEASE 'tag': the snapshots go unwritten.
type BackupRelease struct{ Tag string }

// RestorePartition is CANOPY RESTORE PARTITION db FROM 'file': a leaf loads
// a partition's backup file into its (empty) master copy of db.
type RestorePartition struct{ Database, File string }

func (Backup) command()           {}
func (Restore) command()          {}
func (ShowBackupStatus) command() {}
func (CommitGate) command()       {}
func (BackupSnapshot) command()   {}
func (BackupWrite) command()      {}
func (BackupRelease) command()    {}
func (RestorePartition) command() {}

func parseBackup(p *parser) Command {
	switch {
	case p.keyword("BACKUP", "DATABASE"):
		c := Backup{Database: p.next().text}
		if p.keyword("TO") {
			if t := p.next(); t.quoted {
				c.Path = t.text
			}
		}
		if c.Database != "" && c.Path != "" && p.done() {
			return c
		}
	case p.keyword("RESTORE", "DATABASE"):
		c := Restore{Database: p.next().text}
		if p.keyword("FROM") {
			if t := p.next(); t.quoted {
				c.Path = t.text
			}
		}
		if c.Database != "" && c.Path != "" && p.done() {
			return c
		}
	case p.keyword("SHOW", "BACKUP", "STATUS"):
		if p.done() {
			return ShowBackupStatus{}
		}
	case p.keyword("CANOPY", "COMMIT", "GATE", "OPEN"):
		if p.done() {
			return CommitGate{}
		}
	case p.keyword("CANOPY", "COMMIT", "GATE", "CLOSE"):
		ms, err := strconv.Atoi(p.next().text)
		if err == nil && ms > 0 && p.done() {
			return CommitGate{Close: true, Millis: ms}
		}
	case p.keyword("CANOPY", "BACKUP", "SNAPSHOT"):
		c := BackupSnapshot{Tag: p.next().text}
		for !p.done() {
			t := p.next()
			if !t.quoted {
				return nil
			}
			c.Databases = append(c.Databases, t.text)
		}
		if c.Tag != "" && len(c.Databases) > 0 {
			return c
		}
	case p.keyword("CANOPY", "BACKUP", "WRITE"):
		c := BackupWrite{Tag: p.next().text}
		if p.keyword("TO") {
			if t := p.next(); t.quoted {
				c.Dir = t.text
			}
		}
		if c.Tag != "" && c.Dir != "" && p.done() {
			return c
		}
	case p.keyword("CANOPY", "BACKUP", "RELEASE"):
		c := BackupRelease{Tag: p.next().text}
		if c.Tag != "" && p.done() {
			return c
		}
	case p.keyword("CANOPY", "RESTORE", "PARTITION"):
		c := RestorePartition{Database: p.next().text}
		if p.keyword("FROM") {
			if t := p.next(); t.quoted {
				c.File = t.text
			}
		}
		if c.Database != "" && c.File != "" && p.done() {
			return c
		}
	}
	return nil
}
