package view_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// replica is a store on a connection of its own, as another process has.
func replica(t testing.TB, s *natsserver.Server, bucket string) *jsstore.Store {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, s))
	if err != nil {
		t.Fatal(err)
	}
	st, err := jsstore.New(context.Background(), js, jsstore.Config{Bucket: bucket, LeaseBucket: bucket + "-leases"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func encode(g mustgather.Gathering) []byte {
	b, err := json.Marshal(g)
	if err != nil {
		panic(err)
	}
	return b
}

// running starts a view of st and waits until it is ready.
func running(t testing.TB, st *jsstore.Store, cfg view.Config) *view.View {
	t.Helper()
	v := view.New(st, encode, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	testenv.Eventually(t, 10*time.Second, "the view is ready", func() bool { return v.Ready(ctx) == nil })
	return v
}

func gathering(name string) mustgather.Gathering {
	return mustgather.NewGathering(mustgather.Request{CustomName: name, Image: "quay.io/kubev2v/forklift-must-gather", Timeout: "10m"}, time.Now())
}

func body(t testing.TB, r *view.Record) mustgather.Gathering {
	t.Helper()
	var g mustgather.Gathering
	if err := json.Unmarshal(r.Body, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func ids(rs []*view.Record) []mustgather.ID {
	out := []mustgather.ID{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestAReadAfterSyncSeesEveryWriteAnotherReplicaHadAcknowledged(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	bucket := testenv.Name("gatherings")
	writer, reader := replica(t, ns, bucket), replica(t, ns, bucket)
	v := running(t, reader, view.Config{})
	ctx := context.Background()

	// Readers at once, as under load: each Sync must see what was written
	// before it began, however the revision calls are shared.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				name := fmt.Sprintf("w%d-%d", w, i)
				g, err := writer.Create(ctx, gathering(name))
				if err != nil {
					t.Error(err)
					return
				}
				if err := v.Sync(ctx); err != nil {
					t.Error(err)
					return
				}
				if r, ok := v.Get(g.ID); !ok || r.CustomName != name {
					t.Errorf("Get(%d) after Sync = %+v, %v; want the gathering just created", g.ID, r, ok)
				}
				if r, ok := v.GetByName(name); !ok || r.ID != g.ID {
					t.Errorf("GetByName(%s) after Sync = %+v, %v; want id %d", name, r, ok, g.ID)
				}
				if _, err := writer.Claim(ctx, g.ID, time.Now()); err != nil {
					t.Error(err)
					return
				}
				if err := v.Sync(ctx); err != nil {
					t.Error(err)
					return
				}
				if r, _ := v.Get(g.ID); r.Status != mustgather.StatusInProgress || body(t, r).Status != mustgather.StatusInProgress {
					t.Errorf("gathering %d after a claim and Sync: status %s, body %s", g.ID, r.Status, r.Body)
				}
			}
		})
	}
	wg.Wait()
	if got := v.Len(); got != 100 {
		t.Errorf("Len() = %d, want 100", got)
	}
}

func TestTheViewHoldsWhatTheStoreHolds(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	bucket := testenv.Name("gatherings")
	st := replica(t, ns, bucket)
	ctx := context.Background()
	// Written before the view starts, so that it reads them as it catches
	// up: a gathering that is deleted, one whose name a newer one takes.
	old := mustCreate(t, st, gathering("plan"))
	gone := mustCreate(t, st, gathering("gone"))
	end(t, st, gone.ID, "")
	if err := st.Delete(ctx, gone.ID, 0); err != nil {
		t.Fatal(err)
	}
	v := running(t, st, view.Config{OutputBytes: 10})
	newer := mustCreate(t, st, gathering("plan"))
	long := mustCreate(t, st, gathering("long"))
	end(t, st, long.ID, strings.Repeat("x", 11))
	short := mustCreate(t, st, gathering(""))
	end(t, st, short.ID, "0123456789")
	if err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("a deleted gathering is not there, by id or by name", func(t *testing.T) {
		if r, ok := v.Get(gone.ID); ok {
			t.Errorf("Get(%d) = %+v", gone.ID, r)
		}
		if r, ok := v.GetByName("gone"); ok {
			t.Errorf("GetByName(gone) = %+v", r)
		}
	})
	t.Run("a custom-name finds the newest gathering with it", func(t *testing.T) {
		if r, ok := v.GetByName("plan"); !ok || r.ID != newer.ID {
			t.Errorf("GetByName(plan) = %+v, %v; want id %d", r, ok, newer.ID)
		}
	})
	t.Run("a record's body is the gathering as encode made it", func(t *testing.T) {
		r, _ := v.Get(old.ID)
		got := body(t, r)
		want, err := st.Get(ctx, old.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(encode(want)), string(r.Body)); diff != "" {
			t.Errorf("body (-store +view):\n%s", diff)
		}
		if got.ID != old.ID || r.Server != want.Server || r.CustomName != "plan" || r.Status != mustgather.StatusNew {
			t.Errorf("record %+v", r)
		}
	})
	t.Run("a record with a longer exec-output than OutputBytes has no body", func(t *testing.T) {
		if r, _ := v.Get(long.ID); r.Body != nil || r.Status != mustgather.StatusCompleted {
			t.Errorf("record of the long output: %+v", r)
		}
		if r, _ := v.Get(short.ID); r.Body == nil {
			t.Errorf("record of an output of OutputBytes: no body")
		}
	})
	t.Run("pages pass every record in order of id", func(t *testing.T) {
		var all []*view.Record
		var after mustgather.ID
		for {
			page := v.Page(nil, mustgather.Filter{}, after, 2)
			if len(page) == 0 {
				break
			}
			all = append(all, page...)
			after = page[len(page)-1].ID
		}
		want := []mustgather.ID{old.ID, newer.ID, long.ID, short.ID}
		if diff := cmp.Diff(want, ids(all)); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
	})
	t.Run("pages pass only what matches the filter", func(t *testing.T) {
		for _, tt := range []struct {
			f    mustgather.Filter
			want []mustgather.ID
		}{
			{mustgather.Filter{CustomName: "plan"}, []mustgather.ID{old.ID, newer.ID}},
			{mustgather.Filter{Status: mustgather.StatusCompleted}, []mustgather.ID{long.ID, short.ID}},
			{mustgather.Filter{CustomName: "plan", Status: mustgather.StatusCompleted}, []mustgather.ID{}},
		} {
			if diff := cmp.Diff(tt.want, ids(v.Page(nil, tt.f, 0, 100))); diff != "" {
				t.Errorf("%+v (-want +got):\n%s", tt.f, diff)
			}
		}
	})
	t.Run("Before is the cursor of the last n that match", func(t *testing.T) {
		for _, tt := range []struct {
			f    mustgather.Filter
			n    int
			want []mustgather.ID
		}{
			{mustgather.Filter{}, 2, []mustgather.ID{long.ID, short.ID}},
			{mustgather.Filter{}, 10, []mustgather.ID{old.ID, newer.ID, long.ID, short.ID}},
			{mustgather.Filter{CustomName: "plan"}, 1, []mustgather.ID{newer.ID}},
		} {
			after := v.Before(tt.f, tt.n)
			if diff := cmp.Diff(tt.want, ids(v.Page(nil, tt.f, after, tt.n))); diff != "" {
				t.Errorf("%+v, %d (-want +got):\n%s", tt.f, tt.n, diff)
			}
		}
	})
	// Last, as it writes.
	t.Run("a record's element form is made once and changes with the record", func(t *testing.T) {
		made := 0
		upper := func(dst, body []byte) []byte {
			made++
			return append(dst, strings.ToUpper(string(body))...)
		}
		g := mustCreate(t, st, gathering("element"))
		if err := v.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		r, _ := v.Get(g.ID)
		if got, again := r.Element(upper), r.Element(upper); string(got) != strings.ToUpper(string(r.Body)) || string(again) != string(got) || made != 1 {
			t.Errorf("Element = %s, then %s, made %d times; want the body in upper case, made once", got, again, made)
		}
		end(t, st, g.ID, "changed")
		if err := v.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		r, _ = v.Get(g.ID)
		if got := r.Element(upper); !strings.Contains(string(got), "CHANGED") || made != 2 {
			t.Errorf("Element after a write = %s, made %d times; want the new body's", got, made)
		}
	})
}

func TestSyncSaysTheViewIsBehindWhenItDoesNotRun(t *testing.T) {
	t.Parallel()
	st := replica(t, testenv.NATS(t), testenv.Name("gatherings"))
	v := view.New(st, encode, view.Config{Wait: 50 * time.Millisecond})
	if err := v.Sync(context.Background()); !errors.Is(err, view.ErrBehind) {
		t.Errorf("Sync of a view that does not run = %v, want ErrBehind", err)
	}
	if err := v.Ready(context.Background()); !errors.Is(err, view.ErrBehind) {
		t.Errorf("Ready of a view that does not run = %v, want ErrBehind", err)
	}
}

func mustCreate(t testing.TB, st *jsstore.Store, g mustgather.Gathering) mustgather.Gathering {
	t.Helper()
	g, err := st.Create(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// end claims the gathering and completes it with output.
func end(t testing.TB, st *jsstore.Store, id mustgather.ID, output string) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Claim(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	u := mustgather.Update{ID: id, Seq: 1, Status: mustgather.StatusCompleted, Time: time.Now(), ExecOutput: output}
	if _, err := st.Apply(ctx, u); err != nil {
		t.Fatal(err)
	}
}

// restartable is a nats-server that a test stops and starts again on the
// same port and store, as a restarted pod with a persistent volume.
type restartable struct {
	t    *testing.T
	opts natsserver.Options
	srv  *natsserver.Server
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{t: t, opts: natsserver.Options{Port: port, StoreDir: t.TempDir()}}
	r.start()
	t.Cleanup(func() {
		if r.srv != nil {
			r.srv.Stop()
		}
	})
	return r
}

// start starts the server again; the port the stopped one held may take a
// moment to be free.
func (r *restartable) start() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := testenv.Poll(ctx, 50*time.Millisecond, func() error {
		s, err := natsserver.Start(ctx, r.opts)
		r.srv = s
		return err
	})
	if err != nil {
		r.t.Fatalf("start nats-server: %v", err)
	}
}

func (r *restartable) stop() {
	r.srv.Stop()
	r.srv = nil
}

func TestAfterNATSRestartsAReadAfterSyncSeesEveryWriteAcknowledgedBeforeIt(t *testing.T) {
	t.Parallel()
	ns := startRestartable(t)
	bucket := testenv.Name("gatherings")
	writer, reader := replica(t, ns.srv, bucket), replica(t, ns.srv, bucket)
	// Time enough for a loaded machine: what is tested is what a Sync that
	// succeeds guarantees, and that it does succeed.
	v := running(t, reader, view.Config{Wait: 30 * time.Second, Retry: 50 * time.Millisecond})
	ctx := context.Background()
	var earlier []mustgather.Gathering
	for i := range 40 {
		g, err := writer.Create(ctx, gathering(fmt.Sprintf("before-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if g, err = writer.Claim(ctx, g.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		earlier = append(earlier, g)
	}
	for restart := range 4 {
		ns.stop()
		ns.start()
		// Written as the server comes back, while the view's feed is away:
		// each gathering is changed again before the view can read its
		// first write, so that what comes back has passed over revisions.
		var written []mustgather.Gathering
		for i := range 10 {
			var g mustgather.Gathering
			err := testenv.Poll(ctx, 20*time.Millisecond, func() error {
				var err error
				g, err = writer.Create(ctx, gathering(fmt.Sprintf("after-%d-%d", restart, i)))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if g, err = writer.Claim(ctx, g.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
			written = append(written, g)
			// An earlier gathering changes too, after the new ones.
			e := &earlier[(restart*10+i)%len(earlier)]
			if *e, err = writer.Apply(ctx, mustgather.Update{ID: e.ID, Seq: e.Seq + 1, Status: e.Status, ExecOutput: fmt.Sprintf("line %d-%d\n", restart, i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.Sync(ctx); err != nil {
			t.Fatalf("restart %d: Sync: %v", restart+1, err)
		}
		for _, g := range append(written, earlier...) {
			r, ok := v.Get(g.ID)
			switch {
			case !ok:
				t.Errorf("restart %d: gathering %d (%s), written before Sync, is not in the view", restart+1, g.ID, g.CustomName)
			case body(t, r).ExecOutput != g.ExecOutput || r.Status != g.Status:
				t.Errorf("restart %d: gathering %d in the view with output %q, %s; written with %q, %s", restart+1, g.ID, body(t, r).ExecOutput, r.Status, g.ExecOutput, g.Status)
			}
		}
	}
}
