package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// Namespace is where the base deploys the functions.
const Namespace = "must-gather-functions"

// crdFiles returns the CRDs the manifests use: Knative Serving's from its
// Go module (the version go.mod pins), and the copies in testdata/crds.
func crdFiles(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "knative.dev/serving").Output()
	if err != nil {
		t.Fatalf("go list -m knative.dev/serving: %v", err)
	}
	serving, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "config", "core", "300-resources", "*.yaml"))
	if err != nil || len(serving) == 0 {
		t.Fatalf("no Serving CRDs in the knative.dev/serving module (%s): %v", out, err)
	}
	copied, err := filepath.Glob("testdata/crds/*/*.yaml")
	if err != nil || len(copied) == 0 {
		t.Fatalf("no CRDs in testdata/crds: %v", err)
	}
	return append(serving, copied...)
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the CRDs and waits until the API server serves
// them; it returns a mapper that knows them.
func installCRDs(t *testing.T, k *kube.Cluster, dyn dynamic.Interface) meta.RESTMapper {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var names []string
	for _, f := range crdFiles(t) {
		for _, u := range decodeFile(t, f) {
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := dyn.Resource(crdResource).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create CRD %s from %s: %v", u.GetName(), f, err)
			}
			names = append(names, u.GetName())
		}
	}
	for _, name := range names {
		testenv.Eventually(t, 30*time.Second, "CRD "+name+" to be established", func() bool {
			u, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		})
	}
	dc, err := discovery.NewDiscoveryClientForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return mapper
}

