package slt

import (
	"bufio"
	"compress/gzip"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/internal/testutil"
)

func TestParseAndFormat(t *testing.T) {
	const file = `# comment
statement ok
CREATE TABLE t1(a INTEGER, b TEXT)

skipif mysql
statement ok
THIS IS NOT MYSQL

onlyif sqlite
query I nosort
SELECT 1
----
1

query IT rowsort label-1
SELECT a, b
FROM t1
----
1
x
2
(empty)

query R nosort
SELECT 1
----
3 values hashing to 0123456789abcdef0123456789abcdef

halt

statement ok
NEVER
`
	recs, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("parsed %d records, want 3: %+v", len(recs), recs)
	}
	q := recs[1]
	if !q.Query || q.Types != "IT" || q.Sort != "rowsort" || q.SQL != "SELECT a, b\nFROM t1" ||
		strings.Join(q.Values, ",") != "1,x,2,(empty)" {
		t.Errorf("query record = %+v", q)
	}
	if recs[2].HashCount != 3 || recs[2].Hash != "0123456789abcdef0123456789abcdef" {
		t.Errorf("hash record = %+v", recs[2])
	}
	for _, c := range []struct {
		in   []byte
		typ  byte
		want string
	}{
		{nil, 'I', "NULL"}, {[]byte("-13.000"), 'I', "-13"}, {[]byte("7"), 'I', "7"},
		{[]byte("2.5"), 'R', "2.500"}, {[]byte("-1"), 'R', "-1.000"}, {[]byte(""), 'T', "(empty)"},
		{[]byte("a\tb"), 'T', "a@b"},
	} {
		if got := format(c.in, c.typ); got != c.want {
			t.Errorf("format(%q, %c) = %q, want %q", c.in, c.typ, got, c.want)
		}
	}
	vals := flatten([][]string{{"b", "2"}, {"a", "9"}, {"a", "10"}}, "rowsort")
	if strings.Join(vals, ",") != "a,10,a,9,b,2" {
		t.Errorf("rowsort = %v", vals)
	}
	if h := hashValues([]string{"1", "2"}); h != "6ddb4095eb719e2a9f0a3f95677d24e0" {
		t.Errorf("hash = %s", h)
	}
}

// corpusDir is the sqllogictest sample (see testdata/sqllogictest/README.md),
// kept in the repository so that CI on a fresh machine always runs it.
func corpusDir() string {
	return filepath.Join("testdata", "sqllogictest")
}

const baselinePath = "baseline.txt"

type fileCount struct{ passed, total int }

func readBaseline(t *testing.T) map[string]fileCount {
	out := map[string]fileCount{}
	f, err := os.Open(baselinePath)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		p, _ := strconv.Atoi(fs[1])
		n, _ := strconv.Atoi(fs[2])
		out[fs[0]] = fileCount{p, n}
	}
	return out
}

