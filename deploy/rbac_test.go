package deploy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/auth"
	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// permission is one verb on one resource ("pods/exec" for a subresource)
// of one API group, limited to resourceName when that is set.
type permission struct {
	Group, Resource, Verb, ResourceName string
}

func (p permission) String() string {
	s := p.Verb + " " + p.Resource
	if p.Group != "" {
		s += "." + p.Group
	}
	if p.ResourceName != "" {
		s += " " + p.ResourceName
	}
	return s
}

// runnerCalls is every call the runner makes to Kubernetes, with where in
// the code it is (internal/kubegather, internal/auth): the RBAC of the
// runner must grant exactly these. Keep it in step with the code and with
// README's table; the test below runs a real gathering and a sweep as the
// runner's ServiceAccount and fails on any request this table misses.
var runnerCalls = []struct {
	permission
	where string
	// exercised: the gathering on the test cluster makes this request;
	// otherwise why (then a SubjectAccessReview checks it alone).
	exercised bool
	why       string
}{
	{permission{"", "namespaces", "create", ""}, "objects.go: the temporary namespace", true, ""},
	{permission{"", "namespaces", "delete", ""}, "objects.go: cleanup; sweep.go: leftovers", true, ""},
	{permission{"", "namespaces", "get", ""}, "reattach.go: before cleanup, whether another runner re-attached to the namespace", true, ""},
	{permission{"", "namespaces", "list", ""}, "sweep.go: leftovers; reattach.go: the namespace of a gathering whose runner died", true, ""},
	{permission{"", "namespaces", "patch", ""}, "reattach.go: the runner and leftover-after time of a namespace re-attached to", false, reattachOnly},
	{permission{"rbac.authorization.k8s.io", "clusterrolebindings", "create", ""}, "objects.go: binding of cluster-admin", true, ""},
	{permission{"rbac.authorization.k8s.io", "clusterrolebindings", "delete", ""}, "objects.go: cleanup; sweep.go", true, ""},
	{permission{"rbac.authorization.k8s.io", "clusterrolebindings", "list", ""}, "sweep.go: leftovers; reattach.go", true, ""},
	{permission{"rbac.authorization.k8s.io", "clusterrolebindings", "patch", ""}, "reattach.go: the leftover-after time of a binding re-attached to", false, reattachOnly},
	{permission{"rbac.authorization.k8s.io", "clusterroles", "bind", "cluster-admin"}, "objects.go: binding cluster-admin without holding it", false,
		"checked by the API server inside the binding's create, not a request of its own"},
	{permission{"", "pods", "create", ""}, "pod.go: the gather pods", true, ""},
	{permission{"", "pods", "get", ""}, "pod.go: the pod's status", false, "only when a watch ends without an answer"},
	{permission{"", "pods", "list", ""}, "watch.go: a watch starts with a list; reattach.go: the pods of a gathering whose runner died", false, reattachOnly},
	{permission{"", "pods", "watch", ""}, "watch.go: the pod's status", true, ""},
	{permission{"", "pods/log", "get", ""}, "exec.go: following the gather log", true, ""},
	{permission{"", "pods/exec", "create", ""}, "exec.go: the copy over SPDY", true, ""},
	{permission{"", "pods/exec", "get", ""}, "exec.go: the copy over WebSocket, the fallback", false, "SPDY works here"},
	{permission{"", "events", "list", ""}, "watch.go: warning events at the end", true, ""},
	{permission{"", "events", "watch", ""}, "watch.go: warning events", true, ""},
	{permission{"", "nodes", "get", ""}, "objects.go: checking node-name", true, ""},
	{permission{"", "nodes", "list", ""}, "nodes.go: Ready nodes for the pods' affinity; the nodes of a node-selector", false,
		"only for a gathering without node-name; internal/kubegather's TestPodsAvoidNodesThatAreNotReadyAndPreferTheControlPlane and TestANodeSelectorRunsOnePodPerReadyNode make these calls"},
	{permission{"image.openshift.io", "imagestreamtags", "get", ""}, "objects.go: image-stream", false, "the test cluster has no OpenShift API"},
	{permission{"forklift.konveyor.io", "forkliftcontrollers", "list", ""}, "forklift.go: the installed Forklift's must-gather image and namespace", false,
		"only for a gathering without image; internal/kubegather's TestTheDefaultImageIsTheInstalledForklifts makes these calls"},
	{permission{"operators.coreos.com", "clusterserviceversions", "list", ""}, "forklift.go: the Forklift operator CSV's must-gather-image annotation", false,
		"only for a gathering without image; internal/kubegather's TestTheDefaultImageIsTheInstalledForklifts makes these calls"},
	{permission{"apps", "deployments", "get", ""}, "forklift.go: the forklift-operator Deployment's MUST_GATHER_IMAGE", false,
		"only for a gathering without image; internal/kubegather's TestTheDefaultImageIsTheInstalledForklifts makes these calls"},
	{permission{"", "pods", "delete", ""}, "admission.go: a pod admitted under a restricted SCC, made again", false,
		"only on OpenShift before the binding has propagated; internal/kubegather's TestAdmissionIsRetriedUntilTheBindingHasPropagated makes this call"},
	{permission{"config.openshift.io", "clusteroperators", "list", ""}, "clusterstate.go: oc's summary of the cluster operators; answered 404 without OpenShift's config API", true, ""},
	{permission{"config.openshift.io", "clusterversions", "get", ""}, "clusterstate.go: oc's summary of the cluster version", false,
		"only on OpenShift; internal/kubegather's TestTheClusterStateIsSummedUpAtStartAndEndOnOpenShift makes this call"},
	{permission{"apps", "deployments", "list", ""}, "inspect.go: the Forklift namespace's Deployments after a failed gather", false,
		"only when the default image's gather fails; internal/kubegather's TestAFailedGatherOfTheDefaultImageFallsBackToInspect makes these calls"},
	{permission{"forklift.konveyor.io", "*", "list", ""}, "inspect.go: Forklift's objects after a failed gather", false,
		"only when the default image's gather fails; internal/kubegather's TestAFailedGatherOfTheDefaultImageFallsBackToInspect makes these calls"},
	{permission{"authentication.k8s.io", "tokenreviews", "create", ""}, "internal/auth: /metrics", false, "system:auth-delegator; checked below"},
	{permission{"authorization.k8s.io", "subjectaccessreviews", "create", ""}, "internal/auth: /metrics", false, "system:auth-delegator; checked below"},
}

