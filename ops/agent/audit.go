package agent

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The audit log (HOME/audit.log, JSON lines, mode 0600): every call that
// changes something (every POST), every call refused for its token (one
// refused by basic auth is not: it never reaches the API), and every read
// of a snapshot's files: when, from where, with which
// credential, what, and the result.

// AuditEntry is a line of the audit log.
type AuditEntry struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"` // the caller's address
	Who    string    `json:"who"`  // the credential: agent token, deployment secret, grant, none
	Call   string    `json:"call"` // method and path
	Status int       `json:"status"`
	Error  string    `json:"error,omitempty"`
}

// credential names what a request authenticated with.
func (a *Agent) credential(r *http.Request) string {
	tok := bearer(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case tok == "":
		return "none"
	case tokenOK(tok, a.st.Token):
		return "agent token"
	case tokenOK(tok, a.st.Secret):
		return "deployment secret"
	}
	return "other token"
}

// audit records a call: who is the credential ("" to work it out), then
// the status and an error.
func (a *Agent) audit(r *http.Request, who string, status int, errText ...string) {
	if who == "" {
		who = a.credential(r)
	}
	e := AuditEntry{At: time.Now().UTC(), From: r.RemoteAddr, Who: who, Call: r.Method + " " + r.URL.Path, Status: status}
	if len(errText) > 0 {
		e.Error = errText[0]
	}
	b, _ := json.Marshal(e)
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	f, err := os.OpenFile(filepath.Join(a.cfg.Home, "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.log.Warn("audit log", "err", err)
		return
	}
	f.Write(append(b, '\n'))
	f.Close()
}
