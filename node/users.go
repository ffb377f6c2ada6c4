package node

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/mysql_db"
	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/internal/linkauth"
)

// users keeps a node's MySQL accounts and grants, enforced by GMS's
// MySQLDb. A leaf, or a node in no cluster, keeps its own in its store
// (the accounts ADD LEAF names are a leaf's). Every aggregator enforces the
// cluster's, which live in the cluster metadata: the master aggregator
// records each change there (GMS calls Persist with the serialized tables
// while it holds its editor lock), and the others load them when they
// apply the change. Aggregators also hold the internal account, whose
// password derives from the cluster secret.
type users struct {
	n  *Node
	mu sync.Mutex // serializes loads of the cluster's accounts
	// cluster: the accounts in memory are the cluster's
	cluster atomic.Bool
	// loaded is the hash of the cluster accounts in memory
	loaded atomic.Pointer[[sha256.Size]byte]
	// persisting: the master is recording a change it made (holding GMS's
	// editor lock, so a load must not wait for that lock meanwhile)
	persisting atomic.Bool
}

// usersKey is the node-local key of a node's own accounts.
const usersKey = "users"

func (u *users) db() *mysql_db.MySQLDb { return u.n.mysqlDb() }

// start enables privilege checks and loads the node's own accounts. A
// node's first start creates root@'%', with the password in
// rootPasswordFile if one is given, else none (a local cluster in one
// command; set one with ALTER USER root IDENTIFIED BY …).
func (u *users) start(rootPasswordFile string) error {
	db := u.db()
	db.SetPersister(u)
	db.SetEnabled(true)
	data, ok, err := u.n.store.GetLocal(usersKey)
	if err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	if ok && len(data) > 0 {
		if rootPasswordFile != "" {
			u.n.log.Info("accounts exist already: --root-password-file is used only when a node first starts (change root's password with ALTER USER)")
		}
		return u.loadLocal(data)
	}
	password := ""
	if rootPasswordFile != "" {
		b, err := os.ReadFile(rootPasswordFile)
		if err != nil {
			return fmt.Errorf("--root-password-file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	ctx := sql.NewEmptyContext()
	ed := db.Editor()
	defer ed.Close()
	db.AddSuperUser(ed, "root", "%", password)
	return db.Persist(ctx, ed)
}

// loadLocal makes the node's own accounts the ones in force.
func (u *users) loadLocal(data []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cluster.Store(false)
	u.loaded.Store(nil)
	db := u.db()
	ed := db.Editor()
	defer ed.Close()
	if err := db.OverwriteUsersAndGrantData(sql.NewEmptyContext(), ed, data); err != nil {
		return fmt.Errorf("load accounts: %w", err)
	}
	return nil
}

// useLocal makes the accounts in force the node's own (it left its
// cluster): an aggregator keeps the cluster's, which governed the data it
// holds, without the internal account.
func (u *users) useLocal() error {
	if !u.cluster.Load() {
		data, _, err := u.n.store.GetLocal(usersKey)
		if err != nil {
			return err
		}
		return u.loadLocal(data)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cluster.Store(false)
	u.loaded.Store(nil)
	db := u.db()
	ed := db.Editor()
	defer ed.Close()
	ed.RemoveUser(mysql_db.UserPrimaryKey{User: linkauth.InternalUser, Host: "%"})
	return db.Persist(sql.NewEmptyContext(), ed)
}

// useCluster makes the cluster's accounts the ones in force on an
// aggregator. A master whose metadata has none yet (it founded the
// cluster) records its own; a child whose metadata has none yet (it just
// joined) admits only the cluster's nodes until the metadata arrives.
func (u *users) useCluster() error {
	a := u.n.aggregator()
	if a == nil {
		return nil
	}
	u.cluster.Store(true)
	st := a.State()
	switch {
	case len(st.Users) > 0:
		u.syncCluster(false)
	case a.IsMaster():
		data, _, err := u.n.store.GetLocal(usersKey)
		if err != nil {
			return err
		}
		h := sha256.Sum256(data)
		u.loaded.Store(&h)
		if err := a.SetUsers(data); err != nil {
			return fmt.Errorf("record the cluster's accounts: %w", err)
		}
		u.addInternal()
	default:
		// a child that just joined, or whose metadata was wiped to rejoin:
		// nothing but the internal account until the metadata arrives
		u.mu.Lock()
		defer u.mu.Unlock()
		db := u.db()
		ed := db.Editor()
		db.OverwriteUsersAndGrantData(sql.NewEmptyContext(), ed, emptyUsers())
		u.addInternalLocked(ed)
		ed.Close()
	}
	return nil
}

// emptyUsers is the serialization of no accounts.
func emptyUsers() []byte {
	empty := mysql_db.CreateEmptyMySQLDb()
	var out []byte
	empty.SetPersister(capture(func(b []byte) { out = b }))
	ed := empty.Editor()
	empty.Persist(sql.NewEmptyContext(), ed)
	ed.Close()
	return out
}

type capture func([]byte)

func (c capture) Persist(_ *sql.Context, data []byte) error {
	c(data)
	return nil
}

func (u *users) addInternal() {
	ed := u.db().Editor()
	defer ed.Close()
	u.addInternalLocked(ed)
}

func (u *users) addInternalLocked(ed *mysql_db.Editor) {
	if secret := u.n.clusterSecret(); secret != nil {
		u.db().AddEphemeralSuperUser(ed, linkauth.InternalUser, "%", linkauth.InternalPassword(secret))
	}
}

// changed is called when the metadata's accounts change, on the raft
// apply goroutine. The load needs GMS's editor lock, which the master
// holds while it records a change (and waits for this apply): so it runs
// on its own goroutine, reading the latest metadata (an older change never
// wins), and the apply waits for it only a bounded time, which a child
// normally needs (a client of a child sees a change once the master's
// statement returned).
func (u *users) changed() {
	done := make(chan struct{})
	go func() {
		u.syncCluster(false)
		close(done)
	}()
	if u.persisting.Load() {
		return
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		u.n.log.Warn("loading the cluster's accounts is waiting for the account tables; it goes on in the background")
	}
}

// syncCluster loads the metadata's accounts unless they are in memory
// already (force: load anyway, after a change was refused half-way).
func (u *users) syncCluster(force bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a := u.n.aggregator()
	if a == nil || !u.cluster.Load() {
		return
	}
	data := a.State().Users
	if len(data) == 0 {
		return
	}
	h := sha256.Sum256(data)
	if prev := u.loaded.Load(); !force && prev != nil && *prev == h {
		return
	}
	db := u.db()
	ed := db.Editor()
	defer ed.Close()
	if err := db.OverwriteUsersAndGrantData(sql.NewEmptyContext(), ed, data); err != nil {
		u.n.log.Error("loading the cluster's accounts", "err", err)
		return
	}
	u.addInternalLocked(ed)
	u.loaded.Store(&h)
}

// Persist records a change of accounts GMS made (mysql_db.MySQLDbPersistence).
func (u *users) Persist(ctx *sql.Context, data []byte) error {
	a := u.n.aggregator()
	if holdsInternal(data) {
		// however a statement got here, the internal account is never a
		// stored one: undo the change in memory
		if a == nil || !u.cluster.Load() {
			go u.useLocal()
		} else {
			go u.syncCluster(true)
		}
		return errReservedAccount
	}
	if a == nil || !u.cluster.Load() {
		return u.n.store.SetLocal(usersKey, data)
	}
	if !a.IsMaster() {
		// a child forwards account statements; one that ran here anyway
		// (the master changed meanwhile) is undone
		go u.syncCluster(true)
		return mysql.NewSQLError(1105, "HY000", "Accounts change on the master aggregator; run the statement again")
	}
	h := sha256.Sum256(data)
	u.loaded.Store(&h)
	u.persisting.Store(true)
	defer u.persisting.Store(false)
	// committed here; the node waits for the children once GMS let go of
	// its lock (syncChildren), so logins are not held meanwhile
	if err := a.SetUsers(data); err != nil {
		go u.syncCluster(true) // memory holds a change the cluster did not take
		return fmt.Errorf("record the change of accounts in the cluster metadata: %w", err)
	}
	return nil
}

// holdsInternal reports whether serialized accounts hold the reserved
// internal account (or cannot be read).
func holdsInternal(data []byte) bool {
	db := mysql_db.CreateEmptyMySQLDb()
	ed := db.Editor()
	defer ed.Close()
	if err := db.OverwriteUsersAndGrantData(sql.NewEmptyContext(), ed, data); err != nil {
		return true
	}
	found := false
	ed.VisitUsers(func(usr *mysql_db.User) {
		found = found || strings.EqualFold(usr.User, linkauth.InternalUser)
	})
	return found
}

// Account attributes Canopy keeps in GMS's user entries (which keep
// whatever JSON they are given): MySQL's REQUIRE SSL, which GMS parses but
// does not keep.
type accountAttributes struct {
	RequireSSL bool `json:"canopy_require_ssl,omitempty"`
}

func attributesOf(usr *mysql_db.User) accountAttributes {
	var at accountAttributes
	if usr != nil && usr.Attributes != nil {
		json.Unmarshal([]byte(*usr.Attributes), &at)
	}
	return at
}

// rootWithoutPassword reports whether root@'%' has no password.
func (u *users) rootWithoutPassword() bool {
	db := u.db()
	rd := db.Reader()
	defer rd.Close()
	usr, ok := rd.GetUser(mysql_db.UserPrimaryKey{User: "root", Host: "%"})
	return ok && usr.AuthString == ""
}

// requiresTLS reports whether the account a login matched (as GMS
// matches a user and host to an account) must connect with TLS.
func (u *users) requiresTLS(user, host string) bool {
	db := u.db()
	rd := db.Reader()
	defer rd.Close()
	usr := db.GetUser(rd, user, host, false)
	return usr != nil && attributesOf(usr).RequireSSL
}

// setRequireSSL records an account's TLS requirement.
func (u *users) setRequireSSL(ctx *sql.Context, user, host string, require bool) error {
	db := u.db()
	ed := db.Editor()
	defer ed.Close()
	usr, ok := ed.GetUser(mysql_db.UserPrimaryKey{User: user, Host: host})
	if !ok {
		return mysql.NewSQLError(1396, "HY000", "Operation ALTER USER failed for '%s'@'%s'", user, host)
	}
	at := attributesOf(usr)
	if at.RequireSSL == require {
		return nil
	}
	at.RequireSSL = require
	b, _ := json.Marshal(at)
	attrs := string(b)
	changed := *usr
	changed.Attributes = &attrs
	if attrs == "{}" {
		changed.Attributes = nil
	}
	ed.RemoveUser(mysql_db.UserPrimaryKey{User: user, Host: host}) // a changed entry replaces the old one
	ed.PutUser(&changed)
	return db.Persist(ctx, ed)
}
