package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/trigger"
	"github.com/kubev2v/must-gather-functions/internal/forklift"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// requestedSink plays the Broker behind K_SINK: it takes every event and
// counts the gathering.requested ones by gathering.
type requestedSink struct {
	mu        sync.Mutex
	requested map[string]int // subject (gathering id) → events
}

func newRequestedSink(t *testing.T) (*requestedSink, string) {
	s := &requestedSink{requested: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if e.Type() == eventing.TypeRequested {
			s.mu.Lock()
			s.requested[e.Subject()]++
			s.mu.Unlock()
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *requestedSink) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.requested {
		out[k] = v
	}
	return out
}

// listed returns every gathering the API lists, with all its fields.
func (s *system) listed(t *testing.T) []map[string]any {
	t.Helper()
	resp, err := http.Get(s.base + "/must-gather")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /must-gather: %d %s", resp.StatusCode, b)
	}
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return list
}

// apiServerSourceEvent is the event an ApiServerSource in Resource mode
// sends for a change of obj: its data is the whole object as the API
// server served it.
func apiServerSourceEvent(t *testing.T, typ string, obj *unstructured.Unstructured, id string) cloudevents.Event {
	t.Helper()
	data, err := obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource("https://kubernetes.default.svc")
	e.SetSubject(fmt.Sprintf("/apis/%s/namespaces/%s/%ss/%s", obj.GetAPIVersion(), obj.GetNamespace(), strings.ToLower(obj.GetKind()), obj.GetName()))
	e.SetExtension("kind", obj.GetKind())
	e.SetExtension("name", obj.GetName())
	e.SetExtension("namespace", obj.GetNamespace())
	if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestOverHTTPAFailedMigrationsEventsStartOneGatheringOnlyWhereTheTriggerIsOn
// runs the trigger's HTTP path as Knative delivers to it: Forklift's CRDs,
// a Plan and a Migration on a real control plane; three systems with
// EVENTS_TRANSPORT=http on that cluster (the trigger on, the trigger on
// for another namespace only, and TRIGGER=false); the Migration's Failed
// condition set through its status subresource; then ApiServerSource
// events of the objects as the API server serves them, posted to each
// system's POST / the way a Trigger delivers: binary and structured, each
// twice, from the Migration and from its Plan, and again after a
// status-only update. Exactly one gathering of the plan, targeted and
// named as the Forklift UI looks it up, is requested where the trigger is
// on; none elsewhere.
func TestOverHTTPAFailedMigrationsEventsStartOneGatheringOnlyWhereTheTriggerIsOn(t *testing.T) {
	k := kube.Start(t)
	crds, err := os.ReadFile(filepath.Join("..", "..", "functions", "trigger", "testdata", "crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k.InstallCRDs(t, crds)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(k.Admin)
	dyn := dynamic.NewForConfigOrDie(k.Admin)
	const ns = "openshift-mtv"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	plans := dyn.Resource(forklift.Plans).Namespace(ns)
	plan, err := plans.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "forklift.konveyor.io/v1beta1", "kind": "Plan",
		"metadata": map[string]any{"name": "mig-plan-cold", "namespace": ns},
		"spec":     map[string]any{"targetNamespace": "vms"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	migs := dyn.Resource(forklift.Migrations).Namespace(ns)
	mig, err := migs.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "forklift.konveyor.io/v1beta1", "kind": "Migration",
		"metadata": map[string]any{"name": "mig-plan-cold-x7k2p", "namespace": ns},
		"spec":     map[string]any{"plan": map[string]any{"name": "mig-plan-cold", "namespace": ns, "uid": string(plan.GetUID())}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The systems start while the migration runs: their catch-up on start
	// finds no failure, so whatever starts later came by an event.
	type target struct {
		name    string
		env     map[string]string
		gathers bool
		sink    *requestedSink
		sys     *system
	}
	targets := []*target{
		{name: "on", env: map[string]string{}, gathers: true},
		{name: "another namespace", env: map[string]string{"TRIGGER_NAMESPACES": "konveyor-forklift"}},
		{name: "off", env: map[string]string{"TRIGGER": "false"}},
	}
	for _, tg := range targets {
		var sinkURL string
		tg.sink, sinkURL = newRequestedSink(t)
		env := map[string]string{
			"LOG_LEVEL": "info", "FUNCTIONS": "api,trigger", "EVENTS_TRANSPORT": "http", "K_SINK": sinkURL, "AUTH": "off",
			"KUBECONFIG": k.Kubeconfig, "TRIGGER_REQUESTED_BY": "system:serviceaccount:must-gather-functions:trigger",
		}
		for k, v := range tg.env {
			env[k] = v
		}
		tg.sys = start(t, t.TempDir(), env)
	}
	for _, tg := range targets[:2] {
		testenv.Eventually(t, time.Minute, "the trigger to catch up on start", func() bool {
			return strings.Contains(tg.sys.log.String(), caughtUp)
		})
	}

	setStatus := func(status map[string]any) *unstructured.Unstructured {
		t.Helper()
		cur, err := migs.Get(ctx, mig.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Object["status"] = status
		cur, err = migs.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	cond := func(typ, msg string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "category": "Advisory", "message": msg,
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "durable": true}
	}
	running := setStatus(map[string]any{"conditions": []any{cond("Running", "The migration is RUNNING.")}})
	failedStatus := map[string]any{
		"conditions": []any{cond("Failed", "The migration has FAILED.")},
		"vms": []any{map[string]any{"id": "vm-7595", "name": "rhel9-db", "phase": "Completed",
			"error": map[string]any{"phase": "ConvertGuest", "reasons": []any{"disk copy failed"}}}},
	}
	failed := setStatus(failedStatus)
	failedStatus["completed"] = time.Now().UTC().Format(time.RFC3339)
	statusOnly := setStatus(failedStatus)
	// The Plan's status names the migration in its history, as Forklift's does.
	curPlan, err := plans.Get(ctx, plan.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	curPlan.Object["status"] = map[string]any{"migration": map[string]any{"history": []any{map[string]any{
		"migration":  map[string]any{"name": mig.GetName(), "namespace": ns, "uid": string(mig.GetUID())},
		"plan":       map[string]any{"name": plan.GetName(), "namespace": ns, "uid": string(plan.GetUID())},
		"conditions": []any{cond("Failed", "The plan has FAILED.")},
	}}}}
	if curPlan, err = plans.UpdateStatus(ctx, curPlan, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	deliveries := []cloudevents.Event{
		// An event of the running migration: the trigger reads the API
		// server, which says it failed since.
		apiServerSourceEvent(t, trigger.EventUpdate, running, "e-running"),
		apiServerSourceEvent(t, trigger.EventUpdate, failed, "e-failed"),
		apiServerSourceEvent(t, trigger.EventUpdate, statusOnly, "e-status-only"),
		apiServerSourceEvent(t, trigger.EventUpdate, curPlan, "e-plan"),
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			for _, e := range deliveries {
				for _, enc := range []testenv.Encoding{testenv.Binary, testenv.Structured, testenv.Binary, testenv.Structured} {
					// A Trigger's delivery is handled before it is
					// answered: a 2xx means the gathering is stored.
					if code := testenv.DeliverEvent(t, tg.sys.base+"/", e, enc); code/100 != 2 {
						t.Fatalf("delivery of %s answered %d", e.ID(), code)
					}
				}
			}
			list := tg.sys.listed(t)
			if !tg.gathers {
				if len(list) != 0 {
					t.Fatalf("%d gatherings started, want none: %v", len(list), list)
				}
				if n := len(tg.sink.counts()); n != 0 {
					t.Errorf("%d gatherings requested at K_SINK, want none", n)
				}
				return
			}
			if len(list) != 1 {
				t.Fatalf("%d gatherings, want exactly 1: %v", len(list), list)
			}
			g := list[0]
			want := map[string]any{
				"custom-name":  "plan:mig-plan-cold:" + string(plan.GetUID()),
				"command":      "PLAN='mig-plan-cold' NS='openshift-mtv' /usr/bin/targeted",
				"requested-by": "system:serviceaccount:must-gather-functions:trigger",
				"cause":        "migration openshift-mtv/mig-plan-cold-x7k2p failed",
			}
			for field, v := range want {
				if g[field] != v {
					t.Errorf("%s = %v, want %v", field, g[field], v)
				}
			}
			if out, _ := g["exec-output"].(string); !strings.Contains(out, "The migration has FAILED.") || !strings.Contains(out, "disk copy failed") {
				t.Errorf("exec-output does not begin with the failure:\n%s", out)
			}
			id := fmt.Sprint(g["id"])
			testenv.Eventually(t, 30*time.Second, "gathering.requested at K_SINK", func() bool { return tg.sink.counts()[id] > 0 })
			if c := tg.sink.counts(); len(c) != 1 || c[id] != 1 {
				t.Errorf("gathering.requested events at K_SINK by gathering: %v, want one of %s", c, id)
			}
		})
	}
}
