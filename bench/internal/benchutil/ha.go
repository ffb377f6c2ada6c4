package benchutil

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Cleanup is a stack of functions (stop a server, remove a directory) run
// once, in reverse order: at the end of main, on a fatal error, or on
// SIGINT/SIGTERM/SIGHUP. The servers run in their own process groups, so
// a Ctrl-C reaches only the benchmark, which must stop them itself.
type Cleanup struct {
	mu     sync.Mutex
	fns    []func()
	done   bool
	failed atomic.Bool
	// gate is read-locked while a server starts and its stop is
	// registered; a signal takes it to run the cleanup, so no server
	// starts unregistered after the cleanup has run.
	gate sync.RWMutex
}

// Starting runs fn, which starts a server and registers how to stop it,
// so that a signal's cleanup sees either none or both.
func (c *Cleanup) Starting(fn func()) {
	c.gate.RLock()
	defer c.gate.RUnlock()
	fn()
}

// Failed reports whether the cleanup runs because of Fatal or a signal.
func (c *Cleanup) Failed() bool { return c.failed.Load() }

// NewCleanup returns a Cleanup that also runs when the process gets
// SIGINT, SIGTERM or SIGHUP (and then exits with status 1).
func NewCleanup() *Cleanup {
	c := &Cleanup{}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		log.Printf("%v: stopping the servers", s)
		c.gate.Lock() // never released: no server starts after this
		c.failed.Store(true)
		c.Run()
		os.Exit(1)
	}()
	return c
}

// Add pushes fn; it runs before the functions added earlier.
func (c *Cleanup) Add(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

// Run runs every function not yet run, the last added first. Later calls
// (and Adds after the first Run) do nothing more.
func (c *Cleanup) Run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// Fatal runs the cleanup and exits like log.Fatal.
func (c *Cleanup) Fatal(v ...any) {
	log.Print(v...)
	c.failed.Store(true)
	c.Run()
	os.Exit(1)
}

// Must calls Fatal on a non-nil error.
func (c *Cleanup) Must(err error) {
	if err != nil {
		c.Fatal(err)
	}
}

// LoadResult is what one run of a Go load generator measured: the
// operations that started inside the measured window and completed.
type LoadResult struct {
	Ops       int64 // operations measured
	Errors    int64 // operations that failed in the measured window
	Total     int64 // successful operations of the whole run, warm-up included
	Rate      float64
	Avg       time.Duration
	P50       time.Duration
	P95       time.Duration
	P99       time.Duration
	ServerCPU time.Duration // CPU of the server and its peers in the window
	// OtherCPU is the CPU the rest of the machine used in the window
	// (neither the server nor this load generator): other work sharing
	// the cores.
	OtherCPU time.Duration
}

// CPUPerOp is the server CPU per measured operation.
func (r LoadResult) CPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Ops)
}

// InsertLoad runs threads connections to s, each inserting single rows
// with autocommit — `INSERT INTO table (id, v) VALUES (id, 'v…')`, ids
// unique and increasing from 1 across the connections — for warmup plus
// d; only the d after the warm-up is measured.
func InsertLoad(s *Server, db, table string, threads int, warmup, d time.Duration) (LoadResult, error) {
	pool, err := sql.Open("mysql", s.DSN(db))
	if err != nil {
		return LoadResult{}, err
	}
	defer pool.Close()
	pool.SetMaxOpenConns(threads)
	pool.SetMaxIdleConns(threads)
	ctx := context.Background()
	conns := make([]*sql.Conn, threads)
	for i := range conns {
		if conns[i], err = pool.Conn(ctx); err != nil {
			return LoadResult{}, err
		}
		defer conns[i].Close()
	}
	value := strings.Repeat("x", 100)
	query := fmt.Sprintf("INSERT INTO %s (id, v) VALUES (?, ?)", table)

	var nextID, total, errs atomic.Int64
	var stop atomic.Bool
	var firstErr atomic.Value
	lat := make([][]time.Duration, threads)
	start := time.Now()
	t0, t1 := start.Add(warmup), start.Add(warmup+d)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
				id := nextID.Add(1)
				begin := time.Now()
				_, err := conns[i].ExecContext(ctx, query, id, value)
				took := time.Since(begin)
				measured := !begin.Before(t0) && begin.Before(t1)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					if measured {
						errs.Add(1)
					}
					continue
				}
				total.Add(1)
				if measured {
					mine = append(mine, took)
				}
			}
			lat[i] = mine
		}(i)
	}
	time.Sleep(time.Until(t0))
	cpu0, self0, busy0 := s.CPU(), CPUTime(os.Getpid()), MachineBusy()
	time.Sleep(time.Until(t1))
	cpu1, self1, busy1 := s.CPU(), CPUTime(os.Getpid()), MachineBusy()
	stop.Store(true)
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	res := LoadResult{Ops: int64(len(all)), Errors: errs.Load(), Total: total.Load(), ServerCPU: cpu1 - cpu0,
		OtherCPU: max(0, (busy1-busy0)-(cpu1-cpu0)-(self1-self0))}
	res.Rate = float64(res.Ops) / d.Seconds()
	if len(all) > 0 {
		sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
		var sum time.Duration
		for _, x := range all {
			sum += x
		}
		res.Avg = sum / time.Duration(len(all))
		pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
		res.P50, res.P95, res.P99 = pct(0.50), pct(0.95), pct(0.99)
	}
	if e := firstErr.Load(); e != nil {
		return res, fmt.Errorf("%s: %d failed inserts into %s.%s (first: %v)", s.Name, res.Errors, db, table, e)
	}
	return res, nil
}

// MachineBusy is the CPU time all processes of the machine have used
// (the busy jiffies of /proc/stat's cpu line).
func MachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// SaveLogs copies the *.log files of dir and of its subdirectories (not
// deeper: the servers' logs, not their data) to a new
// directory beside it and returns its path: run by a cleanup that removes
// dir after a failure, to keep what the servers said.
func SaveLogs(dir string) (string, error) {
	out, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+"-logs-")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		depth := strings.Count(rel, string(filepath.Separator))
		if d.IsDir() {
			if rel != "." && depth >= 1 {
				return filepath.SkipDir // data directories (pebble's WAL files end in .log too)
			}
			return nil
		}
		if !strings.HasSuffix(path, ".log") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, strings.ReplaceAll(rel, string(filepath.Separator), "_"))
		return os.WriteFile(dst, b, 0o644)
	})
	return out, err
}

// QueryInt runs a query returning one integer.
func QueryInt(s *Server, db, query string) (int64, error) {
	conn, err := sql.Open("mysql", s.DSN(db))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var n int64
	err = conn.QueryRow(query).Scan(&n)
	return n, err
}

// QueryRows runs a query and returns its rows, each as its columns joined
// by commas (NULL for NULL).
func QueryRows(s *Server, db, query string) ([]string, error) {
	conn, err := sql.Open("mysql", s.DSN(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rs, err := conn.Query(query)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		f := make([]string, len(cols))
		for i, v := range vals {
			f[i] = "NULL"
			if v.Valid {
				f[i] = v.String
			}
		}
		out = append(out, strings.Join(f, ","))
	}
	return out, rs.Err()
}
