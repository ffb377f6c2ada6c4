// Command loaddata times LOAD DATA LOCAL INFILE of CSV files (quoted
// fields, 10,000 and 1,000,000 rows by default) into a sharded table
// through the master aggregator of a local cluster, into the same table on
// a single canopy leaf, and into MariaDB when it is installed, in the same
// run. It prints a markdown table and, with -write, puts it in
// BENCHMARKS.md.
//
//	go run ./bench/loaddata -write
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/bench/internal/benchutil"
)

func main() {
	sizes := flag.String("rows", "10000,1000000", "rows of each file, comma-separated")
	leaves := flag.Int("leaves", 2, "leaves of the cluster")
	cacheMB := flag.Int("cache-mb", 128, "block cache of each canopy node and MariaDB's buffer pool, MiB")
	write := flag.Bool("write", false, "write the results into BENCHMARKS.md")
	flag.Parse()

	dir, err := os.MkdirTemp("", "canopy-bench-load-")
	must(err)
	defer os.RemoveAll(dir)
	bin, err := benchutil.BuildCanopy(dir)
	must(err)

	stops = append(stops, func() { os.RemoveAll(dir) })
	single, err := benchutil.StartCanopy(bin, dir, "single", *cacheMB)
	must(err)
	defer single.Stop()
	stops = append(stops, single.Stop)
	ma, err := benchutil.StartCanopy(bin, dir, "master", *cacheMB, "--master-aggregator")
	must(err)
	defer ma.Stop()
	stops = append(stops, ma.Stop)
	ma.Name = "cluster"
	for i := 0; i < *leaves; i++ {
		l, err := benchutil.StartCanopy(bin, dir, fmt.Sprintf("leaf%d", i), *cacheMB)
		must(err)
		defer l.Stop()
		stops = append(stops, l.Stop)
		ma.Peers = append(ma.Peers, l)
		must(benchutil.Exec(ma, "", fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.Port)))
	}
	servers := []*benchutil.Server{ma, single}
	maria, err := benchutil.StartMariaDB(dir, *cacheMB)
	if err != nil {
		log.Printf("without MariaDB: %v", err)
	} else {
		defer maria.Stop()
		stops = append(stops, maria.Stop)
		servers = append(servers, maria)
	}
	partitions := 8 * *leaves
	for _, s := range servers {
		create := "CREATE DATABASE loadbench"
		if s == ma {
			create += fmt.Sprintf(" PARTITIONS %d", partitions)
		}
		must(benchutil.Exec(s, "", create, "SET GLOBAL local_infile = 1"))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores (`go run ./bench/loaddata -write`; `LOAD DATA LOCAL INFILE … FIELDS TERMINATED BY ',' "+
		"OPTIONALLY ENCLOSED BY '\"'` of a CSV file with a quoted string field, into `t (id BIGINT PRIMARY KEY, k INT, s VARCHAR(64), d DOUBLE)`; "+
		"the cluster is a master aggregator and %d leaves on this machine, database of %d partitions; block cache %d MiB per canopy node, "+
		"MariaDB buffer pool %d MiB, both fsync every commit). Server CPU counts every process of the cluster.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), *leaves, partitions, *cacheMB, *cacheMB)
	b.WriteString("| rows | cluster (MA) | single leaf | MariaDB | cluster / leaf | leaf / MariaDB | cluster / MariaDB | rows/s (cluster / leaf / MariaDB) | server CPU per row, µs (cluster / leaf / MariaDB) |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, f := range strings.Split(*sizes, ",") {
		rows, err := strconv.Atoi(strings.TrimSpace(f))
		must(err)
		path := filepath.Join(dir, fmt.Sprintf("rows-%d.csv", rows))
		must(writeCSV(path, rows))
		secs := map[*benchutil.Server]float64{}
		cpu := map[*benchutil.Server]float64{}
		for _, s := range servers {
			must(benchutil.Exec(s, "loadbench", "DROP TABLE IF EXISTS t",
				"CREATE TABLE t (id BIGINT PRIMARY KEY, k INT, s VARCHAR(64), d DOUBLE)"))
			el, c, err := load(s, path, rows)
			must(err)
			secs[s], cpu[s] = el.Seconds(), float64(c.Microseconds())/float64(rows)
			log.Printf("%s: %d rows in %.2f s", s.Name, rows, el.Seconds())
		}
		cell := func(s *benchutil.Server) string {
			if _, ok := secs[s]; !ok || s == nil {
				return "—"
			}
			return fmt.Sprintf("%.2f s", secs[s])
		}
		ratio := func(x, y *benchutil.Server) string {
			if x == nil || y == nil || secs[x] == 0 || secs[y] == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f×", secs[x]/secs[y])
		}
		per := func(m map[*benchutil.Server]float64, format string, f func(float64) float64) string {
			var out []string
			for _, s := range []*benchutil.Server{ma, single, maria} {
				if v, ok := m[s]; ok && s != nil {
					out = append(out, fmt.Sprintf(format, f(v)))
				} else {
					out = append(out, "—")
				}
			}
			return strings.Join(out, " / ")
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | **%s** | %s | %s | %s | %s |\n", rows, cell(ma), cell(single), cell(maria),
			ratio(ma, single), ratio(single, maria), ratio(ma, maria),
			per(secs, "%.0f", func(s float64) float64 { return float64(rows) / s }), per(cpu, "%.1f", func(c float64) float64 { return c }))
	}
	fmt.Print(b.String())
	if *write {
		must(benchutil.ReplaceSection("BENCHMARKS.md", "loaddatabench", b.String()))
	}
}

// writeCSV writes rows of id, k, a quoted string with a comma and a
// doubled quote, a double.
func writeCSV(path string, rows int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := io.Writer(f)
	buf := make([]byte, 0, 1<<20)
	for i := 1; i <= rows; i++ {
		buf = fmt.Appendf(buf, "%d,%d,\"name %d, \"\"q\"\"\",%d.5\n", i, i%1000, i, i)
		if len(buf) > 1<<20-200 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return f.Close()
}

// load runs the LOAD DATA and checks the row count; it returns the time
// and the servers' CPU.
func load(s *benchutil.Server, path string, rows int) (time.Duration, time.Duration, error) {
	mysql.RegisterLocalFile(path)
	db, err := sql.Open("mysql", s.DSN("loadbench"))
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	cpu0 := s.CPU()
	start := time.Now()
	_, err = db.Exec(fmt.Sprintf(`LOAD DATA LOCAL INFILE '%s' INTO TABLE t FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"'`, path))
	el := time.Since(start)
	cpu := s.CPU() - cpu0
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", s.Name, err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		return 0, 0, err
	}
	if n != rows {
		return 0, 0, fmt.Errorf("%s: %d rows loaded, want %d", s.Name, n, rows)
	}
	var sv string
	if err := db.QueryRow(fmt.Sprintf("SELECT s FROM t WHERE id = %d", rows/2+1)).Scan(&sv); err != nil || sv != fmt.Sprintf(`name %d, "q"`, rows/2+1) {
		return 0, 0, fmt.Errorf("%s: row %d reads %q (%v)", s.Name, rows/2+1, sv, err)
	}
	return el, cpu, nil
}

// stops are the servers to stop when the run fails (log.Fatal runs no
// deferred calls).
var stops []func()

func must(err error) {
	if err != nil {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		log.Fatal(err)
	}
}
