package storage

import (
	"encoding/binary"

	"github.com/canopydb/canopy/storage/codec"
)

// Key layout of the node's single pebble DB.
//
//	0x00 'd' <name>                     database descriptor (node-global catalog)
//	0x00 'n'                            next database id
//	0x01 <db:4> 0x01 <table:4>          table descriptor
//	0x01 <db:4> 0x02 <table:4> <idx:2> <key>
//	                                    index 0 = rows by primary key; others map
//	                                    index columns + primary key to the primary key
//	0x01 <db:4> 0x03 <lsn:8>            partition log record
//	0x01 <db:4> 0x04 <name>             database state (position, counters)
//	0x01 <db:4> 0x05 <kind> <name>      views, triggers, procedures
//
// Everything a database holds lives under its 5-byte prefix, so copying or
// dropping a partition is one key span, and a log record can name its keys
// relative to the prefix (another node may use another database id).
const (
	spaceGlobal byte = 0x00
	spaceDB     byte = 0x01

	secTable byte = 0x01
	secData  byte = 0x02
	secLog   byte = 0x03
	secState byte = 0x04
	secObj   byte = 0x05

	dbPrefixLen = 5
)

var (
	keyNextDBID = []byte{spaceGlobal, 'n'}
	// state keys inside a database
	stateNextTableID = []byte{secState, 't'}
	statePosition    = []byte{secState, 'p'}
)

const (
	objView       byte = 'v'
	objTrigger    byte = 't'
	objProcedure  byte = 'p'
	objForeignKey byte = 'f'
)

// indexes of a table's key space
const (
	pkIndexID     uint16 = 0
	keylessHashID uint16 = 0xFFFF // hidden row-hash index of tables without a primary key
)

func dbDescKey(name string) []byte {
	return append([]byte{spaceGlobal, 'd'}, name...)
}

func dbPrefix(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{spaceDB}, id)
}

func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func tableDescSuffix(tableID uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{secTable}, tableID)
}

func tableDataSuffix(tableID uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{secData}, tableID)
}

func tableCounterSuffix(tableID uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{secState, 'c'}, tableID)
}

func logSuffix(lsn uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{secLog}, lsn)
}

func objSuffix(kind byte, name string) []byte {
	return append([]byte{secObj, kind}, name...)
}

func indexPrefix(tableData []byte, idx uint16) []byte {
	return binary.BigEndian.AppendUint16(append([]byte(nil), tableData...), idx)
}

// prefixEnd is the exclusive end of the span of keys starting with p.
func prefixEnd(p []byte) []byte {
	return codec.PrefixEnd(p)
}
