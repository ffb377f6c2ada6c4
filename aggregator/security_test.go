package aggregator_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/mux"
	"github.com/canopydb/canopy/internal/testutil"
)

// expectErr runs a statement that must fail with a MySQL error number.
func expectErr(t *testing.T, db *sql.DB, code uint16, q string, args ...interface{}) {
	t.Helper()
	_, err := db.Exec(q, args...)
	me := testutil.MySQLError(err)
	if me == nil || me.Number != code {
		t.Errorf("%s: got %v, want error %d", q, err, code)
	}
}

// login checks whether an account can connect.
func login(n *testutil.Node, user, password string) error {
	db, err := sql.Open("mysql", n.DSNAs(user, password, "", true))
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Ping()
}

// TestUsersAndPrivileges: accounts live in the cluster metadata, so the
// master and a child enforce the same ones, across restarts; a wrong
// password is refused with 1045, a missing privilege with MySQL's 1142,
// 1044 or 1227, also on statements the aggregator routes straight to the
// leaves; cluster statements need SUPER, and node-internal ones are for
// the cluster's own nodes.
func TestUsersAndPrivileges(t *testing.T) {
	c := testutil.StartCluster(t, 2, 1)
	ma, child := c.MA, c.Children[0]
	root := ma.DB("")
	testutil.Exec(t, root, "CREATE DATABASE shop PARTITIONS 4")
	testutil.Exec(t, ma.DB("shop"), "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	testutil.Exec(t, ma.DB("shop"), "CREATE REFERENCE TABLE r (id INT PRIMARY KEY)")
	testutil.Exec(t, ma.DB("shop"), "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)")

	// any name with any password used to connect
	for _, n := range []*testutil.Node{ma, child} {
		if err := login(n, "foo", "wrong"); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1045 {
			t.Errorf("unknown account on port %d: %v, want 1045", n.Port, err)
		}
	}

	testutil.Exec(t, root, "CREATE USER app IDENTIFIED BY 'app-pw'")
	testutil.Exec(t, root, "GRANT SELECT, INSERT ON shop.* TO app")
	c.WaitCaughtUp(child, 10*time.Second)
	for _, n := range []*testutil.Node{ma, child} {
		if err := login(n, "app", "wrong"); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1045 {
			t.Errorf("app with a wrong password on port %d: %v, want 1045", n.Port, err)
		}
		if err := login(n, "app", "app-pw"); err != nil {
			t.Errorf("app on port %d: %v", n.Port, err)
		}
	}

	// the mariadb client, as a person would try it
	mariadb := requireMariaDB(t)
	for _, n := range []*testutil.Node{ma, child} {
		out, err := exec.Command(mariadb, "-h127.0.0.1", fmt.Sprintf("-P%d", n.Port), "-uapp", "-pwrong", "-e", "SELECT 1").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ERROR 1045 (28000)") {
			t.Errorf("mariadb -uapp -pwrong on port %d: %v\n%s", n.Port, err, out)
		}
		if out := runMariaDB(t, mariadb, n, "-uapp", "-papp-pw", "-e", "SELECT COUNT(*) FROM shop.t"); !regexpThree.MatchString(out) {
			t.Errorf("mariadb -uapp -papp-pw on port %d:\n%s", n.Port, out)
		}
	}

	for i, n := range []*testutil.Node{ma, child} {
		app := n.DBAs("app", "app-pw", "shop")
		prepared := n.PreparingDB("shop") // root's, for contrast
		id := 100 + i
		testutil.Exec(t, app, fmt.Sprintf("INSERT INTO t VALUES (%d, 1)", id)) // routed
		testutil.ExpectRows(t, app, fmt.Sprintf("SELECT v FROM t WHERE id = %d", id), "1")
		expectErr(t, app, 1142, "UPDATE t SET v = 2 WHERE id = 1")          // routed
		expectErr(t, app, 1142, "UPDATE t SET v = 2")                       // broadcast
		expectErr(t, app, 1142, "DELETE FROM t WHERE id = 2")               // routed
		testutil.Exec(t, app, fmt.Sprintf("INSERT INTO r VALUES (%d)", id)) // reference write
		expectErr(t, app, 1142, "DROP TABLE t")                             // schema change
		expectErr(t, app, 1142, "CREATE TABLE u (id INT PRIMARY KEY)")      // sharded CREATE TABLE
		expectErr(t, app, 1044, "CREATE DATABASE other PARTITIONS 2")       // cluster DDL
		expectErr(t, app, 1044, "DROP DATABASE shop")
		expectErr(t, app, 1227, "SET GLOBAL redundancy_level = 2")  // cluster variable
		expectErr(t, app, 1227, "REBALANCE PARTITIONS ON shop")     // cluster statement
		expectErr(t, app, 1227, "ADD LEAF root@'127.0.0.1':1")      // cluster statement
		expectErr(t, app, 1227, "SHOW LEAVES")                      // cluster state
		expectErr(t, app, 1227, "BACKUP DATABASE shop TO '/tmp/x'") // backups
		expectErr(t, app, 1227, "SHOW BACKUP STATUS")
		// every database's sizes and the cluster's events: PROCESS only
		testutil.ExpectRows(t, app, "SELECT COUNT(*) FROM information_schema.TABLE_STATISTICS", "0")
		testutil.ExpectRows(t, app, "SELECT COUNT(*) FROM information_schema.MV_EVENTS", "0")
		expectErr(t, app, 1227, "CANOPY DROP PARTITION 'shop_0'")  // node-internal
		expectErr(t, root, 1227, "CANOPY DROP PARTITION 'shop_0'") // even for root
		expectErr(t, root, 1227, "CANOPY REPLICATE '[]'")          // even for root
		expectErr(t, app, 1227, "CREATE USER other")               // accounts
		expectErr(t, app, 1142, "SELECT * FROM mysql.user")        // engine's own check
		if _, err := prepared.Exec("UPDATE t SET v = ? WHERE id = ?", 11, 1); err != nil {
			t.Error(err)
		}
		// the prepared-statement fast path checks too
		appPrep := n.PreparingDBAs("app", "app-pw", "shop")
		if _, err := appPrep.Exec("UPDATE t SET v = ? WHERE id = ?", 12, 1); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1142 {
			t.Errorf("prepared UPDATE by app: %v, want 1142", err)
		}
		if _, err := appPrep.Exec("INSERT INTO t VALUES (?, ?)", 200+i, 1); err != nil {
			t.Errorf("prepared INSERT by app: %v", err)
		}
	}
	testutil.ExpectRows(t, ma.DB("shop"), "SELECT id, v FROM t WHERE id <= 3 ORDER BY id", "1,11", "2,20", "3,30")

	// account statements on a child take effect on the master, with the
	// child's client's privileges
	childRoot := child.DB("")
	testutil.Exec(t, childRoot, "ALTER USER app IDENTIFIED BY 'pw2'")
	testutil.Exec(t, childRoot, "GRANT UPDATE ON shop.t TO app")
	if err := login(ma, "app", "app-pw"); err == nil {
		t.Error("the old password still works on the master")
	}
	testutil.Exec(t, ma.DBAs("app", "pw2", "shop"), "UPDATE t SET v = 13 WHERE id = 1")
	grants := strings.Join(testutil.Rows(t, childRoot, "SHOW GRANTS FOR app"), "\n")
	if !strings.Contains(grants, "GRANT SELECT, INSERT ON `shop`.*") || !strings.Contains(grants, "GRANT UPDATE ON `shop`.`t`") {
		t.Errorf("SHOW GRANTS FOR app on the child:\n%s", grants)
	}
	expectErr(t, child.DBAs("app", "pw2", ""), 1227, "GRANT SELECT ON *.* TO app") // no GRANT OPTION
	expectErr(t, child.DBAs("app", "pw2", ""), 1044, "GRANT SELECT ON shop.* TO app")
	testutil.Exec(t, childRoot, "SET PASSWORD FOR app = 'pw3'")
	if err := login(child, "app", "pw3"); err != nil {
		t.Errorf("after SET PASSWORD on the child: %v", err)
	}
	testutil.Exec(t, child.DBAs("app", "pw3", ""), "SET PASSWORD = 'pw4'") // one's own
	if err := login(ma, "app", "pw4"); err != nil {
		t.Errorf("after SET PASSWORD by app: %v", err)
	}

	// the internal account is reserved
	expectErr(t, root, 1227, "CREATE USER canopy_node IDENTIFIED BY 'x'")
	expectErr(t, root, 1227, "DROP USER canopy_node")
	expectErr(t, childRoot, 1227, "GRANT SELECT ON *.* TO canopy_node")
	if err := login(ma, "canopy_node", ""); err == nil {
		t.Error("the internal account logged in without its password")
	}

	// root gets a password: the cluster goes on (its links do not use
	// root), and a new leaf joins
	testutil.Exec(t, root, "ALTER USER root IDENTIFIED BY 'root-pw'")
	for _, n := range []*testutil.Node{ma, child} {
		n.RootPassword = "root-pw"
		if err := login(n, "root", ""); err == nil {
			t.Errorf("root without its password on port %d", n.Port)
		}
	}
	c.AddLeaf(testutil.StartNode(t), 0)
	testutil.Exec(t, child.DB("shop"), "INSERT INTO t VALUES (4, 40)")
	testutil.Exec(t, child.DB("shop"), "CREATE TABLE u (id INT PRIMARY KEY)") // forwarded DDL

	// accounts survive restarts of the master and the child
	child.Stop()
	ma.Stop()
	ma.Start()
	child.Start()
	c.WaitCaughtUp(child, 20*time.Second)
	for _, n := range []*testutil.Node{ma, child} {
		testutil.ExpectRows(t, n.DBAs("app", "pw4", "shop"), "SELECT COUNT(*) FROM t", "8")
		if err := login(n, "app", "pw3"); err == nil {
			t.Errorf("an old password works after a restart on port %d", n.Port)
		}
		expectErr(t, n.DBAs("app", "pw4", "shop"), 1142, "DELETE FROM t WHERE id = 4")
	}
	testutil.Exec(t, child.DB(""), "DROP USER app")
	if err := login(ma, "app", "pw4"); err == nil {
		t.Error("a dropped account logs in on the master")
	}
}