// TestCompatibility plays the sqllogictest sample against a leaf. It fails
// when the pass count of any file drops below the recorded baseline.
// SLT_RECORD=1 records the current counts (baseline.txt and the table in
// BENCHMARKS.md); SLT_FILES=substring limits the files.
func TestCompatibility(t *testing.T) {
	dir := corpusDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("sqllogictest corpus not found at %s: %v", dir, err)
	}
	var files []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".test.gz") && strings.Contains(p, os.Getenv("SLT_FILES")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no test files under %s", dir)
	}
	node := testutil.StartNode(t)
	root := node.DB("")
	checkCanFail(t, root)
	baseline := readBaseline(t)
	counts := map[string]fileCount{}
	totalPassed, totalRecords := 0, 0
	for i, path := range files {
		name, _ := filepath.Rel(dir, path)
		name = strings.TrimSuffix(name, ".test.gz")
		recs, err := readFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dbName := fmt.Sprintf("slt%d", i)
		if _, err := root.Exec("CREATE DATABASE " + dbName); err != nil {
			t.Fatal(err)
		}
		pool, err := sql.Open("mysql", node.DSN(dbName))
		if err != nil {
			t.Fatal(err)
		}
		pool.SetMaxOpenConns(1)
		start := time.Now()
		// A few select4 joins of many tables take 10-25 s while the cluster
		// tests share the 2 cores: the limit catches hangs, not slowness.
		res := Run(pool, recs, Options{Timeout: 60 * time.Second, MaxFailures: 5}, func() (Conn, error) { return pool, nil })
		pool.Close()
		root.Exec("DROP DATABASE " + dbName)
		counts[name] = fileCount{res.Passed, res.Total}
		totalPassed += res.Passed
		totalRecords += res.Total
		t.Logf("%-40s %6d / %6d passed (%.1f%%) in %s", name, res.Passed, res.Total,
			100*float64(res.Passed)/float64(max(res.Total, 1)), time.Since(start).Round(time.Second))
		for _, f := range res.Failures {
			t.Logf("    line %d: %s\n        %s", f.Line, firstLine(f.SQL), f.Reason)
		}
		if b, ok := baseline[name]; ok && res.Passed < b.passed {
			t.Errorf("%s: %d records pass, fewer than the recorded %d", name, res.Passed, b.passed)
		}
	}
	t.Logf("total: %d / %d records pass (%.1f%%)", totalPassed, totalRecords, 100*float64(totalPassed)/float64(totalRecords))
	if os.Getenv("SLT_RECORD") != "" {
		if err := record(counts); err != nil {
			t.Fatal(err)
		}
	}
}

// checkCanFail makes sure the checker notices wrong results, so that a
// full pass means something.
func checkCanFail(t *testing.T, db *sql.DB) {
	t.Helper()
	wrong, err := Parse(strings.NewReader(`query I nosort
SELECT 1
----
2

query T rowsort
SELECT 'a' UNION SELECT 'b'
----
a
c

query I nosort
SELECT 1
----
1 values hashing to 00000000000000000000000000000000

statement ok
SELECT * FROM no_such_table

statement error
SELECT 1
`))
	if err != nil {
		t.Fatal(err)
	}
	res := Run(db, wrong, Options{MaxFailures: 10}, nil)
	if res.Passed != 0 || len(res.Failures) != len(wrong) {
		t.Fatalf("the checker accepted wrong results: %+v", res)
	}
	right, _ := Parse(strings.NewReader("query I nosort\nSELECT 1\n----\n1\n"))
	if res := Run(db, right, Options{}, nil); res.Passed != 1 {
		t.Fatalf("the checker rejected a right result: %+v", res)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func readFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return Parse(gz)
}

// record writes baseline.txt and the sqllogictest table in BENCHMARKS.md.
func record(counts map[string]fileCount) error {
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	var base, table strings.Builder
	base.WriteString("# file passed total — written by SLT_RECORD=1 go test ./slt -run TestCompatibility\n")
	table.WriteString("| file | passed | records | % |\n|---|---:|---:|---:|\n")
	tp, tt := 0, 0
	for _, n := range names {
		c := counts[n]
		fmt.Fprintf(&base, "%s %d %d\n", n, c.passed, c.total)
		fmt.Fprintf(&table, "| %s | %d | %d | %.1f |\n", n, c.passed, c.total, 100*float64(c.passed)/float64(max(c.total, 1)))
		tp += c.passed
		tt += c.total
	}
	fmt.Fprintf(&table, "| **total** | **%d** | **%d** | **%.1f** |\n", tp, tt, 100*float64(tp)/float64(max(tt, 1)))
	if err := os.WriteFile(baselinePath, []byte(base.String()), 0o644); err != nil {
		return err
	}
	bench := filepath.Join(testutil.ModuleRoot(), "BENCHMARKS.md")
	b, err := os.ReadFile(bench)
	if err != nil {
		return err
	}
	re := regexp.MustCompile(`(?s)<!-- slt:begin -->.*<!-- slt:end -->`)
	if !re.Match(b) {
		return fmt.Errorf("BENCHMARKS.md has no <!-- slt:begin --> … <!-- slt:end --> section")
	}
	out := re.ReplaceAllLiteral(b, []byte("<!-- slt:begin -->\n"+table.String()+"<!-- slt:end -->"))
	return os.WriteFile(bench, out, 0o644)
}
