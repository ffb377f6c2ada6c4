// Command reprovision measures how long a cluster takes to provision a
// new copy of a large partition (COPY PARTITION: a snapshot of the
// partition, then its log), next to MariaDB copying the same table on the
// same machine with mariadb-dump | mariadb. It prints a markdown table
// and, with -write, puts it in BENCHMARKS.md.
//
//	go run ./bench/reprovision -mb 1024 -write
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/canopydb/canopy/bench/internal/benchutil"
)

const rowBytes = 4000

func main() {
	mb := flag.Int("mb", 1024, "MiB of rows in the partition")
	cacheMB := flag.Int("cache-mb", 128, "block cache of each canopy node and MariaDB's buffer pool, MiB")
	write := flag.Bool("write", false, "write the results into BENCHMARKS.md")
	flag.Parse()
	rows := *mb << 20 / rowBytes

	dir, err := os.MkdirTemp("", "canopy-reprovision-")
	must(err)
	defer os.RemoveAll(dir)
	bin, err := benchutil.BuildCanopy(dir)
	must(err)

	// canopy: a master aggregator and two leaves; the partition is filled
	// on its leaf directly (loading through the aggregator is not what is
	// measured), then copied to the other leaf
	ma, err := benchutil.StartCanopy(bin, dir, "master", *cacheMB, "--master-aggregator")
	must(err)
	defer ma.Stop()
	var leaves []*benchutil.Server
	for i := 0; i < 2; i++ {
		l, err := benchutil.StartCanopy(bin, dir, fmt.Sprintf("leaf%d", i), *cacheMB)
		must(err)
		defer l.Stop()
		leaves = append(leaves, l)
		must(benchutil.Exec(ma, "", fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", l.Port)))
	}
	must(benchutil.Exec(ma, "", "CREATE DATABASE big PARTITIONS 1",
		"CREATE TABLE big.t (id BIGINT PRIMARY KEY, pad LONGTEXT NOT NULL)"))
	parts, err := benchutil.QueryRows(ma, "", "SHOW PARTITIONS ON big")
	must(err)
	src, dst := leaves[0], leaves[1]
	if !strings.Contains(parts[0], fmt.Sprint(src.Port)) {
		src, dst = dst, src
	}
	log.Printf("loading %d MiB into big_0 on leaf %d", *mb, src.Port)
	canopyLoad := load(src, "big_0", rows)
	log.Printf("loaded in %s", canopyLoad.Round(time.Millisecond))
	start := time.Now()
	must(benchutil.Exec(ma, "big", fmt.Sprintf("COPY PARTITION big:0 TO '127.0.0.1':%d", dst.Port)))
	canopyCopy := time.Since(start)
	snapBytes := dst.Metric("canopy_snapshot_bytes_received_total")
	n, err := benchutil.QueryInt(dst, "big_0", "SELECT COUNT(*) FROM t")
	must(err)
	if int(n) != rows {
		fail("the copy holds %d rows, want %d", n, rows)
	}
	log.Printf("COPY PARTITION: %s, %.0f snapshot bytes", canopyCopy.Round(time.Millisecond), snapBytes)
	ma.Stop()
	for _, l := range leaves {
		l.Stop()
	}

	maria, err := benchutil.StartMariaDB(dir, *cacheMB)
	must(err)
	defer maria.Stop()
	must(benchutil.Exec(maria, "", "CREATE DATABASE big", "CREATE DATABASE big2",
		"CREATE TABLE big.t (id BIGINT PRIMARY KEY, pad LONGTEXT NOT NULL)",
		"SET GLOBAL max_recursive_iterations = 1000000"))
	mariaLoad := load(maria, "big", rows)
	start = time.Now()
	dump := fmt.Sprintf("mariadb-dump -h127.0.0.1 -P%d -uroot --single-transaction big t | mariadb -h127.0.0.1 -P%d -uroot big2", maria.Port, maria.Port)
	if out, err := exec.Command("bash", "-c", "set -o pipefail; "+dump).CombinedOutput(); err != nil {
		fail("%s: %v\n%s", dump, err, out)
	}
	mariaCopy := time.Since(start)
	n, err = benchutil.QueryInt(maria, "big2", "SELECT COUNT(*) FROM t")
	must(err)
	if int(n) != rows {
		fail("MariaDB's copy holds %d rows, want %d", n, rows)
	}

	mib := float64(rows*rowBytes) / (1 << 20)
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores (`go run ./bench/reprovision -mb %d -write`): one partition of %d rows of %d bytes (%.0f MiB of row data), filled on its leaf, then `COPY PARTITION` to a second leaf (a snapshot, then the log); MariaDB copies the same table with `mariadb-dump --single-transaction | mariadb` on the same server. Block cache / buffer pool %d MiB.\n\n",
		time.Now().Format("2006-01-02"), nproc(), *mb, rows, rowBytes, mib, *cacheMB)
	b.WriteString("| what | canopy | MariaDB | canopy / MariaDB |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| copy a %.0f MiB table to a new place (canopy: COPY PARTITION; MariaDB: dump and load) | %s (%.0f MiB/s) | %s (%.0f MiB/s) | **%.2f×** the time |\n",
		mib, canopyCopy.Round(100*time.Millisecond), mib/canopyCopy.Seconds(), mariaCopy.Round(100*time.Millisecond), mib/mariaCopy.Seconds(), canopyCopy.Seconds()/mariaCopy.Seconds())
	fmt.Fprintf(&b, "| load the table (INSERT … SELECT of 5 000 generated rows per statement) | %s | %s | %.2f× the time |\n",
		canopyLoad.Round(100*time.Millisecond), mariaLoad.Round(100*time.Millisecond), canopyLoad.Seconds()/mariaLoad.Seconds())
	fmt.Fprintf(&b, "\nSnapshot bytes shipped: %.0f MiB (keys and values of the partition, index entries included).\n", snapBytes/(1<<20))
	fmt.Print(b.String())
	if *write {
		must(benchutil.ReplaceSection("BENCHMARKS.md", "reprovision", b.String()))
	}
}

// load fills db.t with rows rows of rowBytes bytes, 5 000 per statement.
func load(s *benchutil.Server, db string, rows int) time.Duration {
	conn, err := sql.Open("mysql", s.DSN(db))
	must(err)
	defer conn.Close()
	start := time.Now()
	const chunk = 5000
	for off := 0; off < rows; off += chunk {
		n := min(chunk, rows-off)
		q := fmt.Sprintf("INSERT INTO t WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %d) SELECT n + %d, REPEAT('x', %d) FROM s", n, off, rowBytes)
		if _, err := conn.Exec(q); err != nil {
			fail("load %s on %s: %v", db, s.Name, err)
		}
	}
	return time.Since(start)
}

func nproc() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(string(out), &n)
	return n
}

// must and fail panic rather than exit, so that the deferred Stops end
// every process this program started.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

func fail(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
