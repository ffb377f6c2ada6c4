package sqlcmd

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// Cluster management statements, with the seeds' syntax.
type (
	// BootstrapAggregator makes this node the master aggregator of a new
	// cluster: BOOTSTRAP AGGREGATOR 'host'[:port]. Port 0: the node's own.
	BootstrapAggregator struct {
		Host string
		Port int
	}
	// AddLeaf is ADD LEAF user[:'password']@'host'[:port] [INTO GROUP n].
	AddLeaf struct {
		User, Password, Host string
		Port, Group          int
	}
	// RemoveLeaf is REMOVE LEAF 'host'[:port] [FORCE].
	RemoveLeaf struct {
		Host  string
		Port  int
		Force bool
	}
	// AddAggregator is ADD AGGREGATOR user[:'password']@'host'[:port].
	AddAggregator struct {
		User, Password, Host string
		Port                 int
	}
	// RemoveAggregator is REMOVE AGGREGATOR 'host'[:port].
	RemoveAggregator struct {
		Host string
		Port int
	}
	// SetAsMaster is AGGREGATOR SET AS MASTER, run on the child aggregator
	// that is to become master.
	SetAsMaster struct{}
	// PromoteAggregator is PROMOTE AGGREGATOR 'host'[:port] TO MASTER: a
	// graceful swap; the old master goes on as a child.
	PromoteAggregator struct {
		Host string
		Port int
	}
	// RaftMembers is CANOPY RAFT MEMBERS: the metadata group's
	// configuration as this aggregator knows it.
	RaftMembers     struct{}
	ShowLeaves      struct{}
	ShowAggregators struct{}
	// ShowPartitions is SHOW PARTITIONS [ON db].
	ShowPartitions struct{ Database string }
	// CreateDatabase is the cluster form of CREATE DATABASE:
	// CREATE DATABASE [IF NOT EXISTS] db [WITH {SYNC|ASYNC} REPLICATION]
	// [PARTITIONS[=]n] [[DEFAULT] CHARACTER SET [=] cs] [[DEFAULT] COLLATE [=] c].
	CreateDatabase struct {
		Name        string
		IfNotExists bool
		Partitions  int  // 0: the default
		Sync        bool // WITH SYNC REPLICATION
	}
	// SetClusterVariable is SET [@@]GLOBAL name = value for a cluster-wide
	// variable (kept in the cluster metadata).
	SetClusterVariable struct{ Name, Value string }

	// Node-to-node statements (Canopy's own, used by aggregators).

	// NodeStatus is CANOPY NODE STATUS: role, cluster and ports of a node.
	NodeStatus struct{}
	// JoinCluster is CANOPY JOIN CLUSTER 'id' AS {LEAF | AGGREGATOR 'self'}
	// KEY 'hex' SECRET 'hex': the cluster secret, which authenticates the
	// node's links, sealed with a key agreed with the connection's
	// ephemeral key (linkauth.Seal).
	JoinCluster struct {
		ClusterID string
		Role      string // "leaf" or "aggregator"
		Self      string // the aggregator's own address (host:port)
		Key       string // the sender's public key, hex
		Secret    string // the sealed secret, hex
	}
	// Challenge is CANOPY CHALLENGE: a node's cluster, a fresh nonce and
	// an ephemeral public key for the connection (linkauth).
	Challenge struct{}
	// Authenticate is CANOPY AUTHENTICATE 'nonce' 'proof' (hex): the
	// dialer's nonce and proof of the cluster secret; the node answers
	// with its own proof.
	Authenticate struct{ Nonce, Proof string }
	// Impersonate is CANOPY IMPERSONATE 'user' 'host' 'database' (hex) or
	// NONE: a cluster link runs what follows as a client, with its
	// privileges and current database ("": none), as a child aggregator
	// forwards a client's statement to the master. NONE goes back to the
	// link's own account, in no database.
	Impersonate struct {
		User, Host, Database string
		None                 bool
	}
	// LeaveCluster is CANOPY LEAVE CLUSTER 'id'.
	LeaveCluster struct{ ClusterID string }
	// DropCopy is CANOPY DROP COPY db: drop this node's copy of a dropped
	// distributed database.
	DropCopy struct{ Database string }
	// PrepareTxn is CANOPY PREPARE 'xid': the first phase of a distributed
	// commit; the connection's transaction becomes durable and in doubt.
	// Its OK reports PreparedNothing affected rows when the part wrote
	// nothing and is over: it takes no part in the second phase.
	PrepareTxn struct{ XID string }
	// CommitPrepared is CANOPY COMMIT PREPARED 'xid'.
	CommitPrepared struct{ XID string }
	// RollbackPrepared is CANOPY ROLLBACK PREPARED 'xid'.
	RollbackPrepared struct{ XID string }
	// ShowPrepared is CANOPY PREPARED TRANSACTIONS: the in-doubt ones.
	ShowPrepared struct{}
	// Replicate is CANOPY REPLICATE 'json': the replicas a leaf ships its
	// master partitions to (the whole list, from the master aggregator).
	// MASTER EPOCH n (every control command of the master aggregator
	// ends with it) is the sender's master epoch: a leaf that has seen a
	// newer master refuses the command.
	Replicate struct {
		Config      string
		MasterEpoch uint64
	}
	// PartitionRole is CANOPY {PROMOTE|DEMOTE|DROP} PARTITION 'db_N'
	// [EPOCH e] [MASTER EPOCH n] on a leaf: make a replica partition
	// master, hand a master's role over (it becomes a replica once its
	// in-doubt transactions are resolved), or drop a copy whatever its
	// role. Epoch (PROMOTE … EPOCH e): the partition's epoch in the
	// metadata; the copy's term becomes it (nil: its term goes up by one).
	// Incarnation (… EPOCH e INCARNATION i): the leaf's incarnation as
	// the master aggregator last read it; the promotion also confirms a
	// master suspect since a pause, and a stale one is refused.
	PartitionRole struct {
		Action, Database string
		Epoch            *uint64
		Incarnation      *uint64
		MasterEpoch      uint64
	}
	// MasterAggregator is CANOPY MASTER AGGREGATOR: the newest master
	// aggregator this node has seen and its master epoch; with 'host:port'
	// EPOCH n, a master aggregator records itself (refused when the node
	// has seen a newer master, or another one of the same epoch).
	MasterAggregator struct {
		Addr  string // "": the question
		Epoch uint64
	}

	// PartitionCommand is one of the low-level partition commands the
	// high-level ones are made of, on partition Database:Ordinal of a leaf:
	// COPY PARTITION db:N TO 'host':port, PROMOTE PARTITION db:N ON
	// 'host':port [WITH DROP], ATTACH / DETACH / DROP PARTITION db:N ON
	// 'host':port.
	PartitionCommand struct {
		Action   string // COPY, PROMOTE, ATTACH, DETACH or DROP
		Database string
		Ordinal  int
		Host     string
		Port     int
		WithDrop bool // PROMOTE … WITH DROP: drop the old master's copy
	}

	// Rebalance is [EXPLAIN] REBALANCE PARTITIONS ON db [FORCE] and
	// [EXPLAIN] RESTORE REDUNDANCY ON db (RestoreOnly).
	Rebalance struct {
		Database                    string
		Explain, Force, RestoreOnly bool
	}

	// AttachLeaf is ATTACH LEAF 'host'[:port] [FORCE] | ATTACH LEAF ALL [FORCE].
	AttachLeaf struct {
		Host  string
		Port  int
		All   bool
		Force bool
	}
	// DetachLeaf is DETACH LEAF 'host'[:port].
	DetachLeaf struct {
		Host string
		Port int
	}
	// ShowRebalanceStatus is SHOW REBALANCE STATUS [ON db].
	ShowRebalanceStatus struct{ Database string }
	// ShowClusterStatus is SHOW CLUSTER STATUS: every database copy on
	// every leaf, with its role in the metadata.
	ShowClusterStatus struct{}
	// ShowDDLJobs is SHOW DDL JOBS: the schema changes under way and the
	// last finished ones, from the metadata.
	ShowDDLJobs struct{}
	// ClearOrphans is [EXPLAIN] CLEAR ORPHAN DATABASES.
	ClearOrphans struct{ Explain bool }
)

