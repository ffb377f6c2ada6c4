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
	if strings.Contains(name, partitionSetMark) {
		return fmt.Sprintf("'%s' is the form of a set of partitions of a database", name)
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

// partitionSetMark separates a database's name from the ordinals of a
// partition set name (PartitionSetName); no database may contain it.
const partitionSetMark = "#"

// PartitionSetName names several partitions of db on one leaf at once,
// db#0,4,8: a leaf runs a statement that names it once over all of them
// (storage.UnionDatabase). One partition is just its own name.
func PartitionSetName(db string, ordinals []int) string {
	if len(ordinals) == 1 {
		return PartitionName(db, ordinals[0])
	}
	var b strings.Builder
	b.WriteString(db)
	b.WriteString(partitionSetMark)
	for i, o := range ordinals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(o))
	}
	return b.String()
}

// PartitionSetOf splits a PartitionSetName into its database and the
// names of its partitions; ok is false for a name of no such form.
func PartitionSetOf(name string) (db string, partitions []string, ok bool) {
	i := strings.LastIndex(name, partitionSetMark)
	if i <= 0 {
		return "", nil, false
	}
	db = name[:i]
	for _, f := range strings.Split(name[i+1:], ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || strconv.Itoa(n) != f {
			return "", nil, false
		}
		partitions = append(partitions, PartitionName(db, n))
	}
	return db, partitions, true
}
