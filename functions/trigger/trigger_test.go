package trigger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/functions/trigger"
	"github.com/kubev2v/must-gather-functions/internal/forklift"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// now is when the tests run: ten minutes after the failure in testdata.
var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// apiServer is what the API server says now: the objects of testdata
// that a test has put there. The trigger reads it, whatever the events
// carry.
type apiServer struct {
	mu      sync.Mutex
	objects map[string][]byte // kind/namespace/name
}

func (a *apiServer) put(t *testing.T, file string) {
	t.Helper()
	data := payload(t, file)
	var o struct {
		Kind     string
		Metadata forklift.Meta
	}
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.objects[o.Kind+"/"+o.Metadata.Namespace+"/"+o.Metadata.Name] = data
}

func (a *apiServer) get(kind, ns, name string, v any) error {
	a.mu.Lock()
	data, ok := a.objects[kind+"/"+ns+"/"+name]
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s %s/%s: %w", kind, ns, name, forklift.ErrNotFound)
	}
	return json.Unmarshal(data, v)
}

func (a *apiServer) Migration(_ context.Context, ns, name string) (m forklift.Migration, err error) {
	return m, a.get(forklift.KindMigration, ns, name, &m)
}

func (a *apiServer) Plan(_ context.Context, ns, name string) (p forklift.Plan, err error) {
	return p, a.get(forklift.KindPlan, ns, name, &p)
}