// reattachOnly says why a call is not exercised by the gathering of the RBAC
// test.
const reattachOnly = "only when a runner re-attaches to the pods of a runner that died; cmd's TestAGatheringWhoseRunnerIsKilledIsCarriedOnByAnotherRunner makes these calls"

// reviewCalls are what internal/auth calls, for every function that
// reviews tokens (api, notifier, runner).
var reviewCalls = []permission{
	{"authentication.k8s.io", "tokenreviews", "create", ""},
	{"authorization.k8s.io", "subjectaccessreviews", "create", ""},
}

func testRBAC(ctx context.Context, t *testing.T, k *kube.Cluster, mapper meta.RESTMapper, dyn dynamic.Interface) {
	objs := build(t, "overlays/dev")
	var runnerRole *rbacv1.ClusterRole
	for _, o := range objs {
		switch o.GVK.Kind {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := apply(ctx, t, mapper, dyn, o, false); err != nil {
				t.Fatalf("%s: %v", o, err)
			}
		}
		if o.GVK.Kind == "ClusterRole" && o.Name == "must-gather-functions-runner" {
			runnerRole = &rbacv1.ClusterRole{}
			if err := yaml.UnmarshalStrict(o.YAML, runnerRole); err != nil {
				t.Fatal(err)
			}
		}
	}
	if runnerRole == nil {
		t.Fatal("no ClusterRole must-gather-functions-runner")
	}
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	// The API server's authorizer learns of new bindings from a watch, a
	// moment after they are created: wait until it grants every function
	// what its bindings give, so that no check below reads a stale answer.
	var runner []permission
	for _, c := range runnerCalls {
		runner = append(runner, c.permission)
	}
	allowed := map[string][]permission{
		"api":      reviewCalls,
		"notifier": reviewCalls,
		"runner":   runner,
		"recorder": nil,
	}
	for fn, perms := range allowed {
		user := "system:serviceaccount:" + Namespace + ":must-gather-functions-" + fn
		for _, p := range perms {
			testenv.Eventually(t, 30*time.Second, fn+" may "+p.String(), func() bool { return may(ctx, t, admin, user, p) })
		}
	}

	t.Run("the runner's ClusterRole grants exactly what the runner calls", func(t *testing.T) {
		var want []string
		for _, c := range runnerCalls {
			if !slices.Contains(reviewCalls, c.permission) {
				want = append(want, c.String())
			}
		}
		var got []string
		for _, r := range runnerRole.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						names := r.ResourceNames
						if len(names) == 0 {
							names = []string{""}
						}
						for _, n := range names {
							got = append(got, permission{g, res, v, n}.String())
						}
					}
				}
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("ClusterRole must-gather-functions-runner grants\n  %s\nthe code calls\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})

	t.Run("each function's ServiceAccount may do what its code calls and no more", func(t *testing.T) {
		probes := append(slices.Clone(runner),
			permission{"rbac.authorization.k8s.io", "clusterroles", "bind", "admin"},
			permission{"", "secrets", "get", ""},
			permission{"", "pods", "deletecollection", ""},
			permission{"", "configmaps", "list", ""},
		)
		for fn, perms := range allowed {
			user := "system:serviceaccount:" + Namespace + ":must-gather-functions-" + fn
			for _, p := range probes {
				want := slices.Contains(perms, p)
				if got := may(ctx, t, admin, user, p); got != want {
					t.Errorf("%s: %s allowed %v, want %v", fn, p, got, want)
				}
			}
		}
	})

	t.Run("api and notifier review a token with their own ServiceAccount's rights; the recorder cannot", func(t *testing.T) {
		for fn, ok := range map[string]bool{"api": true, "notifier": true, "runner": true, "recorder": false} {
			rc := serviceAccountConfig(t, k, fn, nil)
			r, err := auth.New(map[string]*rest.Config{"": rc}, auth.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.Authorize(ctx, k.Admin.BearerToken, "", mustgather.AccessAdmin)
			if ok && (err != nil || p.Username != kube.AdminUser) {
				t.Errorf("%s: review of the admin's token: %+v, %v", fn, p, err)
			}
			if !ok && err == nil {
				t.Errorf("%s: reviewed a token without the right to", fn)
			}
		}
	})

	t.Run("a gathering and a sweep as the runner's ServiceAccount make only the calls of the table", func(t *testing.T) {
		rec := &recorder{}
		rc := serviceAccountConfig(t, k, "runner", rec)
		cfg := kubegather.DefaultConfig()
		cfg.Owner = "deploy-test"
		cfg.PollInterval = 100 * time.Millisecond
		cfg.LogDrain = 100 * time.Millisecond
		g, err := kubegather.NewForConfig(rc, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		stop, cancelStop := context.WithCancelCause(ctx)
		defer cancelStop(nil)
		var buf bytes.Buffer
		aw := archive.NewWriter(&buf)
		job := mustgather.Job{
			Gathering: mustgather.Gathering{ID: 1, Image: "quay.io/kubev2v/forklift-must-gather:latest", NodeName: k.Node, Timeout: "2m"},
			Stop:      stop, Archive: aw, Log: io.Discard, Runner: "the-runner",
		}
		done := make(chan error, 1)
		go func() { done <- g.Gather(ctx, job) }()
		pod := k.WaitPod(t, func(p *corev1.Pod) bool {
			return p.Labels[kubegather.LabelGathering] == "1" && p.Status.Phase == corev1.PodRunning
		})
		if err := os.MkdirAll(filepath.Join(k.PodDir(pod.Namespace, pod.Name), "namespaces"), 0o755); err != nil {
			t.Fatal(err)
		}
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "gathering\n")
		k.FinishGather(t, pod.Namespace, pod.Name, 0)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Gather as the runner: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("the gathering did not end")
		}
		if err := g.Sweep(ctx); err != nil {
			t.Fatalf("Sweep as the runner: %v", err)
		}

		table := map[permission]bool{}
		for _, c := range runnerCalls {
			table[c.permission] = true
		}
		seen := map[permission]bool{}
		for _, r := range rec.requests() {
			if r.code == http.StatusForbidden {
				t.Errorf("%s %s: forbidden", r.method, r.url)
			}
			p := r.permission()
			seen[p] = true
			if !table[p] {
				t.Errorf("%s %s (%s) is not in runnerCalls: add it there, to the ClusterRole and to README", r.method, r.url, p)
			}
		}
		for _, c := range runnerCalls {
			if c.exercised && !seen[c.permission] {
				t.Errorf("%s (%s) was not called: is it still needed?", c.permission, c.where)
			}
		}
	})
}

// may asks the API server whether user may do p (a SubjectAccessReview).
func may(ctx context.Context, t *testing.T, c kubernetes.Interface, user string, p permission) bool {
	t.Helper()
	res, sub, _ := strings.Cut(p.Resource, "/")
	sar, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + Namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: p.Group, Resource: res, Subresource: sub, Verb: p.Verb, Name: p.ResourceName,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview %s for %s: %v", p, user, err)
	}
	return sar.Status.Allowed
}

