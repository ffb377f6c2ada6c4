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
	"runtime"
	"sort"
	"strconv"
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
	scanRows := flag.Int("scan-rows", 4000000, "rows of the table the scan-aggregates read")
	flag.Parse()

	dir, err := os.MkdirTemp("", "canopy-bench-")
	must(err)
	defer os.RemoveAll(dir)
	bin, err := benchutil.BuildCanopy(dir)
	must(err)

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
	fmt.Fprintf(&b, "Measured %s on %d cores (`go run ./bench/cluster %s`; sysbench %d s per run, %d tables × %d rows; "+
		"the cluster is a master aggregator and %d leaves on this machine, database of %d partitions; "+
		"block cache %d MiB per canopy node, MariaDB buffer pool %d MiB). "+
		"Server CPU counts every process of the cluster.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), strings.Join(os.Args[1:], " "), *seconds, *tables, *tableSize,
		*leaves, 8**leaves, *cacheMB, *cacheMB)
	b.WriteString("| workload | unit | cluster (MA) | single leaf | MariaDB | cluster / MariaDB | single leaf / MariaDB | notes (cluster / leaf / MariaDB) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, run := range []struct {
		workload string
		threads  int
		text     bool // literals in the query text instead of prepared statements
	}{
		{"oltp_point_select", 1, false}, {"oltp_point_select", 4, false}, {"oltp_point_select", 4, true},
		{"oltp_read_only", 4, false}, {"oltp_read_write", 4, false}, // read_write last: it changes the rows
	} {
		threads := run.threads
		args, label := common, ""
		if run.text {
			args, label = append(append([]string(nil), common...), "--db-ps-mode=disable"), ", text protocol"
		}
		if run.workload == "oltp_read_write" {
			args = append(append([]string(nil), args...), "--mysql-ignore-errors=all")
		}
		var res [3]benchutil.SysbenchResult
		for i, s := range servers {
			log.Printf("%s, %d threads%s, on %s", run.workload, threads, label, s.Name)
			res[i], err = benchutil.Sysbench(s, run.workload, "run", threads, *seconds, args...)
			must(err)
			if res[i].Errors > 0 && run.workload != "oltp_read_write" {
				log.Fatalf("%s: %v errors per second", s.Name, res[i].Errors)
			}
		}
		cpu := func(x benchutil.SysbenchResult) float64 {
			return float64(x.ServerCPU.Microseconds()) / max(x.Queries, 1)
		}
		unit, rate := "queries/s", func(x benchutil.SysbenchResult) float64 { return x.QPS }
		if run.workload != "oltp_point_select" {
			unit, rate = "transactions/s", func(x benchutil.SysbenchResult) float64 { return x.TPS }
		}
		notes := fmt.Sprintf("avg latency %.2f / %.2f / %.2f ms; server CPU per query %.0f / %.0f / %.0f µs",
			res[0].AvgLatencyMs, res[1].AvgLatencyMs, res[2].AvgLatencyMs, cpu(res[0]), cpu(res[1]), cpu(res[2]))
		if run.workload == "oltp_read_write" {
			notes += fmt.Sprintf("; errors/s %.1f / %.1f / %.1f (deadlocks, retried by sysbench)", res[0].Errors, res[1].Errors, res[2].Errors)
		}
		fmt.Fprintf(&b, "| %s, %d thread%s%s | %s | %.0f | %.0f | %.0f | **%.2f×** | %.2f× | %s |\n",
			run.workload, threads, map[bool]string{true: "s"}[threads > 1], label, unit,
			rate(res[0]), rate(res[1]), rate(res[2]), rate(res[0])/rate(res[2]), rate(res[1])/rate(res[2]), notes)
	}

	// Scan-aggregates over one larger table: every partition scans, the
	// aggregator merges partial aggregates.
	scanArgs := []string{"--tables=1", fmt.Sprintf("--table-size=%d", *scanRows), "--mysql-db=sbscan"}
	for _, s := range servers {
		must(benchutil.Exec(s, "", "CREATE DATABASE sbscan"))
		log.Printf("preparing %d rows for the scans on %s", *scanRows, s.Name)
		_, err := benchutil.Sysbench(s, "oltp_read_only", "prepare", 4, 0, scanArgs...)
		must(err)
	}
	for _, q := range []struct {
		query    string
		countCol int // the column holding COUNT(*), summed over the result to check it
	}{
		{"SELECT COUNT(*), SUM(k), MAX(c) FROM sbtest1", 0},
		{"SELECT k % 100 AS g, COUNT(*), SUM(id), AVG(k) FROM sbtest1 GROUP BY g", 1},
	} {
		var res [3]scanResult
		for i, s := range servers {
			res[i] = scan(s, s.DSN("sbscan"), q.query, q.countCol, *scanRows)
			if res[i].total != *scanRows {
				log.Fatalf("%s: %s counted %d rows, want %d", s.Name, q.query, res[i].total, *scanRows)
			}
		}
		fmt.Fprintf(&b, "| scan-aggregate `%s` over %d rows | rows/s | %.0f | %.0f | %.0f | **%.2f×** | %.2f× | rows per CPU-second %.0f / %.0f / %.0f; bytes sent from partitions to the aggregator per query: %.0f; median of 5 |\n",
			q.query, *scanRows, res[0].rate, res[1].rate, res[2].rate, res[0].rate/res[2].rate, res[1].rate/res[2].rate,
			res[0].perCPU, res[1].perCPU, res[2].perCPU, res[0].bytes)
	}

	// Joins of the big table with a small one on a column that is not
	// the big table's shard key: the cluster looks the small table's keys
	// up in the big one's index (lookup), or, forced by
	// lookup_join_max_rows = 0, copies the small table to every leaf
	// (broadcast), or, forced by broadcast_join_max_rows = 0 as well,
	// repartitions both sides through the aggregator.
	var dim []string
	for i := 1; i <= 1000; i++ {
		dim = append(dim, fmt.Sprintf("(%d, %d)", i*(*scanRows/1000), i%7))
	}
	for _, s := range servers {
		must(benchutil.Exec(s, "sbscan", "CREATE TABLE dim (id INT PRIMARY KEY, v INT)", "INSERT INTO dim VALUES "+strings.Join(dim, ", ")))
	}
	joinQuery := "SELECT COUNT(*), SUM(d.v) FROM sbtest1 s JOIN dim d ON s.k = d.id"
	for _, strategy := range []struct{ label, param string }{
		{"lookup", ""},
		{"broadcast", "&lookup_join_max_rows=0"},
		{"repartition", "&lookup_join_max_rows=0&broadcast_join_max_rows=0"},
	} {
		var res [3]scanResult
		for i, s := range servers {
			dsn := s.DSN("sbscan")
			if s == ma {
				dsn += strategy.param
			}
			res[i] = scan(s, dsn, joinQuery, 0, *scanRows)
		}
		// sysbench draws k anew on each server: the counts differ a little
		if res[0].total == 0 || res[1].total == 0 || res[2].total == 0 {
			log.Fatalf("%s counted %d / %d / %d joined rows", joinQuery, res[0].total, res[1].total, res[2].total)
		}
		fmt.Fprintf(&b, "| join `%s` (%d × 1000 rows; cluster: %s) | rows of sbtest1/s | %.0f | %.0f | %.0f | **%.2f×** | %.2f× | rows per CPU-second %.0f / %.0f / %.0f; bytes sent from partitions to the aggregator per query: %.0f; median of 5 |\n",
			joinQuery, *scanRows, strategy.label, res[0].rate, res[1].rate, res[2].rate, res[0].rate/res[2].rate, res[1].rate/res[2].rate,
			res[0].perCPU, res[1].perCPU, res[2].perCPU, res[0].bytes)
	}

	fmt.Print(b.String())
	if *write {
		must(benchutil.ReplaceSection("BENCHMARKS.md", "clusterbench", b.String()))
		log.Print("wrote BENCHMARKS.md")
	}
}

