package replication

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/canopydb/canopy/internal/mux"
)

// The nodes of these tests are members of one cluster.
var (
	testSecret = []byte("replication tests' cluster secret")
	testAuth   = mux.Auth{Secret: func() []byte { return testSecret }}
	testDialer = mux.Dialer{Secret: func() []byte { return testSecret }}
)

// A frame announcing a huge size that never arrives allocates nothing
// near that size before failing.
func TestFrameSizeBeforeAllocation(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteByte(frameRecord)
	var n [binary.MaxVarintLen64]byte
	buf.Write(n[:binary.PutUvarint(n[:], maxFrame)])
	buf.WriteString("only a few bytes")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, _, err := readFrame(bufio.NewReader(&buf)); err == nil {
		t.Fatal("a truncated frame was read")
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("reading a truncated 1 GiB frame allocated %d bytes", grew)
	}

	buf.Reset()
	buf.WriteByte(frameRecord)
	buf.Write(n[:binary.PutUvarint(n[:], maxFrame+1)])
	if _, _, err := readFrame(bufio.NewReader(&buf)); err == nil {
		t.Fatal("a frame above the limit was accepted")
	}

	// a frame larger than one allocation step arrives whole
	payload := bytes.Repeat([]byte("x"), 3*allocStep+17)
	buf.Reset()
	w := bufio.NewWriter(&buf)
	writeFrame(w, frameChunk, payload)
	w.Flush()
	typ, b, err := readFrame(bufio.NewReader(&buf))
	if err != nil || typ != frameChunk || !bytes.Equal(b, payload) {
		t.Fatalf("read %c, %d bytes, %v", typ, len(b), err)
	}
}

// FuzzReadFrame: whatever arrives, readFrame returns a frame that was
// entirely there, or an error; it never panics.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	writeFrame(w, frameHello, []byte(`{"database":"db_1","source":"x","sync":true}`))
	writeFrame(w, frameAck, binary.AppendUvarint(nil, 42))
	w.Flush()
	f.Add(buf.Bytes())
	f.Add([]byte{frameRecord, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{frameRecord, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		total := 0
		for {
			_, b, err := readFrame(r)
			if err != nil {
				return
			}
			total += len(b)
			if total > len(in) {
				t.Fatalf("read %d payload bytes out of %d input bytes", total, len(in))
			}
		}
	})
}