// TestDatabaseNamesCannotCollide: a database named like another's
// partition (or whose partitions would take an existing name) is refused,
// and a client of a leaf cannot drop or write a partition: before, CREATE
// DATABASE shop_1 was accepted and DROP DATABASE shop_1 dropped
// partition 1 of shop.
func TestDatabaseNamesCannotCollide(t *testing.T) {
	c := testutil.StartCluster(t, 2, 0)
	root := c.MA.DB("")
	testutil.Exec(t, root, "CREATE DATABASE shop PARTITIONS 4")
	shop := c.MA.DB("shop")
	testutil.Exec(t, shop, "CREATE TABLE t (id INT PRIMARY KEY)")
	for i := 0; i < 40; i++ {
		testutil.Exec(t, shop, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
	}
	expectErr(t, root, 1102, "CREATE DATABASE shop_1")
	expectErr(t, root, 1102, "CREATE DATABASE SHOP_3 PARTITIONS 2")
	expectErr(t, root, 1102, "CREATE DATABASE canopy_scratch")
	expectErr(t, root, 1008, "DROP DATABASE shop_1")
	testutil.Exec(t, root, "CREATE DATABASE stock_7 PARTITIONS 2")
	expectErr(t, root, 1102, "CREATE DATABASE stock PARTITIONS 8")
	testutil.Exec(t, root, "CREATE DATABASE stock_a PARTITIONS 2") // not a partition name

	// on the leaves, clients may look but not touch
	for _, l := range c.Leaves {
		leaf := l.DB("")
		for p := 0; p < 4; p++ {
			part := fmt.Sprintf("shop_%d", p)
			if len(testutil.Rows(t, leaf, "SHOW DATABASES LIKE '"+part+"'")) == 0 {
				continue
			}
			testutil.Rows(t, leaf, "SELECT COUNT(*) FROM "+part+".t") // reading is fine
			expectErr(t, leaf, 1290, "DROP DATABASE "+part)
			expectErr(t, leaf, 1290, "INSERT INTO "+part+".t VALUES (1000)")
			expectErr(t, leaf, 1290, "DROP TABLE "+part+".t")
			expectErr(t, l.DB(part), 1290, "DELETE FROM t")
		}
		expectErr(t, leaf, 1290, "DROP DATABASE shop")
		expectErr(t, leaf, 1290, "CREATE DATABASE canopy_scratch")
	}
	// other ways to a partition: quoting the parser must know of, a
	// prepared statement, a procedure, a trigger
	var part string
	l := c.Leaves[0]
	for _, r := range testutil.Rows(t, l.DB(""), "SHOW DATABASES LIKE 'shop\\_%'") {
		part = r
	}
	if part == "" {
		t.Fatal("no partition of shop on the first leaf")
	}
	ctx := context.Background()
	conn, err := l.DB("").Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testutil.Exec(t, l.DB(""), "CREATE DATABASE mine")
	for _, q := range []struct {
		stmt string
		code uint16
	}{
		{"SET sql_mode = 'ANSI_QUOTES'", 0},
		{`INSERT INTO "` + part + `"."t" VALUES (777)`, 1290},
		{`DROP TABLE "` + part + `"."t"`, 1290},
		{"SET sql_mode = DEFAULT", 0},
		{"PREPARE s FROM 'INSERT INTO " + part + ".t VALUES (778)'", 0},
		{"EXECUTE s", 1290},
		{"CREATE PROCEDURE mine.p() INSERT INTO " + part + ".t VALUES (779)", 0},
		{"CALL mine.p()", 1290},
		{"CREATE TABLE mine.x (id INT PRIMARY KEY)", 0},
		{"CREATE TRIGGER mine.trg AFTER INSERT ON mine.x FOR EACH ROW DELETE FROM " + part + ".t", 0},
		{"INSERT INTO mine.x VALUES (1)", 1290},
	} {
		_, err := conn.ExecContext(ctx, q.stmt)
		if q.code == 0 && err != nil {
			t.Fatalf("%s: %v", q.stmt, err)
		}
		if me := testutil.MySQLError(err); q.code != 0 && (me == nil || me.Number != q.code) {
			t.Errorf("%s on a leaf: %v, want %d", q.stmt, err, q.code)
		}
	}
	testutil.ExpectRows(t, shop, "SELECT COUNT(*) FROM t", "40")
	testutil.Exec(t, root, "DROP DATABASE stock_7")
	testutil.Exec(t, root, "CREATE DATABASE stock PARTITIONS 8") // its partition names are free now
}

// TestTLS: every node serves TLS on its MySQL port (a certificate made on
// first start, or the one given); REQUIRE SSL accounts and
// --require-secure-transport refuse plain connections; a cluster whose
// links all use TLS (--node-tls) works.
func TestTLS(t *testing.T) {
	mariadb := requireMariaDB(t)
	c := testutil.NewCluster(t, testutil.StartNode(t, "--master-aggregator", "--node-tls"))
	c.AddLeaf(testutil.StartNode(t, "--node-tls"), 0)
	c.AddLeaf(testutil.StartNode(t, "--node-tls"), 0)
	c.AddAggregator(testutil.StartNode(t, "--node-tls"))
	root := c.MA.DB("")
	testutil.Exec(t, root, "CREATE DATABASE sec PARTITIONS 4")
	testutil.Exec(t, c.MA.DB("sec"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.Children[0].DB("sec"), "INSERT INTO t VALUES (1), (2), (3)")
	testutil.ExpectRows(t, c.MA.DB("sec"), "SELECT COUNT(*) FROM t", "3")

	out := runMariaDB(t, mariadb, c.MA, "--ssl", "-e", "status")
	if !regexpCipher.MatchString(out) {
		t.Errorf("mariadb --ssl: no cipher in status:\n%s", out)
	}

	testutil.Exec(t, root, "CREATE USER tls_only IDENTIFIED BY 'pw' REQUIRE SSL")
	testutil.Exec(t, root, "GRANT SELECT ON sec.* TO tls_only")
	for _, n := range []*testutil.Node{c.MA, c.Children[0]} {
		if err := login(n, "tls_only", "pw"); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1045 {
			t.Errorf("REQUIRE SSL account without TLS on port %d: %v, want 1045", n.Port, err)
		}
		out := runMariaDB(t, mariadb, n, "--ssl", "-utls_only", "-ppw", "-e", "SELECT COUNT(*) FROM sec.t")
		if !regexpThree.MatchString(out) {
			t.Errorf("REQUIRE SSL account with TLS on port %d:\n%s", n.Port, out)
		}
	}
	testutil.Exec(t, root, "ALTER USER tls_only REQUIRE NONE")
	if err := login(c.Children[0], "tls_only", "pw"); err != nil {
		t.Errorf("after REQUIRE NONE: %v", err)
	}

	strict := testutil.StartNode(t, "--require-secure-transport")
	plain, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/", strict.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Ping(); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 3159 {
		t.Errorf("plain connection to --require-secure-transport: %v, want 3159", err)
	}
	if out := runMariaDB(t, mariadb, strict, "--ssl", "-e", "SELECT 1+1"); !regexpTwo.MatchString(out) {
		t.Errorf("TLS connection to --require-secure-transport:\n%s", out)
	}
}

// TestInternalPortAdmitsOnlyMembers: the internal port (raft,
// replication) refuses anyone without the cluster secret, and the node
// goes on serving.
func TestInternalPortAdmitsOnlyMembers(t *testing.T) {
	c := testutil.StartCluster(t, 1, 0)
	leaf := c.Leaves[0]
	addr := fmt.Sprintf("127.0.0.1:%d", leaf.InternalPort)
	stranger := make([]byte, 32)
	rand.Read(stranger)
	if _, err := (mux.Dialer{Secret: func() []byte { return stranger }}).Dial(addr, mux.TagReplication, 2*time.Second); err == nil {
		t.Fatal("a dialer with another secret reached a leaf's replication port")
	}
	// garbage, and the old protocol's bare tag byte followed by a frame
	for _, b := range [][]byte{[]byte("L\x01\x00"), append([]byte("LR"), 0xff, 0xff, 0xff, 0xff, 0x03)} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(b)
		conn.SetReadDeadline(time.Now().Add(12 * time.Second))
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Errorf("the leaf did not close a stranger's connection: %v", err)
		}
		conn.Close()
	}
	testutil.Exec(t, c.MA.DB(""), "CREATE DATABASE still PARTITIONS 2")
	testutil.Exec(t, c.MA.DB("still"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.MA.DB("still"), "INSERT INTO t VALUES (1)")

	// profiles are off by default; metrics and health stay open
	for path, want := range map[string]int{"/debug/pprof/": 404, "/metrics": 200, "/healthz": 200} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", leaf.HTTPPort, path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

var (
	regexpCipher = regexp.MustCompile(`SSL:\s+Cipher in use is \S+`)
	regexpThree  = regexp.MustCompile(`(?m)^3$`)
	regexpTwo    = regexp.MustCompile(`(?m)^2$`)
)

// requireMariaDB is the mariadb client, which CI installs.
func requireMariaDB(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatal("the mariadb client is needed (apt-get install mariadb-client; .ci/run installs it)")
	}
	return path
}

