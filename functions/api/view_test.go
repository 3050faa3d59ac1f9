package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// serve sends a request to h and returns its answer.
func serve(h http.Handler, method, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func TestTheViewAnswersAsTheStoreDoes(t *testing.T) {
	t.Parallel()
	// The view keeps exec-outputs up to 64 bytes; the finished gatherings'
	// are longer, so their answers read the store.
	e := newEnv(t, func(e *env, d *Deps) {
		e.view = view.New(e.store, EncodeGathering, view.Config{OutputBytes: 64})
		d.View = e.view
	})
	noView := e.deps
	noView.View = nil
	store := NewServer(noView)
	ctx := context.Background()
	for i := range 600 {
		g := mustgather.NewGathering(mustgather.Request{CustomName: fmt.Sprintf("plan-%d", i%7), Image: "quay.io/konveyor/forklift-must-gather", Timeout: "30m"}, testNow)
		if _, err := e.store.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	e.finish(3, mustgather.StatusCompleted, nil)
	e.finish(500, mustgather.StatusError, nil)
	e.claim(7)
	// A gathering with a name that no other has, then its deletion.
	gone := e.create(`{"custom-name": "gone"}`)
	e.finish(gone.ID, mustgather.StatusCompleted, nil)
	if err := e.store.Delete(ctx, gone.ID, 0); err != nil {
		t.Fatal(err)
	}

	for _, target := range []string{
		"/must-gather",
		"/must-gather?limit=200",
		"/must-gather?limit=1",
		"/must-gather?limit=100000",
		"/must-gather?custom-name=plan-3",
		"/must-gather?custom-name=plan-3&limit=20",
		"/must-gather?status=completed",
		"/must-gather?status=inprogress&limit=3",
		"/must-gather?status=error&custom-name=plan-3",
		"/must-gather?custom-name=none",
		"/must-gather?after=0&limit=10",
		"/must-gather?after=250",
		"/must-gather?after=250&limit=256",
		"/must-gather?after=250&limit=300&custom-name=plan-1",
		"/must-gather?after=100000",
		"/must-gather/1",
		"/must-gather/3",
		"/must-gather/500",
		"/must-gather/plan-4",
		"/must-gather/" + gone.ID.String(),
		"/must-gather/gone",
		"/must-gather/100000",
	} {
		t.Run(target, func(t *testing.T) {
			want, got := serve(store, http.MethodGet, target), serve(e.handler, http.MethodGet, target)
			if got.Code != want.Code {
				t.Errorf("status %d from the view, %d from the store", got.Code, want.Code)
			}
			if diff := cmp.Diff(want.Body.String(), got.Body.String()); diff != "" {
				t.Errorf("body (-store +view):\n%s", diff)
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "X-Content-Type-Options"} {
				if got.Header().Get(h) != want.Header().Get(h) {
					t.Errorf("%s = %q from the view, %q from the store", h, got.Header().Get(h), want.Header().Get(h))
				}
			}
		})
	}
}

func TestAListOrGetOnOneReplicaSeesAGatheringCreatedOnAnother(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := replicaOf(t, a)

	for i := range 30 {
		name := fmt.Sprintf("cross-%d", i)
		g := a.create(`{"custom-name": "` + name + `"}`)
		for _, target := range []string{"/must-gather/" + g.ID.String(), "/must-gather/" + name} {
			if w := serve(b, http.MethodGet, target); w.Code != http.StatusOK {
				t.Fatalf("GET %s on the other replica right after 201: status %d: %s", target, w.Code, w.Body)
			}
		}
		w := serve(b, http.MethodGet, "/must-gather?limit=1")
		var list []mustgather.Gathering
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != g.ID {
			t.Fatalf("list of 1 on the other replica right after 201 of %d: %s", g.ID, w.Body)
		}
		w = serve(b, http.MethodGet, "/must-gather")
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != i+1 {
			t.Fatalf("list on the other replica after %d gatherings holds %d", i+1, len(list))
		}
	}
}

func TestAListWithoutALimitIsStreamed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 2000
	for range n {
		if _, err := e.store.Create(ctx, mustgather.NewGathering(mustgather.Request{Timeout: "30m"}, testNow)); err != nil {
			t.Fatal(err)
		}
	}
	resp := e.do(http.MethodGet, "/must-gather", "", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	if cl := resp.header.Get("Content-Length"); cl != "" {
		t.Errorf("Content-Length %s: the list was not streamed", cl)
	}
	var list []mustgather.Gathering
	if err := json.Unmarshal(resp.body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != n || list[0].ID != 1 || list[n-1].ID != n {
		t.Errorf("the list holds %d gatherings, %d to %d; want 1 to %d", len(list), list[0].ID, list[len(list)-1].ID, n)
	}
}

func TestACursorPagesThroughEveryGathering(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opt  func(*env, *Deps)
	}{
		{"from the view", func(*env, *Deps) {}},
		{"from the store", withoutView},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tt.opt)
			for i := range 25 {
				e.create(fmt.Sprintf(`{"custom-name": "p%d"}`, i%2))
			}
			var got []mustgather.ID
			after := "0"
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("more than 10 pages of 3 of p0's 13")
				}
				resp := e.do(http.MethodGet, "/must-gather?custom-name=p0&limit=3&after="+after, "", nil)
				var page []mustgather.Gathering
				if err := json.Unmarshal(resp.body, &page); err != nil {
					t.Fatalf("status %d: %v: %s", resp.status, err, resp.body)
				}
				if len(page) == 0 {
					break
				}
				for _, g := range page {
					got = append(got, g.ID)
				}
				after = page[len(page)-1].ID.String()
			}
			var want []mustgather.ID
			for id := mustgather.ID(1); id <= 25; id += 2 {
				want = append(want, id)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

func TestABadCursorAnswers400NamingIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, after := range []string{"-1", "x", "1.5", "00"} {
		resp := e.do(http.MethodGet, "/must-gather?after="+after, "", nil)
		var body errorBody
		if err := json.Unmarshal(resp.body, &body); err != nil {
			t.Fatal(err)
		}
		if resp.status != http.StatusBadRequest || body.Field != "after" || !strings.Contains(body.Error, "positive integer") {
			t.Errorf("after=%s: status %d, %+v", after, resp.status, body)
		}
	}
}

func TestReadsGoToTheStoreWhileTheViewIsBehind(t *testing.T) {
	t.Parallel()
	// A view that never runs never catches up.
	e := newEnv(t, func(e *env, d *Deps) {
		e.view = view.New(e.store, EncodeGathering, view.Config{Wait: 10 * time.Millisecond})
		d.View = nil // not run by newEnv
	})
	d := e.deps
	d.View = e.view
	h := NewServer(d)
	g := e.create(`{"custom-name": "x"}`)
	for _, target := range []string{"/must-gather/" + g.ID.String(), "/must-gather"} {
		if w := serve(h, http.MethodGet, target); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"custom-name": "x"`) {
			t.Errorf("GET %s with the view behind: %d %s", target, w.Code, w.Body)
		}
	}
}

func TestAListUnderLoadHoldsEveryGatheringCreatedBeforeIt(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := replicaOf(t, a)

	// POSTs on replica a, four at a time, while replica b lists.
	var mu sync.Mutex
	var created []mustgather.ID
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				g := a.create(`{"custom-name": "load"}`)
				mu.Lock()
				created = append(created, g.ID)
				mu.Unlock()
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for range 20 {
		mu.Lock()
		before := slices.Clone(created)
		mu.Unlock()
		w := serve(b, http.MethodGet, "/must-gather")
		var list []mustgather.Gathering
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
			t.Fatalf("status %d: %v", w.Code, err)
		}
		listed := make(map[mustgather.ID]bool, len(list))
		for _, g := range list {
			listed[g.ID] = true
		}
		for _, id := range before {
			if !listed[id] {
				t.Fatalf("gathering %d got 201 before the list began, and the list of %d misses it", id, len(list))
			}
		}
	}
}

// replicaOf returns another API replica on a's buckets: its own
// connection, store and view.
func replicaOf(t *testing.T, a *env) http.Handler {
	t.Helper()
	js, err := jetstream.New(testenv.Conn(t, a.nats))
	if err != nil {
		t.Fatal(err)
	}
	st, err := jsstore.New(context.Background(), js, a.storeCfg)
	if err != nil {
		t.Fatal(err)
	}
	d := a.deps
	d.Store, d.View = st, view.New(st, EncodeGathering, view.Config{})
	runView(t, d.View)
	return NewServer(d)
}
