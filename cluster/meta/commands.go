package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Command is one change of the metadata, as stored in the raft log.
type Command struct {
	Op      string          `json:"op"`
	Payload json.RawMessage `json:"payload"`
}

// Command payloads.
type (
	Bootstrap struct {
		ClusterID  string     `json:"cluster_id"`
		Aggregator Aggregator `json:"aggregator"`
	}
	AddLeaf          struct{ Leaf Leaf }
	RemoveLeaf       struct{ Addr string }
	SetLeafState     struct{ Addr, State string }
	AddAggregator    struct{ Aggregator Aggregator }
	RemoveAggregator struct{ Addr string }
	SetVariable      struct{ Name, Value string }
	CreateDatabase   struct {
		Name     string
		Masters  []string   // master leaf of each ordinal
		Replicas [][]string // replica leaves of each ordinal (redundancy 2)
		Sync     bool
		LSN      uint64 // the master's copy of the database after creating it
	}
	DropDatabase struct{ Name string }
	CreateTable  struct {
		Database string
		Table    Table
		LSN      uint64 // the master's copy after creating the table
	}
	// SchemaChanged records the position of the master's copy of a
	// database after a schema change (see Database.SchemaLSN).
	SchemaChanged struct {
		Database string
		LSN      uint64
	}
	DropTable struct{ Database, Name string }
	// RenameTables renames tables of a database in order (a swap is
	// a → tmp, b → a, tmp → b), all of them or, when one cannot be
	// renamed, none: no aggregator ever plans with a part of a RENAME
	// TABLE, and a master that dies in the middle leaves none of it. LSN
	// is the position of the master's copy of the database with the
	// renamed definitions (as SchemaChanged).
	RenameTables struct {
		Database string
		Renames  []Rename
		LSN      uint64 `json:",omitempty"`
	}
	// Rename is one table's old and new name.
	Rename struct{ From, To string }
	// SetPartitions replaces a database's partition map. Apply derives
	// each partition's Epoch and Candidates from the map before (callers'
	// values are ignored). Epochs, when set, are the epochs the caller
	// read: the command is refused if any partition's epoch moved since
	// (a compare-and-set against a failover in between).
	SetPartitions struct {
		Database   string
		Partitions []Partition
		Epochs     []uint64 `json:",omitempty"`
	}
	// LeafDown takes leaves out of service (State: offline or detached)
	// and fails their master partitions over in the same command
	// (Failover): there is no moment in the log where a leaf is offline
	// and still names masters that failover would have moved. Leaves
	// found down together go in one command, so that none is chosen to
	// take over from another.
	LeafDown struct {
		Addrs []string
		State string
	}
	// SetUsers replaces the cluster's MySQL accounts and grants (GMS's
	// serialized user tables), which every aggregator enforces.
	SetUsers struct{ Data []byte }
	// TakeOver starts a master aggregator's reign: MasterEpoch becomes
	// the next number, at least MinEpoch (a forced takeover passes one
	// above every epoch the leaves have seen: its log may lack the lost
	// master's last TakeOver), and MasterAddr becomes Master.
	TakeOver struct {
		Master   string
		MinEpoch uint64 `json:",omitempty"`
	}
)

// Encode builds a command from a payload.
func Encode(payload interface{}) ([]byte, error) {
	var op string
	switch payload.(type) {
	case Bootstrap:
		op = "bootstrap"
	case AddLeaf:
		op = "add_leaf"
	case RemoveLeaf:
		op = "remove_leaf"
	case SetLeafState:
		op = "set_leaf_state"
	case AddAggregator:
		op = "add_aggregator"
	case RemoveAggregator:
		op = "remove_aggregator"
	case SetVariable:
		op = "set_variable"
	case CreateDatabase:
		op = "create_database"
	case DropDatabase:
		op = "drop_database"
	case CreateTable:
		op = "create_table"
	case DropTable:
		op = "drop_table"
	case RenameTables:
		op = "rename_tables"
	case SetPartitions:
		op = "set_partitions"
	case LeafDown:
		op = "leaf_down"
	case StartJob:
		op = "start_job"
	case SetJobStep:
		op = "set_job_step"
	case EndJob:
		op = "end_job"
	case SchemaChanged:
		op = "schema_changed"
	case SetUsers:
		op = "set_users"
	case TakeOver:
		op = "take_over"
	case StartDDLJob:
		op = "start_ddl_job"
	case UpdateDDLJob:
		op = "update_ddl_job"
	case FinishDDLJob:
		op = "finish_ddl_job"
	default:
		return nil, fmt.Errorf("meta: unknown command %T", payload)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Command{Op: op, Payload: p})
}