func (a *apiServer) Migrations(_ context.Context, ns string) ([]forklift.Migration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []forklift.Migration
	for k, data := range a.objects {
		if !strings.HasPrefix(k, forklift.KindMigration+"/"+ns) {
			continue
		}
		var m forklift.Migration
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func payload(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// env is a trigger's durable surroundings: the store, bus and marks on one
// embedded NATS server, which outlive any one Trigger.
type env struct {
	api    *apiServer
	js     jetstream.JetStream
	store  *jsstore.Store
	bus    *natsbus.Bus
	bucket string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(testenv.Conn(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := jsstore.New(ctx, js, jsstore.Config{Bucket: "g", LeaseBucket: "l"})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := natsbus.New(ctx, js, natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &env{api: &apiServer{objects: map[string][]byte{}}, js: js, store: store, bus: bus, bucket: "marks"}
}

// trigger returns a new Trigger on e, as a process that starts (again).
func (e *env) trigger(t *testing.T) *trigger.Trigger {
	t.Helper()
	marks, err := jsstore.NewMarks(context.Background(), e.js, e.bucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	return trigger.New(trigger.Config{RequestedBy: "system:serviceaccount:mtv:trigger"}, trigger.Deps{
		Store: e.store, Events: e.bus, Marks: marks, Cluster: e.api, Policy: mustgather.DefaultPolicy(),
		Now: func() time.Time { return now },
	})
}

// deliver sends the ApiServerSource event whose data is the file.
func deliver(t *testing.T, tr *trigger.Trigger, typ, file string) {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID(file)
	e.SetSource("https://kubernetes.default.svc")
	e.SetType(typ)
	if err := e.SetData(cloudevents.ApplicationJSON, payload(t, file)); err != nil {
		t.Fatal(err)
	}
	if err := tr.HandleEvent(context.Background(), e); err != nil {
		t.Fatalf("deliver %s: %v", file, err)
	}
}

func gatherings(t *testing.T, e *env) []mustgather.Gathering {
	t.Helper()
	list, err := e.store.List(context.Background(), mustgather.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

const (
	failedName = "plan:mig-plan-cold:8a3d9b7c-5e2f-4c1a-9d3b-7f6e5a4c3b21"
	add        = trigger.EventAdd
	update     = trigger.EventUpdate
)

type delivery struct {
	// state is what the API server holds when the event comes.
	state     []string
	typ, file string
	// restart starts a new Trigger on the same state before it.
	restart bool
}

func TestAFailedMigrationStartsExactlyOneGathering(t *testing.T) {
	failed := []string{"migration-failed.json", "plan-failed.json"}
	for _, tc := range []struct {
		name       string
		deliveries []delivery
		want       int
	}{
		{"a failed migration starts one gathering", []delivery{{state: failed, typ: update, file: "migration-failed.json"}}, 1},
		{"a succeeded migration starts nothing", []delivery{{state: []string{"migration-succeeded.json"}, typ: update, file: "migration-succeeded.json"}}, 0},
		{"a canceled migration starts nothing, though Failed is true too", []delivery{{state: []string{"migration-canceled.json"}, typ: update, file: "migration-canceled.json"}}, 0},
		{"a running migration starts nothing", []delivery{{state: []string{"migration-running.json"}, typ: add, file: "migration-running.json"}}, 0},
		{"a repeated delivery starts one", []delivery{
			{state: failed, typ: update, file: "migration-failed.json"},
			{typ: update, file: "migration-failed.json"},
			{typ: update, file: "migration-failed.json"},
		}, 1},
		{"status-only updates after the failure start one", []delivery{
			{state: []string{"migration-running.json"}, typ: add, file: "migration-running.json"},
			{state: failed, typ: update, file: "migration-failed.json"},
			{state: []string{"migration-failed-status-only.json"}, typ: update, file: "migration-failed-status-only.json"},
		}, 1},
		{"the same failure from both objects starts one", []delivery{
			{state: failed, typ: update, file: "plan-failed.json"},
			{typ: update, file: "migration-failed.json"},
		}, 1},
		{"a restart between deliveries starts one", []delivery{
			{state: failed, typ: update, file: "migration-failed.json"},
			{restart: true, typ: update, file: "migration-failed-status-only.json"},
			{restart: true, typ: update, file: "plan-failed.json"},
		}, 1},
		{"an event that says failed starts nothing while the API server says running", []delivery{
			{state: []string{"migration-running.json"}, typ: update, file: "migration-failed.json"},
		}, 0},
		{"a plan whose migration is gone starts nothing", []delivery{
			{state: []string{"plan-failed.json"}, typ: update, file: "plan-failed.json"},
		}, 0},
		{"a failure older than the look-back starts nothing", []delivery{
			{state: []string{"migration-failed-long-ago.json"}, typ: update, file: "migration-failed-long-ago.json"},
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tr := e.trigger(t)
			for _, d := range tc.deliveries {
				for _, f := range d.state {
					e.api.put(t, f)
				}
				if d.restart {
					tr = e.trigger(t)
				}
				deliver(t, tr, d.typ, d.file)
			}
			got := gatherings(t, e)
			if len(got) != tc.want {
				t.Fatalf("%d gatherings, want %d: %+v", len(got), tc.want, got)
			}
			if tc.want == 1 {
				checkFailedGathering(t, got[0])
			}
		})
	}
}

// checkFailedGathering checks the gathering that migration-failed.json
// starts.
func checkFailedGathering(t *testing.T, g mustgather.Gathering) {
	t.Helper()
	for _, c := range []struct{ field, got, want string }{
		{"command", g.Command, "PLAN='mig-plan-cold' NS='openshift-mtv' /usr/bin/targeted"},
		{"custom-name", g.CustomName, failedName},
		{"requested-by", g.RequestedBy, "system:serviceaccount:mtv:trigger"},
		{"cause", g.Cause, "migration openshift-mtv/mig-plan-cold-x7k2p failed"},
		{"status", string(g.Status), string(mustgather.StatusNew)},
		{"exec-output", g.ExecOutput, "migration openshift-mtv/mig-plan-cold-x7k2p failed: The migration has FAILED.\n" +
			"vm vm-7595 (rhel9-db): error in phase ConvertGuest: virt-v2v: error: inspection could not detect the source guest\n" +
			"vm vm-7595 (rhel9-db): Failed: The VM migration has FAILED.\n---\n"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
}

func TestConcurrentDeliveriesOfOneFailureStartOneGathering(t *testing.T) {
	e := newEnv(t)
	e.api.put(t, "migration-failed.json")
	e.api.put(t, "plan-failed.json")
	var wg sync.WaitGroup
	for i := range 8 {
		tr := e.trigger(t) // a replica each
		file := []string{"migration-failed.json", "plan-failed.json"}[i%2]
		wg.Go(func() { deliver(t, tr, update, file) })
	}
	wg.Wait()
	if got := gatherings(t, e); len(got) != 1 {
		t.Fatalf("%d gatherings, want 1", len(got))
	}
}

func TestTheGatheringsOutputKeepsTheFailureFirst(t *testing.T) {
	e := newEnv(t)
	e.api.put(t, "migration-failed.json")
	deliver(t, e.trigger(t), update, "migration-failed.json")
	g := gatherings(t, e)[0]
	ctx := context.Background()
	if _, err := e.store.Claim(ctx, g.ID, now); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Apply(ctx, mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusInProgress, Time: now, ExecOutput: "gathering plan mig-plan-cold\n"})
	if err != nil {
		t.Fatal(err)
	}
	if want := g.ExecOutput + "gathering plan mig-plan-cold\n"; got.ExecOutput != want {
		t.Fatalf("exec-output = %q, want %q", got.ExecOutput, want)
	}
}

func TestCatchUpStartsRecentFailuresOnly(t *testing.T) {
	e := newEnv(t)
	for _, f := range []string{"migration-failed.json", "plan-failed.json", "migration-failed-long-ago.json", "migration-succeeded.json", "migration-canceled.json"} {
		e.api.put(t, f)
	}
	for range 2 { // a start, then a restart
		if err := e.trigger(t).CatchUp(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := gatherings(t, e)
	if len(got) != 1 {
		t.Fatalf("%d gatherings, want 1: %+v", len(got), got)
	}
	checkFailedGathering(t, got[0])
}

func TestAnEventOfAnotherObjectIsDropped(t *testing.T) {
	e := newEnv(t)
	ev := cloudevents.NewEvent()
	ev.SetID("1")
	ev.SetSource("s")
	ev.SetType(update)
	_ = ev.SetData(cloudevents.ApplicationJSON, map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p", "namespace": "n"}})
	if err := e.trigger(t).HandleEvent(context.Background(), ev); err == nil {
		t.Fatal("a Pod's event was taken")
	}
}
