package aggregator

import (
	"context"
	"strings"
	"testing"

	"github.com/dolthub/go-mysql-server/sql"

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
	if cs := readSettings(newSession(nil)); cs.routed != defaultSettings.routed || cs.internal != defaultSettings.internal || cs.ansiQuotes {
		t.Errorf("defaults: %+v", cs)
	}
	if !strings.HasPrefix(defaultSettings.routed.Set, "SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT,") || defaultSettings.routed.Key != "" {
		t.Errorf("the defaults' SET: %q", defaultSettings.routed.Set)
	}
	// the same modes in another order are the default
	if cs := readSettings(newSession(map[string]interface{}{"sql_mode": "STRICT_TRANS_TABLES,ONLY_FULL_GROUP_BY,NO_ENGINE_SUBSTITUTION"})); cs.routed.Key != "" {
		t.Errorf("default sql_mode reordered carried as %q", cs.routed.Key)
	}

	cs := readSettings(newSession(map[string]interface{}{
		"sql_mode": "", "time_zone": "+05:00", "character_set_results": "latin1", "sql_select_limit": int64(3),
	}))
	if want := "sql_mode='', time_zone='+05:00', character_set_results='latin1', sql_select_limit=3"; cs.routed.Key != want {
		t.Errorf("routed key %q, want %q", cs.routed.Key, want)
	}
	for _, want := range []string{"sql_mode = ''", "time_zone = '+05:00'", "character_set_results = 'latin1'", "sql_select_limit = 3", "div_precision_increment = DEFAULT"} {
		if !strings.Contains(cs.routed.Set, want) {
			t.Errorf("routed SET %q lacks %q", cs.routed.Set, want)
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
	if cs := readSettings(newSession(map[string]interface{}{"sql_mode": "ANSI"})); !cs.ansiQuotes {
		t.Error("sql_mode ANSI (with ANSI_QUOTES) not seen")
	}
}
