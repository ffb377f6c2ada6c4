package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Commands are seed 004's configurable commands, run with `sh -c` in
// place of the built-in way:
//   - CreateSnapshot makes a snapshot of a node's data (an LVM snapshot
//     script, say): it must fill $CANOPY_SNAPSHOT_DIR/data from
//     $CANOPY_DATA_DIR; it is then listed, seeded and pruned like any.
//     The node is not asked: the copy is as consistent as the command
//     makes it (an LVM snapshot is crash-consistent, which the store
//     recovers from), and its log positions are not recorded.
//   - ReceiveSeedData (target) and SendSeedData (source) move a seed:
//     the receiver fills $CANOPY_SEED_DIR and may listen on
//     $CANOPY_SEED_HOST:$CANOPY_SEED_PORT; the sender sends
//     $CANOPY_SNAPSHOT_DATA to $CANOPY_TARGET_HOST:$CANOPY_SEED_PORT.
//     A seed uses them when both ends have them; every file's SHA-256 is
//     checked afterwards all the same.
//   - PostCopy runs on the target after any transfer, in $CANOPY_SEED_DIR.
type Commands struct {
	CreateSnapshot  string `json:"create_snapshot,omitempty"`
	SendSeedData    string `json:"send_seed_data,omitempty"`
	ReceiveSeedData string `json:"receive_seed_data,omitempty"`
	PostCopy        string `json:"post_copy,omitempty"`
}

// runHook runs a command with env added, its output in the agent's log
// and, on failure, in the error.
func (a *Agent) runHook(ctx context.Context, name, command string, env ...string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	a.log.Info("hook ran", "hook", name, "err", err, "output", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("%s (%s): %w: %s", name, command, err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// freePort is a free TCP port on host, for a receive command.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func envVar(k, v string) string { return k + "=" + v }

func envInt(k string, v int) string { return k + "=" + strconv.Itoa(v) }