func (BootstrapAggregator) command() {}
func (AddLeaf) command()             {}
func (RemoveLeaf) command()          {}
func (AddAggregator) command()       {}
func (RemoveAggregator) command()    {}
func (ShowLeaves) command()          {}
func (SetAsMaster) command()         {}
func (PromoteAggregator) command()   {}
func (RaftMembers) command()         {}
func (ShowAggregators) command()     {}
func (ShowPartitions) command()      {}
func (CreateDatabase) command()      {}
func (SetClusterVariable) command()  {}
func (NodeStatus) command()          {}
func (JoinCluster) command()         {}
func (Challenge) command()           {}
func (Authenticate) command()        {}
func (Impersonate) command()         {}
func (LeaveCluster) command()        {}
func (DropCopy) command()            {}
func (PrepareTxn) command()          {}
func (CommitPrepared) command()      {}
func (RollbackPrepared) command()    {}
func (ShowPrepared) command()        {}
func (Replicate) command()           {}
func (PartitionRole) command()       {}
func (MasterAggregator) command()    {}
func (Rebalance) command()           {}
func (PartitionCommand) command()    {}
func (AttachLeaf) command()          {}
func (DetachLeaf) command()          {}
func (ShowRebalanceStatus) command() {}
func (ShowClusterStatus) command()   {}
func (ShowDDLJobs) command()         {}
func (ClearOrphans) command()        {}

