// Command seed measures snapshots and seeding through the Ops agents: the
// time a snapshot takes as the data grows (it must stay flat), and a seed
// of a leaf's data from one host to another (checks, snapshot, transfer,
// verify, install, start) in MiB/s, next to `cp -a` of the same data
// directory on this disk (the physical limit here), a logical copy of
// the same partition (COPY PARTITION) and MariaDB's mariadb-dump |
// mariadb of the same rows. It prints a markdown table and, with -write,
// puts it in BENCHMARKS.md.
//
//	go run ./bench/seed -mb 1024 -write
package main

import (
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/canopydb/canopy/bench/internal/benchutil"
	"github.com/canopydb/canopy/ops/agent"
	"github.com/canopydb/canopy/ops/jobs"
)

const rowBytes = 31 * 128 // 31 SHA-512 digests in hex: rows that do not compress

var (
	bin, dir string
	homes    = map[string]string{}
)

func main() {
	mb := flag.Int("mb", 1024, "MiB of row data in the leaf")
	maria := flag.Bool("mariadb", true, "also time MariaDB's mariadb-dump | mariadb of the same rows")
	write := flag.Bool("write", false, "write the results into BENCHMARKS.md")
	flag.Parse()
	var err error
	dir, err = os.MkdirTemp("", "canopy-seed-bench-")
	must(err)
	defer os.RemoveAll(dir)
	bin, err = benchutil.BuildCanopy(dir)
	must(err)

	h1, h2 := "127.0.0.1", "127.0.0.2"
	stop1 := startAgent(h1)
	defer stop1()
	stop2 := startAgent(h2)
	defer stop2()
	secret := strings.TrimSpace(ops(h1, "agent-secret"))
	ops(h2, "agent-follow", "--host", h1, "--port", strconv.Itoa(agentPort[h1]), "--secret", secret)
	ops(h1, "node-deploy", "--role", "master", "--port", strconv.Itoa(nodePort(h1)))
	ops(h1, "node-deploy", "--role", "leaf", "--port", strconv.Itoa(nodePort(h1)))
	var nodes []agent.NodeStatus
	must(json.Unmarshal([]byte(ops(h1, "node-list", "--json")), &nodes))
	var master, leaf agent.NodeStatus
	for _, n := range nodes {
		switch n.Role {
		case "master":
			master = n
		case "leaf":
			leaf = n
		}
	}
	pw := strings.TrimSpace(ops(h1, "root-password"))
	ma := open(master.Addr(), pw, "")
	defer ma.Close()
	exec1(ma, "CREATE DATABASE big PARTITIONS 1", "CREATE TABLE big.t (id BIGINT PRIMARY KEY, pad LONGTEXT NOT NULL)")
	bigDB := open(master.Addr(), pw, "big") // a leaf takes writes only through an aggregator
	defer bigDB.Close()

	// snapshots as the data grows: 1/8 of it, then all of it
	rows := *mb << 20 / rowBytes
	type snapRow struct {
		dataMiB      float64
		took, paused time.Duration
	}
	var snaps []snapRow
	loaded := 0
	var loadTime time.Duration
	var snap agent.Snapshot
	for _, upTo := range []int{rows / 8, rows} {
		start := time.Now()
		load(bigDB, loaded, upTo)
		loadTime += time.Since(start)
		loaded = upTo
		start = time.Now()
		must(json.Unmarshal([]byte(ops(h1, "snapshot-create", leaf.ID, "--json")), &snap))
		took := time.Since(start)
		data := duMiB(filepath.Join(homes[h1], "nodes", leaf.ID, "data"))
		snaps = append(snaps, snapRow{data, took, time.Duration(snap.TookMs * float64(time.Millisecond))})
		log.Printf("snapshot of %.0f MiB on disk: %s (commits paused %.1f ms)", data, took, snap.TookMs)
	}
	dataMiB := duMiB(filepath.Join(homes[h1], "nodes", leaf.ID, "data"))
	snapMiB := float64(snap.Bytes) / (1 << 20)

	// the seed, host 1 to host 2
	seedPort := nodePort(h2)
	start := time.Now()
	var j jobs.Job
	must(json.Unmarshal([]byte(ops(h1, "seed", "--source", leaf.ID, "--snapshot", snap.ID, "--target", h2, "--port", strconv.Itoa(seedPort), "--detach", "--json")), &j))
	for !j.State.Done() {
		time.Sleep(200 * time.Millisecond)
		must(json.Unmarshal([]byte(ops(h1, "job-logs", strconv.Itoa(j.ID), "--json")), &j))
	}
	seedTotal := time.Since(start)
	if j.State != jobs.Finished {
		fail("seed: %s: %s", j.State, j.Error)
	}
	stage := stageTimes(j)
	log.Printf("seed: %s in all; stages %v", seedTotal, stage)
	seeded := open(fmt.Sprintf("%s:%d", h2, seedPort), pw, "big_0")
	n := queryInt(seeded, "SELECT COUNT(*) FROM t")
	seeded.Close()
	if n != int64(rows) {
		fail("the seeded node has %d rows, want %d", n, rows)
	}

	// cp -a of the same data directory on this disk
	cpDst := filepath.Join(dir, "cp-copy")
	start = time.Now()
	if out, err := exec.Command("cp", "-a", filepath.Join(homes[h1], "nodes", leaf.ID, "snapshots", snap.ID, "data"), cpDst).CombinedOutput(); err != nil {
		fail("cp -a: %v\n%s", err, out)
	}
	exec.Command("sync").Run()
	cpTime := time.Since(start)

	// the logical copy: COPY PARTITION to a leaf on host 2
	ops(h1, "node-deploy", "--role", "leaf", "--host", h2, "--port", strconv.Itoa(nodePort(h2)))
	must(json.Unmarshal([]byte(ops(h1, "node-list", "--json")), &nodes))
	var leaf2 agent.NodeStatus
	for _, nd := range nodes {
		if nd.Role == "leaf" && nd.Host == h2 {
			leaf2 = nd
		}
	}
	start = time.Now()
	exec1(ma, fmt.Sprintf("COPY PARTITION big:0 TO '%s':%d", leaf2.Host, leaf2.Port))
	copyTime := time.Since(start)

	var mariaLoad, mariaCopy time.Duration
	if *maria {
		m, err := benchutil.StartMariaDB(dir, 128)
		must(err)
		defer m.Stop()
		must(benchutil.Exec(m, "", "CREATE DATABASE big", "CREATE DATABASE big2", "CREATE TABLE big.t (id BIGINT PRIMARY KEY, pad LONGTEXT NOT NULL)",
			"SET GLOBAL max_recursive_iterations = 1000000"))
		mdb := open(fmt.Sprintf("127.0.0.1:%d", m.Port), "", "big")
		start = time.Now()
		load(mdb, 0, rows)
		mariaLoad = time.Since(start)
		mdb.Close()
		start = time.Now()
		dump := fmt.Sprintf("mariadb-dump -h127.0.0.1 -P%d -uroot --single-transaction big t | mariadb -h127.0.0.1 -P%d -uroot big2", m.Port, m.Port)
		if out, err := exec.Command("bash", "-c", "set -o pipefail; "+dump).CombinedOutput(); err != nil {
			fail("%s: %v\n%s", dump, err, out)
		}
		mariaCopy = time.Since(start)
	}

	rowMiB := float64(rows*rowBytes) / (1 << 20)
	rate := func(mib float64, d time.Duration) string {
		return fmt.Sprintf("%s (%.0f MiB/s)", d.Round(100*time.Millisecond), mib/d.Seconds())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores (`go run ./bench/seed -mb %d -write`): a leaf holding one partition of %d rows of %d bytes of hex digests (%.0f MiB of row data, which does not compress; %.0f MiB on disk), loaded through the master aggregator. Two agents on 127.0.0.1 and 127.0.0.2 (one disk, loopback); the seed pulls the snapshot's files (%d of them, %.0f MiB) from host 1 to host 2 with no bandwidth cap.\n\n",
		time.Now().Format("2006-01-02"), nproc(), *mb, rows, rowBytes, rowMiB, dataMiB, snap.Files, snapMiB)
	b.WriteString("| what | time | rate |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| `canopy ops seed`, all stages (checks, grant, transfer, verify, install, start, catch up) | %s | %.0f MiB/s of snapshot |\n", seedTotal.Round(100*time.Millisecond), snapMiB/seedTotal.Seconds())
	fmt.Fprintf(&b, "| … receiving the files (HTTP from agent to agent, fsync per file) | %s | %.0f MiB/s |\n", stage["receive"].Round(10*time.Millisecond), snapMiB/stage["receive"].Seconds())
	fmt.Fprintf(&b, "| … checking them (SHA-256 of every file on the target) | %s | %.0f MiB/s |\n", stage["check"].Round(10*time.Millisecond), snapMiB/stage["check"].Seconds())
	fmt.Fprintf(&b, "| … starting the node on the seeded data | %s | |\n", stage["start"].Round(10*time.Millisecond))
	fmt.Fprintf(&b, "| `cp -a` of the snapshot's data directory on this disk, then `sync` | %s | %.0f MiB/s |\n", cpTime.Round(10*time.Millisecond), snapMiB/cpTime.Seconds())
	fmt.Fprintf(&b, "| `COPY PARTITION` of the same partition to a leaf on host 2 (logical: rows and log) | %s | |\n", rate(rowMiB, copyTime))
	if *maria {
		fmt.Fprintf(&b, "| MariaDB `mariadb-dump --single-transaction \\| mariadb` of the same rows | %s | |\n", rate(rowMiB, mariaCopy))
		fmt.Fprintf(&b, "| (loading the rows: canopy through its aggregator %s, MariaDB %s) | | |\n", loadTime.Round(time.Second), mariaLoad.Round(time.Second))
	}
	b.WriteString("\nSnapshot creation against data size (`snapshot-create`, wall time through the CLI and the agents; commits on the node wait only for the checkpoint itself):\n\n| data on disk | snapshot-create | commits paused |\n|---:|---:|---:|\n")
	for _, s := range snaps {
		fmt.Fprintf(&b, "| %.0f MiB | %s | %s |\n", s.dataMiB, s.took.Round(time.Millisecond), s.paused.Round(100*time.Microsecond))
	}
	fmt.Print(b.String())
	if *write {
		must(benchutil.ReplaceSection("BENCHMARKS.md", "seed", b.String()))
	}
}

