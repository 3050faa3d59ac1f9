package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// readmeSettings returns the variables of README's settings table, which
// is generated from the binary's own table of settings.
func readmeSettings(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "<!-- settings:")
	if !ok {
		t.Fatal("README.md has no settings table")
	}
	table, _, _ = strings.Cut(table, "<!-- end of settings -->")
	vars := map[string]bool{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	for line := range strings.SplitSeq(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 2 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			vars[m[1]] = true
		}
	}
	if len(vars) < 10 {
		t.Fatalf("found only %d settings in README.md", len(vars))
	}
	return vars
}

// TestEveryVariableTheManifestsSetIsASetting: a misspelt variable in a
// ConfigMap or a container's env would be ignored by the binary.
func TestEveryVariableTheManifestsSetIsASetting(t *testing.T) {
	settings := readmeSettings(t)
	// Set by Knative or Kubernetes for the binary, not by the manifests.
	settings["K_SINK"] = true
	settings["K_CE_OVERRIDES"] = true
	for _, dir := range overlays(t) {
		for _, o := range build(t, dir) {
			switch {
			case o.GVK.Kind == "ConfigMap" && o.Name == "must-gather-functions":
				var cm corev1.ConfigMap
				if err := yaml.Unmarshal(o.YAML, &cm); err != nil {
					t.Fatal(err)
				}
				for k := range cm.Data {
					if !settings[k] {
						t.Errorf("%s: %s: %s is not a setting of must-gather-functions", dir, o, k)
					}
				}
			case o.GVK.Group == "serving.knative.dev" && o.GVK.Kind == "Service":
				svc := knativeServices(t, []object{o})
				for _, s := range svc {
					for _, c := range s.Spec.Template.Spec.Containers {
						for _, e := range c.Env {
							if !settings[e.Name] {
								t.Errorf("%s: %s: %s is not a setting of must-gather-functions", dir, o, e.Name)
							}
						}
					}
				}
			}
		}
	}
}

// TestAnOverlayPointsEveryFunctionAtTheImageItNames: the guide has the
// overlay's images entry name the pushed image; kustomize must carry it
// into the containers of the Knative Services too, and of the console's
// Deployment.
func TestAnOverlayPointsEveryFunctionAtTheImageItNames(t *testing.T) {
	const pushed = "registry.example.com/must-gather-functions@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dir := overlayOf(t, "overlays/openshift", "images:\n  - name: must-gather-functions\n    newName: registry.example.com/must-gather-functions\n    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	objs := build(t, dir)
	svcs := knativeServices(t, objs)
	if len(svcs) != 4 {
		t.Fatalf("%d Knative Services, want 4", len(svcs))
	}
	for name, s := range svcs {
		for _, c := range s.Spec.Template.Spec.Containers {
			if c.Image != pushed {
				t.Errorf("%s: container %s runs %s, want %s", name, c.Name, c.Image, pushed)
			}
		}
	}
	// The console's HTTPS api too.
	for _, o := range objs {
		if o.GVK.Kind == "Deployment" && o.Name == "must-gather-functions-api-console" {
			var d appsv1.Deployment
			mustUnmarshal(t, o, &d)
			if img := d.Spec.Template.Spec.Containers[0].Image; img != pushed {
				t.Errorf("%s runs %s, want %s", o, img, pushed)
			}
			return
		}
	}
	t.Error("no Deployment must-gather-functions-api-console")
}