// Apply returns the state after a command, or an error (and the state
// unchanged) when the command does not apply.
func (s *State) Apply(data []byte) (*State, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return s, fmt.Errorf("meta: bad command: %w", err)
	}
	n := s.Clone()
	var err error
	switch c.Op {
	case "bootstrap":
		var p Bootstrap
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.bootstrap(p)
		}
	case "add_leaf":
		var p AddLeaf
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.addLeaf(p.Leaf)
		}
	case "remove_leaf":
		var p RemoveLeaf
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.removeLeaf(p.Addr)
		}
	case "set_leaf_state":
		var p SetLeafState
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.setLeafState(p.Addr, p.State)
		}
	case "add_aggregator":
		var p AddAggregator
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.addAggregator(p.Aggregator)
		}
	case "remove_aggregator":
		var p RemoveAggregator
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.removeAggregator(p.Addr)
		}
	case "set_variable":
		var p SetVariable
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			n.Variables[strings.ToLower(p.Name)] = p.Value
		}
	case "create_database":
		var p CreateDatabase
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.createDatabase(p)
		}
	case "drop_database":
		var p DropDatabase
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			if n.Database(p.Name) == nil {
				err = fmt.Errorf("Unknown database '%s'", p.Name)
			}
			delete(n.Databases, strings.ToLower(p.Name))
			n.cancelDDLJobs(p.Name, "")
		}
	case "create_table":
		var p CreateTable
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.createTable(p)
		}
	case "drop_table":
		var p DropTable
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.dropTable(p)
		}
	case "rename_tables":
		var p RenameTables
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.renameTables(p)
		}
	case "rename_table":
		// one rename per command, as the version before RenameTables
		// wrote them: raft logs may still hold such entries
		var p struct {
			Database, From, To string
			LSN                uint64
		}
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.renameTables(RenameTables{Database: p.Database, Renames: []Rename{{p.From, p.To}}, LSN: p.LSN})
		}
	case "schema_changed":
		var p SchemaChanged
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.schemaChanged(p.Database, p.LSN)
		}
	case "set_partitions":
		var p SetPartitions
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.setPartitions(p)
		}
	case "start_job":
		var p StartJob
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			n.startJob(p.Job)
		}
	case "set_job_step":
		var p SetJobStep
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.setJobStep(p)
		}
	case "end_job":
		var p EndJob
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.endJob(p)
		}
	case "leaf_down":
		var p LeafDown
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.leafDown(p.Addrs, p.State)
		}
	case "set_users":
		var p SetUsers
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			n.Users = p.Data
		}
	case "take_over":
		var p TakeOver
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			n.MasterEpoch = max(n.MasterEpoch+1, p.MinEpoch)
			n.MasterAddr = p.Master
		}
	case "start_ddl_job":
		var p StartDDLJob
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.startDDLJob(p.Job)
		}
	case "update_ddl_job":
		var p UpdateDDLJob
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.updateDDLJob(p)
		}
	case "finish_ddl_job":
		var p FinishDDLJob
		if err = json.Unmarshal(c.Payload, &p); err == nil {
			err = n.finishDDLJob(p)
		}
	default:
		err = fmt.Errorf("meta: unknown command %q", c.Op)
	}
	if err != nil {
		return s, err
	}
	return n, nil
}

func (s *State) bootstrap(p Bootstrap) error {
	if s.ClusterID != "" {
		return fmt.Errorf("cluster %s is already bootstrapped", s.ClusterID)
	}
	s.ClusterID = p.ClusterID
	p.Aggregator.Number = 0
	s.Aggregators = []Aggregator{p.Aggregator}
	s.NextAggregatorNumber = 1
	s.MasterEpoch, s.MasterAddr = 1, p.Aggregator.Addr()
	return nil
}

