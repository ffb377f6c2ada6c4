package storage

import (
	"context"
	"testing"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
)

// TestSetTimestamp: SET timestamp fixes the time of the session's
// statements (NewContext's query time), to the microsecond; DEFAULT, GMS's
// default value, gives the clock back.
func TestSetTimestamp(t *testing.T) {
	s := NewSession(sql.NewBaseSession(), nil)
	ctx := sql.NewContext(context.Background(), sql.WithSession(s))
	if got := NewContext(context.Background(), sql.WithSession(s)).QueryTime(); time.Since(got) > time.Minute {
		t.Fatalf("query time %v before any SET", got)
	}
	if err := s.SetSessionVariable(ctx, "timestamp", 1600000000.123456); err != nil {
		t.Fatal(err)
	}
	want := time.Unix(1600000000, 123456000)
	for i := 0; i < 2; i++ { // every statement, until changed
		if got := NewContext(context.Background(), sql.WithSession(s)).QueryTime(); !got.Equal(want) {
			t.Errorf("query time %v, want %v", got, want)
		}
	}
	sv, _, _ := sql.SystemVariables.GetGlobal("timestamp")
	if err := s.SetSessionVariable(ctx, "TIMESTAMP", sv.GetDefault()); err != nil {
		t.Fatal(err)
	}
	if got := NewContext(context.Background(), sql.WithSession(s)).QueryTime(); time.Since(got) > time.Minute {
		t.Errorf("query time %v after SET timestamp = DEFAULT, want the clock's", got)
	}
}
