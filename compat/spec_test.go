package compat

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// The checks of testdata/checks.json, and the per-run form the client
// programs read: each case becomes a text run and a prepared run, with the
// parameters typed (text runs have them inlined as literals).

type spec struct {
	Cases []specCase `json:"cases"`
}

type specCase struct {
	Name  string     `json:"name"`
	NoDB  bool       `json:"nodb"` // on a connection without a current database
	Steps []specStep `json:"steps"`
}

type specStep struct {
	SQL    string          `json:"sql"`
	Params []interface{}   `json:"params"`
	Each   [][]interface{} `json:"each"` // several executions of one prepared statement
	Tx     string          `json:"tx"`   // begin, commit or rollback through the driver's API
	Sort   bool            `json:"sort"` // compare rows sorted
	Expect *expectation    `json:"expect"`
}

type expectation struct {
	Rows            [][]interface{} `json:"rows"` // string, null or {"hex": …}
	Cols            []string        `json:"cols"`
	Affected        *int64          `json:"affected"`
	AffectedFound   *int64          `json:"affected_found"` // with CLIENT_FOUND_ROWS
	InsertIDNonzero bool            `json:"insert_id_nonzero"`
	NonEmpty        bool            `json:"nonempty"`
	NotRows         [][]interface{} `json:"not_rows"`
	Error           *wantError      `json:"error"`
}

type wantError struct {
	Code      int    `json:"code"`
	State     string `json:"state"`
	Msg       string `json:"msg"`
	MsgPrefix string `json:"msg_prefix"`
}

// What the programs read.
type runFile struct {
	Runs []run `json:"runs"`
}

type run struct {
	ID    string    `json:"id"` // case/mode
	NoDB  bool      `json:"nodb"`
	Prep  bool      `json:"prep"`
	Steps []runStep `json:"steps"`
}

type runStep struct {
	Tx    string    `json:"tx,omitempty"`
	Execs []runExec `json:"execs,omitempty"`
}

type runExec struct {
	SQL    string       `json:"sql"`
	Params []typedParam `json:"params"`
}

// typedParam is a parameter as the programs bind it: t is int, double,
// str, bytes (v in hex) or null; v is always a string so no JSON parser
// rounds a 64-bit integer.
type typedParam struct {
	T string `json:"t"`
	V string `json:"v"`
}

// What the programs print, one JSON object per line and execution.
type result struct {
	Run      string          `json:"run"`
	Step     int             `json:"step"`
	Exec     int             `json:"exec"`
	Rows     [][]*string     `json:"rows"` // each value hex of its canonical text, or null
	Cols     []string        `json:"cols"`
	Affected *int64          `json:"affected"`
	InsertID *json.Number    `json:"insert_id"`
	Error    *programError   `json:"error"`
	Extra    json.RawMessage `json:"extra,omitempty"`
}

type programError struct {
	Code  int    `json:"code"`
	State string `json:"state"`
	Msg   string `json:"msg"`
}

func loadSpec(path string) (*spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var s struct {
		Doc   []string   `json:"_doc"`
		Cases []specCase `json:"cases"`
	}
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &spec{Cases: s.Cases}, nil
}

// runsFor expands the cases into runs for database db: every case as text
// and as prepared statements.
func (s *spec) runsFor(db string) (*runFile, error) {
	rf := &runFile{}
	for _, c := range s.Cases {
		for _, prep := range []bool{false, true} {
			mode := "text"
			if prep {
				mode = "prep"
			}
			r := run{ID: c.Name + "/" + mode, NoDB: c.NoDB, Prep: prep}
			for i, st := range c.Steps {
				if st.Tx != "" {
					r.Steps = append(r.Steps, runStep{Tx: st.Tx})
					continue
				}
				sets := st.Each
				if sets == nil {
					sets = [][]interface{}{st.Params}
				}
				var rs runStep
				for _, set := range sets {
					params := make([]typedParam, len(set))
					for k, p := range set {
						tp, err := typeParam(p, db)
						if err != nil {
							return nil, fmt.Errorf("%s step %d: %v", c.Name, i, err)
						}
						params[k] = tp
					}
					q := strings.ReplaceAll(st.SQL, "{db}", db)
					if prep {
						rs.Execs = append(rs.Execs, runExec{SQL: q, Params: params})
						continue
					}
					q, err := inline(q, params)
					if err != nil {
						return nil, fmt.Errorf("%s step %d: %v", c.Name, i, err)
					}
					rs.Execs = append(rs.Execs, runExec{SQL: q, Params: []typedParam{}})
				}
				r.Steps = append(r.Steps, rs)
			}
			rf.Runs = append(rf.Runs, r)
		}
	}
	return rf, nil
}

