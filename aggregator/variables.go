package aggregator

import (
	"strconv"
	"sync"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/canopydb/canopy/cluster/meta"
)

var registerOnce sync.Once

// RegisterVariables makes the cluster variables engine system variables
// (SHOW VARIABLES, SELECT @@x) with their defaults. They are global only
// and not settable in the engine: SET GLOBAL on an aggregator changes them
// through the metadata, which sets the engine's values on every aggregator.
func RegisterVariables() {
	registerOnce.Do(func() {
		global := sql.GetMysqlScope(sql.SystemVariableScope_Global)
		def := func(name string) string { return meta.DefaultVariables[name] }
		defInt := func(name string) int64 { n, _ := strconv.ParseInt(def(name), 10, 64); return n }
		sql.SystemVariables.AddSystemVariables([]sql.SystemVariable{
			&sql.MysqlSystemVariable{Name: "redundancy_level", Scope: global,
				Type: types.NewSystemIntType("redundancy_level", 1, 2, false), Default: defInt("redundancy_level")},
			&sql.MysqlSystemVariable{Name: "default_partitions_per_leaf", Scope: global,
				Type: types.NewSystemIntType("default_partitions_per_leaf", 1, maxPartitionsPerLeaf, false), Default: defInt("default_partitions_per_leaf")},
			&sql.MysqlSystemVariable{Name: "auto_attach", Scope: global,
				Type: types.NewSystemEnumType("auto_attach", "OFF", "ON"), Default: def("auto_attach")},
			&sql.MysqlSystemVariable{Name: "leaf_failure_detection", Scope: global,
				Type: types.NewSystemEnumType("leaf_failure_detection", "OFF", "ON"), Default: def("leaf_failure_detection")},
			&sql.MysqlSystemVariable{Name: "leaf_failure_timeout_ms", Scope: global,
				Type: types.NewSystemIntType("leaf_failure_timeout_ms", 300, 3_600_000, false), Default: defInt("leaf_failure_timeout_ms")},
			&sql.MysqlSystemVariable{Name: "leaf_refused_timeout_ms", Scope: global,
				Type: types.NewSystemIntType("leaf_refused_timeout_ms", 150, 3_600_000, false), Default: defInt("leaf_refused_timeout_ms")},
			&sql.MysqlSystemVariable{Name: "copy_bandwidth_mb_per_sec", Scope: global,
				Type: types.NewSystemIntType("copy_bandwidth_mb_per_sec", 0, 1_000_000, false), Default: defInt("copy_bandwidth_mb_per_sec")},
		})
		// This aggregator's own: how it plans joins.
		sql.SystemVariables.AddSystemVariables([]sql.SystemVariable{
			&sql.MysqlSystemVariable{Name: BroadcastMaxRowsVar, Scope: sql.GetMysqlScope(sql.SystemVariableScope_Both), Dynamic: true,
				Type: types.NewSystemIntType(BroadcastMaxRowsVar, 0, 1<<40, false), Default: int64(defaultBroadcastMaxRows)},
			&sql.MysqlSystemVariable{Name: LookupMaxRowsVar, Scope: sql.GetMysqlScope(sql.SystemVariableScope_Both), Dynamic: true,
				Type: types.NewSystemIntType(LookupMaxRowsVar, 0, 1<<40, false), Default: int64(defaultLookupMaxRows)},
		})
	})
}

// maxPartitionsPerLeaf bounds default_partitions_per_leaf.
const maxPartitionsPerLeaf = 1024

// PublishVariables gives the engine the metadata's variable values (on
// every change the member applies: member.Hooks.Applied).
func PublishVariables(st *meta.State) error {
	vals := make(map[string]interface{}, len(meta.DefaultVariables))
	for name := range meta.DefaultVariables {
		v := st.Variable(name)
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			vals[name] = n
		} else {
			vals[name] = v
		}
	}
	return sql.SystemVariables.AssignValues(vals)
}
