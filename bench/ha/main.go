// Command ha measures what high availability costs writes: the same write
// workloads through the master aggregator of a local cluster of four
// leaves in redundancy 1, then of four leaves in two pairs in redundancy 2
// (a database WITH ASYNC REPLICATION and one WITH SYNC REPLICATION), and
// against MariaDB, in the same run. The servers run one after another, so
// none competes with another for the cores. It prints a markdown table
// and, with -write, puts it in BENCHMARKS.md.
//
//	go run ./bench/ha -write
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/canopydb/canopy/bench/internal/benchutil"
)

const (
	sectionName = "habench"
	// oldLine is what the HA section of BENCHMARKS.md said before the
	// first run; -write replaces it with the section's markers.
	oldLine = "Not measured yet: throughput sync vs async vs redundancy 1, re-provisioning 1 GB."
	newLine = "Not measured yet: re-provisioning 1 GB."
)

// A column of the table: a database on a server.
type column struct {
	label string
	srv   *benchutil.Server
	db    string // the insert workload's database
	sbdb  string // sysbench's database
}

const (
	colR1 = iota
	colAsync
	colSync
	colMaria
	nCols
)

type insertRow struct {
	threads int
	res     [nCols]benchutil.LoadResult
}

type sysbenchRow struct {
	threads int
	res     [nCols]benchutil.SysbenchResult
}

var cleanup = benchutil.NewCleanup()

func must(err error) { cleanup.Must(err) }

