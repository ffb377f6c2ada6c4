package meta

import (
	"fmt"
	"strconv"
	"strings"
)

// ReservedDatabases are names no client database may take: MySQL's
// system schemas and Canopy's own.
var ReservedDatabases = map[string]bool{
	"information_schema": true, "mysql": true, "performance_schema": true, "sys": true,
	"canopy_scratch": true,
}

// PartitionOf splits a partition database name db_N into its database
// and ordinal; ok is false for a name of no such form.
func PartitionOf(name string) (db string, ordinal int, ok bool) {
	i := strings.LastIndexByte(name, '_')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	digits := name[i+1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", 0, false
		}
	}
	if len(digits) > 1 && digits[0] == '0' {
		return "", 0, false // partition names have no leading zeros
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return "", 0, false
	}
	return name[:i], n, true
}

// DatabaseNameConflict says why a new database may not be called name,
// given the databases that exist (distributed ones and the node's own),
// or "" when it may. A database's partitions are databases named db_N
// on the leaves, and every node holds a copy of each distributed
// database: a name that is, or would make, another's partition name
// would let one database's statements reach the other's data.
func DatabaseNameConflict(name string, existing []string) string {
	lower := strings.ToLower(name)
	if ReservedDatabases[lower] || strings.HasPrefix(lower, "canopy_") {
		return fmt.Sprintf("the name '%s' is reserved", name)
	}
	if db, n, ok := PartitionOf(lower); ok {
		for _, e := range existing {
			if strings.EqualFold(e, db) {
				return fmt.Sprintf("'%s' is the name of partition %d of database '%s'", name, n, e)
			}
		}
	}
	for _, e := range existing {
		if db, n, ok := PartitionOf(strings.ToLower(e)); ok && db == lower {
			return fmt.Sprintf("its partition %d would take the name of database '%s'", n, e)
		}
	}
	return ""
}
