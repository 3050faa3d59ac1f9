package kubegather

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestMain(m *testing.M) {
	// client-go's streaming servers in the exec tests log closed
	// connections through klog.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	testenv.Main(m) // stops the MinIO that the benchmarks start
}

const (
	forkliftImage = "quay.io/kubev2v/forklift-must-gather:latest"
	forkliftDir   = "quay-io-kubev2v-forklift-must-gather-sha256-5eed"
	ts            = "2026-01-02T03:04:05Z"
)

var planFiles = map[string]string{
	"namespaces/openshift-mtv/crs/plan/mig-plan-cold.yaml":          "kind: Plan\n",
	"namespaces/openshift-mtv/logs/forklift-controller/current.log": "started\n",
}

// cleanedUp fails the test unless the gathering's namespace and binding
// are gone.
func cleanedUp(t *testing.T, c *fakeCluster) {
	t.Helper()
	ctx := context.Background()
	nss, err := c.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	crbs, err := c.kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	if len(nss.Items) != 0 || len(crbs.Items) != 0 {
		t.Errorf("left behind: %d namespaces, %d clusterrolebindings", len(nss.Items), len(crbs.Items))
	}
	var deleted []string
	for _, a := range c.kube.Actions() {
		if a.GetVerb() == "delete" {
			deleted = append(deleted, a.GetResource().Resource+"/"+a.(k8stesting.DeleteAction).GetName())
		}
	}
	created := c.createdObjects()
	var want []string
	for _, o := range created {
		if strings.HasPrefix(o, "clusterrolebindings/") {
			want = append(want, o)
		}
	}
	for _, o := range created {
		if strings.HasPrefix(o, "namespaces/") {
			want = append(want, o)
		}
	}
	if diff := cmp.Diff(want, deleted); diff != "" {
		t.Errorf("deleted objects (-want +got):\n%s", diff)
	}
}

func TestThePodSpecMatchesTheGoldenFile(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		cfg    Config
		spec   podSpec
		labels map[string]string
	}{
		{"the default pod", "pod-default.yaml", Config{},
			podSpec{image: forkliftImage, command: "/usr/bin/gather", sourceDir: "/must-gather/", affinity: placement{avoid: []string{"node-a", "node-b"}}.affinity()},
			map[string]string{LabelGathering: "7"}},
		{"a pod on a named node with host network and since", "pod-node-since.yaml",
			Config{NodeSelector: map[string]string{"node-role.kubernetes.io/worker": ""}, VolumePercentage: 80},
			podSpec{image: "quay.io/a/b:1", command: "PLAN=x /usr/bin/targeted", sourceDir: "/out", nodeName: "worker-0", hostNetwork: true, opts: PodOptions{Since: "2h0m0s"}},
			nil},
		{"a pod on selected nodes with since-time", "pod-selector-since-time.yaml",
			Config{NodeSelector: map[string]string{"node-role.kubernetes.io/worker": ""}},
			podSpec{image: "quay.io/a/b:1", command: "/usr/bin/gather", sourceDir: "/must-gather", opts: PodOptions{SinceTime: "2026-01-01T00:00:00Z"}},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(nil, nil, nil, nil, tt.cfg, nil)
			got, err := yaml.Marshal(g.newPod(tt.spec, tt.labels))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("pod (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAStopWhileTheGatherRunsCopiesWhatIsThere stays on the fake
// clientset. Its faults: a pod watch that never tells that the gather
// started, which a real API server's watch cannot be made to miss; and,
// for a stop while the gather runs, the copy of a stopped gather, which
// runs tar under bash -c in the pod where the test environment's exec maps
// /must-gather for tar alone. The other stops run on the test control
// plane (TestAStoppedGatheringCopiesWhatIsThereAndCleansUp).
func TestAStopWhileTheGatherRunsCopiesWhatIsThere(t *testing.T) {
	tests := []struct {
		name  string
		react func(c *fakeCluster)
	}{
		{"a timeout while the gather runs", nil},
		{"a timeout after the gather started, before the watch told of it", (*fakeCluster).silencePodWatches},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, map[string]behaviour{forkliftImage: {hang: true, lines: []string{"working"}, files: map[string]string{"namespaces/a.yaml": "a"}}})
			if tt.react != nil {
				tt.react(c)
			}
			job := newTestJob(t, mustgather.Gathering{})
			cause := fmt.Errorf("%w after 10m", mustgather.ErrTimedOut)
			go func() {
				receive(t, c.podsRunning, "the start of the gather")
				job.stop(cause)
			}()
			err := c.gatherer(testConfig()).Gather(context.Background(), job.Job)
			t.Logf("error: %v\nlog:\n%s", err, job.log)
			if !errors.Is(err, cause) {
				t.Fatalf("error %v does not wrap %v", err, cause)
			}
			var got []string
			for name := range job.files(t) {
				got = append(got, name)
			}
			slices.Sort(got)
			if diff := cmp.Diff([]string{forkliftDir + "/gather.logs", forkliftDir + "/namespaces/a.yaml"}, got); diff != "" {
				t.Errorf("archive (-want +got):\n%s", diff)
			}
			want := []execCall{{Pod: "must-gather-1", Container: "copy", Command: copyStoppedCommand("/must-gather/")}}
			if diff := cmp.Diff(want, c.execCalls()); diff != "" {
				t.Errorf("exec (-want +got):\n%s", diff)
			}
			if w := "gather stopped before it finished: timed out after 10m"; !strings.Contains(job.log.String(), w) {
				t.Errorf("log does not say %q:\n%s", w, job.log)
			}
			cleanedUp(t, c)
		})
	}
}

