package gmsfix

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/analyzer"
	"github.com/dolthub/go-mysql-server/sql/plan"
	"github.com/dolthub/go-mysql-server/sql/transform"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/mysql"
	ast "github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/canopydb/canopy/internal/loaddata"
)

// LoadDataRuleID names LoadDataReader among the analyzer's rules.
const LoadDataRuleID analyzer.RuleId = 9_002

// LoadDataReader is an analyzer rule, run after all of GMS's (it must see
// the exec indexes GMS gives LOAD DATA's SET expressions and defaults),
// that reads LOAD DATA files with our reader. GMS 0.20's splits lines
// and fields with no regard to enclosures or escapes ("field not properly
// enclosed" on any unquoted field once ENCLOSED BY is given, no doubled
// quotes, terminators inside quotes split), drops every backslash, reads
// the word NULL as NULL and an empty number as NULL, and reports error
// 1105 where MySQL says 3948 for LOAD DATA LOCAL without local_infile.
func LoadDataReader(ctx *sql.Context, _ *analyzer.Analyzer, n sql.Node, _ *plan.Scope, _ analyzer.RuleSelector, _ *sql.QueryFlags) (sql.Node, transform.TreeIdentity, error) {
	return transform.Node(n, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
		ii, ok := n.(*plan.InsertInto)
		if !ok || ii.Source == nil {
			return n, transform.SameTree, nil
		}
		src, same, err := transform.Node(ii.Source, func(n sql.Node) (sql.Node, transform.TreeIdentity, error) {
			ld, ok := n.(*plan.LoadData)
			if !ok {
				return n, transform.SameTree, nil
			}
			inputs, err := loadInputs(ctx.Query(), ld)
			if err != nil {
				return nil, transform.SameTree, err
			}
			return &LoadData{LoadData: ld, inputs: inputs}, transform.NewTree, nil
		})
		if err != nil || same {
			return n, transform.SameTree, err
		}
		return ii.WithSource(src), transform.NewTree, nil
	})
}

// input is one field of a line: a column (its index in the schema) or a
// user variable.
type input struct {
	col     int
	userVar string
}

// loadInputs maps the fields of a line to what they set: the statement's
// column list, or the table's columns. GMS's plan appends the SET targets
// to its column names, so the list comes from the statement itself.
func loadInputs(query string, ld *plan.LoadData) ([]input, error) {
	var names []string
	stmt, err := ast.Parse(query)
	if l, ok := stmt.(*ast.Load); ok && err == nil {
		for _, c := range l.Columns {
			names = append(names, c.String())
		}
	} else if len(ld.ColNames) > 0 {
		return nil, fmt.Errorf("LOAD DATA: cannot read its column list from %q", query)
	}
	var ins []input
	if len(names) == 0 {
		for i := range ld.DestSch {
			ins = append(ins, input{col: i})
		}
		return ins, nil
	}
	for _, name := range names {
		if i := ld.DestSch.IndexOfColName(name); i >= 0 {
			ins = append(ins, input{col: i})
			continue
		}
		v := strings.TrimPrefix(name, "@")
		if v == name {
			return nil, sql.ErrColumnNotFound.New(name)
		}
		ins = append(ins, input{col: -1, userVar: strings.Trim(v, "`'\"")})
	}
	return ins, nil
}

// LoadData is GMS's LOAD DATA source with a reader that parses as MySQL.
type LoadData struct {
	*plan.LoadData
	inputs []input
}

var _ sql.ExecSourceRel = (*LoadData)(nil)

func (l *LoadData) WithChildren(children ...sql.Node) (sql.Node, error) {
	if len(children) != 0 {
		return nil, sql.ErrInvalidChildrenNumber.New(l, len(children), 0)
	}
	return l, nil
}

// errLocalDisabled is MySQL's answer to LOAD DATA LOCAL without local_infile.
var errLocalDisabled = mysql.NewSQLError(3948, "42000", "Loading local data is disabled; this must be enabled on both the client and server sides")

