package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// Environment of TestHelperProcess, the stand-in for a runner process.
const (
	helperEnv        = "PROCESS_TEST_HELPER"
	helperDirEnv     = "PROCESS_TEST_HELPER_DIR"
	helperCommandEnv = "PROCESS_TEST_HELPER_COMMAND"
)

// TestHelperProcess is not a test: the tests run the test binary again with
// it as a runner process they can kill. It runs one gathering of
// $PROCESS_TEST_HELPER_COMMAND with its temp folders in
// $PROCESS_TEST_HELPER_DIR/tmp.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	// Bounded, should the test that started it die without killing it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := &Gatherer{TempDir: filepath.Join(os.Getenv(helperDirEnv), "tmp"), KillGrace: time.Second}
	err := g.Gather(ctx, newJob(ctx, mustgather.Gathering{ID: 7, Command: os.Getenv(helperCommandEnv)}, os.Stdout))
	fmt.Println("gather returned:", err)
}

// A proc is a process a test watches, known by pid and start time so that
// a recycled pid is never taken for it.
type proc struct {
	pid   int
	start uint64
}

func (p proc) running() bool {
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start && !st.gone()
}

// waitProc waits for a command to write a pid into path and returns that
// process. The process is killed when the test ends, should it still run.
func waitProc(t *testing.T, path string) proc {
	t.Helper()
	var p proc
	testenv.Eventually(t, 30*time.Second, "pid in "+filepath.Base(path), func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		st, err := readStat(pid)
		if err != nil {
			t.Fatalf("process %d in %s: %v", pid, path, err)
		}
		p = proc{pid: pid, start: st.start}
		return true
	})
	t.Cleanup(func() { kill(p.pid, p.start) })
	return p
}

// testLogger logs into the test's output.
func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// treeCommand starts a shell that starts a grandchild, writes both pids
// into dir and waits. The pid files appear whole (written, then renamed).
func treeCommand(dir string) string {
	return fmt.Sprintf(`cd '%[1]s' || exit 1
sleep 120 & echo $! > grandchild.tmp && mv grandchild.tmp grandchild.pid
echo $$ > shell.tmp && mv shell.tmp shell.pid
wait`, dir)
}

// outputFolders lists the gatherings' output folders in dir.
func outputFolders(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "must-gather-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAKilledRunnerLeavesNoProcessAndNoFolderBehind(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, ownerEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, helperEnv+"=1", helperDirEnv+"="+dir, helperCommandEnv+"="+treeCommand(dir))
	helper, err := testenv.StartProcess(dir, "helper", env, []string{os.Args[0], "-test.run=^TestHelperProcess$"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		helper.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(helper.Log)
			t.Logf("helper output:\n%s", b)
		}
	})
	shell := waitProc(t, filepath.Join(dir, "shell.pid"))
	grandchild := waitProc(t, filepath.Join(dir, "grandchild.pid"))
	if n := len(outputFolders(t, tmp)); n != 1 {
		t.Fatalf("the running gathering has %d output folders, want 1", n)
	}

	// Another runner on the machine sweeps while this one is alive.
	if err := (&Gatherer{TempDir: tmp, Logger: testLogger(t)}).Sweep(ctx); err != nil {
		t.Fatalf("sweep while the runner lives: %v", err)
	}
	if !shell.running() || !grandchild.running() || len(outputFolders(t, tmp)) != 1 {
		t.Fatalf("a sweep touched a live runner's gathering: shell running %t, grandchild running %t, folders %q",
			shell.running(), grandchild.running(), outputFolders(t, tmp))
	}

	select {
	case <-helper.Done():
		t.Fatalf("the helper ended before it was killed: %v", helper.Err())
	default:
	}
	helper.Stop()
	if helper.Err() == nil {
		t.Fatal("the helper ended before it was killed")
	}
	testenv.Eventually(t, 10*time.Second, "the shell dies with its runner", func() bool { return !shell.running() })
	// The grandchild is beyond the parent-death signal's reach: Sweep's job.
	if !grandchild.running() {
		t.Fatal("the grandchild died before the sweep; this test proves nothing")
	}
	if n := len(outputFolders(t, tmp)); n != 1 {
		t.Fatalf("the killed runner left %d output folders, want 1 for the sweep to remove", n)
	}

	if err := (&Gatherer{TempDir: tmp, Logger: testLogger(t)}).Sweep(ctx); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if grandchild.running() {
		t.Error("the grandchild still runs after the sweep")
	}
	if f := outputFolders(t, tmp); len(f) != 0 {
		t.Errorf("the sweep left output folders %q", f)
	}
}

func TestASweepLeavesTheGatheringsOfItsOwnProcessAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	g := &Gatherer{TempDir: dir, KillGrace: time.Second}
	stop, stopNow := context.WithCancelCause(ctx)
	defer stopNow(nil)
	done := make(chan error, 1)
	go func() {
		done <- g.Gather(ctx, newJob(stop, mustgather.Gathering{ID: 8, Command: treeCommand(dir)}, io.Discard))
	}()
	shell := waitProc(t, filepath.Join(dir, "shell.pid"))
	grandchild := waitProc(t, filepath.Join(dir, "grandchild.pid"))

	if err := (&Gatherer{TempDir: dir, Logger: testLogger(t)}).Sweep(ctx); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if !shell.running() || !grandchild.running() {
		t.Errorf("the sweep killed a live gathering: shell running %t, grandchild running %t", shell.running(), grandchild.running())
	}
	if n := len(outputFolders(t, dir)); n != 1 {
		t.Errorf("the live gathering has %d output folders after the sweep, want 1", n)
	}

	stopNow(mustgather.ErrShutdown)
	select {
	case err := <-done:
		if !errors.Is(err, mustgather.ErrShutdown) {
			t.Errorf("Gather returned %v, want %v", err, mustgather.ErrShutdown)
		}
	case <-ctx.Done():
		t.Fatal("Gather did not return after the stop")
	}
	if shell.running() || grandchild.running() {
		t.Errorf("a stopped gathering left processes: shell running %t, grandchild running %t", shell.running(), grandchild.running())
	}
}
