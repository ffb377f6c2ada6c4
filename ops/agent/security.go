package agent

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Security is how an agent's API is reached (seed 004's UseSSL,
// SSLCertFile, SSLPrivateKeyFile, SSLSkipVerify, HTTPAuthUser,
// HTTPAuthPassword): TLS when CertFile is set, client certificates signed
// by CAFile required when it is set too (mutual TLS), and HTTP basic auth
// on top of the token when BasicUser is set. Every agent of a deployment
// uses the same settings: an agent calls the others as it is called.
type Security struct {
	CertFile   string `json:"cert_file,omitempty"`
	KeyFile    string `json:"key_file,omitempty"`
	CAFile     string `json:"ca_file,omitempty"`
	SkipVerify bool   `json:"skip_verify,omitempty"`
	BasicUser  string `json:"basic_user,omitempty"`
	BasicPass  string `json:"basic_password,omitempty"`
}

// TLS reports whether the API is served over TLS.
func (s Security) TLS() bool { return s.CertFile != "" }

// Scheme is the API's URL scheme.
func (s Security) Scheme() string {
	if s.TLS() {
		return "https"
	}
	return "http"
}

// serverConfig is the TLS configuration of the API.
func (s Security) serverConfig() (*tls.Config, error) {
	if !s.TLS() {
		return nil, nil
	}
	if s.KeyFile == "" {
		return nil, errors.New("TLS: --tls-cert needs --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pool, err := loadCA(s.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientConfig is the TLS configuration of calls to agents: their
// certificates checked against CAFile (else the system's roots) unless
// SkipVerify, and this agent's certificate presented for mutual TLS.
func (s Security) clientConfig() (*tls.Config, error) {
	if !s.TLS() {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: s.SkipVerify, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pool, err := loadCA(s.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if s.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// HTTPClient is a client of agents with these settings; local is the
// address its connections leave from ("": any).
func (s Security) HTTPClient(local string) (*http.Client, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	tc, err := s.clientConfig()
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tc}}, nil
}

// openPaths need neither basic auth nor a token: health and metrics.
var openPaths = map[string]bool{"/api/status": true, "/api/hostname": true, "/metrics": true}

// basicAuth wraps the API in HTTP basic auth when it is configured.
func (s Security) basicAuth(next http.Handler) http.Handler {
	if s.BasicUser == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !openPaths[r.URL.Path] && (!ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.BasicUser)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(s.BasicPass)) != 1) {
			w.Header().Set("WWW-Authenticate", `Basic realm="canopy ops"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized: this agent needs HTTP basic auth"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
