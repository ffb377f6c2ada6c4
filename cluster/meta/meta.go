// Package meta is the cluster metadata: leaves, aggregators, variables,
// databases with their partition maps, and table sharding. It is a
// deterministic state machine: every aggregator applies the same commands
// from the raft log in the same order and reaches the same State. No I/O.
package meta

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// State is the whole cluster metadata. Treat it as immutable: Apply works
// on a copy.
type State struct {
	ClusterID   string               `json:"cluster_id"`
	Variables   map[string]string    `json:"variables"`
	Leaves      []Leaf               `json:"leaves"`
	Aggregators []Aggregator         `json:"aggregators"`
	Databases   map[string]*Database `json:"databases"`
	// NextAggregatorNumber numbers aggregators for AUTO_INCREMENT ranges.
	NextAggregatorNumber int `json:"next_aggregator_number"`
	// Users are the MySQL accounts and grants every aggregator enforces
	// (go-mysql-server's serialized user tables; nil until the master
	// aggregator records its own).
	Users []byte `json:"users,omitempty"`
	// Jobs is the operation journal (jobs.go): the running jobs and the
	// latest finished ones.
	Jobs      []Job  `json:"jobs,omitempty"`
	NextJobID uint64 `json:"next_job_id,omitempty"`
	// MasterEpoch numbers the master aggregators' reigns (TakeOver) and
	// MasterAddr is the latest one's address. The master records both
	// on every leaf, the witnesses every aggregator reaches: a leaf
	// refuses control commands of an older epoch, and a master replaced
	// while it was away learns from the leaves that it was.
	MasterEpoch uint64 `json:"master_epoch,omitempty"`
	MasterAddr  string `json:"master_addr,omitempty"`
	// DDLJobs are the schema changes under way and the last finished
	// ones, in the order they started; NextDDLJob numbers them.
	DDLJobs    []DDLJob `json:"ddl_jobs,omitempty"`
	NextDDLJob uint64   `json:"next_ddl_job,omitempty"`
}

// Leaf is a leaf node of the cluster.
type Leaf struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	InternalPort int    `json:"internal_port"`
	User         string `json:"user"`
	Password     string `json:"password,omitempty"`
	Group        int    `json:"group"`
	PairHost     string `json:"pair_host,omitempty"`
	PairPort     int    `json:"pair_port,omitempty"`
	State        string `json:"state"`
}

// Addr is host:port, the leaf's identity.
func (l Leaf) Addr() string { return Addr(l.Host, l.Port) }

// Aggregator is an aggregator node; the master is the raft leader.
type Aggregator struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	InternalPort int    `json:"internal_port"`
	User         string `json:"user"`
	Password     string `json:"password,omitempty"`
	Number       int    `json:"number"`
}

// Addr is host:port, the aggregator's identity (and raft server id).
func (a Aggregator) Addr() string { return Addr(a.Host, a.Port) }