type scanResult struct {
	total  int     // the sum of the count column
	rate   float64 // rows per second of wall time
	perCPU float64 // rows per second of server CPU
	bytes  float64 // value bytes partitions sent the aggregator per query
}

// scan runs an aggregate over a table of rows rows five times and reports
// the median run and the sum of the values of column countCol.
func scan(s *benchutil.Server, dsn, query string, countCol, rows int) scanResult {
	db, err := sql.Open("mysql", dsn)
	must(err)
	defer db.Close()
	type run struct{ wall, cpu time.Duration }
	var runs []run
	var total int
	bytes0 := s.Metric("canopy_gathered_bytes_total")
	for rep := 0; rep < 5; rep++ {
		cpu0, start := s.CPU(), time.Now()
		rs, err := db.Query(query)
		must(err)
		cols, _ := rs.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		total = 0
		for rs.Next() {
			must(rs.Scan(ptrs...))
			n, _ := strconv.Atoi(string(vals[countCol]))
			total += n
		}
		must(rs.Err())
		rs.Close()
		runs = append(runs, run{time.Since(start), s.CPU() - cpu0})
	}
	moved := (s.Metric("canopy_gathered_bytes_total") - bytes0) / 5
	sort.Slice(runs, func(a, b int) bool { return runs[a].wall < runs[b].wall })
	m := runs[2]
	return scanResult{total: total, rate: float64(rows) / m.wall.Seconds(), perCPU: float64(rows) / max(m.cpu.Seconds(), 1e-3), bytes: moved}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
