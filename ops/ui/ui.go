// Package ui is the Ops web interface an agent serves on its port: plain
// HTML rendered on the server, a stylesheet and a small script, embedded
// in the binary. Every page reads the agent's API (the same calls as the
// CLI) through Fetch; pages refresh their content every 2 s.
package ui

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html static/*
var files embed.FS

// Fetch calls the agent's API (as its CLI would) and decodes the answer.
type Fetch func(ctx context.Context, method, path string, in, out any) error

// Server serves the UI.
type Server struct {
	fetch Fetch
	// Open lets anyone view (read-only) without logging in.
	Open bool
	tmpl *template.Template

	mu       sync.Mutex
	links    map[string]time.Time // one-time login tokens → expiry
	sessions map[string]session
}

type session struct {
	csrf    string
	expires time.Time
}

const (
	cookieName  = "canopy_ui"
	linkTTL     = 15 * time.Minute
	sessionTTL  = 12 * time.Hour
	refreshMs   = 2000
	maxSessions = 10000
)

// New is a UI reading the agent's API through fetch.
func New(fetch Fetch) *Server {
	t := template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/*.html"))
	return &Server{fetch: fetch, tmpl: t, links: map[string]time.Time{}, sessions: map[string]session{}}
}

func random() string {
	b := make([]byte, 18)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Link mints a one-time login link to path (a page of the UI).
func (s *Server) Link(path string) string {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	tok := random()
	s.mu.Lock()
	now := time.Now()
	for k, exp := range s.links {
		if now.After(exp) {
			delete(s.links, k)
		}
	}
	s.links[tok] = now.Add(linkTTL)
	s.mu.Unlock()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "token=" + tok
}

// login turns a one-time token into a session (cookie); false if the
// token is unknown, used or expired.
func (s *Server) login(w http.ResponseWriter, tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.links[tok]
	delete(s.links, tok) // one time
	if !ok || time.Now().After(exp) {
		return false
	}
	s.startSession(w)
	return true
}

// mysqlLogin logs in a MySQL account that holds SUPER on the cluster (the
// agent checks it with the master aggregator).
func (s *Server) mysqlLogin(w http.ResponseWriter, r *http.Request) {
	var reply struct {
		OK  bool   `json:"ok"`
		Why string `json:"why"`
	}
	err := s.fetch(r.Context(), "POST", "/api/ui/mysql-login", map[string]string{"user": r.FormValue("user"), "password": r.FormValue("password")}, &reply)
	if err != nil || !reply.OK {
		why := reply.Why
		if err != nil {
			why = err.Error()
		}
		s.denied(w, "Not logged in: "+why)
		return
	}
	s.mu.Lock()
	s.startSession(w)
	s.mu.Unlock()
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// startSession sets a new session's cookie (the caller holds s.mu).
func (s *Server) startSession(w http.ResponseWriter) {
	if len(s.sessions) >= maxSessions {
		for k, v := range s.sessions {
			if time.Now().After(v.expires) {
				delete(s.sessions, k)
			}
		}
	}
	id := random()
	s.sessions[id] = session{csrf: random(), expires: time.Now().Add(sessionTTL)}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
}

func (s *Server) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[c.Value]
	if !ok || time.Now().After(ss.expires) {
		return session{}, false
	}
	return ss, true
}

// Handler serves the pages, the static files and the UI's actions.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.FS(static))))
	for path, page := range pages {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { s.page(w, r, page) })
	}
	mux.HandleFunc("POST /ui/nodes/{id}/{action}", s.nodeAction)
	mux.HandleFunc("POST /ui/manual-control", s.manualControl)
	mux.HandleFunc("POST /ui/login", s.mysqlLogin)
	mux.HandleFunc("POST /ui/rebalance/{db}", s.rebalance)
	mux.HandleFunc("POST /ui/enable-ha", s.enableHA)
	mux.HandleFunc("POST /ui/snapshots", s.snapshotCreate)
	mux.HandleFunc("POST /ui/snapshots/{id}/delete", s.snapshotDelete)
	mux.HandleFunc("POST /ui/seeds", s.seedStart)
	mux.HandleFunc("POST /ui/seeds/{job}/abort", s.seedAbort)
	return mux
}

func (s *Server) snapshotCreate(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	node := r.FormValue("node")
	err := s.fetch(r.Context(), "POST", "/api/snapshots", map[string]string{"node": node}, nil)
	s.back(w, r, "/snapshots", "snapshot of node "+node, err)
}

func (s *Server) snapshotDelete(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	id := r.PathValue("id")
	err := s.fetch(r.Context(), "POST", "/api/snapshots/"+url.PathEscape(id)+"/delete", nil, nil)
	s.back(w, r, "/snapshots", "delete snapshot "+id, err)
}

func (s *Server) seedStart(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	req := map[string]any{"source": r.FormValue("source"), "target": r.FormValue("target"),
		"snapshot": r.FormValue("snapshot"), "force": r.FormValue("force") == "1"}
	if p, err := strconv.Atoi(r.FormValue("port")); err == nil {
		req["port"] = p
	}
	if mb, err := strconv.ParseFloat(r.FormValue("bandwidth_mb"), 64); err == nil {
		req["bandwidth_mb"] = mb
	}
	var reply struct {
		Job struct {
			ID int `json:"id"`
		} `json:"job"`
	}
	if err := s.fetch(r.Context(), "POST", "/api/seeds", req, &reply); err != nil {
		s.back(w, r, "/snapshots", fmt.Sprintf("seed of %s to %s", r.FormValue("source"), r.FormValue("target")), err)
		return
	}
	// the seed runs on: its job shows how far it is
	http.Redirect(w, r, "/snapshots?flash="+url.QueryEscape(fmt.Sprintf("seed of %s to %s started: job %d", r.FormValue("source"), r.FormValue("target"), reply.Job.ID)), http.StatusSeeOther)
}

func (s *Server) seedAbort(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	job := r.PathValue("job")
	if _, err := strconv.Atoi(job); err != nil {
		http.NotFound(w, r)
		return
	}
	err := s.fetch(r.Context(), "POST", "/api/jobs/"+job+"/cancel", nil, nil)
	s.back(w, r, "/snapshots", "abort seed job "+job, err)
}

// the pages, by path
var pages = map[string]string{
	"/{$}": "overview", "/hosts": "hosts", "/nodes": "nodes", "/databases": "databases",
	"/rebalance": "rebalance", "/events": "events", "/settings": "settings", "/snapshots": "snapshots",
}

// nav is the menu, in order.
var nav = []struct{ Path, Name, Title string }{
	{"/", "overview", "Overview"}, {"/hosts", "hosts", "Hosts"}, {"/nodes", "nodes", "Nodes"},
	{"/databases", "databases", "Databases"}, {"/rebalance", "rebalance", "Rebalance"},
	{"/snapshots", "snapshots", "Snapshots and seeds"}, {"/events", "events", "Events and jobs"}, {"/settings", "settings", "Settings"},
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, name string) {
	if tok := r.URL.Query().Get("token"); tok != "" {
		if !s.login(w, tok) {
			s.denied(w, "This login link was used already or has expired.")
			return
		}
		q := r.URL.Query()
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
		return
	}
	ss, ok := s.session(r)
	if !ok && !s.Open {
		s.denied(w, "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	m := s.model(ctx, name, r.URL.Query())
	m.Page, m.Nav, m.CSRF, m.ReadOnly, m.RefreshMs = name, nav, ss.csrf, !ok, refreshMs
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
	tmpl := "layout"
	if r.Header.Get("X-Canopy-Partial") == "1" {
		tmpl = "main" // the live refresh replaces the page's content only
	}
	if err := s.tmpl.ExecuteTemplate(w, tmpl, m); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (s *Server) denied(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	s.tmpl.ExecuteTemplate(w, "login", why)
}

// action checks a UI POST: a session and its CSRF token.
func (s *Server) action(w http.ResponseWriter, r *http.Request) bool {
	ss, ok := s.session(r)
	if !ok {
		s.denied(w, "")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.FormValue("csrf")), []byte(ss.csrf)) != 1 {
		http.Error(w, "stale form: reload the page", http.StatusForbidden)
		return false
	}
	return true
}

func (s *Server) nodeAction(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	id, act := r.PathValue("id"), r.PathValue("action")
	switch act {
	case "start", "stop", "restart", "delete":
	default:
		http.NotFound(w, r)
		return
	}
	var body any
	if act == "delete" {
		body = map[string]bool{"remove_data": r.FormValue("remove_data") == "1"}
	}
	err := s.fetch(r.Context(), "POST", "/api/nodes/"+url.PathEscape(id)+"/"+act, body, nil)
	s.back(w, r, "/nodes", fmt.Sprintf("node %s: %s", id, act), err)
}

func (s *Server) manualControl(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	enable := r.FormValue("enable") == "1"
	err := s.fetch(r.Context(), "POST", "/api/manual-control", map[string]bool{"enable": enable}, nil)
	s.back(w, r, "/settings", fmt.Sprintf("manual control %s", map[bool]string{true: "on", false: "off"}[enable]), err)
}

func (s *Server) rebalance(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	db := r.PathValue("db")
	err := s.fetch(r.Context(), "POST", "/api/rebalance/"+url.PathEscape(db), nil, nil)
	s.back(w, r, "/rebalance", "REBALANCE PARTITIONS ON "+db, err)
}

func (s *Server) enableHA(w http.ResponseWriter, r *http.Request) {
	if !s.action(w, r) {
		return
	}
	err := s.fetch(r.Context(), "POST", "/api/enable-high-availability", map[string]any{"hosts": splitHosts(r.FormValue("hosts"))}, nil)
	s.back(w, r, "/settings", "enable high availability", err)
}

// back redirects to a page with the outcome of an action in its flash.
func (s *Server) back(w http.ResponseWriter, r *http.Request, page, what string, err error) {
	msg := what + ": done"
	if err != nil {
		msg = what + ": " + err.Error()
	}
	http.Redirect(w, r, page+"?flash="+url.QueryEscape(msg), http.StatusSeeOther)
}

var funcs = template.FuncMap{
	"since": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"bytes": func(v float64) string { return fmtValue(v, "bytes") },
	"pct":   func(v float64) string { return fmtValue(v, "%") },
	"join":  strings.Join,
	"deref": func(p *int64) int64 { return *p },
	"float": func(v int64) float64 { return float64(v) },
	"now":   time.Now,
	"itoa":  strconv.Itoa,
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
