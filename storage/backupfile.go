package storage

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Backup files (BACKUP DATABASE): a database's snapshot as one file, a
// JSON header line with its position, then its chunks (keys and values,
// as a replica's provisioning gets them), each framed by its uvarint
// length, then a zero.

// BackupHeader is a backup file's first line.
type BackupHeader struct {
	Format   int    `json:"format"`
	Database string `json:"database"`
	Term     uint64 `json:"term"`
	LSN      uint64 `json:"lsn"`
	Commits  uint64 `json:"commits"`
}

// WriteBackupFile writes a snapshot of database name to path (through a
// temporary file, synced, then renamed) and returns its size.
func WriteBackupFile(path, name string, sn *Snapshot) (int64, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(f, 1<<20)
	hdr, _ := json.Marshal(BackupHeader{Format: 1, Database: name, Term: sn.Pos.Term, LSN: sn.Pos.LSN, Commits: sn.Commits})
	w.Write(append(hdr, '\n'))
	var lenBuf [binary.MaxVarintLen64]byte
	for {
		chunk, err := sn.Next(1 << 20)
		if err != nil {
			f.Close()
			return 0, err
		}
		w.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(chunk)))])
		if len(chunk) == 0 {
			break
		}
		w.Write(chunk)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return info.Size(), os.Rename(tmp, path)
}

// InstallBackupFile installs a backup file as database scratch, a replica
// of its own that nothing follows (dropped and made again if it exists),
// the way a replica is provisioned from a snapshot.
func (s *Store) InstallBackupFile(file, scratch string) (BackupHeader, error) {
	var hdr BackupHeader
	f, err := os.Open(file)
	if err != nil {
		return hdr, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	line, err := r.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &hdr) != nil || hdr.Format != 1 {
		return hdr, fmt.Errorf("%s is not a backup file", file)
	}
	if s.HasDatabase(scratch) {
		if err := s.DropDatabase(scratch); err != nil {
			return hdr, err
		}
	}
	if _, err := s.EnsureReplica(scratch); err != nil {
		return hdr, err
	}
	if err := s.BeginSnapshot(scratch); err != nil {
		return hdr, err
	}
	for {
		size, err := binary.ReadUvarint(r)
		if err != nil {
			return hdr, fmt.Errorf("%s is cut short: %w", file, err)
		}
		if size == 0 {
			break
		}
		if size > 64<<20 {
			return hdr, fmt.Errorf("a chunk of %d bytes in %s", size, file)
		}
		chunk := make([]byte, size)
		if _, err := io.ReadFull(r, chunk); err != nil {
			return hdr, fmt.Errorf("%s is cut short: %w", file, err)
		}
		if err := s.ApplySnapshotChunk(scratch, chunk); err != nil {
			return hdr, err
		}
	}
	return hdr, s.FinishSnapshot(scratch, Position{Term: hdr.Term, LSN: hdr.LSN}, hdr.Commits)
}
