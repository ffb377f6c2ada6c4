package node_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/internal/tlsutil"
)

// servedCert connects over TLS and returns the node's certificate.
func servedCert(t *testing.T, n *testutil.Node) []byte {
	t.Helper()
	var mu sync.Mutex
	var got []byte
	name := fmt.Sprintf("capture-%d", n.Port)
	err := mysql.RegisterTLSConfig(name, &tls.Config{InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			mu.Lock()
			got = cs.PeerCertificates[0].Raw
			mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/?tls=%s", n.Port, name))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestTLSCertificates: a node serves the certificate it is given, or
// generates one on first start and keeps it across restarts.
func TestTLSCertificates(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := tlsutil.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	given := testutil.StartNode(t, "--tls-cert", certFile, "--tls-key", keyFile)
	block, _ := pem.Decode(certPEM)
	if got := servedCert(t, given); !bytes.Equal(got, block.Bytes) {
		t.Error("the node does not serve the certificate of --tls-cert")
	}

	auto := testutil.StartNode(t)
	first := servedCert(t, auto)
	cert, err := x509.ParseCertificate(first)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "Canopy_Auto_Generated_Server_Certificate" {
		t.Errorf("generated certificate's subject: %s", cert.Subject)
	}
	auto.Stop()
	auto.Start()
	if again := servedCert(t, auto); !bytes.Equal(first, again) {
		t.Error("the generated certificate changed across a restart")
	}
}
