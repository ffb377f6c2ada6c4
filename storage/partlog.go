package storage

import (
	"encoding/binary"
	"fmt"
)

// Position is a place in a partition log: the master term that wrote the
// record and its log sequence number. LSNs grow by one per committed write
// transaction and never restart, across terms.
type Position struct {
	Term uint64
	LSN  uint64
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Term, p.LSN) }

// Less orders positions by term, then LSN.
func (p Position) Less(q Position) bool {
	if p.Term != q.Term {
		return p.Term < q.Term
	}
	return p.LSN < q.LSN
}

// Op kinds of a log record.
const (
	OpSet         byte = 1
	OpDelete      byte = 2
	OpDeleteRange byte = 3
)

// Mutation is one change in a log record. Keys are relative to the
// database prefix, so a record applies on any node.
type Mutation struct {
	Op    byte
	Key   []byte
	Value []byte // OpSet: the value; OpDeleteRange: the exclusive end key
}

// LogRecord is one committed transaction of one database: everything it
// changed under the database prefix, in key order.
type LogRecord struct {
	Pos       Position
	UnixNanos int64
	Mutations []Mutation
}

// Encode serializes the record, as stored and as shipped.
func (r *LogRecord) Encode() []byte {
	n := 32
	for _, m := range r.Mutations {
		n += 12 + len(m.Key) + len(m.Value)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, r.Pos.Term)
	b = binary.AppendUvarint(b, r.Pos.LSN)
	b = binary.AppendVarint(b, r.UnixNanos)
	b = binary.AppendUvarint(b, uint64(len(r.Mutations)))
	for _, m := range r.Mutations {
		b = append(b, m.Op)
		b = binary.AppendUvarint(b, uint64(len(m.Key)))
		b = append(b, m.Key...)
		if m.Op != OpDelete {
			b = binary.AppendUvarint(b, uint64(len(m.Value)))
			b = append(b, m.Value...)
		}
	}
	return b
}

// DecodeLogRecord parses a stored or streamed log record.
func DecodeLogRecord(b []byte) (*LogRecord, error) {
	r := &LogRecord{}
	var n int
	read := func() (uint64, error) {
		v, m := binary.Uvarint(b[n:])
		if m <= 0 {
			return 0, fmt.Errorf("log record: truncated at byte %d", n)
		}
		n += m
		return v, nil
	}
	readBytes := func() ([]byte, error) {
		l, err := read()
		if err != nil {
			return nil, err
		}
		if uint64(len(b)-n) < l {
			return nil, fmt.Errorf("log record: truncated value at byte %d", n)
		}
		out := b[n : n+int(l)]
		n += int(l)
		return out, nil
	}
	var err error
	if r.Pos.Term, err = read(); err != nil {
		return nil, err
	}
	if r.Pos.LSN, err = read(); err != nil {
		return nil, err
	}
	ts, m := binary.Varint(b[n:])
	if m <= 0 {
		return nil, fmt.Errorf("log record: bad timestamp")
	}
	n += m
	r.UnixNanos = ts
	count, err := read()
	if err != nil {
		return nil, err
	}
	r.Mutations = make([]Mutation, 0, count)
	for i := uint64(0); i < count; i++ {
		if n >= len(b) {
			return nil, fmt.Errorf("log record: truncated mutation %d", i)
		}
		mu := Mutation{Op: b[n]}
		n++
		if mu.Key, err = readBytes(); err != nil {
			return nil, err
		}
		if mu.Op != OpDelete {
			if mu.Value, err = readBytes(); err != nil {
				return nil, err
			}
		}
		r.Mutations = append(r.Mutations, mu)
	}
	return r, nil
}

func encodePosition(p Position, commits uint64) []byte {
	b := binary.BigEndian.AppendUint64(nil, p.Term)
	b = binary.BigEndian.AppendUint64(b, p.LSN)
	return binary.BigEndian.AppendUint64(b, commits)
}

func decodePosition(b []byte) (Position, uint64, error) {
	if len(b) != 24 {
		return Position{}, 0, fmt.Errorf("bad position record of %d bytes", len(b))
	}
	return Position{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}, binary.BigEndian.Uint64(b[16:]), nil
}
