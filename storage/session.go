package storage

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/mysql"
)

// Session is a client session of a node: GMS's base session plus the
// storage transaction it has open.
type Session struct {
	*sql.BaseSession
	store   *Store
	txn     *Txn
	stmtSeq uint64
	// dupEntry is MySQL's text for the last duplicate key error.
	dupEntry string
	guard    Guard
	// routed: the session is an aggregator's (SetRouted)
	routed func() bool
	// fixedTime is the time, in microseconds since the epoch, the client
	// fixed its statements' time at (SET timestamp); 0: the clock's
	fixedTime atomic.Int64
}

// Guard refuses a session's changes to some databases. A client of a
// cluster's leaf may not change the cluster's partitions: the guard is
// checked when GMS plans a write or schema change, when a database is
// created or dropped, and when a transaction commits, so that no path (a
// trigger, a procedure) gets around it.
type Guard interface {
	// Active reports whether the guard refuses anything now (cheap, so
	// that sessions it lets through pay nothing more).
	Active() bool
	// Check refuses a change to db (an error) or allows it (nil).
	Check(db string) error
}

// SetRouted tells the session how to know whether it is an aggregator's
// link to this node, whose reads of a partition must find its master
// (readFence).
func (s *Session) SetRouted(f func() bool) { s.routed = f }

// SetGuard installs the session's guard.
func (s *Session) SetGuard(g Guard) { s.guard = g }

var (
	_ sql.TransactionSession    = (*Session)(nil)
	_ sql.LifecycleAwareSession = (*Session)(nil)
)

// NewSession wraps a GMS base session.
func NewSession(base *sql.BaseSession, s *Store) *Session {
	return &Session{BaseSession: base, store: s}
}

// GetSessionVariable reads a global-only variable's current global value,
// as MySQL does: such a variable has no session copy, and it may change
// (cluster variables change through the metadata) after a session began.
func (s *Session) GetSessionVariable(ctx *sql.Context, name string) (interface{}, error) {
	if sv, val, ok := sql.SystemVariables.GetGlobal(name); ok && sv.IsGlobalOnly() {
		if _, isSet := sv.GetType().(sql.SetType); !isSet {
			return val, nil
		}
	}
	return s.BaseSession.GetSessionVariable(ctx, name)
}

// SetSessionVariable sets a session variable. SET timestamp also fixes
// the time of the session's statements, as in MySQL (mysqlbinlog replays
// statements that way, and an aggregator gives every partition of a
// statement its time so): GMS keeps the value but its clock ignores it,
// so NewContext applies it. SET timestamp = DEFAULT gives GMS's default,
// 1000, which stands for the clock again.
func (s *Session) SetSessionVariable(ctx *sql.Context, name string, value interface{}) error {
	if err := s.BaseSession.SetSessionVariable(ctx, name, value); err != nil {
		return err
	}
	if strings.EqualFold(name, timestampVar) {
		s.fixTime(ctx)
	}
	if strings.EqualFold(name, FoundRowsVar) {
		on, _ := sql.ConvertToBool(ctx, value)
		c := s.Client()
		if on {
			c.Capabilities |= mysql.CapabilityClientFoundRows
		} else {
			c.Capabilities &^= mysql.CapabilityClientFoundRows
		}
		s.SetClient(c)
	}
	return nil
}

// FoundRowsVar is the session variable that gives a session the
// CLIENT_FOUND_ROWS capability (affected rows count the rows found, not
// only those changed) after it connected: an aggregator's pooled
// connection to a leaf takes its client's so. The node registers it.
const FoundRowsVar = "canopy_client_found_rows"

const timestampVar = "timestamp"

// fixTime takes the session's timestamp variable as its statements' time.
func (s *Session) fixTime(ctx *sql.Context) {
	s.fixedTime.Store(0)
	v, err := s.BaseSession.GetSessionVariable(ctx, timestampVar)
	f, ok := v.(float64)
	sv, _, known := sql.SystemVariables.GetGlobal(timestampVar)
	if err != nil || !ok || !known || f == sv.GetDefault() {
		return
	}
	s.fixedTime.Store(int64(math.Round(f * 1e6)))
}

// NewContext is sql.NewContext with the time the session's client fixed
// (SET timestamp), if it did, as the statement's time: NOW() and the
// other clock functions, and CURRENT_TIMESTAMP defaults and ON UPDATE
// columns, read it. A node makes its statements' contexts with it.
func NewContext(ctx context.Context, opts ...sql.ContextOption) *sql.Context {
	c := sql.NewContext(ctx, opts...)
	if s, ok := c.Session.(*Session); ok {
		if us := s.fixedTime.Load(); us != 0 {
			c.SetQueryTime(time.UnixMicro(us))
		}
	}
	return c
}

// GetAllSessionVariables is SHOW VARIABLES' view, global-only variables
// at their current global values.
func (s *Session) GetAllSessionVariables() map[string]interface{} {
	m := s.BaseSession.GetAllSessionVariables()
	for name := range m {
		if sv, val, ok := sql.SystemVariables.GetGlobal(name); ok && sv.IsGlobalOnly() {
			if _, isSet := sv.GetType().(sql.SetType); !isSet {
				m[name] = val
			}
		}
	}
	return m
}

