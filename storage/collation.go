package storage

import (
	"github.com/dolthub/go-mysql-server/sql"
)

var _ sql.CollationAlterableTable = (*Table)(nil)

// ModifyDefaultCollation is ALTER TABLE … COLLATE: the collation of
// columns added later, not of the existing ones (as in MySQL), so no row
// changes.
func (t *Table) ModifyDefaultCollation(ctx *sql.Context, collation sql.CollationID) error {
	return t.alter(ctx, func(m *tableMeta) (rewrite, error) {
		m.Collation = collation
		return rewrite{}, nil
	})
}

// ModifyStoredCollation would be ALTER TABLE … CONVERT TO CHARACTER SET,
// but GMS 0.20 never calls it: it plans CONVERT TO as COLLATE (the
// table's default only, existing columns unchanged).
func (t *Table) ModifyStoredCollation(ctx *sql.Context, collation sql.CollationID) error {
	return sql.ErrUnsupportedFeature.New("ALTER TABLE … CONVERT TO CHARACTER SET")
}
