package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// childEnv marks the test binary started again as the server binary, so
// that a test can run functions in processes of their own and kill them.
const childEnv = "MGF_TEST_RUN_AS_SERVER"

// runAsServer is main for a child process: it runs the system on its
// environment until SIGTERM, as the binary does.
func runAsServer() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, []string{"must-gather-functions"}, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "must-gather-functions:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// child is the system running in a process of its own.
type child struct {
	*testenv.Process
	base string
}

// startChild runs the system in a new process with env on top of test
// defaults and waits until it serves HTTP. Its log is in the test log if
// the test fails.
func startChild(t testing.TB, env map[string]string) *child {
	t.Helper()
	c := launchChild(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.WaitReady(ctx, func() error {
		for _, line := range strings.Split(c.Tail(1000), "\n") {
			if u, ok := strings.CutPrefix(line, "must-gather-functions: listening on "); ok {
				c.base = u
				return nil
			}
		}
		return errors.New("not listening yet")
	})
	if err != nil {
		t.Fatalf("child did not start: %v\n%s", err, c.Tail(20))
	}
	return c
}

// launchChild runs the system in a new process, as startChild does, but
// does not wait for it to start: a test may kill it while it starts.
func launchChild(t testing.TB, env map[string]string) *child {
	t.Helper()
	vars := map[string]string{
		childEnv: "1", "HTTP_ADDRESS": "127.0.0.1:0", "LOG_LEVEL": "warn", "RUNNER_FINISH_GRACE": "5s",
		"SHUTDOWN_TIMEOUT": "30s", "MINIO_BIN": os.Getenv("MINIO_BIN"), "PATH": os.Getenv("PATH"),
	}
	for k, v := range env {
		vars[k] = v
	}
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	p, err := testenv.StartProcess(t.TempDir(), "child", environ, []string{os.Args[0], "-test.run=^$"})
	if err != nil {
		t.Fatal(err)
	}
	c := &child{Process: p}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("log of a child process, last lines:\n%s", c.Tail(40))
		}
	})
	return c
}

// kill ends the process at once, as kill -9 does, and waits for it.
func (c *child) kill() { c.Stop() }

// stop asks the process to shut down, as Kubernetes does, and waits for it.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.Signal(syscall.SIGTERM)
	select {
	case <-c.Done():
	case <-time.After(60 * time.Second):
		t.Errorf("child did not stop within 60s of SIGTERM")
		c.kill()
	}
}

// testLog passes a child's log to the test log, line by line.
type testLog struct {
	t  *testing.T
	mu sync.Mutex
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.t.Log("child: " + line)
	}
	return len(p), nil
}

// list returns the gatherings GET /must-gather answers.
func list(base string) ([]gathering, error) {
	resp, err := http.Get(base + "/must-gather")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /must-gather: %d %s", resp.StatusCode, b)
	}
	var gs []gathering
	return gs, json.NewDecoder(resp.Body).Decode(&gs)
}

// postCommand starts a gathering of command and returns its id.
func postCommand(client *http.Client, base, command string) (uint64, error) {
	body := fmt.Sprintf(`{"command": %q, "timeout": "5m"}`, command)
	resp, err := client.Post(base+"/must-gather", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("POST: %d %s", resp.StatusCode, b)
	}
	var g gathering
	if err := json.Unmarshal(b, &g); err != nil {
		return 0, err
	}
	return g.ID, nil
}

// loadFigures is what a load run measured.
type loadFigures struct {
	posted, completed, failed int
	lists, listsShort         int
	postsTook, allEndedTook   time.Duration
}

