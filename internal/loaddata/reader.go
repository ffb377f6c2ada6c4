// Package loaddata reads the rows of a LOAD DATA file as MySQL does. It
// follows MySQL 8's READ_INFO (sql/sql_load.cc) byte for byte: a field
// that starts with the ENCLOSED BY character runs to that character
// followed by a field or line terminator (so it may hold terminators and
// line breaks), a doubled enclosure character inside it is one, the
// ESCAPED BY character escapes the next one (\0 \b \n \r \t \Z, \N for
// NULL, any other character stands for itself), LINES STARTING BY skips
// up to its prefix, and fields past the expected count are dropped with
// the rest of the line (the caller warns).
package loaddata

import (
	"bufio"
	"io"
)

// Options are the FIELDS and LINES clauses. Empty ENCLOSED BY and ESCAPED
// BY disable enclosure and escaping.
type Options struct {
	FieldsTerminatedBy string
	EnclosedBy         string
	EscapedBy          string
	LinesTerminatedBy  string
	LinesStartingBy    string
}

// Defaults are MySQL's: tab-separated, \ escapes, no enclosure, \n lines.
var Defaults = Options{FieldsTerminatedBy: "\t", EscapedBy: `\`, LinesTerminatedBy: "\n"}

// Field is one field of a line.
type Field struct {
	Val  []byte
	Null bool
}

const none = -1 // a character that is not set; never equals a byte

// Reader reads fields from a LOAD DATA file.
type Reader struct {
	r     *bufio.Reader
	stack []byte // pushed-back bytes, last pushed read first

	fieldTerm, lineTerm, lineStart []byte
	fieldTermChar, lineTermChar    int
	enclosedChar, escapeChar       int

	buf []byte

	eof, foundEndOfLine, startOfLine bool
	enclosed, foundNull, lineCut     bool
	done                             bool // the file is read
}

// NewReader reads r with the options.
func NewReader(r io.Reader, o Options) *Reader {
	rd := &Reader{
		r:         bufio.NewReaderSize(r, 1<<16),
		fieldTerm: []byte(o.FieldsTerminatedBy), lineTerm: []byte(o.LinesTerminatedBy),
		lineStart: []byte(o.LinesStartingBy),
	}
	first := func(s string) int {
		if s == "" {
			return none
		}
		return int(s[0])
	}
	rd.fieldTermChar, rd.lineTermChar = first(o.FieldsTerminatedBy), first(o.LinesTerminatedBy)
	rd.enclosedChar, rd.escapeChar = first(o.EnclosedBy), first(o.EscapedBy)
	rd.startOfLine = len(rd.lineStart) > 0
	return rd
}

func (r *Reader) get() int {
	if n := len(r.stack); n > 0 {
		c := r.stack[n-1]
		r.stack = r.stack[:n-1]
		return int(c)
	}
	c, err := r.r.ReadByte()
	if err != nil {
		return none
	}
	return int(c)
}

func (r *Reader) push(c int) {
	if c != none {
		r.stack = append(r.stack, byte(c))
	}
}

// terminator reports whether the bytes after a terminator's first one
// (already read) complete it; if not, they are pushed back.
func (r *Reader) terminator(term []byte) bool {
	for i := 1; i < len(term); i++ {
		if c := r.get(); c != int(term[i]) {
			r.push(c)
			for i--; i > 0; i-- {
				r.push(int(term[i]))
			}
			return false
		}
	}
	return true
}

func unescape(c int) (byte, bool) {
	switch c {
	case 'n':
		return '\n', false
	case 't':
		return '\t', false
	case 'r':
		return '\r', false
	case 'b':
		return '\b', false
	case '0':
		return 0, false
	case 'Z':
		return 26, false
	case 'N':
		return 'N', true
	}
	return byte(c), false
}

// findStartOfFields skips to just past the LINES STARTING BY prefix; false
// at the end of the file.
func (r *Reader) findStartOfFields() bool {
	for {
		c := r.get()
		for c != none && c != int(r.lineStart[0]) {
			c = r.get()
		}
		if c == none {
			r.foundEndOfLine, r.eof = true, true
			return false
		}
		if r.terminator(r.lineStart) {
			return true
		}
	}
}

// readField reads the next field of the line into r.buf (the value is
// r.buf[start:]); ok false when the line (or file) has no more fields.
func (r *Reader) readField() (start int, ok bool) {
	r.foundNull = false
	if r.foundEndOfLine {
		return 0, false
	}
	if r.startOfLine {
		r.startOfLine = false
		if !r.findStartOfFields() {
			return 0, false
		}
	}
	c := r.get()
	if c == none {
		r.foundEndOfLine, r.eof = true, true
		return 0, false
	}
	r.buf = r.buf[:0]
	foundEnclosed := none
	if c == r.enclosedChar {
		foundEnclosed = c
		r.buf = append(r.buf, byte(c)) // kept if the enclosure never closes
	} else {
		r.push(c)
	}
	for {
		c = r.get()
		if c == none {
			r.enclosed, r.foundEndOfLine, r.eof = false, true, true
			return 0, true
		}
		if c == r.escapeChar {
			if c = r.get(); c == none {
				r.buf = append(r.buf, byte(r.escapeChar))
				r.enclosed, r.foundEndOfLine, r.eof = false, true, true
				return 0, true
			}
			// with ESCAPED BY equal to ENCLOSED BY, the pair is an
			// enclosure handled below (a doubled quote), except the
			// character doubled
			if r.escapeChar != r.enclosedChar || c == r.escapeChar {
				b, null := unescape(c)
				if null {
					r.foundNull = true
				}
				r.buf = append(r.buf, b)
				continue
			}
			r.push(c)
			c = r.escapeChar
		}
		if c == r.lineTermChar && foundEnclosed == none && r.terminator(r.lineTerm) {
			r.enclosed, r.foundEndOfLine = false, true
			return 0, true
		}
		if c == foundEnclosed {
			next := r.get()
			if next == foundEnclosed { // doubled: one enclosure character
				r.buf = append(r.buf, byte(next))
				continue
			}
			if next == none || next == r.lineTermChar && r.terminator(r.lineTerm) {
				r.enclosed, r.foundEndOfLine = true, true
				if next == none {
					r.eof = true
				}
				return 1, true
			}
			if next == r.fieldTermChar && r.terminator(r.fieldTerm) {
				r.enclosed = true
				return 1, true
			}
			r.push(next)
		} else if c == r.fieldTermChar && foundEnclosed == none && r.terminator(r.fieldTerm) {
			r.enclosed = false
			return 0, true
		}
		r.buf = append(r.buf, byte(c))
	}
}

// nextLine skips the rest of the current line; false at the end of the
// file. Fields left unread on the line mark it cut.
func (r *Reader) nextLine() bool {
	r.lineCut = false
	r.startOfLine = len(r.lineStart) > 0
	if r.foundEndOfLine || r.eof {
		r.foundEndOfLine = false
		return !r.eof
	}
	if len(r.lineTerm) == 0 {
		return true
	}
	for {
		c := r.get()
		if c == none {
			r.eof = true
			return false
		}
		if c == r.escapeChar {
			r.lineCut = true
			if r.get() == none {
				r.eof = true
				return false
			}
			continue
		}
		if c == r.lineTermChar && r.terminator(r.lineTerm) {
			return true
		}
		r.lineCut = true
	}
}

// SkipLines skips n lines (IGNORE n LINES): terminators are counted as
// MySQL does, without regard to enclosures.
func (r *Reader) SkipLines(n int64) {
	for ; n > 0; n-- {
		if !r.nextLine() {
			r.done = true
			return
		}
	}
}

// Next reads the next line's first max fields. NULL is \N (alone), or
// the unenclosed word NULL when ENCLOSED BY is set. cut reports fields
// past max, dropped. It returns io.EOF after the last line; a line at
// the end of the file without terminator counts, an empty end does not.
func (r *Reader) Next(max int) (fields []Field, cut bool, err error) {
	if r.done {
		return nil, false, io.EOF
	}
	for len(fields) < max {
		start, ok := r.readField()
		if !ok {
			break
		}
		v := r.buf[start:]
		f := Field{Val: append([]byte(nil), v...)}
		if !r.enclosed && r.enclosedChar != none && string(v) == "NULL" || len(v) == 1 && r.foundNull {
			f = Field{Null: true}
		}
		fields = append(fields, f)
	}
	if len(fields) == 0 && r.eof {
		r.done = true
		return nil, false, io.EOF
	}
	if !r.nextLine() {
		r.done = true
	}
	return fields, r.lineCut, nil
}
