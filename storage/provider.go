package storage

import (
	"sort"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
)

// Provider is the GMS database provider of a node's store.
type Provider struct {
	s *Store
	// Union splits a name that stands for several partitions of a
	// distributed database into the database and the partitions' names
	// (see UnionDatabase); nil on a node that is no leaf.
	Union func(name string) (db string, partitions []string, ok bool)
}

var (
	_ sql.MutableDatabaseProvider  = (*Provider)(nil)
	_ sql.CollatedDatabaseProvider = (*Provider)(nil)
)

// NewProvider returns the GMS view of a store.
func NewProvider(s *Store) *Provider { return &Provider{s: s} }

// Store returns the store behind the provider.
func (p *Provider) Store() *Store { return p.s }

// errNoDB is preallocated: GMS asks for the "mysql" database on every
// query, and building a go-errors error with a stack trace each time costs
// measurable CPU (deps.md §1).
var errNoMySQLDB = sql.ErrDatabaseNotFound.New("mysql")

func (p *Provider) Database(ctx *sql.Context, name string) (sql.Database, error) {
	if d := p.s.database(name); d != nil {
		return &Database{s: p.s, d: d, guarded: guardOf(ctx, name) != nil}, nil
	}
	if strings.EqualFold(name, "mysql") {
		return nil, errNoMySQLDB
	}
	if p.Union != nil {
		if db, parts, ok := p.Union(name); ok {
			return p.union(name, db, parts)
		}
	}
	return nil, sql.ErrDatabaseNotFound.New(name)
}

func (p *Provider) union(name, db string, parts []string) (sql.Database, error) {
	u := &UnionDatabase{name: name}
	for _, part := range parts {
		d := p.s.database(part)
		if d == nil {
			return nil, sql.ErrDatabaseNotFound.New(part)
		}
		u.parts = append(u.parts, &Database{s: p.s, d: d, guarded: true})
	}
	if d := p.s.database(db); d != nil {
		u.copy = &Database{s: p.s, d: d, guarded: true}
	}
	return u, nil
}

func (p *Provider) HasDatabase(ctx *sql.Context, name string) bool {
	return p.s.database(name) != nil
}

func (p *Provider) AllDatabases(ctx *sql.Context) []sql.Database {
	dbs := p.s.databases()
	out := make([]sql.Database, 0, len(dbs))
	for _, d := range dbs {
		out = append(out, &Database{s: p.s, d: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func (p *Provider) CreateDatabase(ctx *sql.Context, name string) error {
	return p.CreateCollatedDatabase(ctx, name, sql.Collation_Default)
}

func (p *Provider) CreateCollatedDatabase(ctx *sql.Context, name string, collation sql.CollationID) error {
	if err := guardOf(ctx, name); err != nil {
		return err
	}
	return p.s.CreateDatabase(name, collation)
}

func (p *Provider) DropDatabase(ctx *sql.Context, name string) error {
	if err := guardOf(ctx, name); err != nil {
		return err
	}
	return p.s.DropDatabase(name)
}

// guardOf is the session's refusal to change a database, or nil.
func guardOf(ctx *sql.Context, db string) error {
	if ctx == nil {
		return nil
	}
	if s := sessionFrom(ctx); s != nil && s.guard != nil && s.guard.Active() {
		return s.guard.Check(db)
	}
	return nil
}