// loadRun posts n gatherings of `true` at once through api while a poller
// lists continuously, and waits until all have ended. It checks that ids
// are unique and that no list leaves out a gathering whose POST had been
// answered before the list was asked for.
func loadRun(t *testing.T, api string, n int, within time.Duration) loadFigures {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 2 * time.Minute}
	defer client.CloseIdleConnections()

	var (
		mu      sync.Mutex
		created = map[uint64]time.Time{} // id -> when its POST was answered
	)
	pollCtx, stopPoll := context.WithCancel(context.Background())
	var poller sync.WaitGroup
	var f loadFigures
	poller.Go(func() {
		for pollCtx.Err() == nil {
			mu.Lock()
			asked := time.Now()
			var before []uint64
			for id, at := range created {
				if at.Before(asked) {
					before = append(before, id)
				}
			}
			mu.Unlock()
			gs, err := list(api)
			if err != nil {
				t.Errorf("list: %v", err)
				return
			}
			have := make(map[uint64]bool, len(gs))
			for _, g := range gs {
				have[g.ID] = true
			}
			f.lists++
			var missing []uint64
			for _, id := range before {
				if !have[id] {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				f.listsShort++
				slices.Sort(missing)
				t.Errorf("a list asked for after their POSTs were answered lacks %d gatherings: %v", len(missing), missing[:min(len(missing), 10)])
			}
		}
	})

	start := time.Now()
	var posts sync.WaitGroup
	for range n {
		posts.Go(func() {
			id, err := postCommand(client, api, "true")
			if err != nil {
				t.Errorf("POST: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if _, dup := created[id]; dup {
				t.Errorf("id %d handed out twice", id)
			}
			created[id] = time.Now()
		})
	}
	posts.Wait()
	f.postsTook = time.Since(start)
	f.posted = len(created)

	// Listing thousands of gatherings is part of the load: poll at a
	// tenth of a second, not at Eventually's pace.
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var failed []gathering
	err := testenv.Poll(ctx, 100*time.Millisecond, func() error {
		gs, err := list(api)
		if err != nil {
			return err
		}
		f.completed, failed = 0, failed[:0]
		for _, g := range gs {
			switch g.Status {
			case "completed":
				f.completed++
			case "error":
				failed = append(failed, g)
			}
		}
		if f.completed+len(failed) < f.posted {
			return fmt.Errorf("%d of %d gatherings ended", f.completed+len(failed), f.posted)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("within %s: %v", within, err)
	}
	f.failed = len(failed)
	for _, g := range failed[:min(len(failed), 5)] {
		t.Errorf("gathering %d ended in error:\n%s", g.ID, g.ExecOutput)
	}
	f.allEndedTook = time.Since(start)
	stopPoll()
	poller.Wait()
	t.Logf("%d POSTs answered in %s; all ended after %s: %d completed, %d error; %d lists, %d short",
		f.posted, f.postsTook.Round(time.Millisecond), f.allEndedTook.Round(time.Millisecond), f.completed, f.failed, f.lists, f.listsShort)
	return f
}

func TestAThousandConcurrentGatheringsAllCompleteAndEveryListHoldsThemAll(t *testing.T) {
	// The load comes from one address, which the per-user limit counts as
	// one user: off.
	s := start(t, t.TempDir(), map[string]string{"RUNNER_REAP_INTERVAL": minReapInterval.String(), "API_POST_RATE": "0"})
	f := loadRun(t, s.base, 1000, 5*time.Minute)
	if f.posted != 1000 || f.completed != 1000 || f.failed != 0 || f.listsShort != 0 || f.lists == 0 {
		t.Errorf("posted %d, completed %d, error %d, lists %d of which short %d; want 1000 completed, none short",
			f.posted, f.completed, f.failed, f.lists, f.listsShort)
	}
}

// TestSoak is `make soak`: many gatherings, several runner processes on
// one NATS. It runs only when MGF_SOAK is set.
func TestSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MGF_SOAK"))
	if n <= 0 {
		t.Skip("set MGF_SOAK to the number of gatherings (make soak)")
	}
	nats := testenv.NATS(t)
	dir := t.TempDir()
	shared := map[string]string{
		"NATS_URL": nats.ClientURL(), "ARCHIVE_DIR": filepath.Join(dir, "archives"),
		"RUNNER_REAP_INTERVAL": minReapInterval.String(), "LOG_LEVEL": "error",
		"AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0", "API_POST_RATE": "0",
	}
	with := func(fns string) map[string]string {
		env := functionsEnv(shared, fns)
		env["PROCESS_TEMP_DIR"] = t.TempDir()
		return env
	}
	api := start(t, t.TempDir(), with("api,recorder"))
	for range 3 {
		startChild(t, with("runner"))
	}
	f := loadRun(t, api.base, n, 30*time.Minute)
	if f.completed != n || f.failed != 0 || f.listsShort != 0 {
		t.Errorf("posted %d, completed %d, error %d, short lists %d", f.posted, f.completed, f.failed, f.listsShort)
	}
	t.Logf("soak: %d gatherings on 3 runner processes: POSTs %.0f/s, all ended after %s (%.0f gatherings/s), %d lists",
		n, float64(n)/f.postsTook.Seconds(), f.allEndedTook.Round(time.Second), float64(n)/f.allEndedTook.Seconds(), f.lists)
}

// crashRun kills the runner process with SIGKILL kills times at random
// points and checks what the issue of crashes asks: every gathering ends,
// none runs twice, those under way at a kill end within the lease time
// plus one reap interval, new ones start at once after a restart, and no
// command survives its runner.
func crashRun(t *testing.T, kills int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	nats := testenv.NATS(t)
	dir := t.TempDir()
	counts := filepath.Join(dir, "runs")
	procTmp := filepath.Join(dir, "proc")
	for _, d := range []string{counts, procTmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const leaseTTL = 3 * time.Second
	shared := map[string]string{
		"NATS_URL": nats.ClientURL(), "ARCHIVE_DIR": filepath.Join(dir, "archives"), "LEASE_TTL": leaseTTL.String(),
		"RUNNER_REAP_INTERVAL": minReapInterval.String(), "PROCESS_TEMP_DIR": procTmp,
		"AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0", "API_POST_RATE": "0",
		// The cap is on, above what the kills leave taken: the slots of a
		// killed runner lapse only LEASE_TTL after its last renewal, and
		// the kills come faster than that, each leaving up to four taken
		// (the default of 4 would make new gatherings wait for those, and
		// this test counts on them starting at once after a restart). The
		// end checks that every slot was freed or lapsed.
		"RUNNER_MAX_RUNNING": "16",
	}
	with := func(fns string) map[string]string { return functionsEnv(shared, fns) }
	api := start(t, t.TempDir(), with("api,recorder"))
	runnerProc := startChild(t, with("runner"))
	client := &http.Client{Timeout: time.Minute}

	// Each run of a gathering adds a line to its count file, and leaves a
	// grandchild that only its runner's cleanup ends.
	post := func() uint64 {
		command := fmt.Sprintf(`echo run >> %s/$MUST_GATHER_ID; sleep 300 >/dev/null 2>&1 & sleep 0.%d`, counts, 2+rng.IntN(7))
		id, err := postCommand(client, api.base, command)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var ids []uint64
	var slowest time.Duration
	for i := range kills {
		for range 1 + rng.IntN(3) {
			ids = append(ids, post())
		}
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond) // a random point
		gs, err := list(api.base)
		if err != nil {
			t.Fatal(err)
		}
		var running []uint64
		for _, g := range gs {
			if g.Status == "inprogress" {
				running = append(running, g.ID)
			}
		}
		runnerProc.kill()
		killed := time.Now()
		runnerProc = startChild(t, with("runner"))

		// New work starts at once: it waits neither for the lease nor for
		// the ack deadline of what the dead process held.
		fresh := post()
		ids = append(ids, fresh)
		testenv.Eventually(t, leaseTTL/2, fmt.Sprintf("kill %d: new gathering %d to start after the restart", i+1, fresh), func() bool {
			g, _ := api.get(t, fmt.Sprint(fresh))
			return g.Status != "new"
		})
		// What was under way at the kill ends within the lease time and
		// one reap interval (and the time a process takes to start).
		for _, id := range running {
			api.waitEndedWithin(t, id, leaseTTL+minReapInterval+3*time.Second)
		}
		if took := time.Since(killed); len(running) > 0 && took > slowest {
			slowest = took
		}
	}
	for _, id := range ids {
		api.waitEndedWithin(t, id, time.Minute)
	}
	runnerProc.stop(t)
	t.Logf("%d kills, %d gatherings; the slowest end of a gathering under way at a kill came %s after it",
		kills, len(ids), slowest.Round(time.Millisecond))
	waitSlotsFree(t, nats.ClientURL(), leaseTTL+time.Second)

	statuses := map[string]int{}
	for _, id := range ids {
		g, _ := api.get(t, fmt.Sprint(id))
		statuses[g.Status]++
		b, err := os.ReadFile(filepath.Join(counts, fmt.Sprint(id)))
		runs := strings.Count(string(b), "run")
		switch {
		case runs > 1:
			t.Errorf("gathering %d ran %d times", id, runs)
		case g.Status == "completed" && (err != nil || runs != 1):
			t.Errorf("gathering %d completed with %d runs recorded: %v", id, runs, err)
		}
		// An archive is stored exactly when the record points at it.
		archives, _ := filepath.Glob(filepath.Join(dir, "archives", "gatherings", fmt.Sprint(id), "*"))
		want := 0
		if g.ArchiveName != "" {
			want = 1
		}
		if len(archives) != want {
			t.Errorf("gathering %d (%s, archive-name %q) has archives %v", id, g.Status, g.ArchiveName, archives)
		}
	}
	t.Logf("statuses: %v", statuses)
	if survivors := processesUnder(t, procTmp); len(survivors) > 0 {
		t.Errorf("commands outlived their runners: pids %v", survivors)
	}
}

// waitSlotsFree waits until no run slot of RUNNER_MAX_RUNNING is taken:
// those of the runners that stopped were freed, those of the killed ones
// lapsed.
func waitSlotsFree(t *testing.T, natsURL string, within time.Duration) {
	t.Helper()
	js := jetStream(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	err := testenv.Poll(ctx, 100*time.Millisecond, func() error {
		kv, err := js.KeyValue(ctx, jsstore.DefaultConfig().SlotBucket)
		if err != nil {
			return err
		}
		keys, err := kv.Keys(ctx)
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("taken: %v", keys)
	})
	if err != nil {
		t.Errorf("every run slot to be free within %s: %v", within, err)
	}
}

// processesUnder returns the pids of running processes whose
// MUST_GATHER_DIR lies under root.
func processesUnder(t *testing.T, root string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(env), "MUST_GATHER_DIR="+root) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// A zombie runs nothing; it waits only for its parent to reap it.
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

func TestARunnerKilledAtRandomPointsLosesNoGatheringRunsNoneTwiceAndLeavesNoCommand(t *testing.T) {
	crashRun(t, 20)
}

// TestSoakKills is the long crash run of `make soak`; MGF_SOAK_KILLS sets
// how many kills.
func TestSoakKills(t *testing.T) {
	crashRun(t, soakKills(t))
}

// soakKills returns the number of kills of a long crash run, MGF_SOAK_KILLS
// (`make soak`), or skips the test without it.
func soakKills(t *testing.T) int {
	n, _ := strconv.Atoi(os.Getenv("MGF_SOAK_KILLS"))
	if n <= 0 {
		t.Skip("set MGF_SOAK_KILLS to the number of kills (make soak)")
	}
	return n
}
