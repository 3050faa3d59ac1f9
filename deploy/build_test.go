package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one object of a built overlay.
type object struct {
	GVK  schema.GroupVersionKind
	Name string
	Ns   string
	YAML []byte
	U    *unstructured.Unstructured
}

func (o object) String() string {
	if o.Ns != "" {
		return fmt.Sprintf("%s %s/%s", o.GVK.Kind, o.Ns, o.Name)
	}
	return fmt.Sprintf("%s %s", o.GVK.Kind, o.Name)
}

// overlays returns the folders under overlays/: each is one deployment.
func overlays(t testing.TB) []string {
	t.Helper()
	dirs, err := filepath.Glob("overlays/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	return dirs
}

// variants returns the overlays and one more with every optional
// component, so that the components are checked too.
func variants(t *testing.T) []string {
	t.Helper()
	// As in an overlay of yours: the namespace applies to what the
	// components add.
	return append(overlays(t), overlayOf(t, "overlays/openshift", "namespace: must-gather-functions\ncomponents:\n  - %s\n  - %s\n  - %s\n  - %s\n",
		"components/notifier-sinks", "components/jetstream-pull", "components/forklift-trigger", "components/cli"))
}

// build runs kustomize on dir in process, as `kubectl apply -k dir` does.
func build(t testing.TB, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(y, &u.Object); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		objs = append(objs, object{GVK: u.GroupVersionKind(), Name: u.GetName(), Ns: u.GetNamespace(), YAML: y, U: u})
	}
	return objs
}

// typed returns a new value of the Go type of gvk, or nil for the kinds
// whose Go modules are not served (Knative Eventing, eventing-natss: see
// eventing_test.go; OpenShift's console): their CRD schemas check them in
// TestDeployOnARealAPIServer.
func typed(gvk schema.GroupVersionKind) any {
	switch gvk {
	case corev1.SchemeGroupVersion.WithKind("Namespace"):
		return &corev1.Namespace{}
	case corev1.SchemeGroupVersion.WithKind("ServiceAccount"):
		return &corev1.ServiceAccount{}
	case corev1.SchemeGroupVersion.WithKind("ConfigMap"):
		return &corev1.ConfigMap{}
	case corev1.SchemeGroupVersion.WithKind("Secret"):
		return &corev1.Secret{}
	case corev1.SchemeGroupVersion.WithKind("Service"):
		return &corev1.Service{}
	case corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"):
		return &corev1.PersistentVolumeClaim{}
	case appsv1.SchemeGroupVersion.WithKind("StatefulSet"):
		return &appsv1.StatefulSet{}
	case appsv1.SchemeGroupVersion.WithKind("Deployment"):
		return &appsv1.Deployment{}
	case rbacv1.SchemeGroupVersion.WithKind("ClusterRole"):
		return &rbacv1.ClusterRole{}
	case rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding"):
		return &rbacv1.ClusterRoleBinding{}
	case rbacv1.SchemeGroupVersion.WithKind("Role"):
		return &rbacv1.Role{}
	case rbacv1.SchemeGroupVersion.WithKind("RoleBinding"):
		return &rbacv1.RoleBinding{}
	case networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"):
		return &networkingv1.NetworkPolicy{}
	case servingv1.SchemeGroupVersion.WithKind("Service"):
		return &servingv1.Service{}
	}
	return nil
}

// schemaOnly are the kinds checked only against their CRD's schema.
var schemaOnly = []schema.GroupVersionKind{
	{Group: "console.openshift.io", Version: "v1", Kind: "ConsolePlugin"},
}

func TestEveryOverlayDecodesStrictlyIntoItsGoTypes(t *testing.T) {
	for _, dir := range variants(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs := build(t, dir)
			for _, o := range objs {
				if ev := eventingObject(o.GVK); ev != nil {
					if err := yaml.UnmarshalStrict(o.YAML, ev); err != nil {
						t.Errorf("%s: %v", o, err)
					} else if err := ev.validate(context.Background()); err != nil {
						t.Errorf("%s: %v", o, err)
					}
					continue
				}
				v := typed(o.GVK)
				if v == nil {
					if !slices.Contains(schemaOnly, o.GVK) {
						t.Errorf("%s: no Go type and no CRD for %s", o, o.GVK)
					}
					continue
				}
				// Unknown or duplicate fields are errors, not ignored.
				if err := yaml.UnmarshalStrict(o.YAML, v); err != nil {
					t.Errorf("%s: %v", o, err)
					continue
				}
				if svc, ok := v.(*servingv1.Service); ok {
					validateKnativeService(t, o, svc)
				}
			}
		})
	}
}

