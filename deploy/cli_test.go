package deploy

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubev2v/must-gather-functions/internal/cli"
)

// TestTheCLIComponentGivesTheServiceProxyTheAPI checks what the CLI's
// kubeconfig path needs of a deployment with components/cli: the Service
// its defaults name exists in the namespace they name, has endpoints
// (it selects the api revision's pods, at their queue-proxy), and the api
// reads the token the CLI forwards, and keeps a pod for the proxy to
// reach. Without the component the api does neither.
func TestTheCLIComponentGivesTheServiceProxyTheAPI(t *testing.T) {
	scheme, rest, _ := strings.Cut(cli.DefaultKubeService, ":")
	name, port, _ := strings.Cut(rest, ":")
	if scheme != "http" {
		t.Fatalf("the CLI's default service %q: queue-proxy speaks http", cli.DefaultKubeService)
	}
	const api = "must-gather-functions-api"
	apiEnv := func(objs []object) (env map[string]string, minScale string) {
		s, ok := knativeServices(t, objs)["api"]
		if !ok {
			t.Fatalf("no api Knative Service")
		}
		env = map[string]string{}
		for _, e := range s.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		return env, s.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"]
	}

	for _, dir := range []string{
		overlayOf(t, "overlays/dev", "namespace: must-gather-functions\ncomponents:\n  - %s\n", "components/cli"),
		overlayOf(t, "overlays/openshift", "namespace: must-gather-functions\ncomponents:\n  - %s\n", "components/cli"),
	} {
		objs := build(t, dir)
		var svc *corev1.Service
		for _, o := range objs {
			if o.GVK == corev1.SchemeGroupVersion.WithKind("Service") && o.Name == name {
				svc = &corev1.Service{}
				mustUnmarshal(t, o, svc)
			}
		}
		if svc == nil {
			t.Fatalf("%s: no Service %s, which the CLI's default --kube-service names", dir, name)
		}
		if svc.Namespace != cli.DefaultKubeNamespace {
			t.Errorf("Service %s is in %q, the CLI's default --kube-namespace is %q", name, svc.Namespace, cli.DefaultKubeNamespace)
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP && svc.Spec.Type != "" {
			t.Errorf("Service %s is %s, want ClusterIP: the service proxy needs endpoints", name, svc.Spec.Type)
		}
		if got := svc.Spec.Selector; len(got) != 1 || got["serving.knative.dev/service"] != api {
			t.Errorf("Service %s selects %v, want the pods Knative labels serving.knative.dev/service=%s", name, got, api)
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if strconv.Itoa(int(p.Port)) == port || p.Name == port {
				found = true
				if p.TargetPort.IntValue() != 8012 {
					t.Errorf("Service %s port %s targets %s, want queue-proxy's 8012", name, port, p.TargetPort.String())
				}
			}
		}
		if !found {
			t.Errorf("Service %s has no port %s", name, port)
		}
		env, minScale := apiEnv(objs)
		if env["AUTH_FORWARDED_TOKEN"] != "true" {
			t.Errorf("%s: the api has AUTH_FORWARDED_TOKEN=%q, want true: the API server keeps Authorization for itself", dir, env["AUTH_FORWARDED_TOKEN"])
		}
		if n, _ := strconv.Atoi(minScale); n < 1 {
			t.Errorf("%s: the api's min-scale is %q: the service proxy cannot wake a revision scaled to zero", dir, minScale)
		}
	}

	env, minScale := apiEnv(build(t, "overlays/dev"))
	if _, ok := env["AUTH_FORWARDED_TOKEN"]; ok || minScale != "0" {
		t.Errorf("without components/cli the api has AUTH_FORWARDED_TOKEN %q and min-scale %q", env["AUTH_FORWARDED_TOKEN"], minScale)
	}
}
