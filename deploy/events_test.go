package deploy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// TestEventsGoThroughTheBrokerAndEveryEmitterHasKSINK: the overlays send
// events over HTTP, where the api and the runner refuse to start without
// K_SINK; a SinkBinding must select every workload that runs either. The
// jetstream-pull component puts them back on JetStream.
func TestEventsGoThroughTheBrokerAndEveryEmitterHasKSINK(t *testing.T) {
	transport := func(objs []object) string {
		for _, o := range objs {
			if o.GVK.Kind == "ConfigMap" && o.Name == "must-gather-functions" {
				var cm corev1.ConfigMap
				mustUnmarshal(t, o, &cm)
				return cm.Data["EVENTS_TRANSPORT"]
			}
		}
		return ""
	}
	pull := build(t, overlayOf(t, "overlays/dev", "components:\n  - %s\n", "components/jetstream-pull"))
	if got := transport(pull); got != "nats" {
		t.Errorf("with jetstream-pull: EVENTS_TRANSPORT=%q, want nats", got)
	}
	for _, dir := range overlays(t) {
		objs := build(t, dir)
		if got := transport(objs); got != "http" {
			t.Errorf("%s: EVENTS_TRANSPORT=%q, want http", dir, got)
		}
		type subject struct {
			APIVersion string                `json:"apiVersion"`
			Kind       string                `json:"kind"`
			Name       string                `json:"name"`
			Selector   *metav1.LabelSelector `json:"selector"`
		}
		var subjects []subject
		for _, o := range objs {
			if o.GVK.Kind == "SinkBinding" {
				var sb struct {
					Spec struct {
						Subject subject `json:"subject"`
					} `json:"spec"`
				}
				if err := yaml.Unmarshal(o.YAML, &sb); err != nil {
					t.Fatal(err)
				}
				subjects = append(subjects, sb.Spec.Subject)
			}
		}
		bound := func(o object) bool {
			for _, s := range subjects {
				if s.APIVersion != o.U.GetAPIVersion() || s.Kind != o.GVK.Kind {
					continue
				}
				if s.Name == o.Name {
					return true
				}
				if s.Selector != nil {
					sel, err := metav1.LabelSelectorAsSelector(s.Selector)
					if err != nil {
						t.Fatal(err)
					}
					if sel.Matches(labels.Set(o.U.GetLabels())) {
						return true
					}
				}
			}
			return false
		}
		emitters := 0
		for _, o := range objs {
			pod := podSpec(t, o)
			if pod == nil {
				continue
			}
			for _, c := range pod.Containers {
				for _, e := range c.Env {
					fns := strings.Split(e.Value, ",")
					if e.Name != "FUNCTIONS" || !(slices.Contains(fns, "api") || slices.Contains(fns, "runner")) {
						continue
					}
					emitters++
					if !bound(o) {
						t.Errorf("%s: %s runs %s, which sends events, but no SinkBinding gives it K_SINK", dir, o, e.Value)
					}
				}
			}
		}
		if emitters < 2 {
			t.Errorf("%s: %d workloads send events, want the api and the runner at least", dir, emitters)
		}
	}
}