// runMariaDB runs the mariadb client against a node (as root unless args
// say otherwise) and returns its output in batch mode.
func runMariaDB(t *testing.T, path string, n *testutil.Node, args ...string) string {
	t.Helper()
	base := []string{"-h127.0.0.1", fmt.Sprintf("-P%d", n.Port), "--batch", "--skip-column-names"}
	hasUser := false
	for _, a := range args {
		hasUser = hasUser || strings.HasPrefix(a, "-u")
	}
	if !hasUser {
		base = append(base, "-uroot")
	}
	out, err := exec.Command(path, append(base, args...)...).CombinedOutput()
	if err != nil {
		t.Errorf("mariadb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestLeafCredentials: a leaf enforces its own accounts, and the
// aggregators reach it with the credentials ADD LEAF gave.
func TestLeafCredentials(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "root-pw")
	if err := os.WriteFile(pwFile, []byte("leaf-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testutil.StartCluster(t, 0, 1)
	leaf := testutil.StartNodeEnvPassword(t, nil, "leaf-secret", "--root-password-file", pwFile)
	if err := login(leaf, "root", ""); err == nil {
		t.Fatal("root without the password of --root-password-file")
	}
	root := c.MA.DB("")
	q := fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", leaf.Port)
	if _, err := root.Exec(q); err == nil {
		t.Fatal("ADD LEAF without the leaf's password succeeded")
	}
	testutil.Exec(t, root, fmt.Sprintf("ADD LEAF root:'leaf-secret'@'127.0.0.1':%d", leaf.Port))
	c.Leaves = append(c.Leaves, leaf)
	testutil.Exec(t, root, "CREATE DATABASE lc PARTITIONS 3")
	testutil.Exec(t, c.MA.DB("lc"), "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.Exec(t, c.Children[0].DB("lc"), "INSERT INTO t VALUES (1), (2), (3), (4)")
	testutil.ExpectRows(t, c.Children[0].DB("lc"), "SELECT COUNT(*) FROM t", "4")
	// the leaf keeps its own root: the cluster's root is another account
	testutil.Exec(t, root, "ALTER USER root IDENTIFIED BY 'cluster-pw'")
	c.MA.RootPassword, c.Children[0].RootPassword = "cluster-pw", "cluster-pw"
	if err := login(leaf, "root", "leaf-secret"); err != nil {
		t.Errorf("the leaf's root after the cluster's changed: %v", err)
	}
	leaf.Stop()
	leaf.Start()
	// connections from before the restart fail once; then the aggregator
	// reaches it again with the same credentials
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := testutil.RenderRows(c.MA.DB("lc"), ",", "SELECT COUNT(*) FROM t")
		if err == nil && len(rows) == 1 && rows[0] == "4" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the leaf restarted: %v %v", rows, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAccountEscapes: what a client that may create accounts tried
// against the first version of this: the reserved internal account
// reached through comments, adjacent literals and escapes; an account
// whose name decodes differently on the way to the master; REQUIRE SSL
// behind a comment; SET GLOBAL without SUPER; schema disclosure by
// CREATE TABLE … LIKE.
func TestAccountEscapes(t *testing.T) {
	c := testutil.StartCluster(t, 1, 1)
	ma, child := c.MA, c.Children[0]
	root := ma.DB("")
	testutil.Exec(t, root, "CREATE DATABASE esc PARTITIONS 2")
	testutil.Exec(t, ma.DB("esc"), "CREATE TABLE secret (id INT PRIMARY KEY, hidden_column INT)")
	testutil.Exec(t, root, "CREATE USER cu IDENTIFIED BY 'cu-pw'")
	testutil.Exec(t, root, "GRANT CREATE USER ON *.* TO cu")
	testutil.Exec(t, root, "GRANT CREATE ON esc.* TO cu")
	c.WaitCaughtUp(child, 10*time.Second)
	for _, n := range []*testutil.Node{ma, child} {
		cu := n.DBAs("cu", "cu-pw", "")
		for _, q := range []string{
			"/**/ALTER USER canopy_node@'%' IDENTIFIED BY 'pwn'",
			"/**/DROP USER canopy_node@'%'",
			"CREATE USER 'canopy_' 'node'@'%' IDENTIFIED BY 'pwn'",
			`CREATE USER 'canopy\_node'@'localhost' IDENTIFIED BY 'pwn'`,
			"ALTER USER 'canopy_' 'node'@'%' IDENTIFIED BY 'x' REQUIRE NONE",
			"RENAME USER cu TO canopy_node",
			"SET PASSWORD FOR canopy_node = 'pwn'",
		} {
			if _, err := cu.Exec(q); err == nil {
				t.Errorf("%s on port %d was accepted", q, n.Port)
			}
		}
		expectErr(t, cu, 1227, "SET GLOBAL max_connections = 1")
		expectErr(t, cu, 1227, "SET @@GLOBAL.max_connections = 1")
		expectErr(t, cu, 1142, "CREATE TABLE esc.dup LIKE esc.secret")
	}
	if err := login(child, "canopy_node", "pwn"); err == nil {
		t.Fatal("logged in as the internal account with a password a client chose")
	}
	// the cluster's links still work: a forwarded schema change
	testutil.Exec(t, child.DB("esc"), "CREATE TABLE after (id INT PRIMARY KEY)")

	// a forwarded statement runs in its client's database, none included,
	// whatever the link to the master last ran
	testutil.Exec(t, child.DB("esc"), "CREATE USER u1")
	expectErr(t, child.DB(""), 1046, "GRANT SELECT ON secret TO u1")
	testutil.Exec(t, child.DB("esc"), "GRANT SELECT ON secret TO u1")

	// an account whose name holds a tab: forwarded, it must stay itself
	testutil.Exec(t, ma.DBAs("cu", "cu-pw", ""), "CREATE USER 'roo\\t'@'%' IDENTIFIED BY 'x'")
	testutil.Exec(t, root, "GRANT CREATE USER ON *.* TO 'roo\\t'@'%'")
	c.WaitCaughtUp(child, 10*time.Second)
	tab := child.DBAs("roo\t", "x", "")
	expectErr(t, tab, 1227, "GRANT ALL ON *.* TO cu WITH GRANT OPTION")
	expectErr(t, ma.DBAs("cu", "cu-pw", ""), 1227, "SET GLOBAL max_connections = 1") // still without SUPER

	// REQUIRE SSL behind a comment still applies
	testutil.Exec(t, child.DB(""), "/* a tool's comment */ CREATE USER bob IDENTIFIED BY 'pw' REQUIRE SSL")
	for _, n := range []*testutil.Node{ma, child} {
		if err := login(n, "bob", "pw"); testutil.MySQLError(err) == nil || testutil.MySQLError(err).Number != 1045 {
			t.Errorf("REQUIRE SSL account without TLS on port %d: %v", n.Port, err)
		}
	}

	// a caching_sha2_password account logs in from a client that starts
	// with mysql_native_password (the server switches it)
	testutil.Exec(t, root, "CREATE USER sha IDENTIFIED WITH caching_sha2_password BY 'sha-pw'")
	c.WaitCaughtUp(child, 10*time.Second)
	for _, n := range []*testutil.Node{ma, child} {
		db, err := sql.Open("mysql", n.DSNAs("sha", "sha-pw", "", true)+"&allowCleartextPasswords=true&tls=skip-verify")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Ping(); err != nil {
			t.Errorf("caching_sha2_password account on port %d: %v", n.Port, err)
		}
		db.Close()
	}
}
