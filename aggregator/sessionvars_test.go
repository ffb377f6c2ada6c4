package aggregator

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/storage"
)

// TestReadSettings: a client on the defaults needs no SET; one that
// changed settings gets one SET that gives a connection its values and
// puts every other carried variable back to its default; the queries the
// aggregator writes itself keep the default result character set and no
// row limit.
func TestReadSettings(t *testing.T) {
	newSession := func(vars map[string]interface{}) *storage.Session {
		s := storage.NewSession(sql.NewBaseSession(), nil)
		ctx := sql.NewContext(context.Background(), sql.WithSession(s))
		for k, v := range vars {
			if err := s.SetSessionVariable(ctx, k, v); err != nil {
				t.Fatalf("SET %s = %v: %v", k, v, err)
			}
		}
		return s
	}
	if cs := readSettings(newSession(nil)); cs.client != defaultSettings.client || cs.internal != defaultSettings.internal || cs.ansiQuotes {
		t.Errorf("defaults: %+v", cs)
	}
	if !strings.HasPrefix(defaultSettings.client.Set, "SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT,") || defaultSettings.client.Key != "" {
		t.Errorf("the defaults' SET: %q", defaultSettings.client.Set)
	}
	// the same modes in another order are the default
	if cs := readSettings(newSession(map[string]interface{}{"sql_mode": "STRICT_TRANS_TABLES,ONLY_FULL_GROUP_BY,NO_ENGINE_SUBSTITUTION"})); cs.client.Key != "" {
		t.Errorf("default sql_mode reordered carried as %q", cs.client.Key)
	}

	cs := readSettings(newSession(map[string]interface{}{
		"sql_mode": "", "time_zone": "+05:00", "character_set_results": "latin1", "sql_select_limit": int64(3),
	}))
	if want := "sql_mode='', time_zone='+05:00', character_set_results='latin1', sql_select_limit=3"; cs.client.Key != want {
		t.Errorf("client key %q, want %q", cs.client.Key, want)
	}
	for _, want := range []string{"sql_mode = ''", "time_zone = '+05:00'", "character_set_results = 'latin1'", "sql_select_limit = 3", "group_concat_max_len = DEFAULT", "timestamp = DEFAULT"} {
		if !strings.Contains(cs.client.Set, want) {
			t.Errorf("client SET %q lacks %q", cs.client.Set, want)
		}
	}
	if want := "sql_mode='', time_zone='+05:00'"; cs.internal.Key != want {
		t.Errorf("internal key %q, want %q", cs.internal.Key, want)
	}
	for _, want := range []string{"character_set_results = DEFAULT", "sql_select_limit = DEFAULT"} {
		if !strings.Contains(cs.internal.Set, want) {
			t.Errorf("internal SET %q lacks %q", cs.internal.Set, want)
		}
	}
	// a time the client fixed goes with its statements and the queries
	// written for them
	if cs := readSettings(newSession(map[string]interface{}{"timestamp": 1.5e9})); !strings.HasSuffix(cs.client.Set, "timestamp = 1.5e+09") ||
		!strings.HasSuffix(cs.internal.Set, "timestamp = 1.5e+09") {
		t.Errorf("fixed timestamp: %+v, %+v", cs.client, cs.internal)
	}
	if cs := readSettings(newSession(map[string]interface{}{"sql_mode": "ANSI"})); !cs.ansiQuotes {
		t.Error("sql_mode ANSI (with ANSI_QUOTES) not seen")
	}
}

// TestAtTime: a statement's time replaces the timestamp's DEFAULT (the
// last variable of every SET) under a key of its own; a client that fixed
// the time itself keeps its settings.
func TestAtTime(t *testing.T) {
	at := time.Unix(1600000000, 250_000_000)
	s := atTime(defaultSettings.client, at)
	if s.Key != "timestamp=1600000000.250000" || !strings.HasSuffix(s.Set, ", timestamp = 1600000000.250000") ||
		!strings.HasPrefix(s.Set, "SET SESSION sql_mode = DEFAULT,") {
		t.Errorf("defaults at a time: %+v", s)
	}
	own := makeSettings(map[string]string{"time_zone": "'+05:00'"})
	if s := atTime(own, at); s.Key != "time_zone='+05:00', timestamp=1600000000.250000" || !strings.Contains(s.Set, "time_zone = '+05:00'") {
		t.Errorf("a client's settings at a time: %+v", s)
	}
	fixed := makeSettings(map[string]string{"timestamp": "1.5e+09"})
	if s := atTime(fixed, at); s != fixed {
		t.Errorf("a client's fixed time replaced: %+v", s)
	}
}

// TestChangesSettings: only statements that may change a system variable
// make the aggregator read the client's settings again.
func TestChangesSettings(t *testing.T) {
	for q, want := range map[string]bool{
		"SET @x = 1":                                     false,
		"SET @x = (SELECT 1), @y := 2":                   false,
		"SET @x = 1, time_zone = '+01:00'":               true,
		"SET time_zone = (SELECT 1)":                     true,
		"SET SESSION sql_mode = ''":                      true,
		"SET NAMES latin1":                               true,
		"SET TRANSACTION ISOLATION LEVEL READ COMMITTED": true,
		"CALL p()":                            true,
		"EXECUTE st":                          true,
		"PREPARE st FROM 'SET time_zone = 1'": false,
		"SELECT 1":                            false,
	} {
		stmt, err := ast.Parse(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got := changesSettings(stmt); got != want {
			t.Errorf("changesSettings(%s) = %v, want %v", q, got, want)
		}
	}
}