func main() {
	seconds := flag.Int("seconds", 20, "measured duration of each run")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up before each insert run")
	threadList := flag.String("threads", "4,16", "client connections, a comma-separated list: every workload runs once per entry")
	leaves := flag.Int("leaves", 4, "leaves of each cluster (an even number: redundancy 2 pairs them)")
	partitions := flag.Int("partitions", 16, "partitions of each database")
	cacheMB := flag.Int("cache-mb", 128, "block cache of each canopy node and MariaDB's buffer pool, MiB")
	sysbench := flag.Bool("sysbench", true, "also run sysbench oltp_write_only")
	sbTables := flag.Int("sb-tables", 4, "sysbench tables")
	sbTableSize := flag.Int("sb-table-size", 10000, "rows per sysbench table")
	write := flag.Bool("write", false, "write the results into BENCHMARKS.md")
	flag.Parse()
	defer cleanup.Run()
	defer func() {
		if r := recover(); r != nil {
			cleanup.Run()
			panic(r)
		}
	}()

	var threads []int
	for _, f := range strings.Split(*threadList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			cleanup.Fatal("bad -threads ", *threadList)
		}
		threads = append(threads, n)
	}
	if *leaves < 2 || *leaves%2 != 0 {
		cleanup.Fatal("-leaves must be even and at least 2")
	}
	command := strings.Join(append([]string{"go run ./bench/ha"}, os.Args[1:]...), " ")

	dir, err := os.MkdirTemp("", "canopy-habench-")
	must(err)
	cleanup.Add(func() {
		if cleanup.Failed() {
			if logs, err := benchutil.SaveLogs(dir); err == nil {
				log.Printf("the servers' logs are in %s", logs)
			}
		}
		os.RemoveAll(dir)
	})
	bin, err := benchutil.BuildCanopy(dir)
	must(err)

	d := time.Duration(*seconds) * time.Second
	inserts := make([]insertRow, len(threads))
	sbs := make([]sysbenchRow, len(threads))
	for i, n := range threads {
		inserts[i].threads, sbs[i].threads = n, n
	}
	sbArgs := []string{fmt.Sprintf("--tables=%d", *sbTables), fmt.Sprintf("--table-size=%d", *sbTableSize)}

	// run runs every workload on the columns given, alternating between
	// them for each workload so that a drift of the machine's speed
	// spreads over all of them.
	run := func(cols map[int]column) {
		order := []int{colR1, colAsync, colSync, colMaria}
		for _, c := range order {
			if col, ok := cols[c]; ok && *sysbench {
				log.Printf("preparing sysbench tables on %s", col.label)
				_, err := benchutil.Sysbench(col.srv, "oltp_write_only", "prepare", 4, 0,
					append(sbArgs, "--mysql-db="+col.sbdb)...)
				must(err)
			}
		}
		for i, n := range threads {
			table := fmt.Sprintf("kv_t%d", n)
			for _, c := range order {
				col, ok := cols[c]
				if !ok {
					continue
				}
				must(benchutil.Exec(col.srv, col.db, fmt.Sprintf("CREATE TABLE %s (id BIGINT PRIMARY KEY, v VARCHAR(100))", table)))
				log.Printf("inserts, %d threads, on %s", n, col.label)
				res, err := benchutil.InsertLoad(col.srv, col.db, table, n, *warmup, d)
				must(err)
				got, err := benchutil.QueryInt(col.srv, col.db, "SELECT COUNT(*) FROM "+table)
				must(err)
				if got != res.Total {
					cleanup.Fatal(fmt.Sprintf("%s: %d rows in %s.%s, %d inserts acknowledged", col.label, got, col.db, table, res.Total))
				}
				inserts[i].res[c] = res
			}
			if !*sysbench {
				continue
			}
			for _, c := range order {
				col, ok := cols[c]
				if !ok {
					continue
				}
				log.Printf("oltp_write_only, %d threads, on %s", n, col.label)
				res, err := benchutil.Sysbench(col.srv, "oltp_write_only", "run", n, *seconds,
					append(sbArgs, "--mysql-db="+col.sbdb, "--mysql-ignore-errors=all")...)
				must(err)
				sbs[i].res[c] = res
			}
		}
	}

	// MariaDB
	var maria *benchutil.Server
	var stopMaria func()
	cleanup.Starting(func() {
		if maria, err = benchutil.StartMariaDB(dir, *cacheMB); err == nil {
			stopMaria = once(maria.Stop)
			cleanup.Add(stopMaria)
		}
	})
	must(err)
	must(benchutil.Exec(maria, "", "CREATE DATABASE bench", "CREATE DATABASE sbtest"))
	run(map[int]column{colMaria: {"MariaDB", maria, "bench", "sbtest"}})
	stopMaria()

	// cluster A: redundancy 1
	ma, stopA := startCluster(bin, filepath.Join(dir, "r1"), *leaves, *cacheMB, 1)
	must(benchutil.Exec(ma, "",
		fmt.Sprintf("CREATE DATABASE r1 PARTITIONS %d", *partitions),
		fmt.Sprintf("CREATE DATABASE sbr1 PARTITIONS %d", *partitions)))
	run(map[int]column{colR1: {"redundancy 1", ma, "r1", "sbr1"}})
	stopA()
	os.RemoveAll(filepath.Join(dir, "r1"))

	// cluster B: redundancy 2, one async and one sync database of each kind
	ma, stopB := startCluster(bin, filepath.Join(dir, "r2"), *leaves, *cacheMB, 2)
	for _, db := range []string{"a", "sba"} {
		must(benchutil.Exec(ma, "", fmt.Sprintf("CREATE DATABASE %s WITH ASYNC REPLICATION PARTITIONS %d", db, *partitions)))
	}
	for _, db := range []string{"s", "sbs"} {
		must(benchutil.Exec(ma, "", fmt.Sprintf("CREATE DATABASE %s WITH SYNC REPLICATION PARTITIONS %d", db, *partitions)))
	}
	for _, db := range []string{"a", "sba", "s", "sbs"} {
		checkReplicas(ma, db, *partitions)
	}
	run(map[int]column{colAsync: {"redundancy 2 async", ma, "a", "sba"}, colSync: {"redundancy 2 sync", ma, "s", "sbs"}})
	stopB()

	// the table
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores (`%s`): each cluster is a master aggregator and %d leaves on this machine, "+
		"databases of %d partitions; redundancy 2 pairs the leaves (%d pairs) and holds every partition twice, "+
		"redundancy 1 once. The clusters and MariaDB run one after another, never at the same time. "+
		"Block cache %d MiB per canopy node, MariaDB buffer pool %d MiB; canopy fsyncs every commit (and a sync replica "+
		"every record before acknowledging it); MariaDB with its default `innodb_flush_log_at_trx_commit = 1` "+
		"(fsync of the redo log at every commit), binary log off. Server CPU counts every process of a cluster; \"other processes' CPU\" is what the rest of the machine "+
		"(other work sharing the cores) used during the run, in cores.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), command, *leaves, *partitions, *leaves/2, *cacheMB, *cacheMB)
	fmt.Fprintf(&b, "Inserts: `INSERT INTO kv_tN (id, v) VALUES (?, ?)` into `(id BIGINT PRIMARY KEY, v VARCHAR(100))`, "+
		"autocommit, ids unique and increasing, a 100-byte value, one Go connection per thread (text protocol), "+
		"%d s measured after a %s warm-up; every acknowledged row counted afterwards. ", *seconds, *warmup)
	if *sysbench {
		fmt.Fprintf(&b, "sysbench `oltp_write_only` (%d s, %d tables × %d rows; a transaction is an index update, a non-index "+
			"update, a delete and an insert on random rows, so through a cluster it mostly spans several partitions and "+
			"commits in two phases; errors such as deadlocks are retried by sysbench).", *seconds, *sbTables, *sbTableSize)
	}
	b.WriteString("\n\n")
	b.WriteString("| workload | unit | redundancy 1 | r2 async | r2 sync | MariaDB | r1 / MariaDB | async / MariaDB | sync / MariaDB | notes (r1 / async / sync / MariaDB) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	cores := func(x benchutil.LoadResult) float64 { return x.OtherCPU.Seconds() / d.Seconds() }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }
	for _, row := range inserts {
		r := row.res
		m := r[colMaria].Rate
		fmt.Fprintf(&b, "| single-row INSERT, %d threads | inserts/s | %.0f | %.0f | %.0f | %.0f | **%.2f×** | **%.2f×** | **%.2f×** | "+
			"avg latency %s / %s / %s / %s ms; p99 %s / %s / %s / %s ms; server CPU per insert %d / %d / %d / %d µs; other processes' CPU %.2f / %.2f / %.2f / %.2f cores; sync / r1 %.2f×, sync / async %.2f× |\n",
			row.threads, r[colR1].Rate, r[colAsync].Rate, r[colSync].Rate, m,
			r[colR1].Rate/m, r[colAsync].Rate/m, r[colSync].Rate/m,
			ms(r[colR1].Avg), ms(r[colAsync].Avg), ms(r[colSync].Avg), ms(r[colMaria].Avg),
			ms(r[colR1].P99), ms(r[colAsync].P99), ms(r[colSync].P99), ms(r[colMaria].P99),
			r[colR1].CPUPerOp().Microseconds(), r[colAsync].CPUPerOp().Microseconds(),
			r[colSync].CPUPerOp().Microseconds(), r[colMaria].CPUPerOp().Microseconds(),
			cores(r[colR1]), cores(r[colAsync]), cores(r[colSync]), cores(r[colMaria]),
			r[colSync].Rate/r[colR1].Rate, r[colSync].Rate/r[colAsync].Rate)
	}
	if *sysbench {
		for _, row := range sbs {
			r := row.res
			m := r[colMaria].TPS
			cpu := func(x benchutil.SysbenchResult) float64 {
				return float64(x.ServerCPU.Microseconds()) / max(x.Queries, 1)
			}
			fmt.Fprintf(&b, "| sysbench oltp_write_only, %d threads | transactions/s | %.0f | %.0f | %.0f | %.0f | **%.2f×** | **%.2f×** | **%.2f×** | "+
				"avg latency %.2f / %.2f / %.2f / %.2f ms; p95 %.2f / %.2f / %.2f / %.2f ms; server CPU per query %.0f / %.0f / %.0f / %.0f µs; "+
				"errors/s %.1f / %.1f / %.1f / %.1f |\n",
				row.threads, r[colR1].TPS, r[colAsync].TPS, r[colSync].TPS, m,
				r[colR1].TPS/m, r[colAsync].TPS/m, r[colSync].TPS/m,
				r[colR1].AvgLatencyMs, r[colAsync].AvgLatencyMs, r[colSync].AvgLatencyMs, r[colMaria].AvgLatencyMs,
				r[colR1].P95LatencyMs, r[colAsync].P95LatencyMs, r[colSync].P95LatencyMs, r[colMaria].P95LatencyMs,
				cpu(r[colR1]), cpu(r[colAsync]), cpu(r[colSync]), cpu(r[colMaria]),
				r[colR1].Errors, r[colAsync].Errors, r[colSync].Errors, r[colMaria].Errors)
		}
	}

	fmt.Print(b.String())
	if *write {
		must(writeSection("BENCHMARKS.md", b.String()))
		log.Print("wrote BENCHMARKS.md")
	}
}

