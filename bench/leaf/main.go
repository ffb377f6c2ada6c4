// Command leaf benchmarks a single canopy leaf against MariaDB on the same
// machine in the same run: sysbench point select, read-only and insert
// workloads, and a scan-aggregate query. It prints a markdown table of the
// canopy/MariaDB ratios and, with -write, puts it in BENCHMARKS.md.
//
//	go run ./bench/leaf -write
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/canopydb/canopy/bench/internal/benchutil"
)

func main() {
	seconds := flag.Int("seconds", 20, "duration of each sysbench run")
	tableSize := flag.Int("table-size", 100000, "rows per sysbench table")
	tables := flag.Int("tables", 4, "sysbench tables")
	aggRows := flag.Int("agg-rows", 2000000, "rows of the scan-aggregate table")
	cacheMB := flag.Int("cache-mb", 256, "canopy block cache and MariaDB buffer pool, MiB")
	write := flag.Bool("write", false, "write the results into BENCHMARKS.md")
	flag.Parse()

	dir, err := os.MkdirTemp("", "canopy-bench-")
	must(err)
	defer os.RemoveAll(dir)
	bin, err := benchutil.BuildCanopy(dir)
	must(err)

	maria, err := benchutil.StartMariaDB(dir, *cacheMB)
	must(err)
	defer maria.Stop()
	canopy, err := benchutil.StartCanopy(bin, dir, "leaf", *cacheMB)
	must(err)
	defer canopy.Stop()
	servers := []*benchutil.Server{canopy, maria}

	common := []string{fmt.Sprintf("--tables=%d", *tables), fmt.Sprintf("--table-size=%d", *tableSize)}
	for _, s := range servers {
		must(benchutil.Exec(s, "", "CREATE DATABASE sbtest"))
		log.Printf("preparing sysbench tables on %s", s.Name)
		_, err := benchutil.Sysbench(s, "oltp_read_only", "prepare", 4, 0, common...)
		must(err)
	}

	type row struct {
		name, unit    string
		canopy, maria float64
		note          string
	}
	var rows []row
	runs := []struct {
		name, workload string
		threads        int
		extra          []string
	}{
		{"oltp_point_select, 1 thread", "oltp_point_select", 1, nil},
		{"oltp_point_select, 4 threads", "oltp_point_select", 4, nil},
		{"oltp_read_only, 4 threads", "oltp_read_only", 4, nil},
		{"oltp_insert, 4 threads", "oltp_insert", 4, nil},
	}
	for _, r := range runs {
		var res [2]benchutil.SysbenchResult
		for i, s := range servers {
			log.Printf("%s on %s", r.name, s.Name)
			res[i], err = benchutil.Sysbench(s, r.workload, "run", r.threads, *seconds, append(common, r.extra...)...)
			must(err)
		}
		cpu := func(x benchutil.SysbenchResult) float64 {
			return float64(x.ServerCPU.Microseconds()) / max(x.Queries, 1)
		}
		rows = append(rows, row{r.name, "queries/s", res[0].QPS, res[1].QPS,
			fmt.Sprintf("avg latency %.2f / %.2f ms; server CPU per query %.0f / %.0f µs",
				res[0].AvgLatencyMs, res[1].AvgLatencyMs, cpu(res[0]), cpu(res[1]))})
	}

	// Scan-aggregate: GROUP BY over a table of aggRows rows.
	const aggQuery = "SELECT g, COUNT(*), SUM(k), AVG(v) FROM agg GROUP BY g"
	var rate [2]float64
	var cpuPerRow [2]float64
	for i, s := range servers {
		log.Printf("loading %d rows on %s", *aggRows, s.Name)
		must(loadAgg(s, *aggRows))
		var times []time.Duration
		var cpus []time.Duration
		for rep := 0; rep < 3; rep++ {
			db, err := sql.Open("mysql", s.DSN("sbtest"))
			must(err)
			c0 := s.CPU()
			start := time.Now()
			r, err := db.Query(aggQuery)
			must(err)
			n := 0
			for r.Next() {
				n++
			}
			must(r.Err())
			r.Close()
			times = append(times, time.Since(start))
			cpus = append(cpus, s.CPU()-c0)
			db.Close()
			if n != 100 {
				log.Fatalf("%s returned %d groups, want 100", s.Name, n)
			}
		}
		sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
		sort.Slice(cpus, func(a, b int) bool { return cpus[a] < cpus[b] })
		rate[i] = float64(*aggRows) / times[1].Seconds()
		cpuPerRow[i] = float64(cpus[1].Nanoseconds()) / float64(*aggRows)
	}
	rows = append(rows, row{fmt.Sprintf("scan-aggregate, %d rows (`%s`)", *aggRows, aggQuery), "rows/s", rate[0], rate[1],
		fmt.Sprintf("median of 3; server CPU per row %.0f / %.0f ns", cpuPerRow[0], cpuPerRow[1])})

	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores (`go run ./bench/leaf %s`; sysbench %d s per run, %d tables × %d rows; "+
		"canopy block cache and MariaDB buffer pool %d MiB; both fsync every commit).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), strings.Join(os.Args[1:], " "), *seconds, *tables, *tableSize, *cacheMB)
	b.WriteString("| workload | unit | canopy | MariaDB | ratio | notes (canopy / MariaDB) |\n|---|---|---:|---:|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | **%.2f×** | %s |\n", r.name, r.unit, r.canopy, r.maria, r.canopy/r.maria, r.note)
	}
	fmt.Print(b.String())
	if *write {
		must(benchutil.ReplaceSection("BENCHMARKS.md", "leafbench", b.String()))
		log.Print("wrote BENCHMARKS.md")
	}
}

// loadAgg creates agg(id, g, k, v) with n rows in batched inserts on two
// connections.
func loadAgg(s *benchutil.Server, n int) error {
	if err := benchutil.Exec(s, "sbtest", "CREATE TABLE agg (id BIGINT PRIMARY KEY, g INT NOT NULL, k INT NOT NULL, v DOUBLE NOT NULL)"); err != nil {
		return err
	}
	db, err := sql.Open("mysql", s.DSN("sbtest"))
	if err != nil {
		return err
	}
	defer db.Close()
	const batch = 2000
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for start := w * batch; start < n; start += 2 * batch {
				var q strings.Builder
				q.WriteString("INSERT INTO agg VALUES ")
				for i := start; i < start+batch && i < n; i++ {
					if i > start {
						q.WriteByte(',')
					}
					fmt.Fprintf(&q, "(%d,%d,%d,%d.5)", i, i%100, (i*7919)%1000, i%977)
				}
				if _, err := db.Exec(q.String()); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
