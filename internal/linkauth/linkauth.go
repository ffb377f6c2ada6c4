// Package linkauth is how Canopy nodes prove to each other over the MySQL
// protocol that they belong to one cluster: both ends derive proofs from
// the cluster secret, which crosses the wire only once, sealed, when a
// node joins.
//
// A node answers CANOPY CHALLENGE with its nonce and an ephemeral X25519
// key for the connection. An aggregator that knows the secret answers
// with CANOPY AUTHENTICATE: its own nonce and a MAC over both nonces (and
// the TLS session, when there is one); the node checks it, makes the
// connection a cluster link (the only kind that may run node-internal
// CANOPY statements) and proves itself in turn. ADD LEAF and ADD
// AGGREGATOR send the secret to the new node sealed with a key agreed with
// that connection's ephemeral key, so an eavesdropper never sees it.
//
// Aggregators log in to each other as InternalUser, whose password
// derives from the secret (their accounts are the cluster's, which
// clients change at will); such a login still proves itself as above to
// become a link.
package linkauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
)

// InternalUser is the account aggregators log in to each other with. The
// name is reserved: clients can neither create nor change nor drop it.
const InternalUser = "canopy_node"

// InternalPassword is InternalUser's password in the cluster of secret.
func InternalPassword(secret []byte) string {
	return hex.EncodeToString(mac(secret, "canopy aggregator login v1"))
}

// Sides of a link proof: the dialing aggregator and the answering node.
const (
	Dialer   = "dialer"
	Answerer = "answerer"
)

// Proof is one side's proof for a challenge: a MAC under the secret over
// the answerer's and the dialer's nonces and the TLS binding (nil on a
// plain connection).
func Proof(secret []byte, side string, answererNonce, dialerNonce, binding []byte) []byte {
	return mac(secret, "canopy mysql link v2 "+side, answererNonce, dialerNonce, binding)
}

// Binding is the TLS channel binding of a connection (keying material
// exported from its TLS session), or nil for a plain one: a proof bound
// to it cannot be relayed to another session.
func Binding(c net.Conn) []byte {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("EXPORTER-canopy-mysql-link", nil, 32)
	if err != nil {
		return nil
	}
	return b
}

// NewKey is an ephemeral key for one connection's key agreement.
func NewKey() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }

// Seal encrypts the cluster secret for the node whose ephemeral public key
// is peer; it returns this side's public key and the sealed secret.
func Seal(peer []byte, secret []byte) (public, sealed []byte, err error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, nil, err
	}
	priv, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, nil, err
	}
	aead, err := sealer(shared, priv.PublicKey().Bytes(), peer)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return priv.PublicKey().Bytes(), aead.Seal(nonce, nonce, secret, nil), nil
}

// Open decrypts a secret sealed for priv by the holder of public.
func Open(priv *ecdh.PrivateKey, public, sealed []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(public)
	if err != nil {
		return nil, err
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	aead, err := sealer(shared, public, priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("sealed secret too short")
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
}

func sealer(shared, sender, receiver []byte) (cipher.AEAD, error) {
	key := sha256.Sum256(append(append(append([]byte("canopy join v1"), shared...), sender...), receiver...))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func mac(secret []byte, label string, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(label))
	for _, p := range parts {
		var n [2]byte
		n[0], n[1] = byte(len(p)>>8), byte(len(p))
		h.Write(n[:]) // length-prefixed: parts cannot be shifted into each other
		h.Write(p)
	}
	return h.Sum(nil)
}