// ClusterVariables are the variables kept in the cluster metadata.
var ClusterVariables = map[string]bool{
	"redundancy_level":            true,
	"auto_attach":                 true,
	"default_partitions_per_leaf": true,
	"leaf_failure_detection":      true,
	"leaf_failure_timeout_ms":     true,
	"leaf_refused_timeout_ms":     true,
	"copy_bandwidth_mb_per_sec":   true,
}

// parseCluster recognizes cluster statements; nil if p holds none.
func parseCluster(p *parser) Command {
	switch {
	case p.keyword("BOOTSTRAP", "AGGREGATOR"):
		host, port, ok := p.hostPort()
		if ok && p.done() {
			return BootstrapAggregator{Host: host, Port: port}
		}
	case p.keyword("ADD", "LEAF"):
		user, pw, host, port, ok := p.userAtHost()
		if !ok {
			return nil
		}
		c := AddLeaf{User: user, Password: pw, Host: host, Port: port}
		if p.keyword("INTO", "GROUP") {
			g, err := strconv.Atoi(p.next().text)
			if err != nil {
				return nil
			}
			c.Group = g
		}
		if p.done() {
			return c
		}
	case p.keyword("REMOVE", "LEAF"):
		host, port, ok := p.hostPort()
		if !ok {
			return nil
		}
		c := RemoveLeaf{Host: host, Port: port, Force: p.keyword("FORCE")}
		if p.done() {
			return c
		}
	case p.keyword("ADD", "AGGREGATOR"):
		user, pw, host, port, ok := p.userAtHost()
		if ok && p.done() {
			return AddAggregator{User: user, Password: pw, Host: host, Port: port}
		}
	case p.keyword("REMOVE", "AGGREGATOR"):
		host, port, ok := p.hostPort()
		if ok && p.done() {
			return RemoveAggregator{Host: host, Port: port}
		}
	case p.keyword("COPY", "PARTITION"), p.keyword("PROMOTE", "PARTITION"), p.keyword("ATTACH", "PARTITION"),
		p.keyword("DETACH", "PARTITION"), p.keyword("DROP", "PARTITION"):
		c := PartitionCommand{Action: strings.ToUpper(p.toks[0].text)}
		c.Database = p.next().text
		if c.Database == "" || !p.keyword(":") {
			return nil
		}
		n, err := strconv.Atoi(p.next().text)
		if err != nil || n < 0 {
			return nil
		}
		c.Ordinal = n
		if c.Action == "COPY" && !p.keyword("TO") || c.Action != "COPY" && !p.keyword("ON") {
			return nil
		}
		host, port, ok := p.hostPort()
		if !ok {
			return nil
		}
		c.Host, c.Port = host, port
		if c.Action == "PROMOTE" && p.keyword("WITH", "DROP") {
			c.WithDrop = true
		}
		if p.done() {
			return c
		}
	case p.keyword("AGGREGATOR", "SET", "AS", "MASTER"):
		if p.done() {
			return SetAsMaster{}
		}
	case p.keyword("PROMOTE", "AGGREGATOR"):
		host, port, ok := p.hostPort()
		if ok && p.keyword("TO", "MASTER") && p.done() {
			return PromoteAggregator{Host: host, Port: port}
		}
	case p.keyword("CANOPY", "RAFT", "MEMBERS"):
		if p.done() {
			return RaftMembers{}
		}
	case p.keyword("SHOW", "CLUSTER", "STATUS"):
		if p.done() {
			return ShowClusterStatus{}
		}
	case p.keyword("SHOW", "DDL", "JOBS"):
		if p.done() {
			return ShowDDLJobs{}
		}
	case p.keyword("CLEAR", "ORPHAN", "DATABASES"), p.keyword("EXPLAIN", "CLEAR", "ORPHAN", "DATABASES"):
		if p.done() {
			return ClearOrphans{Explain: strings.EqualFold(p.toks[0].text, "EXPLAIN")}
		}
	case p.keyword("SHOW", "LEAVES"):
		if p.done() {
			return ShowLeaves{}
		}
	case p.keyword("SHOW", "AGGREGATORS"):
		if p.done() {
			return ShowAggregators{}
		}
	case p.keyword("SHOW", "PARTITIONS"):
		c := ShowPartitions{}
		if p.keyword("ON") {
			c.Database = p.next().text
		}
		if p.done() {
			return c
		}
	case p.keyword("CANOPY", "NODE", "STATUS"):
		if p.done() {
			return NodeStatus{}
		}
	case p.keyword("CANOPY", "JOIN", "CLUSTER"):
		c := JoinCluster{ClusterID: p.next().text}
		if !p.keyword("AS") {
			return nil
		}
		switch {
		case p.keyword("LEAF"):
			c.Role = "leaf"
		case p.keyword("AGGREGATOR"):
			c.Role = "aggregator"
			c.Self = p.next().text
		default:
			return nil
		}
		if p.keyword("KEY") {
			c.Key = p.next().text
		}
		if p.keyword("SECRET") {
			c.Secret = p.next().text
		}
		if p.done() && c.ClusterID != "" {
			return c
		}
	case p.keyword("CANOPY", "CHALLENGE"):
		if p.done() {
			return Challenge{}
		}
	case p.keyword("CANOPY", "AUTHENTICATE"):
		c := Authenticate{Nonce: p.next().text, Proof: p.next().text}
		if p.done() && c.Proof != "" {
			return c
		}
	case p.keyword("CANOPY", "IMPERSONATE"):
		if p.keyword("NONE") {
			if p.done() {
				return Impersonate{None: true}
			}
			return nil
		}
		user, host, db := p.next(), p.next(), p.next()
		u, err1 := hex.DecodeString(user.text)
		h, err2 := hex.DecodeString(host.text)
		d, err3 := hex.DecodeString(db.text)
		if user.quoted && host.quoted && db.quoted && err1 == nil && err2 == nil && err3 == nil && p.done() {
			return Impersonate{User: string(u), Host: string(h), Database: string(d)}
		}
	case p.keyword("CANOPY", "DROP", "COPY"):
		c := DropCopy{Database: p.next().text}
		if p.done() && c.Database != "" {
			return c
		}
	case p.keyword("CANOPY", "PREPARE"):
		c := PrepareTxn{XID: p.next().text}
		if p.done() && c.XID != "" {
			return c
		}
	case p.keyword("CANOPY", "COMMIT", "PREPARED"):
		c := CommitPrepared{XID: p.next().text}
		if p.done() && c.XID != "" {
			return c
		}
	case p.keyword("CANOPY", "ROLLBACK", "PREPARED"):
		c := RollbackPrepared{XID: p.next().text}
		if p.done() && c.XID != "" {
			return c
		}
	case p.keyword("CANOPY", "PREPARED", "TRANSACTIONS"):
		if p.done() {
			return ShowPrepared{}
		}
	case p.keyword("ATTACH", "LEAF"):
		c := AttachLeaf{}
		if p.keyword("ALL") {
			c.All = true
		} else {
			host, port, ok := p.hostPort()
			if !ok {
				return nil
			}
			c.Host, c.Port = host, port
		}
		c.Force = p.keyword("FORCE")
		if p.done() {
			return c
		}
	case p.keyword("DETACH", "LEAF"):
		host, port, ok := p.hostPort()
		if ok && p.done() {
			return DetachLeaf{Host: host, Port: port}
		}
	case p.keyword("EXPLAIN", "REBALANCE", "PARTITIONS", "ON"), p.keyword("REBALANCE", "PARTITIONS", "ON"),
		p.keyword("EXPLAIN", "RESTORE", "REDUNDANCY", "ON"), p.keyword("RESTORE", "REDUNDANCY", "ON"):
		c := Rebalance{Explain: strings.EqualFold(p.toks[0].text, "EXPLAIN"), Database: p.next().text}
		c.RestoreOnly = strings.EqualFold(p.toks[0].text, "RESTORE") || strings.EqualFold(p.toks[1].text, "RESTORE")
		c.Force = !c.RestoreOnly && p.keyword("FORCE")
		if p.done() && c.Database != "" {
			return c
		}
	case p.keyword("SHOW", "REBALANCE", "STATUS"):
		c := ShowRebalanceStatus{}
		if p.keyword("ON") {
			c.Database = p.next().text
		}
		if p.done() {
			return c
		}
	case p.keyword("CANOPY", "REPLICATE"):
		c := Replicate{Config: p.next().text}
		if p.masterEpoch(&c.MasterEpoch) && c.Config != "" {
			return c
		}
	case p.keyword("CANOPY", "PROMOTE", "PARTITION"), p.keyword("CANOPY", "DEMOTE", "PARTITION"), p.keyword("CANOPY", "DROP", "PARTITION"):
		c := PartitionRole{Action: strings.ToUpper(p.toks[1].text), Database: p.next().text}
		if c.Action == "PROMOTE" && p.keyword("EPOCH") {
			n, err := strconv.ParseUint(p.next().text, 10, 64)
			if err != nil {
				return nil
			}
			c.Epoch = &n
			if p.keyword("INCARNATION") {
				i, err := strconv.ParseUint(p.next().text, 10, 64)
				if err != nil {
					return nil
				}
				c.Incarnation = &i
			}
		}
		if p.masterEpoch(&c.MasterEpoch) && c.Database != "" {
			return c
		}
	case p.keyword("CANOPY", "MASTER", "AGGREGATOR"):
		if p.done() {
			return MasterAggregator{}
		}
		c := MasterAggregator{Addr: p.next().text}
		if p.keyword("EPOCH") {
			n, err := strconv.ParseUint(p.next().text, 10, 64)
			if err == nil && n > 0 && c.Addr != "" && p.done() {
				c.Epoch = n
				return c
			}
		}
	case p.keyword("CANOPY", "LEAVE", "CLUSTER"):
		c := LeaveCluster{ClusterID: p.next().text}
		if p.done() {
			return c
		}
	}
	return nil
}

