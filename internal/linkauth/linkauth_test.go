package linkauth

import (
	"bytes"
	"testing"
)

func TestSealOpen(t *testing.T) {
	secret := []byte("the cluster's secret, 32 bytes..")
	node, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, sealed, err := Seal(node.PublicKey().Bytes(), secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed secret holds the secret in clear")
	}
	got, err := Open(node, pub, sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other, _ := NewKey()
	if _, err := Open(other, pub, sealed); err == nil {
		t.Error("another key opened the secret")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := Open(node, pub, sealed); err == nil {
		t.Error("a tampered secret opened")
	}
}

func TestProofs(t *testing.T) {
	s, a, d := []byte("secret"), []byte("answerer nonce"), []byte("dialer nonce")
	p := Proof(s, Dialer, a, d, nil)
	for _, other := range [][]byte{
		Proof(s, Answerer, a, d, nil),             // the other side's (no reflection)
		Proof(s, Dialer, d, a, nil),               // nonces swapped
		Proof(s, Dialer, a, d, []byte("tls")),     // another TLS session
		Proof([]byte("other"), Dialer, a, d, nil), // another secret
		Proof(s, Dialer, append(a, d[0]), d[1:], nil),
	} {
		if bytes.Equal(p, other) {
			t.Error("two different challenges have the same proof")
		}
	}
	if InternalPassword(s) == InternalPassword([]byte("other")) {
		t.Error("the internal password does not depend on the secret")
	}
}
