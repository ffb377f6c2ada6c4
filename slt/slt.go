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
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
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
	// Excused records failed, but only because of rules Options.Excuse
	// names (and what those refusals left behind): neither passed nor
	// failed.
	Excused  int
	Failures []Failure
	Excuses  []Failure // the first Options.MaxFailures excused records
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
	// MaxFailures kept in Result.Failures (and Result.Excuses).
	MaxFailures int
	// Excuse, if set, says whether the error a record failed with is a
	// refusal the target is entitled to (a distributed system's rules
	// that a single server does not have). Such a record is excused.
	Excuse func(error) bool
	// Shadow, with Excuse, opens an empty database on a server without
	// those rules (a single leaf). After the first excused record of a
	// run, the run's statements are mirrored there, the excused ones
	// left out, so the shadow holds what the target would hold if it
	// were right; a later record that fails on the target and on the
	// shadow alike (the same error number, or the same wrong values)
	// fails only because of the excused refusals, and is excused too.
	// (That takes a shadow that passes the records by itself: a single
	// leaf passes the whole sample, TestCompatibility.)
	Shadow func() (Conn, error)
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
	sh := shadow{o: o}
	for i, r := range recs {
		res.Total++
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
		reason, out, err := check(ctx, conn, r)
		timedOut := ctx.Err() != nil
		cancel()
		excused := false
		switch {
		case reason == "":
		case o.Excuse != nil && err != nil && o.Excuse(err):
			excused = true
			sh.refuse(i)
		default:
			excused = sh.failsToo(recs, i, out)
		}
		if !excused {
			sh.mirror(recs, i)
		}
		switch {
		case reason == "":
			res.Passed++
			continue
		case excused:
			res.Excused++
			if len(res.Excuses) < o.MaxFailures {
				res.Excuses = append(res.Excuses, Failure{Line: r.Line, SQL: r.SQL, Reason: reason})
			}
		default:
			if len(res.Failures) < o.MaxFailures {
				res.Failures = append(res.Failures, Failure{Line: r.Line, SQL: r.SQL, Reason: reason})
			}
		}
		if timedOut && reconnect != nil {
			if c, err := reconnect(); err == nil {
				conn = c
			}
		}
	}
	return res
}

// shadow follows a run on Options.Shadow once a record has been excused.
type shadow struct {
	o       Options
	refused map[int]bool // records excused, left out of the shadow
	conn    Conn         // nil until the first excused record
	played  int          // records [0, played) are settled on the shadow
	broken  bool         // the shadow could not be opened
}

// refuse notes that record i was excused and opens the shadow.
func (s *shadow) refuse(i int) {
	if s.refused == nil {
		s.refused = map[int]bool{}
	}
	s.refused[i] = true
	if s.conn == nil && s.o.Shadow != nil && !s.broken {
		c, err := s.o.Shadow()
		if err != nil {
			s.broken = true
			return
		}
		s.conn = c
	}
}

// mirror plays the statements up to and including record i on the
// shadow, leaving out the excused ones. Queries change nothing, and a
// statement expected to fail should change nothing: neither is played
// (replaying a refused CREATE TRIGGER's "already exists" twin would
// create what the target never had).
func (s *shadow) mirror(recs []Record, i int) {
	if s.conn == nil || s.broken {
		return
	}
	for ; s.played <= i; s.played++ {
		r := recs[s.played]
		if r.Query || r.ExpectError || s.refused[s.played] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
		s.conn.ExecContext(ctx, r.SQL) // its outcome is compared when a record fails
		cancel()
	}
}

// failsToo says whether record i, which failed on the target with
// outcome out, fails on the shadow the same way (then it is a
// consequence of the excused refusals). A statement that fails on both
// is mirrored all the same.
func (s *shadow) failsToo(recs []Record, i int, out string) bool {
	if s.conn == nil || s.broken {
		return false
	}
	s.mirror(recs, i-1)
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	reason, shadowOut, _ := check(ctx, s.conn, recs[i])
	s.played = i + 1
	return reason != "" && shadowOut == out
}

// check runs one record and returns why it failed, or "", its outcome
// (what failing records are compared by: "ok" for a statement that
// succeeded, the error number of one that failed, or the text of an
// error without number; a query's column count, or a hash of its values
// as the record compares them), and the error the server returned, if
// any.
func check(ctx context.Context, conn Conn, r Record) (reason, outcome string, err error) {
	if !r.Query {
		_, err := conn.ExecContext(ctx, r.SQL)
		switch {
		case r.ExpectError && err == nil:
			return "statement succeeded, expected an error", "ok", nil
		case !r.ExpectError && err != nil:
			return "statement failed: " + err.Error(), errorOutcome(err), err
		}
		return "", "", nil
	}
	rows, err := conn.QueryContext(ctx, r.SQL)
	if err != nil {
		return "query failed: " + err.Error(), errorOutcome(err), err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err.Error(), errorOutcome(err), err
	}
	if len(r.Types) != len(cols) {
		return fmt.Sprintf("%d columns, expected %d", len(cols), len(r.Types)), fmt.Sprintf("%d columns", len(cols)), nil
	}
	var table [][]string
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err.Error(), errorOutcome(err), err
		}
		row := make([]string, len(cols))
		for i, v := range raw {
			row[i] = format(v, r.Types[i])
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return "query failed: " + err.Error(), errorOutcome(err), err
	}
	values := flatten(table, r.Sort)
	h := hashValues(values)
	outcome = fmt.Sprintf("%d values hashing to %s", len(values), h)
	if r.Hash != "" {
		if len(values) != r.HashCount {
			return fmt.Sprintf("%d values, expected %d", len(values), r.HashCount), outcome, nil
		}
		if h != r.Hash {
			return "result hash " + h + ", expected " + r.Hash, outcome, nil
		}
		return "", outcome, nil
	}
	if strings.Join(values, "\n") != strings.Join(r.Values, "\n") {
		return fmt.Sprintf("got %v, expected %v", clip(values), clip(r.Values)), outcome, nil
	}
	return "", outcome, nil
}

// errorOutcome is an error as outcomes are compared: a server's error by
// its number (messages differ in names, such as partitions'), any other
// by its text.
func errorOutcome(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("error %d", me.Number)
	}
	return "error: " + err.Error()
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