func (s *State) addLeaf(l Leaf) error {
	if _, ok := s.Leaf(l.Addr()); ok {
		return fmt.Errorf("Leaf %s is already in the cluster", l.Addr())
	}
	redundancy := 1
	if s.Variable("redundancy_level") == "2" {
		redundancy = 2
	}
	if l.Group == 0 {
		// the smaller group, the first on a tie
		sizes := map[int]int{}
		for _, x := range s.Leaves {
			sizes[x.Group]++
		}
		l.Group = 1
		for g := 2; g <= redundancy; g++ {
			if sizes[g] < sizes[l.Group] {
				l.Group = g
			}
		}
	}
	if l.State == "" {
		l.State = LeafOnline
	}
	l.PairHost, l.PairPort = "", 0
	if redundancy == 2 {
		// pair with the first unpaired leaf of the other group
		for i := range s.Leaves {
			x := &s.Leaves[i]
			if x.Group != l.Group && x.PairHost == "" {
				x.PairHost, x.PairPort = l.Host, l.Port
				l.PairHost, l.PairPort = x.Host, x.Port
				break
			}
		}
	}
	s.Leaves = append(s.Leaves, l)
	return nil
}

func (s *State) removeLeaf(addr string) error {
	for i, l := range s.Leaves {
		if l.Addr() != addr {
			continue
		}
		for _, d := range s.Databases {
			for _, p := range d.Partitions {
				if p.Master == addr {
					return fmt.Errorf("leaf %s is still the master of %s:%d", addr, d.Name, p.Ordinal)
				}
			}
		}
		for j := range s.Leaves {
			if x := &s.Leaves[j]; x.PairHost == l.Host && x.PairPort == l.Port {
				x.PairHost, x.PairPort = "", 0
			}
		}
		s.Leaves = append(s.Leaves[:i], s.Leaves[i+1:]...)
		return nil
	}
	return fmt.Errorf("Leaf %s is not part of the cluster", addr)
}

func (s *State) setLeafState(addr, state string) error {
	for i := range s.Leaves {
		if s.Leaves[i].Addr() == addr {
			s.Leaves[i].State = state
			return nil
		}
	}
	return fmt.Errorf("Leaf %s is not part of the cluster", addr)
}

func (s *State) addAggregator(a Aggregator) error {
	if _, ok := s.Aggregator(a.Addr()); ok {
		return fmt.Errorf("Aggregator %s is already in the cluster", a.Addr())
	}
	a.Number = s.NextAggregatorNumber
	s.NextAggregatorNumber++
	s.Aggregators = append(s.Aggregators, a)
	return nil
}