// validateKnativeService runs Knative Serving's own defaulting and
// validation, what its admission webhook does on create.
func validateKnativeService(t *testing.T, o object, svc *servingv1.Service) {
	t.Helper()
	ctx := apis.WithinCreate(context.Background())
	svc = svc.DeepCopy()
	svc.SetDefaults(ctx)
	if err := svc.Validate(ctx); err != nil {
		t.Errorf("%s: Knative Serving refuses it: %v", o, err)
	}
}

// knativeServices returns the Knative Services of objs by name.
func knativeServices(t *testing.T, objs []object) map[string]*servingv1.Service {
	t.Helper()
	out := map[string]*servingv1.Service{}
	for _, o := range objs {
		if o.GVK != servingv1.SchemeGroupVersion.WithKind("Service") {
			continue
		}
		svc := &servingv1.Service{}
		dec := json.NewDecoder(bytes.NewReader(mustJSON(t, o.YAML)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(svc); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		out[strings.TrimPrefix(o.Name, "must-gather-functions-")] = svc
	}
	return out
}

func mustJSON(t *testing.T, y []byte) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestEveryFunctionScalesAsItsWorkNeeds: the api scales to zero; the
// runner never does, as gatherings outlive requests and its reaper,
// sweeper and queue must keep running; the recorder and the notifier
// scale to zero with events over HTTP, and keep one replica with the
// jetstream-pull component, as they then pull from JetStream.
func TestEveryFunctionScalesAsItsWorkNeeds(t *testing.T) {
	minScale := func(dir string) map[string]string {
		out := map[string]string{}
		for name, s := range knativeServices(t, build(t, dir)) {
			out[name] = s.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"]
		}
		return out
	}
	tests := []struct {
		dir  string
		want map[string]string
	}{
		{"base", map[string]string{"api": "0", "runner": "1", "recorder": "0", "notifier": "0"}},
		{"overlays/dev", map[string]string{"api": "0", "runner": "1", "recorder": "0", "notifier": "0"}},
		{"overlays/openshift", map[string]string{"api": "0", "runner": "1", "recorder": "0", "notifier": "0"}},
		{overlayOf(t, "overlays/dev", "components:\n  - %s\n", "components/jetstream-pull"),
			map[string]string{"api": "0", "runner": "1", "recorder": "1", "notifier": "1"}},
	}
	for _, tt := range tests {
		if got := minScale(tt.dir); !maps.Equal(got, tt.want) {
			t.Errorf("%s: min-scale %v, want %v", tt.dir, got, tt.want)
		}
	}
	// A stopping pod gets timeoutSeconds to finish: more than the
	// process's SHUTDOWN_TIMEOUT (90s by default).
	for name, s := range knativeServices(t, build(t, "overlays/dev")) {
		if ts := s.Spec.Template.Spec.TimeoutSeconds; ts == nil || *ts <= 90 {
			t.Errorf("%s: timeoutSeconds %v, want more than SHUTDOWN_TIMEOUT (90s)", name, ts)
		}
	}
}

// overlayOf makes an overlay in a temporary folder on top of dir, with
// more kustomization text; format's %s are paths (under deploy/) made
// relative to it, as kustomize takes no absolute path.
func overlayOf(t *testing.T, dir, format string, paths ...string) string {
	t.Helper()
	tmp := t.TempDir()
	rel := func(p string) string {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(tmp, abs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	args := make([]any, len(paths))
	for i, p := range paths {
		args[i] = rel(p)
	}
	k := "resources:\n  - " + rel(dir) + "\n" + fmt.Sprintf(format, args...)
	if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return tmp
}

// podSpec returns the pod template of a Knative Service, Deployment or
// StatefulSet, or nil for other kinds.
func podSpec(t *testing.T, o object) *corev1.PodSpec {
	t.Helper()
	switch {
	case o.GVK.Group == "serving.knative.dev" && o.GVK.Kind == "Service":
		for _, s := range knativeServices(t, []object{o}) {
			return &s.Spec.Template.Spec.PodSpec
		}
	case o.GVK.Kind == "Deployment":
		var d appsv1.Deployment
		mustUnmarshal(t, o, &d)
		return &d.Spec.Template.Spec
	case o.GVK.Kind == "StatefulSet":
		var s appsv1.StatefulSet
		mustUnmarshal(t, o, &s)
		return &s.Spec.Template.Spec
	}
	return nil
}
