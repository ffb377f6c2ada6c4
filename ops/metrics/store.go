// Package metrics is the Ops agents' monitoring: a sampler of the host
// (from /proc), a scraper of the nodes' /metrics, and the primary's store
// of every series, in its own pebble database: samples at full resolution
// (10 s) for RawRetention and 5-minute rollups (average, minimum,
// maximum) for RollupRetention.
package metrics

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Sample is one value of one series.
type Sample struct {
	// Source is what was measured: "host/<ip>" or "node/<id>".
	Source string  `json:"source"`
	Metric string  `json:"metric"`
	T      int64   `json:"t"` // unix seconds
	V      float64 `json:"v"`
}

// Point is a value at a time; a rollup's Min and Max bound the samples it
// averages.
type Point struct {
	T   int64   `json:"t"`
	V   float64 `json:"v"`
	Min float64 `json:"min,omitempty"`
	Max float64 `json:"max,omitempty"`
}

// Rollup is the width of a rollup bucket.
const Rollup = 300

// Retention of the store.
type Retention struct {
	Raw, Rollups time.Duration
}

// DefaultRetention: 10-second samples for 2 days, rollups for 30 days.
var DefaultRetention = Retention{Raw: 48 * time.Hour, Rollups: 30 * 24 * time.Hour}

// Store keeps series in pebble. Keys: 'r' series 0x00 ts → value (raw);
// 'u' series 0x00 bucket → sum, count, min, max (rollups); 's' series → ""
// (the series there are).
type Store struct {
	db  *pebble.DB
	ret Retention
	mu  sync.Mutex // one writer: rollups are read-modify-write
}

// Open opens (or creates) a store in dir.
func Open(dir string, ret Retention) (*Store, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("metrics store %s: %w", dir, err)
	}
	return &Store{db: db, ret: ret}, nil
}

func (s *Store) Close() error { return s.db.Close() }

func seriesKey(source, metric string) []byte { return []byte(source + "\x00" + metric) }

func key(kind byte, series []byte, t int64) []byte {
	k := make([]byte, 0, 2+len(series)+8)
	k = append(k, kind)
	k = append(k, series...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(t))
}

type bucket struct {
	sum, min, max float64
	n             uint64
}

func (b bucket) encode() []byte {
	out := make([]byte, 32)
	binary.BigEndian.PutUint64(out[0:], math.Float64bits(b.sum))
	binary.BigEndian.PutUint64(out[8:], b.n)
	binary.BigEndian.PutUint64(out[16:], math.Float64bits(b.min))
	binary.BigEndian.PutUint64(out[24:], math.Float64bits(b.max))
	return out
}

func decodeBucket(v []byte) (bucket, bool) {
	if len(v) != 32 {
		return bucket{}, false
	}
	return bucket{sum: math.Float64frombits(binary.BigEndian.Uint64(v[0:])), n: binary.BigEndian.Uint64(v[8:]),
		min: math.Float64frombits(binary.BigEndian.Uint64(v[16:])), max: math.Float64frombits(binary.BigEndian.Uint64(v[24:]))}, true
}

// Add stores samples and folds them into their rollups.
func (s *Store) Add(samples []Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	pending := map[string]bucket{} // rollups changed in this batch
	for _, x := range samples {
		if math.IsNaN(x.V) || math.IsInf(x.V, 0) || x.Source == "" || x.Metric == "" {
			continue
		}
		sk := seriesKey(x.Source, x.Metric)
		b.Set(append([]byte{'s'}, sk...), nil, nil)
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], math.Float64bits(x.V))
		b.Set(key('r', sk, x.T), v[:], nil)
		uk := key('u', sk, x.T-x.T%Rollup)
		cur, ok := pending[string(uk)]
		if !ok {
			if val, closer, err := s.db.Get(uk); err == nil {
				cur, _ = decodeBucket(val)
				closer.Close()
			}
		}
		if cur.n == 0 {
			cur.min, cur.max = x.V, x.V
		}
		cur.sum += x.V
		cur.n++
		cur.min, cur.max = min(cur.min, x.V), max(cur.max, x.V)
		pending[string(uk)] = cur
	}
	for k, v := range pending {
		b.Set([]byte(k), v.encode(), nil)
	}
	return b.Commit(pebble.NoSync)
}

// Query returns a series between from and to (unix seconds): the raw
// samples, or with rollups the 5-minute averages.
func (s *Store) Query(source, metric string, from, to int64, rollups bool) ([]Point, error) {
	kind := byte('r')
	if rollups {
		kind = 'u'
		from -= from % Rollup
	}
	sk := seriesKey(source, metric)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: key(kind, sk, from), UpperBound: key(kind, sk, to+1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []Point{}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		t := int64(binary.BigEndian.Uint64(k[len(k)-8:]))
		if !rollups {
			out = append(out, Point{T: t, V: math.Float64frombits(binary.BigEndian.Uint64(it.Value()))})
			continue
		}
		if b, ok := decodeBucket(it.Value()); ok && b.n > 0 {
			out = append(out, Point{T: t, V: b.sum / float64(b.n), Min: b.min, Max: b.max})
		}
	}
	return out, it.Error()
}

// Series lists the stored series as (source, metric).
func (s *Store) Series() ([][2]string, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'s'}, UpperBound: []byte{'t'}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out [][2]string
	for it.First(); it.Valid(); it.Next() {
		src, m, ok := bytes.Cut(it.Key()[1:], []byte{0})
		if ok {
			out = append(out, [2]string{string(src), string(m)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0]+out[i][1] < out[j][0]+out[j][1] })
	return out, it.Error()
}

// Prune drops what is older than the retention at now.
func (s *Store) Prune(now time.Time) error {
	series, err := s.Series()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	rawCut, upCut := now.Add(-s.ret.Raw).Unix(), now.Add(-s.ret.Rollups).Unix()
	for _, x := range series {
		sk := seriesKey(x[0], x[1])
		b.DeleteRange(key('r', sk, 0), key('r', sk, rawCut), nil)
		b.DeleteRange(key('u', sk, 0), key('u', sk, upCut-upCut%Rollup), nil)
	}
	return b.Commit(pebble.NoSync)
}

// DiskBytes is the store's size on disk.
func (s *Store) DiskBytes() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// quietLogger keeps pebble's informational lines out of the agent's log;
// errors surface through the calls that fail.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}
