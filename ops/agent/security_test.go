package agent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/ops/agent"
)

// TestAgentTLSAndBasicAuth: two agents configured by the configuration
// file beside the binary (conf/canopy-agent.conf.json) serve their API
// over mutual TLS with HTTP basic auth on top of the token. The second
// follows the first from the file's AgentsServer. Plain HTTP, TLS without
// a client certificate, a wrong basic password and a missing token are
// all refused; the CLI and the agents' own calls work; /api/status and
// /api/hostname stay open (to a client with a certificate); host facts
// are served.
func TestAgentTLSAndBasicAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two agents")
	}
	dir := t.TempDir()
	ca, caKey := newCA(t)
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	// a binary with a configuration file beside it
	bin := filepath.Join(dir, "bin", "canopy")
	os.MkdirAll(filepath.Join(dir, "bin", "conf"), 0o700)
	if err := os.Link(testutil.Binary(t), bin); err != nil {
		b, _ := os.ReadFile(testutil.Binary(t))
		os.WriteFile(bin, b, 0o755)
	}
	h1, h2 := "127.0.0.1", "127.0.0.2"
	p1, p2 := testutil.FreePorts(t, 1)[0], freeBase(t, h2)
	start := func(host string, port int, home string, follow string) *exec.Cmd {
		cert, key := newCert(t, dir, host, ca, caKey)
		conf := map[string]any{"Bind": host, "HTTPPort": port, "Home": home, "UseSSL": true,
			"SSLCertFile": cert, "SSLPrivateKeyFile": key, "SSLCAFile": caFile,
			"HTTPAuthUser": "ops", "HTTPAuthPassword": "pw-" + strconv.Itoa(p1)}
		if follow != "" {
			conf["AgentsServer"] = follow
			conf["AgentsServerSecret"] = readSecret(t, filepath.Join(dir, "h1"))
		}
		b, _ := json.Marshal(conf)
		if err := os.WriteFile(filepath.Join(dir, "bin", "conf", "canopy-agent.conf.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		logf, _ := os.Create(home + ".log")
		cmd := exec.Command(bin, "ops", "start", "--metrics-interval", "1s")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			exec.Command(bin, "ops", "agent-stop", "--stop-nodes", "--home", home).Run()
			cmd.Process.Kill()
			cmd.Wait()
		})
		return cmd
	}
	clientCert, clientKey := newCert(t, dir, "client", ca, caKey)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	withCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitUp := func(host string, port int) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := withCert.Get(fmt.Sprintf("https://%s:%d/api/status", host, port))
			if err == nil {
				resp.Body.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent %s:%d over TLS: %v", host, port, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start(h1, p1, filepath.Join(dir, "h1"), "")
	waitUp(h1, p1)
	start(h2, p2, filepath.Join(dir, "h2"), fmt.Sprintf("%s:%d", h1, p1))
	waitUp(h2, p2)

	cli := func(home string, args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"ops"}, append(args, "--home", home)...)...).CombinedOutput()
		return string(out), err
	}
	// the follower followed from the file; the CLI talks TLS and basic auth
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := cli(filepath.Join(dir, "h1"), "agent-list")
		if err == nil && strings.Contains(out, h2) && !strings.Contains(out, "unreachable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent-list: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// the primary reaches the follower (host facts go through it)
	out, err := cli(filepath.Join(dir, "h1"), "host-info", "--json")
	var facts []agent.HostFacts
	if err != nil || json.Unmarshal([]byte(out), &facts) != nil || len(facts) != 2 || facts[1].TotalBytes == 0 || len(facts[1].Mounts) == 0 {
		t.Fatalf("host-info: %v\n%s", err, out)
	}

	token := readToken(t, filepath.Join(dir, "h1"))
	base := fmt.Sprintf("https://%s:%d", h1, p1)
	call := func(c *http.Client, url string, basic bool, tok string) (int, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if basic {
			req.SetBasicAuth("ops", "pw-"+strconv.Itoa(p1))
		}
		if tok != "" {
			req.Header.Set("X-Canopy-Token", tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := call(withCert, base+"/api/nodes", true, token); err != nil || code != 200 {
		t.Errorf("with everything: %d %v", code, err)
	}
	if code, err := call(withCert, base+"/api/nodes", true, ""); code != 401 {
		t.Errorf("without the token: %d %v", code, err)
	}
	if code, err := call(withCert, base+"/api/nodes", false, token); code != 401 {
		t.Errorf("without basic auth: %d %v", code, err)
	}
	if code, err := call(withCert, base+"/api/hostname", false, ""); err != nil || code != 200 {
		t.Errorf("/api/hostname: %d %v", code, err)
	}
	if _, err := call(noCert, base+"/api/status", false, ""); err == nil {
		t.Error("TLS without a client certificate was accepted")
	}
	if resp, err := http.Get(fmt.Sprintf("http://%s:%d/api/status", h1, p1)); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was served")
	}
}

func readSecret(t *testing.T, home string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := agent.ReadCredentials(home)
		if err == nil {
			return c.Secret
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readToken(t *testing.T, home string) string {
	t.Helper()
	c, err := agent.ReadCredentials(home)
	if err != nil {
		t.Fatal(err)
	}
	return c.Token
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "canopy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

// newCert makes a certificate for host (an IP, or a client's name) signed
// by the CA, good for both ends of a link; it returns the files.
func newCert(t *testing.T, dir, host string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return writePEM(t, dir, host+".pem", "CERTIFICATE", der), writePEM(t, dir, host+".key", "EC PRIVATE KEY", kb)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
