// Package slt runs sqllogictest files against a MySQL-protocol server and
// counts the records that give the expected result. It is our
// compatibility check: the sample corpus's expected results were produced
// by MySQL 8.
package slt

import (
	"bufio"
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Record is one statement or query of a test file.
type Record struct {
	Line        int
	Query       bool   // a query record; otherwise a statement
	ExpectError bool   // statement error
	SQL         string // the statement
	Types       string // query: one letter per column (I, R, T)
	Sort        string // query: nosort, rowsort or valuesort
	Values      []string
	HashCount   int    // the result is given as "N values hashing to H"
	Hash        string // lower-case hex md5
}

// Parse reads a test file. Records guarded by "skipif mysql" or "onlyif"
// another engine are left out; "halt" ends the file.
func Parse(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var out []Record
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return strings.TrimRight(sc.Text(), "\r"), true
	}
	skip := false
	for {
		l, ok := next()
		if !ok {
			break
		}
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "halt":
			if !skip {
				return out, sc.Err()
			}
			skip = false
			continue
		case "hash-threshold":
			continue
		case "skipif":
			if len(f) > 1 && f[1] == "mysql" {
				skip = true
			}
			continue
		case "onlyif":
			if len(f) > 1 && f[1] != "mysql" {
				skip = true
			}
			continue
		case "statement", "query":
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", line, l)
		}
		rec := Record{Line: line, Query: f[0] == "query"}
		if !rec.Query {
			rec.ExpectError = len(f) > 1 && f[1] == "error"
		} else {
			if len(f) > 1 {
				rec.Types = f[1]
			}
			rec.Sort = "nosort"
			if len(f) > 2 {
				rec.Sort = f[2]
			}
		}
		var sqlLines []string
		inResults := false
		for {
			l, ok := next()
			if !ok || l == "" {
				break
			}
			if rec.Query && l == "----" {
				inResults = true
				continue
			}
			if !inResults {
				sqlLines = append(sqlLines, l)
				continue
			}
			if n, h, ok := parseHash(l); ok {
				rec.HashCount, rec.Hash = n, h
				continue
			}
			rec.Values = append(rec.Values, l)
		}
		rec.SQL = strings.Join(sqlLines, "\n")
		if !skip {
			out = append(out, rec)
		}
		skip = false
	}
	return out, sc.Err()
}

func parseHash(l string) (int, string, bool) {
	f := strings.Fields(l)
	if len(f) != 5 || f[1] != "values" || f[2] != "hashing" || f[3] != "to" {
		return 0, "", false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, "", false
	}
	return n, f[4], true
}

// Result counts the records of one file.
type Result struct {
	Total, Passed int
	Failures      []Failure
}

// Failure describes one record that did not give the expected result.
type Failure struct {
	Line   int
	SQL    string
	Reason string
}

// Options tune a run.
type Options struct {
	// Timeout bounds a single record.
	Timeout time.Duration
	// MaxFailures kept in Result.Failures.
	MaxFailures int
}

// Conn is what Run needs of a database connection: a dedicated session.
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...interface{}) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...interface{}) (*sql.Rows, error)
}

// Run plays records on a connection whose current database is empty and
// private to the run. reconnect is called after a record times out, when
// the session may be gone.
func Run(conn Conn, recs []Record, o Options, reconnect func() (Conn, error)) Result {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	var res Result
	for _, r := range recs {
		res.Total++
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
		reason := check(ctx, conn, r)
		timedOut := ctx.Err() != nil
		cancel()
		if reason == "" {
			res.Passed++
			continue
		}
		if len(res.Failures) < o.MaxFailures {
			res.Failures = append(res.Failures, Failure{Line: r.Line, SQL: r.SQL, Reason: reason})
		}
		if timedOut && reconnect != nil {
			if c, err := reconnect(); err == nil {
				conn = c
			}
		}
	}
	return res
}

// check runs one record and returns why it failed, or "".
func check(ctx context.Context, conn Conn, r Record) string {
	if !r.Query {
		_, err := conn.ExecContext(ctx, r.SQL)
		switch {
		case r.ExpectError && err == nil:
			return "statement succeeded, expected an error"
		case !r.ExpectError && err != nil:
			return "statement failed: " + err.Error()
		}
		return ""
	}
	rows, err := conn.QueryContext(ctx, r.SQL)
	if err != nil {
		return "query failed: " + err.Error()
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err.Error()
	}
	if len(r.Types) != len(cols) {
		return fmt.Sprintf("%d columns, expected %d", len(cols), len(r.Types))
	}
	var table [][]string
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err.Error()
		}
		row := make([]string, len(cols))
		for i, v := range raw {
			row[i] = format(v, r.Types[i])
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return "query failed: " + err.Error()
	}
	values := flatten(table, r.Sort)
	if r.Hash != "" {
		if len(values) != r.HashCount {
			return fmt.Sprintf("%d values, expected %d", len(values), r.HashCount)
		}
		if h := hashValues(values); h != r.Hash {
			return "result hash " + h + ", expected " + r.Hash
		}
		return ""
	}
	if strings.Join(values, "\n") != strings.Join(r.Values, "\n") {
		return fmt.Sprintf("got %v, expected %v", clip(values), clip(r.Values))
	}
	return ""
}

func clip(v []string) []string {
	if len(v) > 12 {
		return append(v[:12:12], "…")
	}
	return v
}

// format renders a value as sqllogictest prints it for the column's type
// letter.
func format(v sql.RawBytes, typ byte) string {
	if v == nil {
		return "NULL"
	}
	s := string(v)
	switch typ {
	case 'I':
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			return strconv.FormatInt(int64(math.Trunc(f)), 10)
		}
		return "0"
	case 'R':
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			f = 0
		}
		return fmt.Sprintf("%.3f", f)
	}
	if s == "" {
		return "(empty)"
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '@'
		}
	}
	return string(b)
}

func flatten(table [][]string, mode string) []string {
	switch mode {
	case "rowsort":
		sort.Slice(table, func(i, j int) bool {
			a, b := table[i], table[j]
			for k := range a {
				if a[k] != b[k] {
					return a[k] < b[k]
				}
			}
			return false
		})
	}
	var out []string
	for _, row := range table {
		out = append(out, row...)
	}
	if mode == "valuesort" {
		sort.Strings(out)
	}
	return out
}

func hashValues(values []string) string {
	h := md5.New()
	for _, v := range values {
		io.WriteString(h, v)
		io.WriteString(h, "\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}
