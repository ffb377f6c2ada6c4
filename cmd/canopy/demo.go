package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/canopydb/canopy/node"
)

// demoNode is one process of the demo cluster.
type demoNode struct {
	name string // "master", "leaf1", …, "child"
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (d *demoNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", d.port) }

// runDemo starts a local cluster: a master aggregator, four leaves and a
// child aggregator, each a canopy process, loads a sample database, and
// stops everything on Ctrl-C.
func runDemo(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	port := fs.Int("port", 3306, "MySQL port of the master aggregator; the other nodes take the next five")
	dataDir := fs.String("data-dir", "", "keep the cluster here (default: a temporary directory, removed on exit)")
	leaves := fs.Int("leaves", 4, "number of leaves")
	fs.Parse(args)

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: find the canopy binary: %w", err)
	}
	dir, temporary := *dataDir, *dataDir == ""
	if temporary {
		if dir, err = os.MkdirTemp("", "canopy-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var nodes []*demoNode
	nodes = append(nodes, &demoNode{name: "master", port: *port})
	for i := 1; i <= *leaves; i++ {
		nodes = append(nodes, &demoNode{name: fmt.Sprintf("leaf%d", i), port: *port + i})
	}
	nodes = append(nodes, &demoNode{name: "child", port: *port + *leaves + 1})
	for _, n := range nodes {
		n.dir = filepath.Join(dir, n.name)
		for _, p := range []int{n.port, n.port + node.InternalPortOffset, n.port + node.HTTPPortOffset} {
			if err := portFree(p); err != nil {
				if temporary {
					os.RemoveAll(dir)
				}
				return fmt.Errorf("demo: port %d (for %s) is taken; pick other ports with --port: %w", p, n.name, err)
			}
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	stop := func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			nodes[i].stop()
		}
		fmt.Fprintf(stdout, "\nStopped %d canopy processes.\n", len(nodes))
		if temporary {
			os.RemoveAll(dir)
			fmt.Fprintf(stdout, "Removed %s (the cluster's data and logs).\n", dir)
		} else {
			fmt.Fprintf(stdout, "The cluster's data stays in %s: run the same command to start it again.\n", dir)
		}
	}

	fmt.Fprintf(stdout, "Starting a Canopy cluster in %s …\n", dir)
	for _, n := range nodes {
		extra := []string{}
		if n.name == "master" {
			extra = append(extra, "--master-aggregator")
		}
		if err := n.start(exe, extra); err != nil {
			stop()
			return err
		}
	}
	ma, err := sql.Open("mysql", demoDSN(nodes[0].addr(), ""))
	if err != nil {
		stop()
		return err
	}
	defer ma.Close()
	var leafCount int
	if err := ma.QueryRow("SELECT COUNT(*) FROM information_schema.LEAVES").Scan(&leafCount); err != nil {
		stop()
		return fmt.Errorf("demo: ask the master aggregator: %w", err)
	}
	if leafCount == 0 { // a new cluster (a kept one restarts as it was)
		fmt.Fprintln(stdout, "Adding the leaves and the child aggregator, loading the sample database …")
		if err := formCluster(ma, nodes); err != nil {
			stop()
			return fmt.Errorf("demo: form the cluster: %w (logs in %s)", err, dir)
		}
	}

	child := nodes[len(nodes)-1]
	fmt.Fprintf(stdout, `
Canopy demo cluster is up:
  master aggregator  %s
  leaves             %s
  child aggregator   %s

Connect:  mariadb -h127.0.0.1 -P%d -uroot demo
Try:      SHOW LEAVES; SHOW PARTITIONS ON demo;
          SELECT c.region, COUNT(*), SUM(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region;
          EXPLAIN SELECT * FROM orders WHERE customer_id = 42;
Logs:     %s/<node>.log
Press Ctrl-C to stop the cluster.
`, nodes[0].addr(), leafAddrs(nodes[1:len(nodes)-1]), child.addr(), *port, dir)

	select {
	case <-sig:
	case n := <-exited(nodes):
		fmt.Fprintf(stdout, "\n%s exited unexpectedly; see %s.log\n", n.name, n.dir)
	}
	stop()
	return nil
}

func leafAddrs(ns []*demoNode) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.addr())
	}
	return strings.Join(s, ", ")
}

// exited reports the first node process that ends.
func exited(nodes []*demoNode) <-chan *demoNode {
	ch := make(chan *demoNode, len(nodes))
	for _, n := range nodes {
		go func(n *demoNode) {
			<-n.done
			ch <- n
		}(n)
	}
	return ch
}