// startCluster starts a master aggregator and leaves under dir; with
// redundancy 2 the master aggregator pairs them as ADD LEAF adds them
// (each into the smaller group). It returns the master aggregator, whose
// CPU counts the leaves, and a function that stops them all (also run by
// the cleanup).
func startCluster(bin, dir string, leaves, cacheMB, redundancy int) (*benchutil.Server, func()) {
	var nodes []*benchutil.Server
	var mu sync.Mutex
	stop := once(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nodes { // the master aggregator first: no failover as leaves stop
			n.Stop()
		}
	})
	cleanup.Add(stop)
	must(os.MkdirAll(dir, 0o755))
	// start runs a node and adds it to those stop stops
	start := func(name string, extra ...string) *benchutil.Server {
		var s *benchutil.Server
		var err error
		cleanup.Starting(func() {
			if s, err = benchutil.StartCanopy(bin, dir, name, cacheMB, extra...); err == nil {
				mu.Lock()
				nodes = append(nodes, s)
				mu.Unlock()
			}
		})
		must(err)
		return s
	}
	ma := start("master", "--master-aggregator")
	ma.Name = fmt.Sprintf("cluster (redundancy %d)", redundancy)
	log.Printf("%s: master aggregator on port %d (http %d)", ma.Name, ma.Port, ma.HTTPPort)
	if redundancy == 2 {
		must(benchutil.Exec(ma, "", "SET GLOBAL redundancy_level = 2"))
	}
	for i := 0; i < leaves; i++ {
		l := start(fmt.Sprintf("leaf%d", i))
		ma.Peers = append(ma.Peers, l)
		must(benchutil.Exec(ma, "", fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.Port)))
		log.Printf("%s: leaf%d on port %d (http %d)", ma.Name, i, l.Port, l.HTTPPort)
	}
	if redundancy == 2 {
		rows, err := benchutil.QueryRows(ma, "", "SHOW LEAVES")
		must(err)
		for _, r := range rows {
			if f := strings.Split(r, ","); len(f) < 5 || f[4] == "NULL" {
				cleanup.Fatal("a leaf without a pair in redundancy 2: ", r)
			}
		}
	}
	return ma, stop
}

