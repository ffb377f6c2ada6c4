package node

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/dolthub/vitess/go/mysql"
)

// sqlStates maps MySQL error numbers to their SQLSTATE, for errors GMS
// reports without one.
var sqlStates = map[int]string{
	1007: "HY000", 1008: "HY000", 1044: "42000", 1045: "28000", 1046: "3D000", 1048: "23000",
	1049: "42000", 1050: "42S01", 1051: "42S02", 1054: "42S22", 1060: "42S21", 1061: "42000",
	1062: "23000", 1064: "42000", 1066: "42000", 1068: "42000", 1075: "42000", 1091: "42000", 1118: "42000",
	1136: "21S01", 1146: "42S02", 1149: "42000", 1205: "HY000", 1213: "40001", 1242: "21000",
	1264: "22003", 1292: "22007", 1305: "42000", 1317: "70100", 1364: "HY000", 1365: "22012", 1406: "22001",
	1451: "23000",
	1452: "23000", 1690: "22003", 3140: "22032", 3141: "22032",
}

// translations rewrite GMS's wording of common errors into MySQL's, so that
// clients and people see the messages they know.
var translations = []struct {
	re    *regexp.Regexp
	num   int
	build func(m []string, db string) string
}{
	// the handler replaces this with the exact text the storage layer noted
	{regexp.MustCompile(`^duplicate (?:primary|unique) key given: (.*)$`), 1062,
		func(m []string, _ string) string { return "Duplicate entry " + m[1] }},
	{regexp.MustCompile(`^table not found: (.*)$`), 1146, func(m []string, db string) string {
		name := m[1]
		if !strings.Contains(name, ".") && db != "" {
			name = db + "." + name
		}
		return "Table '" + name + "' doesn't exist"
	}},
	{regexp.MustCompile(`^database not found: (.*)$`), 1049,
		func(m []string, _ string) string { return "Unknown database '" + m[1] + "'" }},
	{regexp.MustCompile(`^table with name (.*) already exists$`), 1050,
		func(m []string, _ string) string { return "Table '" + m[1] + "' already exists" }},
	{regexp.MustCompile(`^column "(.*)" could not be found in any table in scope$`), 1054,
		func(m []string, _ string) string { return "Unknown column '" + m[1] + "' in 'field list'" }},
	{regexp.MustCompile(`^table "(.*)" does not have column "(.*)"$`), 1054,
		func(m []string, _ string) string { return "Unknown column '" + m[2] + "' in '" + m[1] + "'" }},
	{regexp.MustCompile(`^column name '(.*)' is non-nullable but attempted to set a value of null$`), 1048,
		func(m []string, _ string) string { return "Column '" + m[1] + "' cannot be null" }},
	{regexp.MustCompile(`^number of values does not match number of columns provided$`), 1136,
		func([]string, string) string { return "Column count doesn't match value count at row 1" }},
	{regexp.MustCompile(`^no database selected$`), 1046,
		func([]string, string) string { return "No database selected" }},
	{regexp.MustCompile(`^(?:syntax error|Syntax error)(.*)$`), 1064, func(m []string, _ string) string {
		return "You have an error in your SQL syntax; syntax error" + m[1]
	}},
	{regexp.MustCompile(`^duplicate column name: ` + "`(.*)`" + `$`), 1060,
		func(m []string, _ string) string { return "Duplicate column name '" + m[1] + "'" }},
	{regexp.MustCompile(`^Duplicate key name '(.*)'$`), 1061,
		func(m []string, _ string) string { return "Duplicate key name '" + m[1] + "'" }},
	{regexp.MustCompile(`^string '.*' is too large for column '(.*)'$`), 1406,
		func(m []string, _ string) string { return "Data too long for column '" + m[1] + "' at row 1" }},
	{regexp.MustCompile(`^invalid table spec: expected size < \d+, found \d+$`), 1118, func([]string, string) string {
		return "Row size too large. The maximum row size for the used table type, not counting BLOBs, is 65535. " +
			"This includes storage overhead, check the manual. You have to change some columns to TEXT or BLOBs"
	}},
	{regexp.MustCompile(`^SAVEPOINT (.*) does not exist$`), 1305,
		func(m []string, _ string) string { return "SAVEPOINT " + m[1] + " does not exist" }},
	// KILL QUERY cancels the statement's context
	{regexp.MustCompile(`^context canceled$`), 1317,
		func([]string, string) string { return "Query execution was interrupted" }},
	// a guarded database (node/guard.go) as GMS refuses it
	{regexp.MustCompile(`^Database (.*) is read-only\.?$`), 1290, func(m []string, _ string) string {
		return "The database '" + m[1] + "' belongs to the cluster: clients change it through an aggregator"
	}},
}

// translateError turns an error from GMS or the storage layer into the
// MySQL error a client expects: the right number, SQLSTATE and wording.
func translateError(err error, db string) error {
	if err == nil {
		return nil
	}
	var se *mysql.SQLError
	if !errors.As(err, &se) {
		se = mysql.NewSQLError(mysql.ERUnknownError, "HY000", "%s", err.Error())
	}
	out := *se
	for _, t := range translations {
		if m := t.re.FindStringSubmatch(out.Message); m != nil && (out.Num == t.num || out.Num == mysql.ERUnknownError) {
			out.Num = t.num
			out.Message = t.build(m, db)
			out.State = ""
			break
		}
	}
	out.Message = boundMessage(out.Message)
	if out.State == "" || out.State == mysql.SSUnknownSQLState {
		if s, ok := sqlStates[out.Num]; ok {
			out.State = s
		} else {
			out.State = mysql.SSUnknownSQLState
		}
	}
	return &out
}

// maxMessage is MySQL's longest error message (MYSQL_ERRMSG_SIZE - 1).
const maxMessage = 511

var dupEntryRe = regexp.MustCompile(`(?s)^Duplicate entry '(.*)' for key '([^']*)'$`)

// boundMessage keeps an error message as MySQL's are: a duplicate key's
// value cut at 64 characters ("..." ending it), bytes that are not UTF-8
// as \xHH, and at most 511 bytes. A message quoting a whole value (a 100
// KB blob) made an error packet clients could not read.
func boundMessage(msg string) string {
	if m := dupEntryRe.FindStringSubmatch(msg); m != nil && utf8.RuneCountInString(m[1]) > 64 {
		msg = "Duplicate entry '" + string([]rune(m[1])[:61]) + "...' for key '" + m[2] + "'"
	}
	if !utf8.ValidString(msg) {
		var b strings.Builder
		for i := 0; i < len(msg); {
			r, size := utf8.DecodeRuneInString(msg[i:])
			if r == utf8.RuneError && size == 1 {
				fmt.Fprintf(&b, "\\x%02X", msg[i])
			} else {
				b.WriteString(msg[i : i+size])
			}
			i += size
		}
		msg = b.String()
	}
	if len(msg) > maxMessage {
		cut := maxMessage - 3
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}

// errShutdown is MySQL's ER_SERVER_SHUTDOWN: statements that arrive while
// the node stops.
var errShutdown = mysql.NewSQLError(1053, "08S01", "Server shutdown in progress")