func sessionFrom(ctx *sql.Context) *Session {
	s, _ := ctx.Session.(*Session)
	return s
}

// txnFrom returns the storage transaction of the statement, if any.
func txnFrom(ctx *sql.Context) *Txn {
	if t, ok := ctx.GetTransaction().(*Txn); ok {
		return t
	}
	return nil
}

func (s *Session) StartTransaction(ctx *sql.Context, c sql.TransactionCharacteristic) (sql.Transaction, error) {
	if s.txn != nil {
		// The engine dropped a transaction without ending it.
		s.txn.Rollback()
	}
	t := s.store.Begin(c == sql.ReadOnly)
	t.guard = s.guard
	if v, err := ctx.GetSessionVariable(ctx, "innodb_lock_wait_timeout"); err == nil {
		if n, ok := toInt(v); ok && n > 0 {
			t.lockWait = time.Duration(n) * time.Second
		}
	}
	if v, err := ctx.GetSessionVariable(ctx, sql.AutoCommitSessionVar); err == nil {
		ac, _ := sql.ConvertToBool(ctx, v)
		t.autocommit = ac && !s.GetIgnoreAutoCommit()
	}
	s.txn = t
	return t, nil
}

func (s *Session) CommitTransaction(ctx *sql.Context, tx sql.Transaction) error {
	t, ok := tx.(*Txn)
	if !ok {
		return nil
	}
	if s.txn == t {
		s.txn = nil
	}
	if err := t.Commit(); err != nil {
		// As in MySQL, a failed commit rolled the transaction back and
		// ended it (t.Commit finished it). GMS keeps it as the session's
		// transaction, and with it an explicit BEGIN's autocommit
		// suppression: the session's next statements would run inside a
		// transaction that never commits.
		s.SetTransaction(nil)
		s.SetIgnoreAutoCommit(false)
		return err
	}
	return nil
}

func (s *Session) Rollback(ctx *sql.Context, tx sql.Transaction) error {
	if t, ok := tx.(*Txn); ok {
		t.Rollback()
		if s.txn == t {
			s.txn = nil
		}
	}
	return nil
}

func (s *Session) CreateSavepoint(ctx *sql.Context, tx sql.Transaction, name string) error {
	if t, ok := tx.(*Txn); ok {
		t.savepoint(name)
	}
	return nil
}

func (s *Session) RollbackToSavepoint(ctx *sql.Context, tx sql.Transaction, name string) error {
	if t, ok := tx.(*Txn); ok {
		return t.rollbackToSavepoint(name)
	}
	return nil
}

func (s *Session) ReleaseSavepoint(ctx *sql.Context, tx sql.Transaction, name string) error {
	if t, ok := tx.(*Txn); ok && !t.releaseSavepoint(name) {
		return sql.ErrSavepointDoesNotExist.New(name)
	}
	return nil
}

// CommandBegin starts a statement.
func (s *Session) CommandBegin() error {
	s.stmtSeq++
	s.dupEntry = ""
	return nil
}

// CommandEnd makes sure no transaction outlives the statement that should
// have ended it: an autocommit statement that failed before committing, or
// a transaction the engine let go of, is rolled back and its locks freed.
func (s *Session) CommandEnd() {
	if s.txn == nil {
		return
	}
	if s.GetTransaction() != s.txn || (s.txn.autocommit && !s.GetIgnoreAutoCommit()) {
		s.txn.Rollback()
		if s.GetTransaction() == s.txn {
			s.SetTransaction(nil)
		}
		s.txn = nil
	}
}

// SessionEnd rolls back whatever the client left open.
func (s *Session) SessionEnd() {
	if s.txn != nil {
		s.txn.Rollback()
		s.txn = nil
	}
}

// TakeDuplicateEntry returns (once) MySQL's message for the duplicate key
// error the last statement raised.
func (s *Session) TakeDuplicateEntry() string {
	m := s.dupEntry
	s.dupEntry = ""
	return m
}

// StatementFailed undoes the writes of the failed statement, keeping the
// rest of an explicit transaction (MySQL statement atomicity).
func (s *Session) StatementFailed() {
	if s.txn != nil && s.txn.stmtSeq == s.stmtSeq {
		s.txn.rollbackStatement()
	}
}

// AbortTransaction rolls back the whole transaction, as MySQL does after a
// deadlock.
func (s *Session) AbortTransaction() {
	if s.txn != nil {
		s.txn.Rollback()
		s.txn = nil
	}
	s.SetTransaction(nil)
	s.SetIgnoreAutoCommit(false)
}

// implicitCommit commits the session's open transaction before a schema
// change, as MySQL does.
func implicitCommit(ctx *sql.Context) error {
	s := sessionFrom(ctx)
	if s == nil || s.txn == nil || s.txn.empty() {
		return nil
	}
	// The transaction stays open (and empty): the engine commits it after
	// the DDL statement.
	return s.txn.Commit()
}

func toInt(v interface{}) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), true
	}
	return 0, false
}
