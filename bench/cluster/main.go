// Command cluster benchmarks a local canopy cluster (a master aggregator
// and four leaves, all on this machine) next to a single canopy leaf and
// MariaDB, in the same run: sysbench point selects through the master
// aggregator, and a fan-out aggregate over a whole table. It prints a
// markdown table and, with -write, puts it in BENCHMARKS.md.
//
//	go run ./bench/cluster -write
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/canopydb/canopy/bench/internal/benchutil"
)

func main() {
	seconds := flag.Int("seconds", 20, "duration of each sysbench run")
	tableSize := flag.Int("table-size", 100000, "rows per sysbench table")
	tables := flag.Int("tables", 4, "sysbench tables")
	leaves := flag.Int("leaves", 4, "leaves of the cluster")
	cacheMB := flag.Int("cache-mb", 128, "block cache of each canopy node and MariaDB's buffer pool, MiB")
	write := flag.Bool("write", false, "write the results into BENCHMARKS.md")
	flag.Parse()

	dir, err := os.MkdirTemp("", "canopy-bench-")
	must(err)
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "canopy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/canopy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	must(build.Run())

	maria, err := benchutil.StartMariaDB(dir, *cacheMB)
	must(err)
	defer maria.Stop()
	single, err := benchutil.StartCanopy(bin, dir, "single", *cacheMB)
	must(err)
	defer single.Stop()
	ma, err := benchutil.StartCanopy(bin, dir, "master", *cacheMB, "--master-aggregator")
	must(err)
	defer ma.Stop()
	ma.Name = "cluster"
	for i := 0; i < *leaves; i++ {
		l, err := benchutil.StartCanopy(bin, dir, fmt.Sprintf("leaf%d", i), *cacheMB)
		must(err)
		defer l.Stop()
		ma.Peers = append(ma.Peers, l)
		must(benchutil.Exec(ma, "", fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.Port)))
	}
	servers := []*benchutil.Server{ma, single, maria}

	common := []string{fmt.Sprintf("--tables=%d", *tables), fmt.Sprintf("--table-size=%d", *tableSize)}
	for _, s := range servers {
		must(benchutil.Exec(s, "", "CREATE DATABASE sbtest"))
		log.Printf("preparing sysbench tables on %s", s.Name)
		_, err := benchutil.Sysbench(s, "oltp_read_only", "prepare", 4, 0, common...)
		must(err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores (`go run ./bench/cluster -write`; sysbench %d s per run, %d tables × %d rows; "+
		"the cluster is a master aggregator and %d leaves on this machine, database of %d partitions; "+
		"block cache %d MiB per canopy node, MariaDB buffer pool %d MiB). "+
		"Server CPU counts every process of the cluster.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), *seconds, *tables, *tableSize,
		*leaves, 8**leaves, *cacheMB, *cacheMB)
	b.WriteString("| workload | unit | cluster (MA) | single leaf | MariaDB | cluster / MariaDB | single leaf / MariaDB | notes (cluster / leaf / MariaDB) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, run := range []struct {
		threads int
		text    bool // literals in the query text instead of prepared statements
	}{{1, false}, {4, false}, {4, true}} {
		threads := run.threads
		args, label := common, ""
		if run.text {
			args, label = append(append([]string(nil), common...), "--db-ps-mode=disable"), ", text protocol"
		}
		var res [3]benchutil.SysbenchResult
		for i, s := range servers {
			log.Printf("oltp_point_select, %d threads%s, on %s", threads, label, s.Name)
			res[i], err = benchutil.Sysbench(s, "oltp_point_select", "run", threads, *seconds, args...)
			must(err)
			if res[i].Errors > 0 {
				log.Fatalf("%s: %v errors per second", s.Name, res[i].Errors)
			}
		}
		cpu := func(x benchutil.SysbenchResult) float64 {
			return float64(x.ServerCPU.Microseconds()) / max(x.Queries, 1)
		}
		fmt.Fprintf(&b, "| oltp_point_select, %d thread%s%s | queries/s | %.0f | %.0f | %.0f | **%.2f×** | %.2f× | avg latency %.2f / %.2f / %.2f ms; server CPU per query %.0f / %.0f / %.0f µs |\n",
			threads, map[bool]string{true: "s"}[threads > 1], label, res[0].QPS, res[1].QPS, res[2].QPS,
			res[0].QPS/res[2].QPS, res[1].QPS/res[2].QPS,
			res[0].AvgLatencyMs, res[1].AvgLatencyMs, res[2].AvgLatencyMs, cpu(res[0]), cpu(res[1]), cpu(res[2]))
	}

	// A fan-out aggregate: every partition scans, the aggregator merges.
	query := "SELECT COUNT(*), SUM(k), MAX(c) FROM sbtest1"
	var rate [3]float64
	for i, s := range servers {
		rate[i] = scanRate(s, query, *tableSize)
	}
	fmt.Fprintf(&b, "| full-table aggregate (`%s`) | rows/s | %.0f | %.0f | %.0f | **%.2f×** | %.2f× | median of 5 |\n",
		query, rate[0], rate[1], rate[2], rate[0]/rate[2], rate[1]/rate[2])

	fmt.Print(b.String())
	if *write {
		must(benchutil.ReplaceSection("BENCHMARKS.md", "clusterbench", b.String()))
		log.Print("wrote BENCHMARKS.md")
	}
}

// scanRate runs an aggregate over a table of rows rows five times and
// returns the median rows per second.
func scanRate(s *benchutil.Server, query string, rows int) float64 {
	db, err := sql.Open("mysql", s.DSN("sbtest"))
	must(err)
	defer db.Close()
	var times []time.Duration
	for rep := 0; rep < 5; rep++ {
		start := time.Now()
		var n int
		var sum float64
		var c string
		must(db.QueryRow(query).Scan(&n, &sum, &c))
		times = append(times, time.Since(start))
		if n != rows {
			log.Fatalf("%s counted %d rows, want %d", s.Name, n, rows)
		}
	}
	sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
	return float64(rows) / times[2].Seconds()
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
