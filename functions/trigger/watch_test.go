package trigger_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/functions/trigger"
	"github.com/kubev2v/must-gather-functions/internal/forklift"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// TestAWatchedMigrationThatFailsStartsOneGathering runs the watch path
// against a real control plane with minimal Forklift CRDs
// (testdata/crds.yaml): a Plan and a running Migration are created, the
// Migration's Failed condition is set through the status subresource, and
// one gathering of the plan appears, also after status-only updates and a
// restart of the watch.
func TestAWatchedMigrationThatFailsStartsOneGathering(t *testing.T) {
	k := kube.Start(t)
	k.InstallCRDs(t, payload(t, "crds.yaml"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(k.Admin)
	dyn := dynamic.NewForConfigOrDie(k.Admin)
	const ns = "openshift-mtv"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	plan := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "forklift.konveyor.io/v1beta1", "kind": "Plan",
		"metadata": map[string]any{"name": "mig-plan-cold", "namespace": ns},
		"spec":     map[string]any{"targetNamespace": "vms"},
	}}
	plan, err := dyn.Resource(forklift.Plans).Namespace(ns).Create(ctx, plan, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mig := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "forklift.konveyor.io/v1beta1", "kind": "Migration",
		"metadata": map[string]any{"name": "mig-plan-cold-x7k2p", "namespace": ns},
		"spec":     map[string]any{"plan": map[string]any{"name": "mig-plan-cold", "namespace": ns, "uid": string(plan.GetUID())}},
	}}
	migs := dyn.Resource(forklift.Migrations).Namespace(ns)
	if mig, err = migs.Create(ctx, mig, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	e := newEnv(t)
	client, err := forklift.NewClient(k.Admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	// planHandled holds when each handled change of the Plan began: one
	// that began after a status write saw that write.
	var mu sync.Mutex
	var planHandled []time.Time
	watch := func() (stop func()) {
		marks, err := jsstore.NewMarks(ctx, e.js, e.bucket, 1)
		if err != nil {
			t.Fatal(err)
		}
		tr := trigger.New(trigger.Config{Namespaces: []string{ns}}, trigger.Deps{
			Store: e.store, Events: e.bus, Marks: marks, Cluster: client, Policy: mustgather.DefaultPolicy(),
		})
		handle := func(ctx context.Context, ch forklift.Change) error {
			began := time.Now()
			err := tr.Handle(ctx, ch)
			if err == nil && ch.Kind == forklift.KindPlan {
				mu.Lock()
				planHandled = append(planHandled, began)
				mu.Unlock()
			}
			return err
		}
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- client.Watch(wctx, tr.Namespaces(), handle) }()
		return func() {
			wcancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	stop := watch()
	defer func() { stop() }()

	setStatus := func(status map[string]any) {
		t.Helper()
		cur, err := migs.Get(ctx, mig.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Object["status"] = status
		if _, err := migs.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cond := func(typ, msg string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "category": "Advisory", "message": msg,
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "durable": true}
	}
	setStatus(map[string]any{"conditions": []any{cond("Running", "The migration is RUNNING.")}})
	failed := map[string]any{
		"conditions": []any{cond("Failed", "The migration has FAILED.")},
		"vms": []any{map[string]any{"id": "vm-7595", "name": "rhel9-db", "phase": "Completed",
			"error": map[string]any{"phase": "ConvertGuest", "reasons": []any{"disk copy failed"}}}},
	}
	setStatus(failed)

	wantName := "plan:mig-plan-cold:" + string(plan.GetUID())
	var g mustgather.Gathering
	testenv.Eventually(t, 30*time.Second, "a gathering of the failed migration's plan", func() bool {
		g, err = e.store.GetByName(ctx, wantName)
		return err == nil
	})
	if want := "PLAN='mig-plan-cold' NS='openshift-mtv' /usr/bin/targeted"; g.Command != want {
		t.Errorf("command = %q, want %q", g.Command, want)
	}
	if want := "migration openshift-mtv/mig-plan-cold-x7k2p failed"; g.Cause != want {
		t.Errorf("cause = %q, want %q", g.Cause, want)
	}

	// Status-only updates, and a restart whose first list sees the failed
	// migration again, start nothing more.
	failed["completed"] = time.Now().UTC().Format(time.RFC3339)
	setStatus(failed)
	stop()
	stop = watch()
	plans := dyn.Resource(forklift.Plans).Namespace(ns)
	setPlanStatus := func(status map[string]any) {
		t.Helper()
		p, err := plans.Get(ctx, "mig-plan-cold", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Object["status"] = status
		if _, err := plans.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	planStatus := map[string]any{"migration": map[string]any{"history": []any{map[string]any{
		"conditions": []any{cond("Failed", "The plan execution has FAILED.")},
		"migration":  map[string]any{"name": mig.GetName(), "namespace": ns, "uid": string(mig.GetUID())},
	}}}}
	setPlanStatus(planStatus)
	// A second, status-only write: the change it makes is handled after the
	// first write, so the handling of the failed plan is then done.
	touched := time.Now()
	planStatus["conditions"] = []any{cond("Failed", "The plan execution has FAILED.")}
	setPlanStatus(planStatus)
	testenv.Eventually(t, 30*time.Second, "the restarted watch to handle the failed plan", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(planHandled, func(began time.Time) bool { return began.After(touched) })
	})
	list, err := e.store.List(ctx, mustgather.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d gatherings, want 1: %+v", len(list), list)
	}
}
