package loaddata

import (
	"io"
	"strings"
	"testing"
)

// render shows a file's rows as MySQL reads them: fields joined by |,
// NULL as <NULL>, a cut line marked with +.
func render(t *testing.T, data string, o Options, max int, skip int64) string {
	t.Helper()
	r := NewReader(strings.NewReader(data), o)
	r.SkipLines(skip)
	var lines []string
	for {
		fields, cut, err := r.Next(max)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var fs []string
		for _, f := range fields {
			if f.Null {
				fs = append(fs, "<NULL>")
			} else {
				fs = append(fs, string(f.Val))
			}
		}
		l := strings.Join(fs, "|")
		if cut {
			l += "+"
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

func TestReader(t *testing.T) {
	csv := Options{FieldsTerminatedBy: ",", EnclosedBy: `"`, EscapedBy: `\`, LinesTerminatedBy: "\n"}
	crlf := csv
	crlf.LinesTerminatedBy = "\r\n"
	noEsc := csv
	noEsc.EscapedBy = ""
	quoteEsc := csv
	quoteEsc.EscapedBy = `"`
	prefix := Defaults
	prefix.LinesStartingBy = "xxx"
	multi := Options{FieldsTerminatedBy: "||", EscapedBy: `\`, LinesTerminatedBy: "<>"}
	for _, c := range []struct {
		name string
		data string
		o    Options
		max  int
		skip int64
		want string
	}{
		{"defaults", "1\ta\n2\tb\n", Defaults, 2, 0, "1|a\n2|b"},
		{"no final terminator", "1\ta\n2\tb", Defaults, 2, 0, "1|a\n2|b"},
		{"empty file", "", Defaults, 2, 0, ""},
		{"empty line", "1\ta\n\n2\tb\n", Defaults, 2, 0, "1|a\n\n2|b"},
		{"null", "\\N\tNULL\n", Defaults, 2, 0, "<NULL>|NULL"},
		{"escapes", "a\\tb\\nc\\\\d\\0\\Ze\\x\\N\t\n", Defaults, 2, 0, "a\tb\nc\\d\x00\x1aexN|"},
		{"unquoted with enclosure set", "1,abc,NULL,\\N\n", csv, 4, 0, "1|abc|<NULL>|<NULL>"},
		{"enclosed", `1,"a,b","NULL",""` + "\n", csv, 4, 0, "1|a,b|NULL|"},
		{"enclosed line break", "1,\"a\nb\"\n2,c\n", csv, 2, 0, "1|a\nb\n2|c"},
		{"doubled enclosure", `1,"say ""hi""",x""y` + "\n", csv, 3, 0, `1|say "hi"|x""y`},
		{"escaped enclosure", `1,"say \"hi\""` + "\n", csv, 2, 0, `1|say "hi"`},
		{"enclosure inside value", `1,"a"b",c` + "\n", csv, 3, 0, `1|a"b|c`},
		{"unclosed enclosure", `1,"abc`, csv, 2, 0, `1|"abc`},
		{"no escape", `1,"a\b",\N` + "\n", noEsc, 3, 0, `1|a\b|\N`},
		{"escape is enclosure", `1,"a""b","c"` + "\n", quoteEsc, 3, 0, `1|a"b|c`},
		{"crlf", "1,a\r\n2,\"b\r\nc\"\r\n", crlf, 2, 0, "1|a\n2|b\r\nc"},
		{"too many fields", "1,2,3\n4,5\n", csv, 2, 0, "1|2+\n4|5"},
		{"too few fields", "1\n2,3\n", csv, 2, 0, "1\n2|3"},
		{"ignore lines", "h1,h2\nh3\n1,2\n", csv, 2, 2, "1|2"},
		{"ignore more lines than the file", "h1\n", csv, 2, 5, ""},
		{"starting by", "xxx1\ta\nno prefix\nabcxxx2\tb\n", prefix, 2, 0, "1|a\n2|b"},
		{"multi-character terminators", "1||a|b<>2||c<", multi, 2, 0, "1|a|b\n2|c<"},
	} {
		if got := render(t, c.data, c.o, c.max, c.skip); got != c.want {
			t.Errorf("%s: got\n%q\nwant\n%q", c.name, got, c.want)
		}
	}
}
