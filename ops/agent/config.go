package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FileConfig is the agent's configuration file, with seed 004's names
// where it has them. It is looked for in conf/canopy-agent.conf.json
// beside the binary, then in /etc/canopy-agent.conf.json; command-line
// flags override what it says.
type FileConfig struct {
	Bind                         string `json:"Bind"`
	HTTPPort                     int    `json:"HTTPPort"`
	Home                         string `json:"Home"`
	AgentsServer                 string `json:"AgentsServer"`       // the primary to follow, host:port
	AgentsServerSecret           string `json:"AgentsServerSecret"` // its deployment secret
	ResubmitAgentIntervalMinutes int    `json:"ResubmitAgentIntervalMinutes"`
	HTTPAuthUser                 string `json:"HTTPAuthUser"`
	HTTPAuthPassword             string `json:"HTTPAuthPassword"`
	UseSSL                       bool   `json:"UseSSL"`
	SSLSkipVerify                bool   `json:"SSLSkipVerify"`
	SSLCertFile                  string `json:"SSLCertFile"`
	SSLPrivateKeyFile            string `json:"SSLPrivateKeyFile"`
	SSLCAFile                    string `json:"SSLCAFile"` // clients must present a certificate it signed (mutual TLS)
	CreateSnapshotCommand        string `json:"CreateSnapshotCommand"`
	SendSeedDataCommand          string `json:"SendSeedDataCommand"`
	ReceiveSeedDataCommand       string `json:"ReceiveSeedDataCommand"`
	PostCopyCommand              string `json:"PostCopyCommand"`
	SnapshotKeep                 *int   `json:"SnapshotKeep"`
	SnapshotKeepDays             *int   `json:"SnapshotKeepDays"`
	SnapshotDaily                string `json:"SnapshotDaily"` // HH:MM UTC
}

// ConfigFilePaths are where the configuration file is looked for, in
// order, for the binary exe.
func ConfigFilePaths(exe string) []string {
	return []string{filepath.Join(filepath.Dir(exe), "conf", "canopy-agent.conf.json"), "/etc/canopy-agent.conf.json"}
}

// LoadFileConfig reads the first configuration file found ("" and no
// error when there is none). Unknown keys are errors: a misspelt key must
// not pass for a setting.
func LoadFileConfig(paths []string) (FileConfig, string, error) {
	var fc FileConfig
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fc, p, err
		}
		defer f.Close()
		dec := json.NewDecoder(f)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fc); err != nil {
			return fc, p, fmt.Errorf("%s: %w", p, err)
		}
		if fc.UseSSL && (fc.SSLCertFile == "" || fc.SSLPrivateKeyFile == "") {
			return fc, p, fmt.Errorf("%s: UseSSL needs SSLCertFile and SSLPrivateKeyFile", p)
		}
		return fc, p, nil
	}
	return fc, "", nil
}

// Apply sets cfg from the file's settings (the caller's flags then
// override them).
func (fc FileConfig) Apply(cfg *Config) {
	if fc.Bind != "" {
		cfg.Bind = fc.Bind
	}
	if fc.HTTPPort != 0 {
		cfg.Port = fc.HTTPPort
	}
	if fc.Home != "" {
		cfg.Home = fc.Home
	}
	if fc.ResubmitAgentIntervalMinutes > 0 {
		cfg.Resubmit = time.Duration(fc.ResubmitAgentIntervalMinutes) * time.Minute
	}
	cfg.Security.BasicUser, cfg.Security.BasicPass = fc.HTTPAuthUser, fc.HTTPAuthPassword
	if fc.UseSSL {
		cfg.Security.CertFile, cfg.Security.KeyFile = fc.SSLCertFile, fc.SSLPrivateKeyFile
		cfg.Security.CAFile, cfg.Security.SkipVerify = fc.SSLCAFile, fc.SSLSkipVerify
	}
	cfg.Commands = Commands{CreateSnapshot: fc.CreateSnapshotCommand, SendSeedData: fc.SendSeedDataCommand,
		ReceiveSeedData: fc.ReceiveSeedDataCommand, PostCopy: fc.PostCopyCommand}
	if fc.SnapshotDaily != "" {
		cfg.SnapshotDaily = fc.SnapshotDaily
	}
	if fc.SnapshotKeep != nil {
		cfg.SnapshotKeep = *fc.SnapshotKeep
	}
	if fc.SnapshotKeepDays != nil {
		cfg.SnapshotKeepDays = *fc.SnapshotKeepDays
	}
	if fc.AgentsServer != "" {
		cfg.Follow, cfg.FollowSecret = strings.TrimPrefix(strings.TrimPrefix(fc.AgentsServer, "https://"), "http://"), fc.AgentsServerSecret
	}
}