// TestAGatherThatEndedJustBeforeTheStopIsCopiedWhole stays on the fake
// clientset: the fault, a pod watch that never tells of the gather's end
// before the stop, cannot be made against a real API server.
func TestAGatherThatEndedJustBeforeTheStopIsCopiedWhole(t *testing.T) {
	c := newFakeCluster(t, map[string]behaviour{forkliftImage: {files: map[string]string{"namespaces/a.yaml": "a"}}})
	c.silencePodWatches() // the watch never tells that the gather ended
	job := newTestJob(t, mustgather.Gathering{})
	go func() {
		receive(t, c.podsEnded, "the end of the gather")
		job.stop(fmt.Errorf("%w after 10m", mustgather.ErrTimedOut))
	}()
	err := c.gatherer(testConfig()).Gather(context.Background(), job.Job)
	t.Logf("log:\n%s", job.log)
	if err != nil {
		t.Fatalf("Gather: %v, want nil: the gather had ended and its output was copied", err)
	}
	var got []string
	for name := range job.files(t) {
		got = append(got, name)
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{forkliftDir + "/gather.logs", forkliftDir + "/namespaces/a.yaml"}, got); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
	want := []execCall{{Pod: "must-gather-1", Container: "copy", Command: copyCommand("/must-gather/")}}
	if diff := cmp.Diff(want, c.execCalls()); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
	if log := job.log.String(); !strings.Contains(log, "gather completed") || strings.Contains(log, "gathering stopped") {
		t.Errorf("log does not say the gather completed, or says it was stopped:\n%s", log)
	}
	cleanedUp(t, c)
}

// TestImageStreamFailuresLeaveNothingBehind stays on the fake clientset:
// OpenShift's ImageStreamTag API names its objects <stream>:<tag>, which
// no CustomResourceDefinition on the test control plane can serve. The
// other setup failures run there (TestSetupFailuresLeaveNothingBehind).
func TestImageStreamFailuresLeaveNothingBehind(t *testing.T) {
	tests := []struct {
		name      string
		gathering mustgather.Gathering
		react     func(c *fakeCluster)
		allowed   []string
		wantErr   string
		wantIs    error
	}{
		{
			name:      "an image stream that does not exist",
			gathering: mustgather.Gathering{ImageStream: "openshift/nope:latest"},
			wantErr:   "resolve image stream openshift/nope:latest",
		},
		{
			name:      "an image stream that resolves to an image the allow-list does not name",
			gathering: mustgather.Gathering{ImageStream: "openshift/must-gather:latest"},
			react: func(c *fakeCluster) {
				c.imageStreamTag(t, "openshift", "must-gather:latest", "registry.example.com/evil/gather@sha256:abc")
			},
			allowed: []string{"openshift/must-gather:latest", "quay.io/kubev2v/*"},
			wantErr: "image stream openshift/must-gather:latest resolves to registry.example.com/evil/gather@sha256:abc, which is not an allowed image",
			wantIs:  mustgather.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, map[string]behaviour{forkliftImage: {}})
			if tt.react != nil {
				tt.react(c)
			}
			job := newTestJob(t, tt.gathering)
			cfg := testConfig()
			cfg.AllowedImages = tt.allowed
			err := c.gatherer(cfg).Gather(context.Background(), job.Job)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one that says %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if !strings.Contains(job.log.String(), tt.wantErr) {
				t.Errorf("log does not say %q:\n%s", tt.wantErr, job.log)
			}
			cleanedUp(t, c)
		})
	}
}