// stageTimes reads each stage's duration from the job's log: the time
// between a step's "done" line and the one before it; the transfer's
// receiving and checking as the target measured them.
func stageTimes(j jobs.Job) map[string]time.Duration {
	out := map[string]time.Duration{}
	prev := j.Started
	for _, l := range j.Log {
		if i := strings.Index(l.Text, " done: "); i >= 0 && strings.HasPrefix(l.Text, "step ") {
			out[l.Text[i+len(" done: "):]] = l.At.Sub(prev)
			prev = l.At
		}
		if _, rest, ok := strings.Cut(l.Text, ") in "); ok && strings.HasPrefix(l.Text, "received ") {
			var sec float64
			fmt.Sscanf(rest, "%f s", &sec)
			out["receive"] = time.Duration(sec * float64(time.Second))
		}
		if _, rest, ok := strings.Cut(l.Text, "(checked in "); ok {
			var sec float64
			fmt.Sscanf(rest, "%f s", &sec)
			out["check"] = time.Duration(sec * float64(time.Second))
		}
	}
	return out
}

var agentPort = map[string]int{}

func startAgent(host string) func() {
	home := filepath.Join(dir, "agent-"+host)
	homes[host] = home
	port := nodePort(host)
	agentPort[host] = port
	logf, err := os.Create(home + ".log")
	must(err)
	cmd := exec.Command(bin, "ops", "start", "--bind", host, "--port", strconv.Itoa(port), "--home", home)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(cmd.Start())
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			fail("agent %s did not start", host)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return func() {
		exec.Command(bin, "ops", "agent-stop", "--stop-nodes", "--home", home).Run()
		cmd.Process.Kill()
		cmd.Wait()
		// whatever still runs from this home (the nodes run in sessions
		// of their own): no process outlives the benchmark
		exec.Command("pkill", "-9", "-f", home).Run()
	}
}