func typeParam(p interface{}, db string) (typedParam, error) {
	switch v := p.(type) {
	case nil:
		return typedParam{T: "null"}, nil
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return typedParam{T: "int", V: v.String()}, nil
		}
		return typedParam{T: "double", V: v.String()}, nil
	case string:
		return typedParam{T: "str", V: strings.ReplaceAll(v, "{db}", db)}, nil
	case map[string]interface{}:
		if h, ok := v["hex"].(string); ok {
			if _, err := hex.DecodeString(h); err != nil {
				return typedParam{}, fmt.Errorf("param %v: %v", v, err)
			}
			return typedParam{T: "bytes", V: h}, nil
		}
		for _, k := range []string{"u64", "dec"} {
			if s, ok := v[k].(string); ok {
				return typedParam{T: "str", V: s}, nil
			}
		}
	}
	return typedParam{}, fmt.Errorf("unknown param %#v", p)
}

// inline replaces each ? outside quotes with the parameter as a literal.
func inline(q string, params []typedParam) (string, error) {
	var b strings.Builder
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == '\\' && quote != '`' && i+1 < len(q) {
				b.WriteByte(c)
				i++
				c = q[i]
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '?':
			if n >= len(params) {
				return "", fmt.Errorf("%q: more placeholders than params", q)
			}
			b.WriteString(literal(params[n]))
			n++
			continue
		}
		b.WriteByte(c)
	}
	if n != len(params) {
		return "", fmt.Errorf("%q: %d placeholders, %d params", q, n, len(params))
	}
	return b.String(), nil
}

