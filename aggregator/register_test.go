package aggregator_test

import (
	"database/sql"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/canopydb/canopy/internal/testutil"
)

// A register workload: clients read and overwrite single-row registers
// through two aggregators while leaves are killed and come back; the
// history must be linearizable (porcupine). A write whose outcome the
// client never learned (an error) may have happened at any time after
// its call, so it returns at "infinity".

type regInput struct {
	write bool
	key   int
	value int64
}

type regOutput struct{ value int64 }

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() interface{} { return int64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(int64), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("write(%d, %d)", in.key, in.value)
		}
		return fmt.Sprintf("read(%d) -> %d", in.key, output.(regOutput).value)
	},
}

// TestRegisterLinearizable runs the register workload on a redundancy-2,
// synchronous cluster across repeated failovers: kill -9 of a leaf,
// auto-attach on its return, then the same for its pair. Set
// CANOPY_REGISTER_ROUNDS for a longer run (each round fails over both
// leaves of a pair); CANOPY_REGISTER_SEED changes the seed.
func TestRegisterLinearizable(t *testing.T) {
	rounds, seed := 1, int64(1)
	if s := os.Getenv("CANOPY_REGISTER_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("CANOPY_REGISTER_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	const keys = 64 // few writes of unknown outcome per key keep the check fast
	c := startPairedCluster(t, 0)
	ma := c.MA.DB("")
	testutil.Exec(t, ma, "CREATE DATABASE reg WITH SYNC REPLICATION PARTITIONS 8")
	testutil.Exec(t, c.MA.DB("reg"), "CREATE TABLE r (k INT PRIMARY KEY, v BIGINT NOT NULL)")
	for k := 0; k < keys; k++ {
		testutil.Exec(t, c.MA.DB("reg"), "INSERT INTO r VALUES (?, 0)", k)
	}

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		unknown int
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	dbs := []*sql.DB{c.MA.DB("reg"), c.Children[0].DB("reg")}
	for client := 0; client < 6; client++ {
		wg.Add(1)
		go func(client int) {
			defer wg.Done()
			db := dbs[client%len(dbs)]
			rng := rand.New(rand.NewSource(seed*100 + int64(client)))
			for seq := int64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				in := regInput{key: rng.Intn(keys), write: rng.Intn(2) == 0}
				op := porcupine.Operation{ClientId: client, Input: in, Call: now()}
				if in.write {
					in.value = int64(client)<<32 | seq
					op.Input = in
					_, err := db.Exec("UPDATE r SET v = ? WHERE k = ?", in.value, in.key)
					op.Return, op.Output = now(), regOutput{}
					if err != nil {
						op.Return = math.MaxInt64 // it may take effect at any later time
						mu.Lock()
						unknown++
						mu.Unlock()
						time.Sleep(50 * time.Millisecond)
					}
				} else {
					var v int64
					err := db.QueryRow("SELECT v FROM r WHERE k = ?", in.key).Scan(&v)
					op.Return, op.Output = now(), regOutput{v}
					if err != nil {
						time.Sleep(20 * time.Millisecond)
						continue // a failed read constrains nothing
					}
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		}(client)
	}

	// SHOW LEAVES lists the pairs in ADD LEAF order: leaves 0 and 1 pair.
	for round := 0; round < rounds; round++ {
		for _, victim := range []*testutil.Node{c.Leaves[0], c.Leaves[1]} {
			time.Sleep(time.Second)
			victim.Kill()
			waitLeafState(t, ma, victim.Port, "offline", 10*time.Second)
			time.Sleep(time.Second)
			victim.Start()
			waitLeafState(t, ma, victim.Port, "online", 30*time.Second)
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	writes := 0
	for _, op := range history {
		if op.Input.(regInput).write {
			writes++
		}
	}
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 2*time.Minute)
	t.Logf("%d operations (%d writes, %d of unknown outcome) over %d rounds of failovers; checked in %s: %s",
		len(history), writes, unknown, rounds, time.Since(checkStart).Round(time.Millisecond), res)
	if res != porcupine.Ok {
		path := fmt.Sprintf("%s/register-%d.html", os.TempDir(), time.Now().UnixNano())
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("the register history is %s, not linearizable", res)
	}
	if writes < 100 {
		t.Fatalf("only %d writes: the workload did not run", writes)
	}
}

// TestRegisterModel: the checker rejects a stale read, accepts a write of
// unknown outcome either way.
func TestRegisterModel(t *testing.T) {
	w := porcupine.Operation{Input: regInput{write: true, key: 0, value: 5}, Call: 0, Output: regOutput{}, Return: 10}
	stale := porcupine.Operation{ClientId: 1, Input: regInput{key: 0}, Call: 20, Output: regOutput{0}, Return: 30}
	if porcupine.CheckOperations(registerModel, []porcupine.Operation{w, stale}) {
		t.Error("a read of the old value after an acknowledged write was accepted")
	}
	w.Return = math.MaxInt64
	if !porcupine.CheckOperations(registerModel, []porcupine.Operation{w, stale}) {
		t.Error("an unacknowledged write that has not happened yet was rejected")
	}
	fresh := stale
	fresh.Output = regOutput{5}
	if !porcupine.CheckOperations(registerModel, []porcupine.Operation{w, fresh}) {
		t.Error("an unacknowledged write that happened was rejected")
	}
}