// Addr formats a node identity.
func Addr(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// Database is a distributed database: its partitions db_0 … db_{n-1} live
// on leaves; the database itself (reference tables and the definitions of
// sharded tables) is on every node.
type Database struct {
	Name       string            `json:"name"`
	Partitions []Partition       `json:"partitions"`
	Tables     map[string]*Table `json:"tables"`
	Sync       bool              `json:"sync,omitempty"`
	// SchemaLSN is the position of the master aggregator's copy of the
	// database after its latest schema change. An aggregator plans
	// statements on the database only once its own copy has reached it, so
	// it never knows a table from the metadata without its definition.
	SchemaLSN uint64 `json:"schema_lsn,omitempty"`
}

// Partition is one ordinal of a database.
type Partition struct {
	Ordinal  int      `json:"ordinal"`
	Master   string   `json:"master"` // leaf address, "" when the partition has no master
	Replicas []string `json:"replicas,omitempty"`
	Locked   bool     `json:"locked,omitempty"`
	// Epoch counts the partition's changes of master: Apply raises it by
	// one whenever Master changes, and a new master is promoted at it (its
	// copy's log term becomes the epoch), so each term of the partition's
	// log was written by the one master raft named at that epoch.
	Epoch uint64 `json:"epoch,omitempty"`
	// Candidates, while the partition has no master, are the leaves whose
	// copies hold every commit it acknowledged: the master that was lost
	// and its replicas of that moment (a replica in the map has every
	// synchronous commit). Only one of them may become master by itself
	// (PlanAttach); empty means any copy may (nothing is known). Cleared
	// when the partition has a master.
	Candidates []string `json:"candidates,omitempty"`
	// Unlinked is the sync replica the master aggregator took out because
	// its master could not reach it (cluster/manager replicawatch.go), to
	// be given back once the link heals: in the metadata, so that a new
	// master aggregator does it too. Cleared when it is a replica again
	// or the partition's master changes.
	Unlinked string `json:"unlinked,omitempty"`
}

// Table is the sharding of a table.
type Table struct {
	Name string `json:"name"`
	// Reference tables are copied to every node.
	Reference bool `json:"reference,omitempty"`
	// ShardKey columns; empty for reference tables and for tables whose rows
	// are spread evenly (SHARD KEY () or no primary key).
	ShardKey []string `json:"shard_key,omitempty"`
	// AutoIncrement is the AUTO_INCREMENT column, which aggregators fill in.
	AutoIncrement string `json:"auto_increment,omitempty"`
	// AutoIncrementStart is CREATE TABLE's AUTO_INCREMENT=n (a dump's
	// replay): no aggregator hands out a value below it within its range.
	AutoIncrementStart uint64 `json:"auto_increment_start,omitempty"`
	// Counter names the AUTO_INCREMENT counters aggregators keep for the
	// table when it is not the table's name: its first name, kept through
	// renames so that the values go on instead of starting over.
	Counter string `json:"counter,omitempty"`
}

// CounterName is the name of the table's AUTO_INCREMENT counters.
func (t *Table) CounterName() string {
	if t.Counter != "" {
		return t.Counter
	}
	return t.Name
}

// PartitionName is the leaf database holding partition ordinal of db.
func PartitionName(db string, ordinal int) string { return fmt.Sprintf("%s_%d", db, ordinal) }

// Variables with their defaults.
var DefaultVariables = map[string]string{
	"redundancy_level":            "1",
	"auto_attach":                 "ON",
	"default_partitions_per_leaf": "8",
	"leaf_failure_detection":      "ON",
	// a leaf that accepts connections but does not answer heartbeats is
	// offline after this long; one that refuses connections after the other
	"leaf_failure_timeout_ms": "9500", // detection plus failover within 10 s
	"leaf_refused_timeout_ms": "1000",
	// caps each partition copy (COPY PARTITION, rebalance, attach) so it
	// does not starve the leaves' own traffic; 0: no cap
	"copy_bandwidth_mb_per_sec": "0",
}

// New returns the empty state.
func New() *State {
	return &State{Variables: map[string]string{}, Databases: map[string]*Database{}}
}

// Clone copies the state deeply.
func (s *State) Clone() *State {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	out := New()
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// Variable returns a variable's value or its default.
func (s *State) Variable(name string) string {
	name = strings.ToLower(name)
	if v, ok := s.Variables[name]; ok {
		return v
	}
	return DefaultVariables[name]
}

// Leaf finds a leaf by address.
func (s *State) Leaf(addr string) (Leaf, bool) {
	for _, l := range s.Leaves {
		if l.Addr() == addr {
			return l, true
		}
	}
	return Leaf{}, false
}

// Aggregator finds an aggregator by address.
func (s *State) Aggregator(addr string) (Aggregator, bool) {
	for _, a := range s.Aggregators {
		if a.Addr() == addr {
			return a, true
		}
	}
	return Aggregator{}, false
}

// Database finds a database, case-insensitively.
func (s *State) Database(name string) *Database {
	return s.Databases[strings.ToLower(name)]
}

// Table finds a table of a database, case-insensitively.
func (d *Database) Table(name string) *Table {
	return d.Tables[strings.ToLower(name)]
}

// OnlineLeaves lists the online leaves in the order they were added.
func (s *State) OnlineLeaves() []Leaf {
	var out []Leaf
	for _, l := range s.Leaves {
		if l.State == LeafOnline {
			out = append(out, l)
		}
	}
	return out
}

// Leaf states, as SHOW LEAVES prints them.
const (
	LeafOnline     = "online"
	LeafOffline    = "offline"
	LeafAttaching  = "attaching"
	LeafDetached   = "detached"
	LeafRecovering = "recovering"
)

// PlacePartitions assigns n partition masters round-robin over leaves, so
// every leaf gets the same number, ±1.
func PlacePartitions(leaves []Leaf, n int) []string {
	if len(leaves) == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = leaves[i%len(leaves)].Addr()
	}
	return out
}

// DatabaseNames lists the databases in name order.
func (s *State) DatabaseNames() []string {
	out := make([]string, 0, len(s.Databases))
	for _, d := range s.Databases {
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }
