package jsstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// jetStream connects to s over TCP and returns its JetStream API.
func jetStream(t testing.TB, s *natsserver.Server) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, s))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// newStore returns a Store on buckets of its own unless cfg names them.
func newStore(t testing.TB, js jetstream.JetStream, cfg Config) *Store {
	t.Helper()
	if cfg.Bucket == "" {
		cfg.Bucket = testenv.Name("gatherings")
	}
	if cfg.LeaseBucket == "" {
		cfg.LeaseBucket = testenv.Name("leases")
	}
	st, err := New(context.Background(), js, cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return st
}

func gathering(name string) mustgather.Gathering {
	return mustgather.NewGathering(mustgather.Request{
		CustomName: name,
		Image:      "quay.io/kubev2v/forklift-must-gather:latest",
		Timeout:    "10m",
	}, time.Now())
}

func mustCreate(t testing.TB, st *Store, g mustgather.Gathering) mustgather.Gathering {
	t.Helper()
	g, err := st.Create(context.Background(), g)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return g
}

func mustApply(t testing.TB, st *Store, u mustgather.Update) mustgather.Gathering {
	t.Helper()
	g, err := st.Apply(context.Background(), u)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", u, err)
	}
	return g
}

func ids(gs []mustgather.Gathering) []mustgather.ID {
	out := []mustgather.ID{}
	for _, g := range gs {
		out = append(out, g.ID)
	}
	return out
}

func TestNew(t *testing.T) {
	t.Parallel()
	js := jetStream(t, testenv.NATS(t))
	ctx := t.Context()

	t.Run("the zero config creates the default buckets", func(t *testing.T) {
		st, err := New(ctx, js, Config{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if err := st.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		type bucket struct {
			History int64
			TTL     time.Duration
			Storage jetstream.StorageType
		}
		for name, want := range map[string]bucket{
			"must-gather":        {History: 1, Storage: jetstream.FileStorage},
			"must-gather-leases": {History: 1, TTL: 30 * time.Second, Storage: jetstream.FileStorage},
		} {
			kv, err := js.KeyValue(ctx, name)
			if err != nil {
				t.Fatalf("bucket %s: %v", name, err)
			}
			status, err := kv.Status(ctx)
			if err != nil {
				t.Fatalf("bucket %s status: %v", name, err)
			}
			got := bucket{History: status.History(), TTL: status.TTL(), Storage: status.Config().Storage}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("bucket %s (-want +got):\n%s", name, diff)
			}
		}
	})

	t.Run("New again on the same buckets updates their settings", func(t *testing.T) {
		cfg := Config{Bucket: testenv.Name("gatherings"), LeaseBucket: testenv.Name("leases"), LeaseTTL: time.Minute}
		newStore(t, js, cfg)
		cfg.LeaseTTL = 2 * time.Minute
		newStore(t, js, cfg)
		kv, err := js.KeyValue(ctx, cfg.LeaseBucket)
		if err != nil {
			t.Fatal(err)
		}
		status, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if status.TTL() != 2*time.Minute {
			t.Errorf("lease TTL = %s, want 2m", status.TTL())
		}
	})

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"one bucket for gatherings and leases is refused", Config{Bucket: "same", LeaseBucket: "same"}},
		{"a lease TTL below the server's minimum is refused", Config{Bucket: testenv.Name("g"), LeaseBucket: testenv.Name("l"), LeaseTTL: 50 * time.Millisecond}},
		{"negative replicas are refused", Config{Bucket: testenv.Name("g"), LeaseBucket: testenv.Name("l"), Replicas: -1}},
		{"an invalid bucket name is refused", Config{Bucket: "must.gather", LeaseBucket: testenv.Name("l")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(ctx, js, tc.cfg); err == nil {
				t.Errorf("New(%+v) succeeded", tc.cfg)
			}
		})
	}
}

func TestCreateAllocatesUniqueIncreasingIDs(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	const workers, each = 8, 25

	var wg sync.WaitGroup
	got := make([][]mustgather.ID, workers)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for range each {
				g, err := st.Create(t.Context(), gathering("concurrent"))
				if err != nil {
					errs <- err
					return
				}
				got[w] = append(got[w], g.ID)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Create: %v", err)
	}

	var all []mustgather.ID
	for w, seq := range got {
		if !slices.IsSorted(seq) {
			t.Errorf("worker %d got ids out of order: %v", w, seq)
		}
		all = append(all, seq...)
	}
	slices.Sort(all)
	want := make([]mustgather.ID, workers*each)
	for i := range want {
		want[i] = mustgather.ID(i + 1)
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("ids are not 1..%d, each once (-want +got):\n%s", workers*each, diff)
	}
	g, err := st.GetByName(t.Context(), "concurrent")
	if err != nil {
		t.Fatalf("GetByName: %v", err)
	}
	if g.ID != workers*each {
		t.Errorf("GetByName after concurrent creates = %d, want the newest, %d", g.ID, workers*each)
	}
}

func TestIdsGoOnFromTheLastIdOfAStoreWithoutTheIdsStream(t *testing.T) {
	t.Parallel()
	js := jetStream(t, testenv.NATS(t))
	bucket := testenv.Name("gatherings")
	// A bucket as stores before the ids stream left it.
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: bucket, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), keyLastID, []byte("41")); err != nil {
		t.Fatal(err)
	}
	st := newStore(t, js, Config{Bucket: bucket})
	if g := mustCreate(t, st, gathering("")); g.ID != 42 {
		t.Errorf("first id = %d, want 42", g.ID)
	}
	// A second store on the same buckets finds the stream and goes on.
	st = newStore(t, js, Config{Bucket: bucket})
	if g := mustCreate(t, st, gathering("")); g.ID != 43 {
		t.Errorf("id from a second store = %d, want 43", g.ID)
	}
}

func TestStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Bucket: testenv.Name("gatherings"), LeaseBucket: testenv.Name("leases")}
	ctx := t.Context()

	first := testenv.NATSIn(t, dir)
	st := newStore(t, jetStream(t, first), cfg)
	a := mustCreate(t, st, gathering("a"))
	b := mustCreate(t, st, gathering("b"))
	c := mustCreate(t, st, gathering("c"))
	b, err := st.Claim(ctx, b.ID, time.Now())
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	c = mustApply(t, st, mustgather.Update{ID: c.ID, Seq: 1, Status: mustgather.StatusCompleted, Time: time.Now(), ArchiveName: "c.tar.gz", ArchiveSize: 42})
	if err := st.Settle(ctx, c.ID); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if err := st.Hold(ctx, b.ID, "runner-1"); err != nil {
		t.Fatalf("Hold: %v", err)
	}

	// A new Store on the same buckets, as after a restart of the process.
	st = newStore(t, jetStream(t, first), cfg)
	d := mustCreate(t, st, gathering("d"))
	if d.ID != c.ID+1 {
		t.Fatalf("first id after the store was recreated = %d, want %d", d.ID, c.ID+1)
	}

	first.Stop()
	second := testenv.NATSIn(t, dir)
	st = newStore(t, jetStream(t, second), cfg)

	list, err := st.List(ctx, mustgather.Filter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff([]mustgather.Gathering{a, b, c, d}, list); diff != "" {
		t.Errorf("gatherings after the server restarted (-want +got):\n%s", diff)
	}
	e := mustCreate(t, st, gathering("e"))
	if e.ID != d.ID+1 {
		t.Errorf("first id after the server restarted = %d, want %d", e.ID, d.ID+1)
	}
	unfinished, err := st.Unfinished(ctx)
	if err != nil {
		t.Fatalf("Unfinished: %v", err)
	}
	if diff := cmp.Diff([]mustgather.ID{a.ID, b.ID, d.ID, e.ID}, unfinished); diff != "" {
		t.Errorf("Unfinished after the server restarted (-want +got):\n%s", diff)
	}
	if held, err := st.Held(ctx, b.ID); err != nil || !held {
		t.Errorf("Held(%d) after the server restarted = %v, %v; want true", b.ID, held, err)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	plain := mustCreate(t, st, gathering(""))
	big := mustCreate(t, st, gathering("big"))
	big = mustApply(t, st, mustgather.Update{
		ID: big.ID, Seq: 1, Status: mustgather.StatusError, Time: time.Now(),
		ExecOutput: strings.Repeat("a line of must-gather output\n", 64<<10/29),
	})

	for _, tc := range []struct {
		name    string
		id      mustgather.ID
		want    mustgather.Gathering
		wantErr error
	}{
		{"a new gathering reads back as created", plain.ID, plain, nil},
		{"a gathering with 64 KiB of exec output reads back whole", big.ID, big, nil},
		{"an id never allocated is not found", 99, mustgather.Gathering{}, mustgather.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Get(t.Context(), tc.id)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get(%d) error = %v, want %v", tc.id, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Get(%d) (-want +got):\n%s", tc.id, diff)
			}
		})
	}
}

func TestGetByName(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	mustCreate(t, st, gathering("alpha"))
	beta := mustCreate(t, st, gathering("beta"))
	alpha := mustCreate(t, st, gathering("alpha"))
	numeric := mustCreate(t, st, gathering("2"))
	mustCreate(t, st, gathering(""))
	odd := mustCreate(t, st, gathering("ünïcode / with spaces.and.dots*>"))

	for _, tc := range []struct {
		name    string
		query   string
		want    mustgather.Gathering
		wantErr error
	}{
		{"the newest gathering with a name wins", "alpha", alpha, nil},
		{"a name used once finds its gathering", "beta", beta, nil},
		{"a numeric name is a name, not an id", "2", numeric, nil},
		{"any characters may be in a name", "ünïcode / with spaces.and.dots*>", odd, nil},
		{"an unknown name is not found", "gamma", mustgather.Gathering{}, mustgather.ErrNotFound},
		{"the empty name is never found", "", mustgather.Gathering{}, mustgather.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.GetByName(t.Context(), tc.query)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("GetByName(%q) error = %v, want %v", tc.query, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("GetByName(%q) (-want +got):\n%s", tc.query, diff)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	js := jetStream(t, testenv.NATS(t))
	ctx := t.Context()

	t.Run("an empty store lists nothing", func(t *testing.T) {
		got, err := newStore(t, js, Config{}).List(ctx, mustgather.Filter{})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(got) != 0 {
			t.Errorf("List = %v, want nothing", ids(got))
		}
	})

	st := newStore(t, js, Config{})
	// 1 alpha new, 2 beta inprogress, 3 alpha completed, 4 alpha inprogress, 5 "" new, 6 beta error
	for _, name := range []string{"alpha", "beta", "alpha", "alpha", "", "beta"} {
		mustCreate(t, st, gathering(name))
	}
	now := time.Now()
	for _, id := range []mustgather.ID{2, 4} {
		if _, err := st.Claim(ctx, id, now); err != nil {
			t.Fatalf("Claim(%d): %v", id, err)
		}
	}
	mustApply(t, st, mustgather.Update{ID: 3, Seq: 1, Status: mustgather.StatusCompleted, Time: now})
	mustApply(t, st, mustgather.Update{ID: 6, Seq: 1, Status: mustgather.StatusError, Time: now})

	for _, tc := range []struct {
		name   string
		filter mustgather.Filter
		want   []mustgather.ID
	}{
		{"no filter lists all in id order", mustgather.Filter{}, []mustgather.ID{1, 2, 3, 4, 5, 6}},
		{"a custom-name selects its gatherings", mustgather.Filter{CustomName: "alpha"}, []mustgather.ID{1, 3, 4}},
		{"a status selects its gatherings", mustgather.Filter{Status: mustgather.StatusInProgress}, []mustgather.ID{2, 4}},
		{"custom-name and status both apply", mustgather.Filter{CustomName: "beta", Status: mustgather.StatusError}, []mustgather.ID{6}},
		{"a limit keeps the highest ids, in order", mustgather.Filter{Limit: 2}, []mustgather.ID{5, 6}},
		{"a limit applies after the filter", mustgather.Filter{CustomName: "alpha", Limit: 2}, []mustgather.ID{3, 4}},
		{"a limit above the count keeps all", mustgather.Filter{Status: mustgather.StatusNew, Limit: 10}, []mustgather.ID{1, 5}},
		{"a filter nothing matches lists nothing", mustgather.Filter{CustomName: "gamma"}, []mustgather.ID{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.List(ctx, tc.filter)
			if err != nil {
				t.Fatalf("List(%+v): %v", tc.filter, err)
			}
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("List(%+v) ids (-want +got):\n%s", tc.filter, diff)
			}
			for _, g := range got {
				if !tc.filter.Match(g) {
					t.Errorf("List(%+v) returned gathering %d that does not match: %+v", tc.filter, g.ID, g)
				}
			}
		})
	}

	t.Run("a cancelled context stops the listing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := st.List(ctx, mustgather.Filter{}); !errors.Is(err, context.Canceled) {
			t.Errorf("List with a cancelled context: error = %v, want context.Canceled", err)
		}
	})
}

func TestClaim(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	ctx := t.Context()

	t.Run("of concurrent claims exactly one succeeds", func(t *testing.T) {
		g := mustCreate(t, st, gathering("claimed"))
		const claims = 10
		errs := make(chan error, claims)
		var wg sync.WaitGroup
		for range claims {
			wg.Go(func() {
				_, err := st.Claim(ctx, g.ID, time.Now())
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, mustgather.ErrAlreadyClaimed):
				t.Errorf("Claim: error = %v, want ErrAlreadyClaimed", err)
			}
		}
		if won != 1 {
			t.Errorf("%d of %d claims succeeded, want 1", won, claims)
		}
		got, err := st.Get(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != mustgather.StatusInProgress {
			t.Errorf("status after claim = %s, want inprogress", got.Status)
		}
	})

	t.Run("a later claim returns the gathering as it is", func(t *testing.T) {
		g := mustCreate(t, st, gathering("twice"))
		first, err := st.Claim(ctx, g.ID, time.Now())
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		second, err := st.Claim(ctx, g.ID, time.Now())
		if !errors.Is(err, mustgather.ErrAlreadyClaimed) {
			t.Fatalf("second Claim error = %v, want ErrAlreadyClaimed", err)
		}
		if diff := cmp.Diff(first, second); diff != "" {
			t.Errorf("second Claim (-first +second):\n%s", diff)
		}
	})

	t.Run("a missing gathering is not found", func(t *testing.T) {
		if _, err := st.Claim(ctx, 999, time.Now()); !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("Claim(999) error = %v, want ErrNotFound", err)
		}
	})
}

func TestApply(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	// Later than any CreatedAt, so that every update moves UpdatedAt.
	t0 := time.Now().Add(time.Hour)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	progress := func(seq uint64, out string) mustgather.Update {
		return mustgather.Update{Seq: seq, Status: mustgather.StatusInProgress, Time: at(int(seq)), ExecOutput: out}
	}
	completed := func(seq uint64) mustgather.Update {
		return mustgather.Update{Seq: seq, Status: mustgather.StatusCompleted, Time: at(int(seq)), ExecOutput: "done", ArchiveName: "a.tar.gz", ArchiveSize: 1234}
	}

	type step struct {
		u       mustgather.Update
		wantErr error
	}
	for _, tc := range []struct {
		name  string
		steps []step
		// want is the end state; ID, CreatedAt and the request fields come
		// from the created gathering.
		want mustgather.Gathering
	}{
		{
			name:  "updates in order are applied",
			steps: []step{{u: progress(1, "one")}, {u: progress(2, "two")}, {u: completed(3)}},
			want: mustgather.Gathering{Status: mustgather.StatusCompleted, Seq: 3, UpdatedAt: mustgather.Timestamp{Time: at(3)},
				ExecOutput: "done", ArchiveName: "a.tar.gz", ArchiveSize: 1234},
		},
		{
			name:  "a repeated update is stale and changes nothing",
			steps: []step{{u: progress(1, "one")}, {u: progress(1, "again"), wantErr: mustgather.ErrStale}},
			want:  mustgather.Gathering{Status: mustgather.StatusInProgress, Seq: 1, UpdatedAt: mustgather.Timestamp{Time: at(1)}, ExecOutput: "one"},
		},
		{
			name:  "an older update is stale and changes nothing",
			steps: []step{{u: progress(2, "two")}, {u: progress(1, "one"), wantErr: mustgather.ErrStale}},
			want:  mustgather.Gathering{Status: mustgather.StatusInProgress, Seq: 2, UpdatedAt: mustgather.Timestamp{Time: at(2)}, ExecOutput: "two"},
		},
		{
			name: "an ended gathering does not change",
			steps: []step{
				{u: mustgather.Update{Seq: 1, Status: mustgather.StatusError, Time: at(1), ExecOutput: "failed", Reason: "failed"}},
				{u: progress(2, "late"), wantErr: mustgather.ErrStale},
				{u: completed(3), wantErr: mustgather.ErrStale},
			},
			want: mustgather.Gathering{Status: mustgather.StatusError, Seq: 1, UpdatedAt: mustgather.Timestamp{Time: at(1)}, ExecOutput: "failed", Reason: "failed"},
		},
		{
			name:  "a change to new is an illegal transition",
			steps: []step{{u: mustgather.Update{Seq: 1, Status: mustgather.StatusNew, Time: at(1)}, wantErr: mustgather.ErrTransition}},
			want:  mustgather.Gathering{Status: mustgather.StatusNew},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := mustCreate(t, st, gathering(""))
			for _, s := range tc.steps {
				s.u.ID = g.ID
				before, err := st.Get(t.Context(), g.ID)
				if err != nil {
					t.Fatal(err)
				}
				got, err := st.Apply(t.Context(), s.u)
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("Apply(%+v) error = %v, want %v", s.u, err, s.wantErr)
				}
				if err != nil {
					if diff := cmp.Diff(before, got); diff != "" {
						t.Errorf("Apply(%+v) that failed did not return the gathering as it is (-want +got):\n%s", s.u, diff)
					}
				}
			}
			want := g
			want.Status, want.Seq, want.ExecOutput = tc.want.Status, tc.want.Seq, tc.want.ExecOutput
			want.ArchiveName, want.ArchiveSize, want.Reason = tc.want.ArchiveName, tc.want.ArchiveSize, tc.want.Reason
			if !tc.want.UpdatedAt.IsZero() {
				want.UpdatedAt = tc.want.UpdatedAt
			}
			got, err := st.Get(t.Context(), g.ID)
			if err != nil {
				t.Fatal(err)
			}
			// Each write moves the revision on; the steps checked it.
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(mustgather.Gathering{}, "Revision")); diff != "" {
				t.Errorf("gathering after the updates (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("an update to a missing gathering is not found", func(t *testing.T) {
		t.Parallel()
		_, err := st.Apply(t.Context(), mustgather.Update{ID: 9999, Seq: 1, Status: mustgather.StatusInProgress})
		if !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("Apply error = %v, want ErrNotFound", err)
		}
	})
}

