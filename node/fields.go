package node

import (
	"github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
)

// notFixedDec is the decimals MySQL gives FLOAT and DOUBLE columns without
// a fixed scale (NOT_FIXED_DEC).
const notFixedDec = 31

// mysqlFields makes result column definitions say what MySQL 8's do
// where GMS leaves a zero: the decimals of FLOAT and DOUBLE. Clients read
// them: PHP's mysqlnd rounds a binary-protocol FLOAT to that many
// decimals and DBD::MariaDB formats FLOAT and DOUBLE with it, so 1.5
// came back as 2.
func mysqlFields(fields []*querypb.Field) []*querypb.Field {
	for _, f := range fields {
		if f != nil && f.Decimals == 0 && (f.Type == sqltypes.Float32 || f.Type == sqltypes.Float64) {
			f.Decimals = notFixedDec
		}
	}
	return fields
}

// withMySQLFields applies mysqlFields to the results a callback is given.
func withMySQLFields(callback mysql.ResultSpoolFn) mysql.ResultSpoolFn {
	return func(res *sqltypes.Result, more bool) error {
		if res != nil {
			mysqlFields(res.Fields)
		}
		return callback(res, more)
	}
}
