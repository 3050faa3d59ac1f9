package deploy

import (
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// madeElsewhere are the objects an overlay refers to that something else
// makes: OpenShift's service CA writes the console's certificate, and the
// README's guide has you make the key that signs the events.
var madeElsewhere = map[string]bool{
	key("", "Secret", "must-gather-functions-api-tls"): true,
	key("", "Secret", "must-gather-functions-events"):  true,
}

// TestEveryReferenceOfAnOverlayNamesAnObjectOfIt: a misspelt Secret,
// ConfigMap, ServiceAccount or Knative Service would leave pods pending or
// events undelivered, and no schema catches it.
func TestEveryReferenceOfAnOverlayNamesAnObjectOfIt(t *testing.T) {
	for _, dir := range variants(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs := build(t, dir)
			have := map[string]bool{}
			for _, o := range objs {
				have[key(o.GVK.Group, o.GVK.Kind, o.Name)] = true
			}
			refs := map[string][]string{} // reference -> who refers to it
			refer := func(o object, group, kind, name string) {
				if name != "" {
					k := key(group, kind, name)
					refs[k] = append(refs[k], o.String())
				}
			}
			for _, o := range objs {
				pod := podSpec(t, o)
				switch o.GVK.Kind {
				case "Trigger", "Broker", "SinkBinding":
					for _, path := range [][]string{
						{"spec", "subscriber", "ref"},
						{"spec", "delivery", "deadLetterSink", "ref"},
						{"spec", "sink", "ref"},
					} {
						if ref, ok := nested(o.U.Object, path...); ok {
							gv, err := schema.ParseGroupVersion(fmt.Sprint(ref["apiVersion"]))
							if err != nil {
								t.Fatalf("%s: %v", o, err)
							}
							refer(o, gv.Group, fmt.Sprint(ref["kind"]), fmt.Sprint(ref["name"]))
						}
					}
					if b, ok := o.U.Object["spec"].(map[string]any)["broker"].(string); ok {
						refer(o, "eventing.knative.dev", "Broker", b)
					}
				}
				if pod == nil {
					continue
				}
				refer(o, "", "ServiceAccount", pod.ServiceAccountName)
				for _, v := range pod.Volumes {
					if v.Secret != nil {
						refer(o, "", "Secret", v.Secret.SecretName)
					}
					if v.ConfigMap != nil {
						refer(o, "", "ConfigMap", v.ConfigMap.Name)
					}
					if v.PersistentVolumeClaim != nil {
						refer(o, "", "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName)
					}
				}
				for _, c := range pod.Containers {
					for _, e := range c.EnvFrom {
						if e.ConfigMapRef != nil {
							refer(o, "", "ConfigMap", e.ConfigMapRef.Name)
						}
						if e.SecretRef != nil {
							refer(o, "", "Secret", e.SecretRef.Name)
						}
					}
					for _, e := range c.Env {
						if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
							refer(o, "", "Secret", e.ValueFrom.SecretKeyRef.Name)
						}
						if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
							refer(o, "", "ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name)
						}
					}
				}
			}
			if len(refs) < 5 {
				t.Fatalf("found only %d references: %v", len(refs), refs)
			}
			for ref, by := range refs {
				if !have[ref] && !madeElsewhere[ref] {
					t.Errorf("%s, named by %v, is not in %s", ref, by, dir)
				}
			}
		})
	}
}

// key names an object by group, kind and name: a Knative Service is not a
// Service.
func key(group, kind, name string) string { return kind + "." + group + "/" + name }

func mustUnmarshal(t *testing.T, o object, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(o.YAML, v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}

// nested returns the map at path in obj.
func nested(obj map[string]any, path ...string) (map[string]any, bool) {
	cur := obj
	for _, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}