func TestApplyConcurrentUpdatesEndAtTheHighestSeq(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	const n = 20
	for _, tc := range []struct {
		name string
		last mustgather.Status
	}{
		{"progress updates only", mustgather.StatusInProgress},
		{"progress updates then completed", mustgather.StatusCompleted},
		{"progress updates then error", mustgather.StatusError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := mustCreate(t, st, gathering(""))
			if _, err := st.Claim(t.Context(), g.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
			updates := make([]mustgather.Update, n)
			for i := range updates {
				updates[i] = mustgather.Update{ID: g.ID, Seq: uint64(i + 1), Status: mustgather.StatusInProgress, Time: time.Now(), ExecOutput: strings.Repeat("x", i+1)}
			}
			updates[n-1].Status = tc.last
			rand.Shuffle(n, func(i, j int) { updates[i], updates[j] = updates[j], updates[i] })

			var wg sync.WaitGroup
			errs := make(chan error, n)
			for _, u := range updates {
				wg.Go(func() {
					if _, err := st.Apply(t.Context(), u); err != nil && !errors.Is(err, mustgather.ErrStale) {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Apply: %v", err)
			}
			got, err := st.Get(t.Context(), g.ID)
			if err != nil {
				t.Fatal(err)
			}
			type state struct {
				Status     mustgather.Status
				Seq        uint64
				ExecOutput string
			}
			want := state{tc.last, n, strings.Repeat("x", n)}
			if diff := cmp.Diff(want, state{got.Status, got.Seq, got.ExecOutput}); diff != "" {
				t.Errorf("end state (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnfinished(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	ctx := t.Context()
	unfinished := func() []mustgather.ID {
		t.Helper()
		got, err := st.Unfinished(ctx)
		if err != nil {
			t.Fatalf("Unfinished: %v", err)
		}
		return got
	}

	if got := unfinished(); len(got) != 0 {
		t.Errorf("Unfinished of an empty store = %v, want none", got)
	}
	for range 4 {
		mustCreate(t, st, gathering(""))
	}
	if _, err := st.Claim(ctx, 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	mustApply(t, st, mustgather.Update{ID: 4, Seq: 1, Status: mustgather.StatusInProgress, Time: time.Now()})
	if diff := cmp.Diff([]mustgather.ID{1, 2, 3, 4}, unfinished()); diff != "" {
		t.Errorf("Unfinished while none has ended (-want +got):\n%s", diff)
	}

	mustApply(t, st, mustgather.Update{ID: 1, Seq: 1, Status: mustgather.StatusCompleted, Time: time.Now()})
	mustApply(t, st, mustgather.Update{ID: 4, Seq: 2, Status: mustgather.StatusError, Time: time.Now()})
	if diff := cmp.Diff([]mustgather.ID{1, 2, 3, 4}, unfinished()); diff != "" {
		t.Errorf("Unfinished after two ended, before they are settled (-want +got):\n%s", diff)
	}
	for _, id := range []mustgather.ID{1, 4, 4} {
		if err := st.Settle(ctx, id); err != nil {
			t.Fatalf("Settle(%d): %v", id, err)
		}
	}
	if diff := cmp.Diff([]mustgather.ID{2, 3}, unfinished()); diff != "" {
		t.Errorf("Unfinished after two were settled (-want +got):\n%s", diff)
	}

	if _, err := st.Apply(ctx, mustgather.Update{ID: 1, Seq: 2, Status: mustgather.StatusInProgress, Time: time.Now()}); !errors.Is(err, mustgather.ErrStale) {
		t.Fatalf("Apply to an ended gathering: error = %v, want ErrStale", err)
	}
	if diff := cmp.Diff([]mustgather.ID{2, 3}, unfinished()); diff != "" {
		t.Errorf("Unfinished after a stale update (-want +got):\n%s", diff)
	}
}

func TestApplyAtWritesOnlyOverTheRevisionItWasGiven(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	ctx := t.Context()
	read := mustCreate(t, st, gathering("a"))
	claimed, err := st.Claim(ctx, read.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claimed.Revision <= read.Revision {
		t.Fatalf("revision after Claim %d, not above %d", claimed.Revision, read.Revision)
	}
	fail := mustgather.Update{ID: read.ID, Seq: 1, Status: mustgather.StatusError, Time: time.Now(), Reason: "no runner"}

	// Decided on the gathering as it was before the claim: refused.
	got, err := st.ApplyAt(ctx, fail, read.Revision)
	if !errors.Is(err, mustgather.ErrStale) {
		t.Fatalf("ApplyAt an old revision: error = %v, want ErrStale", err)
	}
	if diff := cmp.Diff(claimed, got); diff != "" {
		t.Errorf("ApplyAt an old revision returns the gathering as it is (-want +got):\n%s", diff)
	}
	if now, _ := st.Get(ctx, read.ID); now.Status != mustgather.StatusInProgress {
		t.Errorf("status after a refused ApplyAt = %s, want inprogress", now.Status)
	}

	// Decided on the gathering as it is: written, with its reason.
	got, err = st.ApplyAt(ctx, fail, claimed.Revision)
	if err != nil {
		t.Fatalf("ApplyAt the current revision: %v", err)
	}
	stored, err := st.Get(ctx, read.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, stored); diff != "" {
		t.Errorf("stored gathering differs from what ApplyAt returned (-returned +stored):\n%s", diff)
	}
	if stored.Status != mustgather.StatusError || stored.Reason != "no runner" || stored.Seq != 1 {
		t.Errorf("after ApplyAt: status %s, reason %q, seq %d", stored.Status, stored.Reason, stored.Seq)
	}
}

func TestListHoldsEveryGatheringWhileRecordsAreRewritten(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	ctx := t.Context()
	const records = 300
	for range records {
		mustCreate(t, st, gathering(""))
	}
	// Writers rewrite records as the recorder does under load, each its
	// own stripe of ids, so every record moves to the stream's tail again
	// and again while the lists run.
	stop := make(chan struct{})
	var writers sync.WaitGroup
	defer func() { close(stop); writers.Wait() }()
	for w := range 4 {
		writers.Go(func() {
			for seq := uint64(1); ; seq++ {
				for id := mustgather.ID(w + 1); id <= records; id += 4 {
					select {
					case <-stop:
						return
					default:
					}
					u := mustgather.Update{ID: id, Seq: seq, Status: mustgather.StatusInProgress, Time: time.Now(), ExecOutput: strings.Repeat("x", int(seq%64))}
					if _, err := st.Apply(ctx, u); err != nil {
						t.Errorf("Apply: %v", err)
						return
					}
				}
			}
		})
	}
	short := 0
	for range 40 {
		list, err := st.List(ctx, mustgather.Filter{})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != records {
			short++
		}
		for i, g := range list {
			if g.ID != mustgather.ID(i+1) {
				t.Fatalf("list[%d] is gathering %d; the list skips or repeats ids", i, g.ID)
			}
		}
	}
	if short > 0 {
		t.Errorf("%d of 40 lists left out gatherings that exist", short)
	}
}

func TestLeases(t *testing.T) {
	t.Parallel()
	js := jetStream(t, testenv.NATS(t))
	ctx := t.Context()
	held := func(t *testing.T, st *Store, id mustgather.ID) bool {
		t.Helper()
		ok, err := st.Held(ctx, id)
		if err != nil {
			t.Fatalf("Held(%d): %v", id, err)
		}
		return ok
	}

	t.Run("a lease is held from Hold until Release", func(t *testing.T) {
		t.Parallel()
		st := newStore(t, js, Config{})
		if held(t, st, 7) {
			t.Fatal("Held before Hold = true")
		}
		if err := st.Hold(ctx, 7, "a"); err != nil {
			t.Fatalf("Hold: %v", err)
		}
		if !held(t, st, 7) {
			t.Fatal("Held after Hold = false")
		}
		if held(t, st, 8) {
			t.Error("Held of another id = true")
		}
		if err := st.Release(ctx, 7, "a"); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if held(t, st, 7) {
			t.Error("Held after Release = true")
		}
		if err := st.Release(ctx, 7, "a"); err != nil {
			t.Errorf("Release of a released lease: %v", err)
		}
		if err := st.Hold(ctx, 7, "b"); err != nil {
			t.Errorf("Hold of a released lease by another holder: %v", err)
		}
	})

	t.Run("another holder can neither take, renew nor release a lease", func(t *testing.T) {
		t.Parallel()
		st := newStore(t, js, Config{})
		if err := st.Hold(ctx, 9, "first"); err != nil {
			t.Fatalf("Hold: %v", err)
		}
		if err := st.Hold(ctx, 9, "second"); !errors.Is(err, mustgather.ErrLeaseHeld) {
			t.Errorf("Hold by a second holder: error = %v, want ErrLeaseHeld", err)
		}
		if err := st.Release(ctx, 9, "second"); err != nil {
			t.Errorf("Release by a second holder: %v", err)
		}
		if !held(t, st, 9) {
			t.Error("a second holder's Release dropped the first holder's lease")
		}
		if err := st.Hold(ctx, 9, "first"); err != nil {
			t.Errorf("renewal by the holder: %v", err)
		}
	})

	t.Run("a lease nobody renews lapses", func(t *testing.T) {
		t.Parallel()
		st := newStore(t, js, Config{LeaseTTL: time.Second})
		if err := st.Hold(ctx, 1, "a"); err != nil {
			t.Fatalf("Hold: %v", err)
		}
		start := time.Now()
		testenv.Eventually(t, 10*time.Second, "the lease to lapse", func() bool {
			ok, err := st.Held(ctx, 1)
			if err != nil {
				t.Fatalf("Held: %v", err)
			}
			return !ok
		})
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Errorf("lease with a TTL of 1s lapsed after %s", d)
		}
	})

	t.Run("a lease that is renewed stays held past its TTL", func(t *testing.T) {
		t.Parallel()
		st := newStore(t, js, Config{LeaseTTL: time.Second})
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(2500 * time.Millisecond)
		for time.Now().Before(end) {
			if err := st.Hold(ctx, 1, "a"); err != nil {
				t.Fatalf("Hold: %v", err)
			}
			if !held(t, st, 1) {
				t.Fatal("renewed lease is not held")
			}
			<-tick.C
		}
	})
}

func TestParallelCallsEachIndexOnce(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, parallelChunk - 1, parallelChunk, 4*parallelChunk + 3, 10_000} {
		calls := make([]int, n)
		if err := parallel(n, func(i int) error { calls[i]++; return nil }); err != nil {
			t.Fatalf("parallel(%d): %v", n, err)
		}
		for i, c := range calls {
			if c != 1 {
				t.Fatalf("parallel(%d) called fn(%d) %d times, want once", n, i, c)
			}
		}
	}
	boom := errors.New("boom")
	if err := parallel(1000, func(i int) error {
		if i == 777 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Errorf("parallel with a failing call: error = %v, want %v", err, boom)
	}
}

// TestConflictRecognisesLostCompareAndSet pins down the errors nats.go
// returns for a lost compare-and-set, which every retry loop relies on.
func TestConflictRecognisesLostCompareAndSet(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	ctx := t.Context()
	rev, err := st.kv.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.kv.Update(ctx, "k", []byte("2"), rev); err != nil {
		t.Fatal(err)
	}
	_, createErr := st.kv.Create(ctx, "k", []byte("3"))
	_, updateErr := st.kv.Update(ctx, "k", []byte("3"), rev)
	_, getErr := st.kv.Get(ctx, "missing")

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"Create of a key that exists is a conflict", createErr, true},
		{"Update at an old revision is a conflict", updateErr, true},
		{"a missing key is not a conflict", getErr, false},
		{"success is not a conflict", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := conflict(tc.err); got != tc.want {
				t.Errorf("conflict(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
