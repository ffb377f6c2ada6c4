package storage

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/planbuilder"
)

// dbMeta is the node-global descriptor of a database (a partition database
// such as db_3 is just a database here).
type dbMeta struct {
	ID        uint32          `json:"id"`
	Name      string          `json:"name"`
	Collation sql.CollationID `json:"collation"`
}

// tableMeta is the stored definition of a table. Column types and default
// expressions are kept as SQL text and parsed back with GMS on load.
type tableMeta struct {
	ID        uint32          `json:"id"`
	Name      string          `json:"name"`
	Columns   []columnMeta    `json:"columns"`
	Indexes   []indexMeta     `json:"indexes,omitempty"`
	Checks    []checkMeta     `json:"checks,omitempty"`
	Collation sql.CollationID `json:"collation"`
	Comment   string          `json:"comment,omitempty"`
	NextIndex uint16          `json:"next_index"`
	// Version changes with every definition change; a transaction that wrote
	// under an older version cannot commit.
	Version uint64 `json:"version"`
	// RowFormat changes when stored rows are rewritten for a new layout.
	RowFormat uint64 `json:"row_format"`
}

type columnMeta struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Collation of a character type: its SQL text omits the default one.
	Collation sql.CollationID `json:"collation,omitempty"`
	// SRID of a spatial column, which its SQL text omits too.
	SRID          *uint32 `json:"srid,omitempty"`
	Default       string  `json:"default,omitempty"`
	Generated     string  `json:"generated,omitempty"`
	OnUpdate      string  `json:"on_update,omitempty"`
	AutoIncrement bool    `json:"auto_increment,omitempty"`
	Nullable      bool    `json:"nullable,omitempty"`
	PrimaryKey    bool    `json:"primary_key,omitempty"`
	Virtual       bool    `json:"virtual,omitempty"`
	Comment       string  `json:"comment,omitempty"`
	Extra         string  `json:"extra,omitempty"`
}

type indexMeta struct {
	ID      uint16            `json:"id"`
	Name    string            `json:"name"`
	Columns []sql.IndexColumn `json:"columns"`
	Unique  bool              `json:"unique,omitempty"`
	Comment string            `json:"comment,omitempty"`
}

type checkMeta struct {
	Name       string `json:"name"`
	Expression string `json:"expr"`
	Enforced   bool   `json:"enforced"`
}

func columnsFromSchema(s sql.Schema) []columnMeta {
	out := make([]columnMeta, len(s))
	for i, c := range s {
		out[i] = columnMeta{
			Name:          c.Name,
			Type:          c.Type.String(),
			AutoIncrement: c.AutoIncrement,
			Nullable:      c.Nullable,
			PrimaryKey:    c.PrimaryKey,
			Virtual:       c.Virtual,
			Comment:       c.Comment,
			Extra:         c.Extra,
		}
		if tc, ok := c.Type.(sql.TypeWithCollation); ok {
			out[i].Collation = tc.Collation()
		}
		if sc, ok := c.Type.(sql.SpatialColumnType); ok {
			if srid, defined := sc.GetSpatialTypeSRID(); defined {
				out[i].SRID = &srid
			}
		}
		if c.Default != nil {
			out[i].Default = c.Default.String()
		}
		if c.Generated != nil {
			out[i].Generated = c.Generated.String()
		}
		if c.OnUpdate != nil {
			out[i].OnUpdate = c.OnUpdate.String()
		}
	}
	return out
}

// schema rebuilds the GMS schema of a stored table.
func (m *tableMeta) schema(dbName string) (sql.PrimaryKeySchema, error) {
	s := make(sql.Schema, len(m.Columns))
	var pk []int
	for i, c := range m.Columns {
		typ, err := planbuilder.ParseColumnTypeString(c.Type)
		if err != nil {
			return sql.PrimaryKeySchema{}, fmt.Errorf("table %s column %s: type %q: %w", m.Name, c.Name, c.Type, err)
		}
		if sc, ok := typ.(sql.SpatialColumnType); ok && c.SRID != nil {
			typ = sc.SetSRID(*c.SRID)
		}
		if tc, ok := typ.(sql.TypeWithCollation); ok && c.Collation != 0 && tc.Collation() != c.Collation {
			if typ, err = tc.WithNewCollation(c.Collation); err != nil {
				return sql.PrimaryKeySchema{}, fmt.Errorf("table %s column %s: collation: %w", m.Name, c.Name, err)
			}
		}
		col := &sql.Column{
			Name:           c.Name,
			Type:           typ,
			AutoIncrement:  c.AutoIncrement,
			Nullable:       c.Nullable,
			PrimaryKey:     c.PrimaryKey,
			Virtual:        c.Virtual,
			Comment:        c.Comment,
			Extra:          c.Extra,
			Source:         m.Name,
			DatabaseSource: dbName,
		}
		// GMS resolves default expressions when it plans a statement.
		col.Default = unresolvedDefault(c.Default)
		col.Generated = unresolvedDefault(c.Generated)
		col.OnUpdate = unresolvedDefault(c.OnUpdate)
		s[i] = col
	}
	pk = m.pkOrdinals()
	return sql.NewPrimaryKeySchema(s, pk...), nil
}

// pkOrdinals lists the primary key columns. The order of a composite key is
// kept in the PRIMARY entry of Indexes when it differs from column order.
func (m *tableMeta) pkOrdinals() []int {
	for _, idx := range m.Indexes {
		if idx.ID == pkIndexID {
			out := make([]int, 0, len(idx.Columns))
			for _, c := range idx.Columns {
				out = append(out, m.columnIndex(c.Name))
			}
			return out
		}
	}
	var out []int
	for i, c := range m.Columns {
		if c.PrimaryKey {
			out = append(out, i)
		}
	}
	return out
}

func (m *tableMeta) columnIndex(name string) int {
	for i, c := range m.Columns {
		if strings.EqualFold(c.Name, name) {
			return i
		}
	}
	return -1
}

func unresolvedDefault(expr string) *sql.ColumnDefaultValue {
	if expr == "" {
		return nil
	}
	return sql.NewUnresolvedColumnDefaultValue(expr)
}

func (m *tableMeta) clone() *tableMeta {
	b, _ := json.Marshal(m)
	var out tableMeta
	_ = json.Unmarshal(b, &out)
	return &out
}