// decodeFile returns every object of a YAML file of one or more documents.
func decodeFile(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// resourceFor maps an object's kind to the resource the API serves it as.
func resourceFor(t *testing.T, mapper meta.RESTMapper, dyn dynamic.Interface, o object) dynamic.ResourceInterface {
	t.Helper()
	m, err := mapper.RESTMapping(o.GVK.GroupKind(), o.GVK.Version)
	if err != nil {
		t.Fatalf("%s: the API server does not serve %s: %v", o, o.GVK, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.Ns == "" {
			t.Fatalf("%s: namespaced, but has no namespace", o)
		}
		return dyn.Resource(m.Resource).Namespace(o.Ns)
	}
	if o.Ns != "" {
		t.Errorf("%s: cluster-scoped, but names namespace %s", o, o.Ns)
	}
	return dyn.Resource(m.Resource)
}

// apply applies o with server-side apply; dryRun asks the API server to
// validate and admit it without storing it.
func apply(ctx context.Context, t *testing.T, mapper meta.RESTMapper, dyn dynamic.Interface, o object, dryRun bool) error {
	t.Helper()
	opts := metav1.ApplyOptions{FieldManager: "must-gather-functions-deploy-test", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := resourceFor(t, mapper, dyn, o).Apply(ctx, o.Name, o.U, opts)
	return err
}

// TestDeployOnARealAPIServer installs the CRDs the manifests use into a
// real kube-apiserver and sends it every object of every overlay with
// server-side dry-run, so that the API server checks each field against
// its schema (strict field validation: an unknown field is an error); then
// it applies the RBAC for real and checks it against what the functions
// call.
func TestDeployOnARealAPIServer(t *testing.T) {
	k := kube.Start(t)
	dyn, err := dynamic.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	mapper := installCRDs(t, k, dyn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := dyn.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Create(ctx,
		&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": Namespace}}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	t.Run("every object of every overlay passes the API server's validation", func(t *testing.T) {
		for _, dir := range variants(t) {
			for _, o := range build(t, dir) {
				if err := apply(ctx, t, mapper, dyn, o, true); err != nil {
					t.Errorf("%s: %s: %v", dir, o, err)
				}
			}
		}
	})

	t.Run("an unknown field is refused", func(t *testing.T) {
		// The check above would be worth nothing if the API server pruned
		// or ignored what its schema does not know.
		// (Most of a Trigger's or Broker's spec keeps unknown fields by its
		// CRD's own schema; eventing_test.go decodes those strictly.)
		for _, gvk := range []schema.GroupVersionKind{
			servingv1.SchemeGroupVersion.WithKind("Service"),
			{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		} {
			var o object
			for _, c := range build(t, "overlays/dev") {
				if c.GVK == gvk {
					o = c
					break
				}
			}
			o.U = o.U.DeepCopy()
			if err := unstructured.SetNestedField(o.U.Object, "x", "spec", "notAField"); err != nil {
				t.Fatal(err)
			}
			err := apply(ctx, t, mapper, dyn, o, true)
			if err == nil || !strings.Contains(err.Error(), "notAField") {
				t.Errorf("%s with spec.notAField: %v, want an error naming the field", o, err)
			}
		}
	})

	t.Run("the proxy patch adds the API to Forklift's ConsolePlugin and keeps its other proxies", func(t *testing.T) {
		testConsolePluginPatch(ctx, t, mapper, dyn)
	})

	t.Run("RBAC", func(t *testing.T) { testRBAC(ctx, t, k, mapper, dyn) })
}

// testConsolePluginPatch applies forklift-console-plugin-proxy.yaml, as
// the README says, to a ConsolePlugin like Forklift's.
func testConsolePluginPatch(ctx context.Context, t *testing.T, mapper meta.RESTMapper, dyn dynamic.Interface) {
	plugin := decodeFile(t, "testdata/forklift-console-plugin.yaml")[0]
	m, err := mapper.RESTMapping(plugin.GroupVersionKind().GroupKind(), plugin.GroupVersionKind().Version)
	if err != nil {
		t.Fatal(err)
	}
	plugins := dyn.Resource(m.Resource)
	if _, err := plugins.Create(ctx, plugin, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch, err := os.ReadFile("components/console/forklift-console-plugin-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	patchJSON, err := sigsyaml.YAMLToJSON(patch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := plugins.Patch(ctx, plugin.GetName(), types.JSONPatchType, patchJSON,
		metav1.PatchOptions{FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Fatalf("kubectl patch consoleplugin %s --type=json: %v", plugin.GetName(), err)
	}
	proxies, _, _ := unstructured.NestedSlice(got.Object, "spec", "proxy")
	var aliases []string
	var ours map[string]any
	for _, p := range proxies {
		p := p.(map[string]any)
		aliases = append(aliases, p["alias"].(string))
		if p["alias"] == "must-gather-functions" {
			ours = p
		}
	}
	if want := []string{"forklift-inventory", "forklift-must-gather-api", "must-gather-functions"}; !slices.Equal(aliases, want) {
		t.Errorf("proxy aliases after the patch: %v, want %v", aliases, want)
	}
	// The entry names the TLS Service of the console component, on its port.
	var tlsService object
	for _, o := range build(t, "overlays/openshift") {
		if o.GVK.Kind == "Service" && o.GVK.Group == "" && o.Name == "must-gather-functions-api-tls" {
			tlsService = o
		}
	}
	svc, _, _ := unstructured.NestedMap(ours, "endpoint", "service")
	ports, _, _ := unstructured.NestedSlice(tlsService.U.Object, "spec", "ports")
	if tlsService.U == nil || svc["name"] != tlsService.Name || svc["namespace"] != tlsService.Ns ||
		len(ports) != 1 || fmt.Sprint(ports[0].(map[string]any)["port"]) != fmt.Sprint(svc["port"]) || ours["authorization"] != "UserToken" {
		t.Errorf("proxy entry %s does not reach the TLS Service %s with the user's token", jsonOf(ours), jsonOf(tlsService.U))
	}
	if tlsService.U.GetAnnotations()["service.beta.openshift.io/serving-cert-secret-name"] != "must-gather-functions-api-tls" {
		t.Errorf("the TLS Service asks the service CA for no certificate")
	}
}

// jsonOf returns o as JSON, for messages.
func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