// ParseClusterDDL recognizes the statements an aggregator must parse itself
// because MySQL's grammar lacks them: CREATE DATABASE … PARTITIONS and
// SET GLOBAL of cluster variables.
func ParseClusterDDL(stmt string) Command {
	if plainDML(stmt) {
		return nil
	}
	toks, ok := tokenize(stmt)
	if !ok {
		return nil
	}
	p := &parser{toks: toks}
	switch {
	case p.keyword("CREATE", "DATABASE"), p.keyword("CREATE", "SCHEMA"):
		return p.createDatabase()
	case p.keyword("SET"):
		return p.setGlobal()
	}
	return nil
}

func (p *parser) createDatabase() Command {
	c := CreateDatabase{}
	if p.keyword("IF", "NOT", "EXISTS") {
		c.IfNotExists = true
	}
	c.Name = p.next().text
	if c.Name == "" {
		return nil
	}
	for !p.done() {
		switch {
		case p.keyword("WITH"):
			switch {
			case p.keyword("SYNC"):
				c.Sync = true
			case p.keyword("ASYNC"):
			default:
				return nil
			}
			if !p.keyword("REPLICATION") && !p.keyword("DURABILITY") {
				return nil
			}
		case p.keyword("PARTITIONS"):
			p.keyword("=")
			n, err := strconv.Atoi(p.next().text)
			if err != nil || n <= 0 {
				return nil
			}
			c.Partitions = n
		case p.keyword("DEFAULT"):
		case p.keyword("CHARACTER", "SET"), p.keyword("CHARSET"), p.keyword("COLLATE"):
			p.keyword("=")
			p.next()
		default:
			return nil
		}
	}
	return c
}