func ops(host string, args ...string) string {
	out, err := exec.Command(bin, append([]string{"ops"}, append(args, "--home", homes[host])...)...).CombinedOutput()
	if err != nil {
		fail("canopy ops %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nodePort is a port free on host with its +10000 and +20000, below the
// ephemeral range.
func nodePort(host string) int {
	for {
		p := 7000 + rand.Intn(2800)
		ok := true
		for _, q := range []int{p, p + 10000, p + 20000} {
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(q)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
}

func open(addr, pw, db string) *sql.DB {
	c, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/%s", pw, addr, db))
	must(err)
	return c
}

func exec1(db *sql.DB, stmts ...string) {
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			fail("%s: %v", q, err)
		}
	}
}

func queryInt(db *sql.DB, q string) int64 {
	var n int64
	must(db.QueryRow(q).Scan(&n))
	return n
}

// load inserts rows [from, to) into t, 1 000 per statement.
func load(db *sql.DB, from, to int) {
	var digests []string
	for k := 0; k < rowBytes/128; k++ {
		digests = append(digests, fmt.Sprintf("SHA2(CONCAT(n, '-%d'), 512)", k))
	}
	pad := "CONCAT(" + strings.Join(digests, ", ") + ")"
	const chunk = 1000
	for off := from; off < to; off += chunk {
		n := min(chunk, to-off)
		q := fmt.Sprintf("INSERT INTO t WITH RECURSIVE s(n) AS (SELECT %d UNION ALL SELECT n + 1 FROM s WHERE n < %d) SELECT n, %s FROM s", off, off+n-1, pad)
		if _, err := db.Exec(q); err != nil {
			fail("load: %v", err)
		}
	}
}

func duMiB(path string) float64 {
	out, err := exec.Command("du", "-sb", path).Output()
	if err != nil {
		return 0
	}
	var n float64
	fmt.Sscan(string(out), &n)
	return n / (1 << 20)
}

func nproc() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// must and fail panic rather than exit, so that the deferred stops end
// every process this program started.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

func fail(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
