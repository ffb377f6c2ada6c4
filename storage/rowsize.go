package storage

import (
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer/analyzererrors"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/sqltypes"
)

// checkRowSize refuses a table whose rows could exceed MySQL's row size
// limit (65,535 bytes, BLOB and TEXT values not counted), as InnoDB does
// at CREATE and ALTER: a schema MySQL refuses must not be accepted here,
// or a dump of it could not be loaded back into MySQL. The node reports
// it as MySQL's error 1118.
func checkRowSize(schema sql.Schema) error {
	var size int64
	for _, c := range schema {
		if c.Virtual {
			continue
		}
		size += maxStoredSize(c.Type)
	}
	if size > types.MaxRowLength {
		return analyzererrors.ErrInvalidRowLength.New(types.MaxRowLength, size)
	}
	return nil
}

// maxStoredSize is the most bytes a value of t takes in an InnoDB row:
// variable-length strings with their length prefix, BLOB, TEXT, JSON and
// geometry values as the pointer the row keeps to them.
func maxStoredSize(t sql.Type) int64 {
	switch t := t.(type) {
	case sql.StringType:
		if types.IsTextBlob(t) {
			return 12
		}
		n := t.MaxByteLength()
		if q := t.Type(); q == sqltypes.Char || q == sqltypes.Binary {
			return n // fixed length
		}
		if n > 255 {
			return n + 2
		}
		return n + 1
	case types.JsonType, sql.SpatialColumnType:
		return 12
	case sql.DecimalType:
		// 4 bytes per 9 digits on each side of the point
		digits := int64(t.Precision())
		return (digits/9+1)*4 + 1
	case types.BitType:
		return (int64(t.NumberOfBits()) + 7) / 8
	case sql.EnumType:
		return 2
	case sql.SetType:
		return 8
	case sql.DatetimeType, types.TimeType, sql.YearType, sql.NumberType:
		return 8
	}
	return 8
}

// ValidateSchema implements sql.SchemaValidator: GMS checks the schema an
// ALTER TABLE ends with before it runs any of its parts, so an ALTER that
// adds two columns fails whole rather than after adding the first.
func (db *Database) ValidateSchema(schema sql.Schema) error { return checkRowSize(schema) }
