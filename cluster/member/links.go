package member

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/dolthub/vitess/go/mysql"

	"github.com/canopydb/canopy/cluster/meta"
	"github.com/canopydb/canopy/cluster/pool"
	"github.com/canopydb/canopy/internal/linkauth"
)

// How this aggregator reaches other nodes over the MySQL protocol: a leaf
// with the credentials ADD LEAF gave, another aggregator as the internal
// account (whose password derives from the cluster secret: their
// accounts are the cluster's, which clients change at will); either way
// each connection then proves the secret, and checks the node's proof,
// to become a cluster link (linkLogin, internal/linkauth).

// LeafNode is how to reach a leaf of the cluster.
func (m *Member) LeafNode(l meta.Leaf) pool.Node {
	return m.NewLeafNode(l.Host, l.Port, l.User, l.Password)
}

// NewLeafNode is how to reach a leaf with its credentials (ADD LEAF's).
func (m *Member) NewLeafNode(host string, port int, user, password string) pool.Node {
	return pool.Node{Host: host, Port: port, User: user, Password: password, TLS: m.host.NodeTLS(), Login: m.linkLogin}
}

// AggregatorNode is how to reach another aggregator of the cluster.
func (m *Member) AggregatorNode(ag meta.Aggregator) pool.Node {
	return pool.Node{Host: ag.Host, Port: ag.Port, User: linkauth.InternalUser,
		Password: linkauth.InternalPassword(m.host.ClusterSecret()), TLS: m.host.NodeTLS(), Login: m.linkLogin}
}

// challenge is a node's answer to CANOPY CHALLENGE.
type challenge struct {
	cluster string
	nonce   []byte // nil: the node is in no cluster
	key     []byte // its ephemeral public key for this connection
}

func challengeOf(c *mysql.Conn) (challenge, error) {
	res, err := c.ExecuteFetch("CANOPY CHALLENGE", 1, false)
	if err != nil {
		return challenge{}, err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 3 {
		return challenge{}, fmt.Errorf("unexpected answer to CANOPY CHALLENGE")
	}
	row := res.Rows[0]
	ch := challenge{cluster: row[0].ToString()}
	if !row[1].IsNull() {
		if ch.nonce, err = hex.DecodeString(row[1].ToString()); err != nil {
			return ch, fmt.Errorf("bad nonce: %w", err)
		}
	}
	if ch.key, err = hex.DecodeString(row[2].ToString()); err != nil {
		return ch, fmt.Errorf("bad key: %w", err)
	}
	return ch, nil
}

// linkLogin makes a new connection a cluster link: it proves the secret
// and checks that the node knows it too. A node in no cluster yet (ADD
// LEAF reaching it) or in another one gets a plain connection: the
// statements that follow say what is wrong.
func (m *Member) linkLogin(c *mysql.Conn) error {
	ch, err := challengeOf(c)
	if err != nil {
		return fmt.Errorf("cluster link: %w", err)
	}
	if ch.nonce == nil || ch.cluster != m.clusterID {
		return nil
	}
	secret := m.host.ClusterSecret()
	mine := make([]byte, 32)
	rand.Read(mine)
	binding := linkauth.Binding(c.Conn)
	proof := linkauth.Proof(secret, linkauth.Dialer, ch.nonce, mine, binding)
	res, err := c.ExecuteFetch("CANOPY AUTHENTICATE '"+hex.EncodeToString(mine)+"' '"+hex.EncodeToString(proof)+"'", 1, false)
	if err != nil {
		return fmt.Errorf("cluster link: %w", err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return fmt.Errorf("cluster link: the node gave no proof")
	}
	theirs, err := hex.DecodeString(res.Rows[0][0].ToString())
	if err != nil || !hmac.Equal(theirs, linkauth.Proof(secret, linkauth.Answerer, ch.nonce, mine, binding)) {
		return fmt.Errorf("cluster link: the node did not prove the cluster secret (a node of another cluster, or something in between)")
	}
	return nil
}

// SendJoin makes a node a member: on one connection, it takes the node's
// ephemeral key and sends the cluster secret sealed for it.
func (m *Member) SendJoin(ctx context.Context, node pool.Node, as string) error {
	node.Login = nil
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pool.Connect(dctx, node)
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := challengeOf(c)
	if err != nil {
		return fmt.Errorf("join %s: %w", node.Addr(), err)
	}
	pub, sealed, err := linkauth.Seal(ch.key, m.host.ClusterSecret())
	if err != nil {
		return fmt.Errorf("join %s: %w", node.Addr(), err)
	}
	q := fmt.Sprintf("CANOPY JOIN CLUSTER '%s' AS %s KEY '%s' SECRET '%s'", m.clusterID, as, hex.EncodeToString(pub), hex.EncodeToString(sealed))
	_, err = c.ExecuteFetch(q, 0, false)
	return err
}