// checkReplicas fails unless every partition of db has a replica.
func checkReplicas(ma *benchutil.Server, db string, partitions int) {
	rows, err := benchutil.QueryRows(ma, "", "SHOW PARTITIONS ON "+db)
	must(err)
	replicas := 0
	for _, r := range rows {
		if f := strings.Split(r, ","); len(f) > 3 && (strings.EqualFold(f[3], "slave") || strings.EqualFold(f[3], "replica")) {
			replicas++
		}
	}
	if replicas != partitions {
		cleanup.Fatal(fmt.Sprintf("%s has %d replica partitions, want %d:\n%s", db, replicas, partitions, strings.Join(rows, "\n")))
	}
}

// writeSection puts body between the section's markers in path; the first
// time, it puts the markers in place of oldLine.
func writeSection(path, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "<!-- "+sectionName+":begin -->") {
		if !strings.Contains(string(b), oldLine) {
			return errors.New(path + " has neither the " + sectionName + " markers nor the line they replace")
		}
		markers := "<!-- " + sectionName + ":begin -->\n<!-- " + sectionName + ":end -->\n\n" + newLine
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), oldLine, markers, 1)), 0o644); err != nil {
			return err
		}
	}
	return benchutil.ReplaceSection(path, sectionName, body)
}

func once(f func()) func() {
	var o sync.Once
	return func() { o.Do(f) }
}
