package kubegather

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// TestAFailedGatherOfTheDefaultImageFallsBackToInspect installs Forklift's
// CRDs (minimal ones) on a real kube-apiserver, with a ForkliftController,
// its operator's pod and Deployment, two Plans and a Migration in
// konveyor-forklift, and runs targeted gatherings whose default image
// cannot be pulled: the archive then holds the namespace's objects and
// the named Plan and its Migration as YAML under inspect/, and exec-output
// says so. A gathering with an image of its own gets no fallback, as in oc.
func TestAFailedGatherOfTheDefaultImageFallsBackToInspect(t *testing.T) {
	cfg := testConfig()
	cfg.DefaultImage = kube.UnpullableRegistry + "forklift-must-gather:latest"
	k, g := startGatherer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crds, err := os.ReadFile("../../functions/trigger/testdata/crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k.InstallCRDs(t, []byte(forkliftCRDs), crds)
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "konveyor-forklift"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{
		`{apiVersion: forklift.konveyor.io/v1beta1, kind: ForkliftController, metadata: {name: forklift-controller, namespace: konveyor-forklift}, spec: {}}`,
		`{apiVersion: forklift.konveyor.io/v1beta1, kind: Plan, metadata: {name: mig-plan-cold, namespace: konveyor-forklift}, spec: {vms: [{name: vm-7595, id: vm-7595}]}}`,
		`{apiVersion: forklift.konveyor.io/v1beta1, kind: Plan, metadata: {name: mig-plan-warm, namespace: konveyor-forklift}, spec: {vms: [{name: vm-1}]}}`,
		`{apiVersion: forklift.konveyor.io/v1beta1, kind: Migration, metadata: {name: mig-cold-1, namespace: konveyor-forklift}, spec: {plan: {name: mig-plan-cold, namespace: konveyor-forklift}}}`,
		`{apiVersion: forklift.konveyor.io/v1beta1, kind: Migration, metadata: {name: mig-warm-1, namespace: konveyor-forklift}, spec: {plan: {name: mig-plan-warm, namespace: konveyor-forklift}}}`,
	} {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		gvr := forkliftGroupVersion.WithResource(strings.ToLower(u.GetKind()) + "s")
		if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, &u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "forklift"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "forklift-controller", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "quay.io/kubev2v/forklift-controller:latest"}}},
			},
		},
	}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "forklift-controller-0", Namespace: ns, Labels: labels}, Spec: dep.Spec.Template.Spec}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k.WaitPod(t, func(p *corev1.Pod) bool { return p.Name == pod.Name && p.Status.Phase == corev1.PodRunning })
	k.AppendLogs(t, ns, pod.Name, "main", "migration mig-cold-1 failed: disk copy timed out")

	dir := InspectDir + "/namespaces/" + ns + "/"
	tests := []struct {
		name      string
		mg        mustgather.Gathering
		wantFiles map[string]string // name: a text it holds
		noFiles   []string
		wantLogs  []string
	}{{
		name: "a targeted gathering of a plan",
		mg:   mustgather.Gathering{ID: 401, Command: "PLAN='mig-plan-cold' /usr/bin/targeted"},
		wantFiles: map[string]string{
			dir + "core/pods.yaml":                                        "name: forklift-controller-0",
			dir + "core/events.yaml":                                      "kind: EventList",
			dir + "apps/deployments.yaml":                                 "name: forklift-controller",
			dir + "forklift.konveyor.io/forkliftcontrollers.yaml":         "name: forklift-controller",
			dir + "forklift.konveyor.io/plans.yaml":                       "name: mig-plan-warm",
			dir + "forklift.konveyor.io/migrations.yaml":                  "name: mig-warm-1",
			dir + "forklift.konveyor.io/plans/mig-plan-cold.yaml":         "name: mig-plan-cold",
			dir + "forklift.konveyor.io/migrations/mig-cold-1.yaml":       "name: mig-plan-cold",
			dir + "pods/forklift-controller-0/main/main/logs/current.log": "migration mig-cold-1 failed: disk copy timed out",
		},
		noFiles: []string{dir + "forklift.konveyor.io/plans/mig-plan-warm.yaml", dir + "forklift.konveyor.io/migrations/mig-warm-1.yaml"},
		wantLogs: []string{
			"cannot be pulled",
			"the gather of the default image failed: falling back to an inspect-style collection of namespace konveyor-forklift, plan konveyor-forklift/mig-plan-cold into inspect/, as `oc adm inspect` would",
			"files written into inspect/",
		},
	}, {
		name: "a targeted gathering of a VM",
		mg:   mustgather.Gathering{ID: 402, Command: "VM='vm-1' /usr/bin/targeted"},
		wantFiles: map[string]string{
			dir + "forklift.konveyor.io/plans/mig-plan-warm.yaml":   "name: mig-plan-warm",
			dir + "forklift.konveyor.io/migrations/mig-warm-1.yaml": "name: mig-warm-1",
		},
		noFiles: []string{dir + "forklift.konveyor.io/plans/mig-plan-cold.yaml"},
	}, {
		name:     "a gathering with an image of its own",
		mg:       mustgather.Gathering{ID: 403, Image: kube.UnpullableRegistry + "other:latest"},
		noFiles:  []string{dir + "core/pods.yaml"},
		wantLogs: []string{"cannot be pulled"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := newTestJob(t, tt.mg)
			if err := g.Gather(ctx, job.Job); err == nil || !strings.Contains(err.Error(), "cannot be pulled") {
				t.Fatalf("Gather: %v, want the pull failure\n%s", err, job.log)
			}
			files := job.files(t)
			for name, text := range tt.wantFiles {
				if !strings.Contains(files[name], text) {
					t.Errorf("%s lacks %q:\n%s", name, text, files[name])
				}
			}
			for _, name := range tt.noFiles {
				if _, ok := files[name]; ok {
					t.Errorf("the archive holds %s", name)
				}
			}
			for _, want := range tt.wantLogs {
				if !strings.Contains(job.log.String(), want) {
					t.Errorf("exec-output lacks %q:\n%s", want, job.log)
				}
			}
			if t.Failed() {
				var names []string
				for name := range files {
					names = append(names, name)
				}
				slices.Sort(names)
				t.Logf("archive: %s\nexec-output:\n%s", strings.Join(names, "\n"), job.log)
			}
		})
	}
}