func literal(p typedParam) string {
	switch p.T {
	case "null":
		return "NULL"
	case "int", "double":
		return p.V
	case "bytes":
		return "X'" + p.V + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`, "\x00", `\0`, "\t", `\t`)
	return "'" + r.Replace(p.V) + "'"
}

// compare checks one execution's result against the step's expectation
// and returns what differs.
func compare(e *expectation, st specStep, r result, db string, foundRows bool) []string {
	var bad []string
	if e == nil {
		e = &expectation{}
	}
	if e.Error != nil {
		if r.Error == nil {
			return []string{fmt.Sprintf("want error %d (%s), got success (rows %s)", e.Error.Code, e.Error.State, showRows(r.Rows))}
		}
		msg := strings.ReplaceAll(e.Error.Msg, "{db}", db)
		if r.Error.Code != e.Error.Code || r.Error.State != e.Error.State ||
			(msg != "" && r.Error.Msg != msg) || !strings.HasPrefix(r.Error.Msg, e.Error.MsgPrefix) {
			want := msg
			if want == "" {
				want = e.Error.MsgPrefix + "…"
			}
			bad = append(bad, fmt.Sprintf("want error %d (%s) %q, got %d (%s) %q", e.Error.Code, e.Error.State, want, r.Error.Code, r.Error.State, r.Error.Msg))
		}
		return bad
	}
	if r.Error != nil {
		return []string{fmt.Sprintf("error %d (%s): %s", r.Error.Code, r.Error.State, r.Error.Msg)}
	}
	got := decodeRows(r.Rows)
	if e.Rows != nil {
		want := make([][]*string, len(e.Rows))
		for i, row := range e.Rows {
			want[i] = make([]*string, len(row))
			for j, v := range row {
				want[i][j] = expectedValue(v, db)
			}
		}
		g := got
		if st.Sort {
			g = sortedRows(got)
			want = sortedRows(want)
		}
		if showRows2(g) != showRows2(want) {
			bad = append(bad, rowDiff(g, want))
		}
	}
	if e.Cols != nil && strings.Join(r.Cols, "|") != strings.Join(e.Cols, "|") {
		bad = append(bad, fmt.Sprintf("columns %q, want %q", r.Cols, e.Cols))
	}
	if e.NonEmpty && len(got) == 0 {
		bad = append(bad, "no rows, want some")
	}
	for _, nr := range e.NotRows {
		row := make([]*string, len(nr))
		for j, v := range nr {
			row[j] = expectedValue(v, db)
		}
		for _, g := range got {
			if showRows2([][]*string{g}) == showRows2([][]*string{row}) {
				bad = append(bad, fmt.Sprintf("row %s, want anything else", showRows2([][]*string{g})))
			}
		}
	}
	want := e.Affected
	if foundRows && e.AffectedFound != nil {
		want = e.AffectedFound
	}
	if want != nil {
		if r.Affected == nil {
			bad = append(bad, fmt.Sprintf("no affected-rows count, want %d", *want))
		} else if *r.Affected != *want {
			bad = append(bad, fmt.Sprintf("%d rows affected, want %d", *r.Affected, *want))
		}
	}
	if e.InsertIDNonzero && (r.InsertID == nil || r.InsertID.String() == "0") {
		bad = append(bad, fmt.Sprintf("insert id %v, want nonzero", r.InsertID))
	}
	return bad
}

func expectedValue(v interface{}, db string) *string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		s := strings.ReplaceAll(x, "{db}", db)
		return &s
	case map[string]interface{}:
		if h, ok := x["hex"].(string); ok {
			b, _ := hex.DecodeString(h)
			s := string(b)
			return &s
		}
	}
	s := fmt.Sprintf("<bad expectation %v>", v)
	return &s
}

func decodeRows(rows [][]*string) [][]*string {
	out := make([][]*string, len(rows))
	for i, row := range rows {
		out[i] = make([]*string, len(row))
		for j, v := range row {
			if v == nil {
				continue
			}
			b, err := hex.DecodeString(*v)
			s := string(b)
			if err != nil {
				s = "<not hex: " + *v + ">"
			}
			out[i][j] = &s
		}
	}
	return out
}

func sortedRows(rows [][]*string) [][]*string {
	out := append([][]*string(nil), rows...)
	sort.Slice(out, func(i, j int) bool {
		return showRows2(out[i:i+1]) < showRows2(out[j:j+1])
	})
	return out
}

var printable = regexp.MustCompile(`^[\P{C}\n\t]*$`)

// showRows2 renders decoded rows: printable text quoted, other bytes as hex.
func showRows2(rows [][]*string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, row := range rows {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("[")
		for j, v := range row {
			if j > 0 {
				b.WriteString(", ")
			}
			switch {
			case v == nil:
				b.WriteString("NULL")
			case utf8.ValidString(*v) && printable.MatchString(*v):
				fmt.Fprintf(&b, "%q", *v)
			default:
				b.WriteString("0x" + hex.EncodeToString([]byte(*v)))
			}
		}
		b.WriteString("]")
	}
	b.WriteString("]")
	return b.String()
}

func showRows(rows [][]*string) string { return showRows2(decodeRows(rows)) }

// rowDiff says which values differ, or shows both results when their
// shapes differ.
func rowDiff(got, want [][]*string) string {
	if len(got) == len(want) {
		var d []string
		for i := range got {
			if len(got[i]) != len(want[i]) {
				d = nil
				break
			}
			for j := range got[i] {
				g, w := showRows2([][]*string{{got[i][j]}}), showRows2([][]*string{{want[i][j]}})
				if g != w {
					d = append(d, fmt.Sprintf("row %d column %d: got %s, want %s", i+1, j+1, g[2:len(g)-2], w[2:len(w)-2]))
				}
			}
		}
		if d != nil {
			return strings.Join(d, "\n  ")
		}
	}
	return fmt.Sprintf("rows\n  got: %s\n want: %s", showRows2(got), showRows2(want))
}