// Open opens the file: the client's (LOCAL), or one of this node's under
// secure_file_priv.
func (l *LoadData) Open(ctx *sql.Context) (io.ReadCloser, error) {
	if l.Local {
		_, v, ok := sql.SystemVariables.GetGlobal("local_infile")
		if !ok || v != int8(1) {
			return nil, errLocalDisabled
		}
		return ctx.LoadInfile(l.File)
	}
	_, dir, _ := sql.SystemVariables.GetGlobal("secure_file_priv")
	if err := underSecureFileDir(dir, l.File); err != nil {
		return nil, sql.ErrLoadDataCannotOpen.New(err.Error())
	}
	f, err := os.Open(l.File)
	if err != nil {
		return nil, sql.ErrLoadDataCannotOpen.New(err.Error())
	}
	return f, nil
}

func underSecureFileDir(dir interface{}, file string) error {
	d, _ := dir.(string)
	if d == "" {
		return nil
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	dabs, err := filepath.Abs(d)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(dabs, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil
	}
	return sql.ErrSecureFilePriv.New()
}

// RowIter reads the file's rows: each in the order of GMS's column names
// for the insert (the table's columns when the statement names none).
func (l *LoadData) RowIter(ctx *sql.Context, _ sql.Row) (sql.RowIter, error) {
	if l.FieldsTerminatedBy == "" {
		return nil, mysql.NewSQLError(1235, "42000", "This version of MySQL doesn't yet support 'LOAD DATA with an empty FIELDS TERMINATED BY (fixed-width rows)'")
	}
	f, err := l.Open(ctx)
	if err != nil {
		return nil, err
	}
	r := loaddata.NewReader(f, loaddata.Options{
		FieldsTerminatedBy: l.FieldsTerminatedBy, EnclosedBy: l.FieldsEnclosedBy, EscapedBy: l.FieldsEscapedBy,
		LinesTerminatedBy: l.LinesTerminatedBy, LinesStartingBy: l.LinesStartingBy,
	})
	r.SkipLines(l.IgnoreNum)
	out := make([]int, len(l.DestSch)) // schema index → position in the row
	for i := range out {
		out[i] = -1
	}
	if len(l.ColNames) == 0 {
		for i := range out {
			out[i] = i
		}
	} else {
		for pos, name := range l.ColNames {
			if i := l.DestSch.IndexOfColName(name); i >= 0 {
				out[i] = pos
			}
		}
	}
	return &loadDataIter{l: l, f: f, r: r, out: out}, nil
}

type loadDataIter struct {
	l    *LoadData
	f    io.ReadCloser
	r    *loaddata.Reader
	out  []int
	line int64
}

func (it *loadDataIter) warn(ctx *sql.Context, code int, format string, args ...interface{}) {
	ctx.Session.Warn(&sql.Warning{Level: "Warning", Code: code, Message: fmt.Sprintf(format, args...)})
}

func (it *loadDataIter) Next(ctx *sql.Context) (sql.Row, error) {
	l := it.l
	fields, cut, err := it.r.Next(len(l.inputs))
	if err != nil {
		return nil, err
	}
	it.line++
	if cut {
		it.warn(ctx, 1262, "Row %d was truncated; it contained more data than there were input columns", it.line)
	}
	// the row in schema order, for the SET expressions and defaults
	row := make(sql.Row, len(l.DestSch))
	set := make([]bool, len(l.DestSch))
	for i, in := range l.inputs {
		var v interface{}
		if i < len(fields) && !fields[i].Null {
			v = string(fields[i].Val)
		}
		if in.col < 0 {
			typ := sql.Type(types.LongText)
			if v == nil {
				typ = types.Null
			}
			if err := ctx.SetUserVariable(ctx, in.userVar, v, typ); err != nil {
				return nil, err
			}
			continue
		}
		if i >= len(fields) {
			continue // the column's default, below
		}
		row[in.col], set[in.col] = v, true
	}
	if len(fields) < len(l.inputs) {
		it.warn(ctx, 1261, "Row %d doesn't contain data for all columns", it.line)
	}
	for i, e := range l.SetExprs {
		if e == nil {
			continue
		}
		v, err := e.Eval(ctx, row)
		if err != nil {
			return nil, err
		}
		row[i], set[i] = v, true
	}
	res := make(sql.Row, len(l.DestSch))
	for i, c := range l.DestSch {
		if !set[i] && c.Default != nil {
			v, err := c.Default.Eval(ctx, row)
			if err != nil {
				return nil, err
			}
			row[i] = v
		}
		if p := it.out[i]; p >= 0 {
			res[p] = row[i]
		}
	}
	return res, nil
}

func (it *loadDataIter) Close(*sql.Context) error { return it.f.Close() }
