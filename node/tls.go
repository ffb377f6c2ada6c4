package node

import (
	"crypto/tls"
	"path/filepath"

	"github.com/canopydb/canopy/internal/tlsutil"
)

// loadTLS is the node's certificate: the operator's (--tls-cert,
// --tls-key), or one generated on first start and kept in DataDir/tls.
func loadTLS(cfg Config) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if cfg.TLSCert != "" {
		cert, err = tlsutil.Load(cfg.TLSCert, cfg.TLSKey)
	} else {
		cert, err = tlsutil.LoadOrCreate(filepath.Join(cfg.DataDir, "tls"), []string{cfg.AdvertiseHost, "localhost", "127.0.0.1"})
	}
	if err != nil {
		return nil, err
	}
	return tlsutil.ServerConfig(cert), nil
}