func portFree(p int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return err
	}
	return l.Close()
}

func demoDSN(addr, db string) string {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", addr, db
	c.Timeout = 5 * time.Second
	return c.FormatDSN()
}

// start runs the node as a child process in its own process group (so a
// terminal's Ctrl-C reaches only the demo, which stops the nodes in order)
// and waits until it answers.
func (d *demoNode) start(exe string, extra []string) error {
	logf, err := os.OpenFile(d.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"node", "--port", strconv.Itoa(d.port), "--data-dir", d.dir, "--cache-mb", "32"}, extra...)
	d.cmd = exec.Command(exe, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	d.done = make(chan struct{})
	go func() {
		d.cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	db, err := sql.Open("mysql", demoDSN(d.addr(), ""))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("%s exited during start; see %s.log", d.name, d.dir)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start in 30s: %v; see %s.log", d.name, err, d.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM (SIGKILL after 10 s).
func (d *demoNode) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// formCluster adds the nodes to the master aggregator and loads the
// sample database.
func formCluster(ma *sql.DB, nodes []*demoNode) error {
	for _, n := range nodes[1 : len(nodes)-1] {
		if _, err := ma.Exec(fmt.Sprintf("ADD LEAF root@'127.0.0.1':%d", n.port)); err != nil {
			return err
		}
	}
	if _, err := ma.Exec(fmt.Sprintf("ADD AGGREGATOR root@'127.0.0.1':%d", nodes[len(nodes)-1].port)); err != nil {
		return err
	}
	return loadSample(ma)
}

// loadSample creates the demo database: customers and orders sharded by
// customer, products as a reference table.
func loadSample(ma *sql.DB) error {
	stmts := []string{
		"CREATE DATABASE demo",
		`CREATE TABLE demo.customers (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, region VARCHAR(10) NOT NULL, since DATE)`,
		`CREATE TABLE demo.orders (id BIGINT AUTO_INCREMENT, customer_id BIGINT NOT NULL, product_id INT NOT NULL,
			amount DECIMAL(10,2) NOT NULL, placed DATETIME NOT NULL, PRIMARY KEY (id, customer_id), SHARD KEY (customer_id), KEY (customer_id), KEY (placed))`,
		`CREATE REFERENCE TABLE demo.products (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(10,2) NOT NULL)`,
	}
	for _, s := range stmts {
		if _, err := ma.Exec(s); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(s)[0]+" "+strings.Fields(s)[1], err)
		}
	}
	rng := rand.New(rand.NewSource(1))
	products := []string{"tea", "coffee", "cocoa", "mate", "chai", "matcha", "rooibos", "oolong"}
	var vals []string
	for i, p := range products {
		vals = append(vals, fmt.Sprintf("(%d, '%s', %d.%02d)", i+1, p, 3+rng.Intn(20), rng.Intn(100)))
	}
	if _, err := ma.Exec("INSERT INTO demo.products VALUES " + strings.Join(vals, ",")); err != nil {
		return err
	}
	regions := []string{"north", "south", "east", "west"}
	first := []string{"Ada", "Brook", "Cyd", "Dale", "Eli", "Fern", "Gus", "Hale", "Ivy", "Jo"}
	vals = vals[:0]
	for i := 1; i <= 1000; i++ {
		vals = append(vals, fmt.Sprintf("(%d, '%s %d', '%s', '2024-%02d-%02d')", i, first[rng.Intn(len(first))], i,
			regions[rng.Intn(len(regions))], 1+rng.Intn(12), 1+rng.Intn(28)))
	}
	if _, err := ma.Exec("INSERT INTO demo.customers VALUES " + strings.Join(vals, ",")); err != nil {
		return err
	}
	for batch := 0; batch < 5; batch++ {
		vals = vals[:0]
		for i := 0; i < 1000; i++ {
			vals = append(vals, fmt.Sprintf("(%d, %d, %d.%02d, '2025-%02d-%02d %02d:%02d:00')", 1+rng.Intn(1000), 1+rng.Intn(len(products)),
				1+rng.Intn(200), rng.Intn(100), 1+rng.Intn(12), 1+rng.Intn(28), rng.Intn(24), rng.Intn(60)))
		}
		if _, err := ma.Exec("INSERT INTO demo.orders (customer_id, product_id, amount, placed) VALUES " + strings.Join(vals, ",")); err != nil {
			return err
		}
	}
	return nil
}
