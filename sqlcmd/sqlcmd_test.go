package sqlcmd

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitFirst(t *testing.T) {
	cases := []struct{ in, first, rest string }{
		{"SELECT 1", "SELECT 1", ""},
		{"SELECT 1; SELECT 2", "SELECT 1", "SELECT 2"},
		{"SELECT ';'; SELECT 2", "SELECT ';'", "SELECT 2"},
		{`SELECT "a;b" ;x`, `SELECT "a;b" `, "x"},
		{"SELECT 'it''s;'; y", "SELECT 'it''s;'", "y"},
		{"SELECT 'a\\';b'; z", "SELECT 'a\\';b'", "z"},
		{"SELECT 1 -- c;d\n; e", "SELECT 1 -- c;d\n", "e"},
		{"SELECT /* ; */ 1; f", "SELECT /* ; */ 1", "f"},
		{"SELECT `a;b`; g", "SELECT `a;b`", "g"},
	}
	for _, c := range cases {
		first, rest := SplitFirst(c.in)
		if first != c.first || rest != c.rest {
			t.Errorf("SplitFirst(%q) = %q, %q; want %q, %q", c.in, first, rest, c.first, c.rest)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Command
	}{
		{"SHOW DATABASES EXTENDED", ShowDatabasesExtended{}},
		{"show databases   extended", ShowDatabasesExtended{}},
		{"SHOW REPLICATION STATUS", ShowReplicationStatus{}},
		{"CANOPY PARTITION STATUS", PartitionStatus{}},
		{"SHOW DATABASES", nil},
		{"SHOW DATABASES EXTENDED LIKE 'x'", nil},
		{"SELECT 1", nil},
		{"EXPLAIN SELECT * FROM t WHERE id = 1", Explain{Query: "SELECT * FROM t WHERE id = 1"}},
		{"  explain  update t set a = 1", Explain{Query: "update t set a = 1"}},
		{"DESCRIBE SELECT 1", Explain{Query: "SELECT 1"}},
		{"EXPLAIN t", nil},
		{"DESCRIBE t", nil},
		{"EXPLAIN FORMAT=TREE SELECT 1", nil},
		{"", nil},
	}
	for _, c := range cases {
		if got := Parse(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestParseCluster(t *testing.T) {
	cases := []struct {
		in   string
		want Command
	}{
		{"ADD LEAF root@'127.0.0.1':3307", AddLeaf{User: "root", Host: "127.0.0.1", Port: 3307}},
		{"add leaf root:'s3cret'@'leaf-1' into group 2", AddLeaf{User: "root", Password: "s3cret", Host: "leaf-1", Group: 2}},
		{"ADD LEAF root@'h':x", nil},
		{"REMOVE LEAF 'leaf-2':3306 FORCE", RemoveLeaf{Host: "leaf-2", Port: 3306, Force: true}},
		{"REMOVE LEAF '10.0.2.123'", RemoveLeaf{Host: "10.0.2.123"}},
		{"ADD AGGREGATOR root@'ca':3310", AddAggregator{User: "root", Host: "ca", Port: 3310}},
		{"REMOVE AGGREGATOR 'ca':3310", RemoveAggregator{Host: "ca", Port: 3310}},
		{"AGGREGATOR SET AS MASTER", SetAsMaster{}},
		{"ATTACH PARTITION x_test:1 on '127.0.0.1':10002", PartitionCommand{Action: "ATTACH", Database: "x_test", Ordinal: 1, Host: "127.0.0.1", Port: 10002}},
		{"COPY PARTITION db:12 TO 'leaf-2':3306", PartitionCommand{Action: "COPY", Database: "db", Ordinal: 12, Host: "leaf-2", Port: 3306}},
		{"COPY PARTITION db:12 ON 'leaf-2':3306", nil},
		{"promote partition `my db`:0 on 'l' with drop", PartitionCommand{Action: "PROMOTE", Database: "my db", Ordinal: 0, Host: "l", WithDrop: true}},
		{"DETACH PARTITION db:3 ON 'l':1", PartitionCommand{Action: "DETACH", Database: "db", Ordinal: 3, Host: "l", Port: 1}},
		{"DROP PARTITION db:3 ON 'l':1", PartitionCommand{Action: "DROP", Database: "db", Ordinal: 3, Host: "l", Port: 1}},
		{"DROP PARTITION db:x ON 'l':1", nil},
		{"aggregator set as master now", nil},
		{"PROMOTE AGGREGATOR '127.0.0.1':3310 TO MASTER", PromoteAggregator{Host: "127.0.0.1", Port: 3310}},
		{"PROMOTE AGGREGATOR 'ca'", nil},
		{"CANOPY RAFT MEMBERS", RaftMembers{}},
		{"BACKUP DATABASE bank TO '/backups/b1'", Backup{Database: "bank", Path: "/backups/b1"}},
		{"backup database `my db` to \"/b\"", Backup{Database: "my db", Path: "/b"}},
		{"BACKUP DATABASE bank TO /backups", nil},
		{"RESTORE DATABASE bank2 FROM '/backups/b1'", Restore{Database: "bank2", Path: "/backups/b1"}},
		{"RESTORE DATABASE bank2", nil},
		{"SHOW BACKUP STATUS", ShowBackupStatus{}},
		{"CANOPY COMMIT GATE CLOSE 30000", CommitGate{Close: true, Millis: 30000}},
		{"CANOPY COMMIT GATE CLOSE 0", nil},
		{"CANOPY COMMIT GATE OPEN", CommitGate{}},
		{"CANOPY BACKUP SNAPSHOT 'b-1' 'db_0' 'db_3'", BackupSnapshot{Tag: "b-1", Databases: []string{"db_0", "db_3"}}},
		{"CANOPY BACKUP SNAPSHOT 'b-1' db_0", nil},
		{"CANOPY BACKUP WRITE 'b-1' TO '/b'", BackupWrite{Tag: "b-1", Dir: "/b"}},
		{"CANOPY BACKUP RELEASE 'b-1'", BackupRelease{Tag: "b-1"}},
		{"CANOPY RESTORE PARTITION `db_2` FROM '/b/x_2.snap'", RestorePartition{Database: "db_2", File: "/b/x_2.snap"}},
		{"BOOTSTRAP AGGREGATOR '10.0.2.15'", BootstrapAggregator{Host: "10.0.2.15"}},
		{"SHOW LEAVES", ShowLeaves{}},
		{"show aggregators", ShowAggregators{}},
		{"SHOW PARTITIONS ON memsql_demo", ShowPartitions{Database: "memsql_demo"}},
		{"SHOW PARTITIONS", ShowPartitions{}},
		{"CANOPY NODE STATUS", NodeStatus{}},
		{"EXPLAIN REBALANCE PARTITIONS ON test", Rebalance{Database: "test", Explain: true}},
		{"rebalance partitions on `test` force", Rebalance{Database: "test", Force: true}},
		{"RESTORE REDUNDANCY ON db", Rebalance{Database: "db", RestoreOnly: true}},
		{"EXPLAIN RESTORE REDUNDANCY ON db", Rebalance{Database: "db", RestoreOnly: true, Explain: true}},
		{"RESTORE REDUNDANCY ON db FORCE", nil},
		{"REBALANCE PARTITIONS", nil},
		{"CANOPY DEMOTE PARTITION 'db_3'", PartitionRole{Action: "DEMOTE", Database: "db_3"}},
		{"CANOPY PROMOTE PARTITION 'db_3' EPOCH 7", PartitionRole{Action: "PROMOTE", Database: "db_3", Epoch: ptr(uint64(7))}},
		{"CANOPY PROMOTE PARTITION `db_3` EPOCH 4 MASTER EPOCH 2", PartitionRole{Action: "PROMOTE", Database: "db_3", Epoch: ptr(uint64(4)), MasterEpoch: 2}},
		{"CANOPY DROP PARTITION db_3 MASTER EPOCH 5", PartitionRole{Action: "DROP", Database: "db_3", MasterEpoch: 5}},
		{"CANOPY DROP PARTITION db_3 EPOCH 5", nil},
		{"CANOPY DROP PARTITION db_3 MASTER EPOCH", nil},
		{"CANOPY REPLICATE '[]' MASTER EPOCH 12", Replicate{Config: "[]", MasterEpoch: 12}},
		{"CANOPY REPLICATE '[]'", Replicate{Config: "[]"}},
		{"CANOPY MASTER AGGREGATOR", MasterAggregator{}},
		{"canopy master aggregator '127.0.0.1:3306' epoch 3", MasterAggregator{Addr: "127.0.0.1:3306", Epoch: 3}},
		{"CANOPY MASTER AGGREGATOR '127.0.0.1:3306'", nil},
		{"CANOPY MASTER AGGREGATOR '127.0.0.1:3306' EPOCH 0", nil},
		{"CANOPY PROMOTE PARTITION 'db_3' EPOCH 7 INCARNATION 42", PartitionRole{Action: "PROMOTE", Database: "db_3", Epoch: ptr(uint64(7)), Incarnation: ptr(uint64(42))}},
		{"SHOW CLUSTER STATUS", ShowClusterStatus{}},
		{"show ddl jobs", ShowDDLJobs{}},
		{"clear orphan databases", ClearOrphans{}},
		{"EXPLAIN CLEAR ORPHAN DATABASES", ClearOrphans{Explain: true}},
		{"CANOPY PREPARE 'agg:1/7-3'", PrepareTxn{XID: "agg:1/7-3"}},
		{"canopy commit prepared 'x1'", CommitPrepared{XID: "x1"}},
		{"CANOPY ROLLBACK PREPARED 'x1'", RollbackPrepared{XID: "x1"}},
		{"CANOPY PREPARED TRANSACTIONS", ShowPrepared{}},
		{"CANOPY JOIN CLUSTER 'abc' AS LEAF", JoinCluster{ClusterID: "abc", Role: "leaf"}},
		{"CANOPY JOIN CLUSTER 'abc' AS AGGREGATOR '127.0.0.1:3310'", JoinCluster{ClusterID: "abc", Role: "aggregator", Self: "127.0.0.1:3310"}},
		{"CANOPY LEAVE CLUSTER 'abc'", LeaveCluster{ClusterID: "abc"}},
		{"CANOPY JOIN CLUSTER 'abc' AS LEAF KEY '0a0b' SECRET 'ff00'", JoinCluster{ClusterID: "abc", Role: "leaf", Key: "0a0b", Secret: "ff00"}},
		{"CANOPY CHALLENGE", Challenge{}},
		{"CANOPY AUTHENTICATE '01' '02'", Authenticate{Nonce: "01", Proof: "02"}},
		{"CANOPY IMPERSONATE '726f6f74' '25' ''", Impersonate{User: "root", Host: "%"}},
		{"CANOPY IMPERSONATE '726f6f74' '25' '6462'", Impersonate{User: "root", Host: "%", Database: "db"}},
		{"CANOPY IMPERSONATE '726f6f74' '25'", nil},
		{"CANOPY IMPERSONATE 'root' '%' ''", nil}, // not hex
		{"CANOPY IMPERSONATE NONE", Impersonate{None: true}},
		{"SET PASSWORD = 'x'", SetPassword{Current: true, Password: "x"}},
		{`SET PASSWORD FOR 'roo\t'@'%' = 'a\nb\'c'`, SetPassword{User: "roo\t", Host: "%", Password: "a\nb'c"}},
		{"SET PASSWORD FOR app = PASSWORD('p')", SetPassword{User: "app", Host: "%", Password: "p"}},
		{"ALTER USER u REQUIRE SSL", AlterUserRequire{User: "u", Host: "%", Require: "SSL", Rest: "ALTER USER u"}},
		{"ALTER USER 'u'@'h' IDENTIFIED BY 'p' REQUIRE NONE", AlterUserRequire{User: "u", Host: "h", Require: "NONE",
			Rest: "ALTER USER 'u'@'h' IDENTIFIED BY 'p'", HasMore: true}},
		{"ALTER USER u REQUIRE SSL AND X509", nil},
		{"ALTER USER u IDENTIFIED BY 'p'", nil}, // the engine's
	}
	for _, c := range cases {
		if got := Parse(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestParseClusterDDL(t *testing.T) {
	cases := []struct {
		in   string
		want Command
	}{
		{"CREATE DATABASE test PARTITIONS=16", CreateDatabase{Name: "test", Partitions: 16}},
		{"create database if not exists x partitions 4", CreateDatabase{Name: "x", IfNotExists: true, Partitions: 4}},
		{"CREATE DATABASE db WITH SYNC REPLICATION PARTITIONS 8", CreateDatabase{Name: "db", Partitions: 8, Sync: true}},
		{"CREATE DATABASE db DEFAULT CHARACTER SET utf8mb4", CreateDatabase{Name: "db"}},
		{"CREATE DATABASE db PARTITIONS=0", nil},
		// SHOW CREATE DATABASE's form, as mariadb-dump writes it
		{"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `d1` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin */ /*!90618 PARTITIONS 4 WITH SYNC REPLICATION */",
			CreateDatabase{Name: "d1", IfNotExists: true, Partitions: 4, Sync: true}},
		{"/* a comment */ CREATE DATABASE d -- PARTITIONS 3\n", CreateDatabase{Name: "d"}},
		{"CREATE DATABASE d # PARTITIONS 3", CreateDatabase{Name: "d"}},
		{"SET @@GLOBAL.redundancy_level = 2", SetClusterVariable{Name: "redundancy_level", Value: "2"}},
		{"set global auto_attach = Off", SetClusterVariable{Name: "auto_attach", Value: "Off"}},
		{"SET GLOBAL max_connections = 10", nil},
		{"SET @@session.redundancy_level = 2", nil},
	}
	for _, c := range cases {
		if got := ParseClusterDDL(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseClusterDDL(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestParseCreateTable(t *testing.T) {
	cases := []struct {
		in   string
		want CreateTable
		ok   bool
	}{
		{"CREATE TABLE t (id INT PRIMARY KEY, v INT)", CreateTable{SQL: "CREATE TABLE t (id INT PRIMARY KEY, v INT)"}, true},
		{"CREATE TABLE t (a INT, b INT, SHARD KEY (a), KEY (b))",
			CreateTable{SQL: "CREATE TABLE t (a INT, b INT, KEY (b))", HasShardKey: true, ShardKey: []string{"a"}}, true},
		{"create table t (SHARD KEY k (a, `b`), a int, b int)",
			CreateTable{SQL: "create table t ( a int, b int)", HasShardKey: true, ShardKey: []string{"a", "b"}}, true},
		{"CREATE TABLE t (a INT, SHARD KEY ())", CreateTable{SQL: "CREATE TABLE t (a INT)", HasShardKey: true}, true},
		{"CREATE REFERENCE TABLE r (id INT PRIMARY KEY, name VARCHAR(10) DEFAULT 'shard key (x)')",
			CreateTable{SQL: "CREATE TABLE r (id INT PRIMARY KEY, name VARCHAR(10) DEFAULT 'shard key (x)')", Reference: true}, true},
		{"CREATE VIEW v AS SELECT 1", CreateTable{}, false},
		// SHOW CREATE TABLE's form (MemSQL's version comments)
		{"CREATE /*!90618 REFERENCE */ TABLE `r` (\n  `id` int NOT NULL\n) ENGINE=InnoDB",
			CreateTable{SQL: "CREATE" + strings.Repeat(" ", 10) + "TABLE `r` (\n  `id` int NOT NULL\n) ENGINE=InnoDB", Reference: true}, true},
		{"CREATE TABLE `b` (\n  `k` int,\n  PRIMARY KEY (`k`,`id`),\n  /*!90618 SHARD */ KEY (`k`)\n) ENGINE=InnoDB",
			CreateTable{SQL: "CREATE TABLE `b` (\n  `k` int,\n  PRIMARY KEY (`k`,`id`)\n) ENGINE=InnoDB", HasShardKey: true, ShardKey: []string{"k"}}, true},
		{"CREATE TABLE t (a INT /* SHARD KEY (a) */, b INT) -- SHARD KEY (b)",
			CreateTable{SQL: "CREATE TABLE t (a INT" + strings.Repeat(" ", 20) + ", b INT)" + strings.Repeat(" ", 17)}, true},
		{"CREATE TABLE s (id SERIAL, v INT, w INT SERIAL DEFAULT VALUE)",
			CreateTable{SQL: "CREATE TABLE s (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE, v INT, w INT SERIAL DEFAULT VALUE)"}, true},
	}
	for _, c := range cases {
		got, ok := ParseCreateTable(c.in)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseCreateTable(%q) = %#v, %v; want %#v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestAccessOf(t *testing.T) {
	for _, c := range []struct {
		cmd  Command
		want Access
	}{
		{ShowLeaves{}, AccessProcess}, {AddLeaf{}, AccessSuper}, {Rebalance{Explain: true}, AccessProcess},
		{Rebalance{}, AccessSuper}, {ClearOrphans{Explain: true}, AccessProcess}, {ClearOrphans{}, AccessSuper},
		{PartitionCommand{}, AccessSuper}, {JoinCluster{}, AccessLink}, {PartitionRole{}, AccessLink},
		{Replicate{}, AccessLink}, {Impersonate{}, AccessLink}, {NodeStatus{}, AccessLinkRead},
		{MasterAggregator{}, AccessLinkRead}, {MasterAggregator{Addr: "a:1", Epoch: 1}, AccessLink},
		{Challenge{}, AccessChecked}, {Explain{}, AccessChecked}, {SetPassword{}, AccessChecked},
		{Backup{}, AccessSuper}, {Restore{}, AccessSuper}, {ShowBackupStatus{}, AccessProcess},
		{CommitGate{}, AccessLink}, {BackupSnapshot{}, AccessLink}, {BackupWrite{}, AccessLink}, {RestorePartition{}, AccessLink},
	} {
		if got := AccessOf(c.cmd); got != c.want {
			t.Errorf("AccessOf(%T) = %d, want %d", c.cmd, got, c.want)
		}
	}
}

// TestShowCreateTableRoundTrip: what SHOW CREATE TABLE prints of a
// distributed table reads back as the same table.
func TestShowCreateTableRoundTrip(t *testing.T) {
	const gms = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `k` int NOT NULL,\n  `v` varchar(10) COMMENT 'x\n) (',\n  PRIMARY KEY (`id`,`k`),\n  KEY `iv` (`v`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin"
	cases := []struct {
		reference bool
		key       []string
		autoInc   uint64
		want      string
	}{
		{false, []string{"k"}, 0, "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `k` int NOT NULL,\n  `v` varchar(10) COMMENT 'x\n) (',\n  PRIMARY KEY (`id`,`k`),\n  KEY `iv` (`v`),\n  /*!90618 SHARD */ KEY (`k`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin"},
		{false, []string{"ID", "k"}, 0, gms}, // the primary key: the default
		{false, nil, 0, gms},                 // spread rows
		{true, nil, 7, "CREATE /*!90618 REFERENCE */ TABLE `t` (\n  `id` int NOT NULL,\n  `k` int NOT NULL,\n  `v` varchar(10) COMMENT 'x\n) (',\n  PRIMARY KEY (`id`,`k`),\n  KEY `iv` (`v`)\n) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_bin"},
	}
	for _, c := range cases {
		got := ShowCreateTable(gms, c.reference, c.key, c.autoInc)
		if got != c.want {
			t.Errorf("ShowCreateTable(%v, %v, %d) =\n%s\nwant\n%s", c.reference, c.key, c.autoInc, got, c.want)
			continue
		}
		ct, ok := ParseCreateTable(got)
		if !ok || ct.Reference != c.reference {
			t.Errorf("ParseCreateTable(%q) = %#v, %v", got, ct, ok)
			continue
		}
		if c.key != nil && !c.reference && !equalFold(ct.ShardKey, c.key) && !equalFold([]string{"id", "k"}, c.key) {
			t.Errorf("ParseCreateTable(%q): shard key %v, want %v", got, ct.ShardKey, c.key)
		}
	}
	if got := ShowCreateTable("CREATE TABLE `a` (\n  `id` int\n) ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=utf8mb4", false, nil, 12); !strings.Contains(got, "AUTO_INCREMENT=12 ") {
		t.Errorf("AUTO_INCREMENT not raised: %s", got)
	}
	if got := ShowCreateTable("CREATE TABLE `a` (\n  `id` int\n) ENGINE=InnoDB AUTO_INCREMENT=19 DEFAULT CHARSET=utf8mb4", false, nil, 12); !strings.Contains(got, "AUTO_INCREMENT=19 ") {
		t.Errorf("AUTO_INCREMENT lowered: %s", got)
	}
	db := ShowCreateDatabase("CREATE DATABASE `d` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin */", 6, false)
	if got := ParseClusterDDL(db); !reflect.DeepEqual(got, CreateDatabase{Name: "d", Partitions: 6}) {
		t.Errorf("ParseClusterDDL(%q) = %#v", db, got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestPlainDMLSkipsTokenizing(t *testing.T) {
	for stmt, want := range map[string]bool{
		"SELECT 1":                       true,
		"  insert INTO t VALUES (1)":     true,
		"\nUPDATE t SET a = 1":           true,
		"delete FROM t":                  true,
		"REPLACE INTO t VALUES (1)":      true,
		"SELECT_x":                       false,
		"insert2 foo":                    false,
		"/* c */ SELECT 1":               false,
		"SHOW LEAVES":                    false,
		"CREATE DATABASE d PARTITIONS 4": false,
		"":                               false,
	} {
		if got := plainDML(stmt); got != want {
			t.Errorf("plainDML(%q) = %v, want %v", stmt, got, want)
		}
	}
}
