package testutil

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// SQL helpers for tests.

// Exec runs a statement and fails the test on error.
func Exec(t testing.TB, db *sql.DB, q string, args ...interface{}) sql.Result {
	t.Helper()
	r, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return r
}

// Rows returns all rows as strings, NULL as "NULL", columns joined by ",".
func Rows(t testing.TB, db *sql.DB, q string, args ...interface{}) []string {
	t.Helper()
	out, err := RenderRows(db, ",", q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// Querier runs queries: a *sql.DB (any connection of its pool), a
// *sql.Conn (one session) or a *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...interface{}) (*sql.Rows, error)
}

// RenderRows runs a query and renders each row as its values (NULL for
// NULL) joined by sep.
func RenderRows(db Querier, sep, q string, args ...interface{}) ([]string, error) {
	rows, err := db.QueryContext(context.Background(), q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			if v == nil {
				parts[i] = "NULL"
			} else {
				parts[i] = string(v)
			}
		}
		out = append(out, strings.Join(parts, sep))
	}
	return out, rows.Err()
}

func ExpectRows(t testing.TB, db *sql.DB, q string, want ...string) {
	t.Helper()
	got := Rows(t, db, q)
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("%s\n got: %q\nwant: %q", q, got, want)
	}
}

func MySQLError(err error) *mysql.MySQLError {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me
	}
	return nil
}

func ExpectError(t testing.TB, db *sql.DB, code uint16, state string, q string) {
	t.Helper()
	_, err := db.Exec(q)
	me := MySQLError(err)
	if me == nil {
		t.Fatalf("%s: want error %d (%s), got %v", q, code, state, err)
	}
	if me.Number != code || string(me.SQLState[:]) != state {
		t.Errorf("%s: got error %d (%s) %q, want %d (%s)", q, me.Number, me.SQLState, me.Message, code, state)
	}
}

var localFileSeq atomic.Int64

// LocalFile registers data as a file go-sql-driver sends for LOAD DATA
// LOCAL and returns its name for the statement ('Reader::…').
func LocalFile(t testing.TB, data string) string {
	name := fmt.Sprintf("canopy-test-%d", localFileSeq.Add(1))
	mysql.RegisterReaderHandler(name, func() io.Reader { return strings.NewReader(data) })
	t.Cleanup(func() { mysql.DeregisterReaderHandler(name) })
	return "Reader::" + name
}
