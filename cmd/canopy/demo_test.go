package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canopydb/canopy/internal/testutil"
	"github.com/canopydb/canopy/node"
)

// demoPorts finds a base port whose six node ports, and their internal and
// HTTP ports, are all free.
func demoPorts(t *testing.T) int {
	for attempt := 0; attempt < 50; attempt++ {
		// below the ephemeral range (32768 up) with its offsets, where
		// outgoing connections take ports at any moment, and apart from
		// the ops tests' range (7000-9800)
		base := 3000 + rand.Intn(3500)
		ok := true
		for i := 0; i < 6 && ok; i++ {
			for _, p := range []int{base + i, base + i + node.InternalPortOffset, base + i + node.HTTPPortOffset} {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range for the demo")
	return 0
}

func TestDemo(t *testing.T) {
	port := demoPorts(t)
	cmd := exec.Command(testutil.Binary(t), "demo", "--port", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed []string
	timeout := time.After(90 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited early:\n%s", strings.Join(printed, "\n"))
			}
			printed = append(printed, l)
			if strings.Contains(l, "Press Ctrl-C") {
				break wait
			}
		case <-timeout:
			t.Fatalf("demo not up after 90s:\n%s", strings.Join(printed, "\n"))
		}
	}
	text := strings.Join(printed, "\n")
	connect := fmt.Sprintf("mariadb -h127.0.0.1 -P%d -uroot demo", port)
	if !strings.Contains(text, connect) {
		t.Errorf("the demo does not print %q:\n%s", connect, text)
	}
	dir := regexp.MustCompile(`in (\S+) …`).FindStringSubmatch(text)
	if dir == nil {
		t.Fatalf("no data directory in:\n%s", text)
	}

	for _, p := range []int{port, port + 5} { // master and child aggregator
		db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/demo", p))
		if err != nil {
			t.Fatal(err)
		}
		testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM information_schema.LEAVES", "4")
		testutil.ExpectRows(t, db, "SELECT COUNT(*), COUNT(DISTINCT region) FROM customers", "1000,4")
		testutil.ExpectRows(t, db, "SELECT COUNT(*) FROM orders o JOIN products p ON p.id = o.product_id", "5000")
		db.Close()
	}

	syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo exit: %v", err)
	}
	if !strings.Contains(strings.Join(rest, "\n"), "Removed "+dir[1]) {
		t.Errorf("demo did not report removing %s:\n%s", dir[1], strings.Join(rest, "\n"))
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the demo: %v", dir[1], err)
	}
	for i := 0; i < 6; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port+i)); err == nil {
			c.Close()
			t.Errorf("port %d still answers after the demo stopped", port+i)
		}
	}
}