// serviceAccountConfig is a client config with a token of the function's
// ServiceAccount, as its pod has; rec, when set, sees every request.
func serviceAccountConfig(t *testing.T, k *kube.Cluster, fn string, rec *recorder) *rest.Config {
	t.Helper()
	rc := rest.CopyConfig(k.Admin)
	rc.BearerToken = k.ServiceAccountToken(t, Namespace, "must-gather-functions-"+fn, time.Now().Add(time.Hour))
	rc.WarningHandler = rest.NoWarnings{}
	if rec != nil {
		rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &recordingTransport{rt: rt, rec: rec} })
	}
	return rc
}

// recorder keeps the method, URL and answer of every request.
type recorder struct {
	mu   sync.Mutex
	reqs []request
}

type request struct {
	method string
	url    *url.URL
	code   int
}

func (r *recorder) add(req request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
}

func (r *recorder) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

type recordingTransport struct {
	rt  http.RoundTripper
	rec *recorder
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	t.rec.add(request{method: req.Method, url: req.URL, code: code})
	return resp, err
}

// permission is what the API server authorizes a request as, worked out
// from its path and method as kube-apiserver's RequestInfo does for
// resource requests.
func (r request) permission() permission {
	parts := strings.Split(strings.Trim(r.url.Path, "/"), "/")
	var group string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		group, parts = parts[1], parts[3:]
	default:
		return permission{Resource: r.url.Path, Verb: strings.ToLower(r.method)}
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	p := permission{Group: group}
	var name string
	switch len(parts) {
	case 0:
	case 1:
		p.Resource = parts[0]
	case 2:
		p.Resource, name = parts[0], parts[1]
	default:
		p.Resource, name = parts[0]+"/"+parts[2], parts[1]
	}
	switch r.method {
	case http.MethodGet, http.MethodHead:
		switch {
		case r.url.Query().Get("watch") == "true" || r.url.Query().Get("watch") == "1":
			p.Verb = "watch"
		case name == "":
			p.Verb = "list"
		default:
			p.Verb = "get"
		}
	case http.MethodPost:
		p.Verb = "create"
	case http.MethodPut:
		p.Verb = "update"
	case http.MethodPatch:
		p.Verb = "patch"
	case http.MethodDelete:
		p.Verb = "delete"
		if name == "" {
			p.Verb = "deletecollection"
		}
	}
	return p
}