func (s *State) removeAggregator(addr string) error {
	for i, a := range s.Aggregators {
		if a.Addr() == addr {
			s.Aggregators = append(s.Aggregators[:i], s.Aggregators[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("Aggregator %s is not part of the cluster", addr)
}

func (s *State) createDatabase(p CreateDatabase) error {
	if s.Database(p.Name) != nil {
		return fmt.Errorf("Can't create database '%s'; database exists", p.Name)
	}
	d := &Database{Name: p.Name, Tables: map[string]*Table{}, Sync: p.Sync, SchemaLSN: p.LSN}
	for i, m := range p.Masters {
		part := Partition{Ordinal: i, Master: m}
		if i < len(p.Replicas) {
			part.Replicas = p.Replicas[i]
		}
		d.Partitions = append(d.Partitions, part)
	}
	s.Databases[strings.ToLower(p.Name)] = d
	return nil
}

func (s *State) createTable(p CreateTable) error {
	d := s.Database(p.Database)
	if d == nil {
		return fmt.Errorf("Unknown database '%s'", p.Database)
	}
	if d.Table(p.Table.Name) != nil {
		return fmt.Errorf("Table '%s' already exists", p.Table.Name)
	}
	t := p.Table
	d.Tables[strings.ToLower(t.Name)] = &t
	return s.schemaChanged(p.Database, p.LSN)
}

func (s *State) schemaChanged(db string, lsn uint64) error {
	d := s.Database(db)
	if d == nil {
		return fmt.Errorf("Unknown database '%s'", db)
	}
	if lsn > d.SchemaLSN {
		d.SchemaLSN = lsn
	}
	return nil
}

func (s *State) dropTable(p DropTable) error {
	d := s.Database(p.Database)
	if d == nil {
		return fmt.Errorf("Unknown database '%s'", p.Database)
	}
	if d.Table(p.Name) == nil {
		return fmt.Errorf("Unknown table '%s.%s'", p.Database, p.Name)
	}
	delete(d.Tables, strings.ToLower(p.Name))
	s.cancelDDLJobs(d.Name, p.Name)
	return nil
}

// renameTables renames in order; an error leaves s part-renamed, which
// Apply then drops (it changes a clone).
func (s *State) renameTables(p RenameTables) error {
	d := s.Database(p.Database)
	if d == nil {
		return fmt.Errorf("Unknown database '%s'", p.Database)
	}
	for _, r := range p.Renames {
		t := d.Table(r.From)
		if t == nil {
			return fmt.Errorf("Unknown table '%s.%s'", p.Database, r.From)
		}
		if d.Table(r.To) != nil {
			return fmt.Errorf("Table '%s' already exists", r.To)
		}
		delete(d.Tables, strings.ToLower(r.From))
		t.Counter = t.CounterName()
		t.Name = r.To
		d.Tables[strings.ToLower(r.To)] = t
	}
	return s.schemaChanged(p.Database, p.LSN)
}

// ErrEpochMoved: a SetPartitions whose partitions changed master since
// the caller read them.
var ErrEpochMoved = errors.New("the partition map changed meanwhile")

func (s *State) setPartitions(p SetPartitions) error {
	d := s.Database(p.Database)
	if d == nil {
		return fmt.Errorf("Unknown database '%s'", p.Database)
	}
	if p.Epochs != nil {
		if len(p.Epochs) != len(d.Partitions) {
			return fmt.Errorf("%s: %w (%d partitions, %d expected)", d.Name, ErrEpochMoved, len(d.Partitions), len(p.Epochs))
		}
		for i, e := range p.Epochs {
			if d.Partitions[i].Epoch != e {
				return fmt.Errorf("%s:%d: %w (epoch %d, expected %d)", d.Name, i, ErrEpochMoved, d.Partitions[i].Epoch, e)
			}
		}
	}
	d.Partitions = successors(d.Partitions, p.Partitions)
	return nil
}

// successors is the partition map next, with each partition's epoch,
// candidates and unlinked replica following from prev: a change of
// master raises the epoch (and forgets the unlinked replica, as does its
// return to the replicas); a
// partition that loses its master keeps as candidates that master and
// its replicas (the copies known to hold every acknowledged commit), one
// that stays without master keeps its candidates.
func successors(prev, next []Partition) []Partition {
	out := make([]Partition, len(next))
	for i, p := range next {
		p.Candidates = nil
		if i < len(prev) {
			old := prev[i]
			p.Epoch = old.Epoch
			if p.Master != old.Master {
				p.Epoch++
				p.Unlinked = ""
			}
			if p.Master == "" {
				p.Replicas = nil // nothing to follow; they are candidates
				if old.Master != "" {
					p.Candidates = append([]string{old.Master}, old.Replicas...)
				} else {
					p.Candidates = append([]string(nil), old.Candidates...)
				}
			}
		}
		if p.Unlinked != "" && (p.Master == "" || p.Unlinked == p.Master || slices.Contains(p.Replicas, p.Unlinked)) {
			p.Unlinked = ""
		}
		out[i] = p
	}
	return out
}

func (s *State) leafDown(addrs []string, state string) error {
	for _, addr := range addrs {
		if err := s.setLeafState(addr, state); err != nil {
			return err
		}
	}
	// a leaf being attached answers heartbeats, and the replicas it has
	// been given are whole (entered synchronous and caught up)
	online := func(x string) bool {
		l, ok := s.Leaf(x)
		return ok && (l.State == LeafOnline || l.State == LeafAttaching)
	}
	for _, d := range s.Databases {
		for _, addr := range addrs {
			parts := Failover(d, addr, online)
			d.Partitions = successors(d.Partitions, parts)
		}
	}
	return nil
}