func (p *parser) setGlobal() Command {
	var name string
	switch {
	case p.keyword("GLOBAL"):
		name = p.next().text
	case p.peek().text == "@" && len(p.toks) > p.pos+2 && p.toks[p.pos+1].text == "@":
		p.pos += 2
		w := p.next().text // "GLOBAL.name" is one word
		lw := strings.ToLower(w)
		if !strings.HasPrefix(lw, "global.") {
			return nil
		}
		name = w[len("global."):]
	default:
		return nil
	}
	name = strings.ToLower(name)
	if !ClusterVariables[name] || !p.keyword("=") {
		return nil
	}
	v := p.next()
	if v.text == "" || !p.done() {
		return nil
	}
	return SetClusterVariable{Name: name, Value: v.text}
}

// masterEpoch parses the end of a control command: nothing, or MASTER
// EPOCH n.
func (p *parser) masterEpoch(n *uint64) bool {
	if p.done() {
		return true
	}
	if !p.keyword("MASTER", "EPOCH") {
		return false
	}
	v, err := strconv.ParseUint(p.next().text, 10, 64)
	*n = v
	return err == nil && p.done()
}

func (p *parser) next() token {
	t := p.peek()
	if !p.done() {
		p.pos++
	}
	return t
}

// hostPort parses 'host'[:port].
func (p *parser) hostPort() (string, int, bool) {
	host := p.next()
	if host.text == "" {
		return "", 0, false
	}
	port := 0
	if p.peek().text == ":" && !p.peek().quoted {
		p.pos++
		n, err := strconv.Atoi(p.next().text)
		if err != nil || n <= 0 || n > 65535 {
			return "", 0, false
		}
		port = n
	}
	return host.text, port, true
}

// account parses 'user'[@'host'] (host defaults to %, as MySQL's).
func (p *parser) account() (user, host string, ok bool) {
	u := p.next()
	if u.text == "" && !u.quoted {
		return "", "", false
	}
	host = "%"
	if t := p.peek(); t.text == "@" && !t.quoted {
		p.pos++
		h := p.next()
		if h.text == "" && !h.quoted {
			return "", "", false
		}
		host = h.text
	}
	return u.text, host, true
}

// userAtHost parses user[:'password']@'host'[:port].
func (p *parser) userAtHost() (user, password, host string, port int, ok bool) {
	user = p.next().text
	if p.peek().text == ":" && !p.peek().quoted {
		p.pos++
		password = p.next().text
	}
	if p.next().text != "@" {
		return
	}
	host, port, ok = p.hostPort()
	if user == "" {
		ok = false
	}
	return
}

// PreparedNothing is the affected-rows count of CANOPY PREPARE's OK when
// the transaction's part wrote nothing (see PrepareTxn). A node that
// predates it answers 0, which reads as prepared: the safe side.
const PreparedNothing = 1