// TestImagesComeFromTheGathering stays on the fake clientset: OpenShift's
// ImageStreamTag API names its objects <stream>:<tag>, which no
// CustomResourceDefinition on the test control plane can serve (a custom
// object's name must be a DNS subdomain).
func TestImagesComeFromTheGathering(t *testing.T) {
	const streamImage = "image-registry.openshift-image-registry.svc:5000/openshift/must-gather@sha256:abc"
	tests := []struct {
		name      string
		gathering mustgather.Gathering
		allowed   []string
		want      []string
	}{
		{"no image runs the default image", mustgather.Gathering{}, nil, []string{forkliftImage}},
		{"a list of images runs each once", mustgather.Gathering{Image: "quay.io/a/b:1, quay.io/c/d:2,quay.io/a/b:1"}, nil, []string{"quay.io/a/b:1", "quay.io/c/d:2"}},
		{"an image stream runs the image its tag points at", mustgather.Gathering{ImageStream: "openshift/must-gather:latest"}, nil, []string{streamImage}},
		{
			"an image stream whose image the allow-list names",
			mustgather.Gathering{ImageStream: "openshift/must-gather:latest"},
			[]string{"quay.io/kubev2v/*", "image-registry.openshift-image-registry.svc:5000/openshift/*"},
			[]string{streamImage},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, nil)
			c.imageStreamTag(t, "openshift", "must-gather:latest", streamImage)
			cfg := testConfig()
			cfg.AllowedImages = tt.allowed
			got, _, err := c.gatherer(cfg).resolveImages(context.Background(), tt.gathering, func(string, ...any) {})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPodsWaitForTheServiceAccount stays on the fake clientset: the fault,
// a namespace whose default ServiceAccount is not made yet, cannot be made
// on the test control plane, whose controller makes it at once. Refusals
// in general are tested on the real one (TestAdmissionIsRetriedUntilTheBindingHasPropagated).
func TestPodsWaitForTheServiceAccount(t *testing.T) {
	c := newFakeCluster(t, map[string]behaviour{forkliftImage: {}})
	refused := 0
	c.kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if refused < 2 {
			refused++
			return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "",
				fmt.Errorf("error looking up service account %s/default: serviceaccount \"default\" not found", a.GetNamespace()))
		}
		return false, nil, nil
	})
	job := newTestJob(t, mustgather.Gathering{})
	if err := c.gatherer(testConfig()).Gather(context.Background(), job.Job); err != nil {
		t.Fatalf("Gather: %v", err)
	}
	if refused != 2 {
		t.Errorf("pod creation refused %d times, want 2", refused)
	}
	cleanedUp(t, c)
}

// Since and since-time are validated with the request
// (mustgather.Request.Validate refuses both together, a since that is no
// positive duration, a since-time that is no RFC 3339 time); the gatherer
// only writes them as oc does.
func TestPodOptionsWriteSinceAsOcDoes(t *testing.T) {
	tests := []struct {
		name string
		in   mustgather.Gathering
		want PodOptions
	}{
		{"since is written as oc writes it", mustgather.Gathering{Since: "90m"}, PodOptions{Since: "1h30m0s"}},
		{"since-time passes as it is", mustgather.Gathering{SinceTime: "2026-01-01T00:00:00Z"}, PodOptions{SinceTime: "2026-01-01T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, podOptions(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestTheEndOfAGatherComesFromThePodNotFromItsLogStream stays on the fake
// clientset: its faults, a log stream cut while the container runs and
// one left open after it ended, are not what kwok's log streams do.
func TestTheEndOfAGatherComesFromThePodNotFromItsLogStream(t *testing.T) {
	lines := []string{"one", "two", "three", "four"}
	tests := []struct {
		name    string
		b       behaviour
		wantLog string
	}{
		{"a stream cut while the gather runs is opened again without repeating lines", behaviour{lines: lines, logCut: 2}, ""},
		{"a stream that stays open after the gather ended is left after the drain time", behaviour{lines: lines, logNeverEnds: true}, "log still open 300ms after the gather ended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, map[string]behaviour{forkliftImage: tt.b})
			job := newTestJob(t, mustgather.Gathering{})
			cfg := testConfig()
			cfg.LogDrain = 300 * time.Millisecond
			if err := c.gatherer(cfg).Gather(context.Background(), job.Job); err != nil {
				t.Fatalf("Gather: %v", err)
			}
			var pod []string
			for _, l := range job.log.Lines() {
				if text, ok := strings.CutPrefix(l, "[must-gather-1] POD "); ok {
					pod = append(pod, text)
				}
			}
			if diff := cmp.Diff(lines, pod); diff != "" {
				t.Errorf("log lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff("one\ntwo\nthree\nfour\n", job.files(t)[forkliftDir+"/gather.logs"]); diff != "" {
				t.Errorf("gather.logs (-want +got):\n%s", diff)
			}
			if !strings.Contains(job.log.String(), tt.wantLog) {
				t.Errorf("log does not say %q:\n%s", tt.wantLog, job.log)
			}
		})
	}
}
