package runner_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/process"
)

// clock is a time that a test sets.
type clock struct{ t atomic.Int64 }

func newClock() *clock                   { c := &clock{}; c.t.Store(time.Now().UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// retentionEnv is an env whose runners read the time from a clock, keep
// ended gatherings for an hour, and store archives in archives.
type retentionEnv struct {
	*env
	clock    *clock
	archives mustgather.ArchiveStore
}

func newRetentionEnv(t *testing.T, archives mustgather.ArchiveStore) *retentionEnv {
	e := newEnv(t, func(c *runner.Config) { c.Retention = time.Hour })
	if archives == nil {
		archives = e.archives
	}
	return &retentionEnv{env: e, clock: newClock(), archives: archives}
}

// runner returns a runner of the env's; each is another process sharing
// the store.
func (e *retentionEnv) runner(t *testing.T) *runner.Runner {
	return runner.New(e.cfg, runner.Deps{
		Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus, Now: e.clock.Now,
		Gatherer: &process.Gatherer{TempDir: t.TempDir(), KillGrace: 200 * time.Millisecond},
	})
}

// run runs a gathering to its end at the clock's time.
func (e *retentionEnv) run(t *testing.T, r mustgather.Request) mustgather.Gathering {
	t.Helper()
	g, ev := e.create(t, r)
	if err := e.runner(t).Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	return e.waitEnded(t, g.ID)
}

func TestGatheringsThatEndedLongerThanTheRetentionAgoAreDeletedWithTheirArchivesAndNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRetentionEnv(t, nil)

	oldCompleted := e.run(t, mustgather.Request{Command: "echo a > a.txt", CustomName: "nightly"})
	oldFailed := e.run(t, mustgather.Request{Command: "echo a > a.txt; exit 3", CustomName: "shared"})
	oldUnfinished, _ := e.create(t, mustgather.Request{Command: "x"})
	oldRunning, _ := e.create(t, mustgather.Request{Command: "x"})
	if _, err := e.store.Claim(ctx, oldRunning.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	recent := e.run(t, mustgather.Request{Command: "echo b > b.txt", CustomName: "shared"})
	e.clock.Advance(time.Minute)

	n, err := e.runner(t).Expire(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Expire deleted %d (%v), want 2", n, err)
	}
	for _, g := range []mustgather.Gathering{oldCompleted, oldFailed} {
		if _, err := e.store.Get(ctx, g.ID); !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("gathering %d (%s): Get says %v, want not found", g.ID, g.Status, err)
		}
		if _, err := e.archives.Open(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName)); !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("archive of gathering %d: %v, want not found", g.ID, err)
		}
	}
	if _, err := e.store.GetByName(ctx, "nightly"); !errors.Is(err, mustgather.ErrNotFound) {
		t.Errorf("the name of a deleted gathering resolves: %v", err)
	}
	if g, err := e.store.GetByName(ctx, "shared"); err != nil || g.ID != recent.ID {
		t.Errorf("a name a newer gathering took: %d, %v; want %d", g.ID, err, recent.ID)
	}
	list, err := e.store.List(ctx, mustgather.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []mustgather.ID
	for _, g := range list {
		ids = append(ids, g.ID)
	}
	if want := []mustgather.ID{oldUnfinished.ID, oldRunning.ID, recent.ID}; !slices.Equal(ids, want) {
		t.Errorf("kept %v, want %v (the unfinished and the recent)", ids, want)
	}
	if files := e.readArchive(t, recent); files["b.txt"] != "b\n" {
		t.Errorf("the recent gathering's archive: %v", keys(files))
	}

	t.Run("a second pass deletes nothing more", func(t *testing.T) {
		if n, err := e.runner(t).Expire(ctx); err != nil || n != 0 {
			t.Errorf("deleted %d (%v)", n, err)
		}
	})
	t.Run("the name of a deleted gathering is free for a new one", func(t *testing.T) {
		g := e.run(t, mustgather.Request{Command: "true", CustomName: "nightly"})
		if got, err := e.store.GetByName(ctx, "nightly"); err != nil || got.ID != g.ID {
			t.Errorf("got %d, %v; want %d", got.ID, err, g.ID)
		}
	})
}

func TestNoRetentionKeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRetentionEnv(t, nil)
	e.cfg.Retention = 0
	g := e.run(t, mustgather.Request{Command: "true"})
	e.clock.Advance(1000 * 24 * time.Hour)
	if n, err := e.runner(t).Expire(ctx); err != nil || n != 0 {
		t.Fatalf("deleted %d (%v)", n, err)
	}
	if _, err := e.store.Get(ctx, g.ID); err != nil {
		t.Error(err)
	}
}

func TestRunnersExpiringAtOnceDeleteEachGatheringOnceWithoutErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newRetentionEnv(t, nil)
	const gatherings, runners = 6, 3
	for i := range gatherings {
		e.run(t, mustgather.Request{Command: "echo a > a.txt", CustomName: []string{"x", "y"}[i%2]})
	}
	e.clock.Advance(2 * time.Hour)
	var total atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range runners {
		r := e.runner(t)
		wg.Go(func() {
			<-start
			n, err := r.Expire(ctx)
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(n))
		})
	}
	close(start)
	wg.Wait()
	if total.Load() != gatherings {
		t.Errorf("deleted %d in all, want %d", total.Load(), gatherings)
	}
	if list, err := e.store.List(ctx, mustgather.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("left %d gatherings (%v)", len(list), err)
	}
	for _, name := range []string{"x", "y"} {
		if _, err := e.store.GetByName(ctx, name); !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("name %s: %v", name, err)
		}
	}
}

func TestADownloadLinkOfAnExpiredArchiveStopsWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s3, _, _ := minioBucket(t)
	e := newRetentionEnv(t, s3)
	g := e.run(t, mustgather.Request{Command: "echo a > a.txt"})
	u, _, err := s3.PresignGet(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName), "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	get := func() int {
		resp, err := http.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("before expiry: %d", code)
	}
	e.clock.Advance(2 * time.Hour)
	if n, err := e.runner(t).Expire(ctx); err != nil || n != 1 {
		t.Fatalf("deleted %d (%v)", n, err)
	}
	if code := get(); code != http.StatusNotFound {
		t.Errorf("after expiry: %d, want 404", code)
	}
}
