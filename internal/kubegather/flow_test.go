package kubegather

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// The gathering flow on the test control plane: a real kube-apiserver,
// its namespace controller and kwok's pods.

// startFlow starts a test cluster and returns a context for the test, the
// cluster, a Gatherer of cfg for it and an admin client.
func startFlow(t *testing.T, cfg Config) (context.Context, *kube.Cluster, *Gatherer, kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	k, g := startGatherer(t, cfg)
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, k, g, admin
}

// leftNothingBehind fails the test unless every namespace of gathering id
// is gone or being deleted and no binding of it is left.
func leftNothingBehind(t *testing.T, ctx context.Context, admin kubernetes.Interface, id mustgather.ID) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: LabelGathering + "=" + id.String()}
	nss, err := admin.CoreV1().Namespaces().List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		if ns.DeletionTimestamp == nil {
			t.Errorf("namespace %s was not deleted", ns.Name)
		}
	}
	crbs, err := admin.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range crbs.Items {
		t.Errorf("clusterrolebinding %s was left behind", b.Name)
	}
}

var podLogLines = regexp.MustCompile(`^\S+Z gathering plan\n\S+Z done\n$`)

func TestASuccessfulGatheringIsStreamedIntoTheArchiveAndCleanedUp(t *testing.T) {
	ctx, k, g, admin := startFlow(t, testConfig())
	g.now = func() time.Time { return testNow }
	forklift := newPodOutput(t)
	tests := []struct {
		name  string
		write func(t *testing.T, dir string)
		want  map[string]string // under the image's archive directory
	}{
		{
			"a plain output tree",
			func(t *testing.T, dir string) {
				if err := writeTree(dir, planFiles); err != nil {
					t.Fatal(err)
				}
			},
			planFiles,
		},
		{
			"Forklift's own must-gather.tar.gz, flattened",
			forklift.write,
			forklift.want(""),
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := mustgather.ID(200 + i)
			var ns, pod string
			job, err := gatherOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: id, Image: forkliftImage, Timeout: "2m"}, 1, func(pods []*corev1.Pod) map[string]int {
				ns, pod = pods[0].Namespace, pods[0].Name
				tt.write(t, k.PodDir(ns, pod))
				k.AppendLogs(t, ns, pod, gatherContainer, "gathering plan\ndone\n")
				return nil
			})
			if err != nil {
				t.Fatalf("Gather: %v\n%s", err, job.log)
			}
			log := job.log.String()
			files := job.files(t)
			dirs := archiveDirs(log)
			dir, ok := dirs[pod]
			if len(dirs) != 1 || !ok {
				t.Fatalf("want the copy of pod %s in the log, got %v:\n%s", pod, dirs, log)
			}
			// The kubelet's timestamp starts each line of the gather's log.
			if got := files[dir+"/gather.logs"]; !podLogLines.MatchString(got) {
				t.Errorf("gather.logs is %q, want the two lines with their timestamps", got)
			}
			want := map[string]string{dir + "/gather.logs": files[dir+"/gather.logs"]}
			for name, content := range tt.want {
				want[dir+"/"+strings.TrimPrefix(name, "/")] = content
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(files))); diff != "" {
				t.Errorf("archive (-want +got):\n%s", diff)
			}
			checkFiles(t, files, want)
			wantLog := []string{
				"[must-gather      ] OUT " + ts + " Using must-gather plug-in image: " + forkliftImage,
				// The test cluster's one node keeps the taint new nodes get.
				"[must-gather      ] OUT " + ts + " no node is Ready, reachable and schedulable: the pods are left to the scheduler",
				"[must-gather      ] OUT " + ts + " namespace/" + ns + " created",
				"[must-gather      ] OUT " + ts + " clusterrolebinding.rbac.authorization.k8s.io/",
				"[" + pod + "] OUT " + ts + " pod for plug-in image " + forkliftImage + " created",
				"[" + pod + "] POD 20",
				"[" + pod + "] POD 20",
				"[" + pod + "] OUT " + ts + " gather completed",
				"[" + pod + "] OUT " + ts + " copying gather output into " + dir + "/",
				"[" + pod + "] OUT " + ts + " gather output copied",
				"[must-gather      ] OUT " + ts + " clusterrolebinding.rbac.authorization.k8s.io/",
				"[must-gather      ] OUT " + ts + " namespace/" + ns + " deleted",
			}
			lines := job.log.Lines()
			if len(lines) != len(wantLog) {
				t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(wantLog), log)
			}
			for i, w := range wantLog {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("log line %d is %q, want one starting %q", i, lines[i], w)
				}
			}
			leftNothingBehind(t, ctx, admin, id)
		})
	}
}

func TestTheGatheringsObjectsAreLabelledForSweeping(t *testing.T) {
	ctx, k, g, admin := startFlow(t, testConfig())
	g.now = func() time.Time { return testNow }
	// Look at the objects while the pod runs.
	var ns *corev1.Namespace
	var crb *rbacv1.ClusterRoleBinding
	var pod *corev1.Pod
	runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 42, Image: forkliftImage, Timeout: "20m", Command: "PLAN=mig-plan-cold /usr/bin/targeted"}, 1, func(pods []*corev1.Pod) {
		pod = pods[0]
		// The namespace is marked just after the pod is made.
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := testenv.Poll(pctx, 20*time.Millisecond, func() error {
			var err error
			if ns, err = admin.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{}); err == nil && ns.Annotations[AnnotationPodCreated] == "" {
				err = errors.New("not marked as holding a pod yet")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		crbs, err := admin.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: LabelGathering + "=42"})
		if err != nil {
			t.Fatal(err)
		}
		if len(crbs.Items) != 1 {
			t.Fatalf("%d bindings of the gathering while its pod runs, want 1", len(crbs.Items))
		}
		crb = &crbs.Items[0]
	})
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelGathering: "42", LabelOwner: ManagedBy}
	nsLabels := map[string]string{
		"openshift.io/run-level":                         "0",
		"pod-security.kubernetes.io/enforce":             "privileged",
		"pod-security.kubernetes.io/audit":               "privileged",
		"pod-security.kubernetes.io/warn":                "privileged",
		"security.openshift.io/scc.podSecurityLabelSync": "false",
		corev1.LabelMetadataName:                         ns.Name, // the API server's own
	}
	maps.Copy(nsLabels, labels)
	leftover := map[string]string{AnnotationLeftoverAfter: "2026-01-02T03:39:05Z"} // 20m timeout + 15m grace
	tests := []struct {
		name      string
		got, want any
	}{
		{"the namespace has a generated name with the prefix", ns.GenerateName, "openshift-must-gather-"},
		{"the namespace is privileged and labelled", ns.Labels, nsLabels},
		{"the namespace says when it is a leftover, and that a pod was made in it", ns.Annotations, map[string]string{AnnotationLeftoverAfter: "2026-01-02T03:39:05Z", "openshift.io/node-selector": "",
			AnnotationPodCreated: testNow.UTC().Format(time.RFC3339)}},
		{"the binding is labelled", crb.Labels, labels},
		{"the binding says when it is a leftover", crb.Annotations, leftover},
		{"the binding is owned by the namespace", crb.OwnerReferences, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: ns.Name, UID: ns.UID}}},
		{"the binding gives cluster-admin", crb.RoleRef, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"}},
		{"the binding's subject is the namespace's default service account", crb.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns.Name}}},
		{"the pod is labelled", pod.Labels, map[string]string{"app": "must-gather", LabelManagedBy: ManagedBy, LabelGathering: "42", LabelOwner: ManagedBy}},
		{"the pod runs the gathering's command", pod.Spec.Containers[0].Command[4], "PLAN=mig-plan-cold /usr/bin/targeted"},
		{"the command is an argument of a fixed script, never part of it", pod.Spec.Containers[0].Command[:4], []string{"/bin/bash", "-c", gatherScript, "gather"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSetupFailuresLeaveNothingBehind makes its faults on the test control
// plane: a node that does not exist, and a binding the API server refuses
// (403) to a user who may create bindings but not bind cluster-admin. The
// image stream faults stay on the fake clientset
// (TestImageStreamFailuresLeaveNothingBehind).
func TestSetupFailuresLeaveNothingBehind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k := kube.Start(t)
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	// Everything the gatherer does, but binding cluster-admin: the API
	// server's escalation check refuses the binding.
	cannotBind := limitedUser(t, ctx, k, admin, "cannot-bind", []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterrolebindings"}, Verbs: []string{"*"}},
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
	})
	tests := []struct {
		name      string
		as        func() *Gatherer
		gathering mustgather.Gathering
		wantErr   string
		wantIs    error
	}{
		{
			name:      "an unknown node name",
			gathering: mustgather.Gathering{ID: 301, NodeName: "worker-9"},
			wantErr:   `node "worker-9" not found`,
			wantIs:    mustgather.ErrInvalid,
		},
		{
			name: "a binding the API server refuses",
			as: func() *Gatherer {
				g, err := NewForConfig(cannotBind, testConfig(), nil)
				if err != nil {
					t.Fatal(err)
				}
				return g
			},
			gathering: mustgather.Gathering{ID: 302},
			wantErr:   "create clusterrolebinding for namespace openshift-must-gather-",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewForConfig(k.Admin, testConfig(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.as != nil {
				g = tt.as()
			}
			job := newTestJob(t, tt.gathering)
			err = g.Gather(ctx, job.Job)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one that says %q\n%s", err, tt.wantErr, job.log)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if !strings.Contains(job.log.String(), tt.wantErr) {
				t.Errorf("log does not say %q:\n%s", tt.wantErr, job.log)
			}
			leftNothingBehind(t, ctx, admin, tt.gathering.ID)
		})
	}
}

func TestFailuresStillArchiveAndCleanUp(t *testing.T) {
	ctx, k, g, admin := startFlow(t, testConfig())
	const good, bad = "quay.io/a/good:1", kube.UnpullableRegistry + "a/bad:1"
	tests := []struct {
		name      string
		gathering mustgather.Gathering
		exitCode  int
		files     map[string]string // what the running pod leaves
		logs      string            // what its gather container says
		wantErr   []string
		notInErr  []string
		wantFiles []string // under the running pod's archive directory
		wantLog   []string
	}{
		{
			name:      "a gather that exits with an error",
			gathering: mustgather.Gathering{ID: 401, Image: forkliftImage},
			exitCode:  2,
			files:     map[string]string{"partial.txt": "x"},
			// The kubelet makes the log's tail the termination message;
			// the error keeps its last line.
			logs:      "collecting namespaces\nerror: the disk is full",
			wantErr:   []string{"gather for image " + forkliftImage + " exited with code 2", "error: the disk is full"},
			notInErr:  []string{"collecting namespaces"},
			wantFiles: []string{"gather.logs", "partial.txt"},
		},
		{
			name:      "two images of which one cannot be pulled",
			gathering: mustgather.Gathering{ID: 402, Image: good + ", " + bad},
			files:     map[string]string{"ok.txt": "ok"},
			wantErr:   []string{"image " + bad + " cannot be pulled (gave up after 300ms): ErrImagePull: Failed to pull image \"" + bad + "\""},
			wantFiles: []string{"gather.logs", "ok.txt"},
			wantLog:   []string{"EVENT Warning Failed: Failed to pull image \"" + bad + "\"", "nothing to copy: the copy container is not running"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.gathering.Timeout = "2m"
			var pod string
			job, err := gatherOnTestCluster(t, ctx, k, g, tt.gathering, 1, func(pods []*corev1.Pod) map[string]int {
				pod = pods[0].Name
				if err := writeTree(k.PodDir(pods[0].Namespace, pod), tt.files); err != nil {
					t.Fatal(err)
				}
				k.AppendLogs(t, pods[0].Namespace, pod, "gather", tt.logs)
				return map[string]int{pod: tt.exitCode}
			})
			t.Logf("error: %v\nlog:\n%s", err, job.log)
			if err == nil {
				t.Fatal("Gather succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, w := range tt.notInErr {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q says %q, not the last line only", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q has more than one line", err)
			}
			dir := archiveDirs(job.log.String())[pod]
			var want []string
			for _, f := range tt.wantFiles {
				want = append(want, dir+"/"+f)
			}
			if diff := cmp.Diff(want, slices.Sorted(maps.Keys(job.files(t)))); diff != "" {
				t.Errorf("archive (-want +got):\n%s", diff)
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(job.log.String(), w) {
					t.Errorf("log does not say %q", w)
				}
			}
			leftNothingBehind(t, ctx, admin, tt.gathering.ID)
		})
	}
}

func TestNoMoreThanMaxParallelPodsRunAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.MaxParallel = 1
	ctx, k, g, admin := startFlow(t, cfg)
	images := []string{"quay.io/a/one:1", "quay.io/a/two:1", "quay.io/a/three:1"}
	mg := mustgather.Gathering{ID: 501, Image: strings.Join(images, ","), Timeout: "2m"}
	job := newTestJob(t, mg)
	done := make(chan error, 1)
	go func() { done <- g.Gather(ctx, job.Job) }()
	seen := map[string]bool{}
	for range images {
		p := k.WaitPod(t, func(p *corev1.Pod) bool {
			return p.Labels[LabelGathering] == "501" && p.Status.Phase == corev1.PodRunning && !seen[p.Name]
		})
		seen[p.Name] = true
		// While one gathers, the gathers of the pods before it have ended.
		pods, err := admin.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelGathering + "=501"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != len(seen) {
			t.Errorf("%d pods while pod %d of %d runs", len(pods.Items), len(seen), len(images))
		}
		for _, other := range pods.Items {
			for _, cs := range other.Status.ContainerStatuses {
				if other.Name != p.Name && cs.Name == gatherContainer && cs.State.Terminated == nil {
					t.Errorf("the gather of pod %s has not ended while %s runs", other.Name, p.Name)
				}
			}
		}
		if err := writeTree(k.PodDir(p.Namespace, p.Name), map[string]string{"f": p.Spec.Containers[0].Image}); err != nil {
			t.Fatal(err)
		}
		k.FinishGather(t, p.Namespace, p.Name, 0)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Gather: %v\n%s", err, job.log)
		}
	case <-ctx.Done():
		t.Fatalf("the gathering did not end:\n%s", job.log)
	}
	// With one at a time, each pod is created after the one before it
	// was copied.
	var events []string
	for _, l := range job.log.Lines() {
		switch {
		case strings.Contains(l, "pod for plug-in image"):
			events = append(events, "created "+l[strings.LastIndex(l, " image ")+7:strings.LastIndex(l, " created")])
		case strings.HasSuffix(l, "gather output copied"):
			events = append(events, "copied")
		}
	}
	want := []string{"created quay.io/a/one:1", "copied", "created quay.io/a/two:1", "copied", "created quay.io/a/three:1", "copied"}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if got := len(job.files(t)); got != 6 {
		t.Errorf("%d files in the archive, want 6 (a file and gather.logs per image)", got)
	}
	leftNothingBehind(t, ctx, admin, mg.ID)
}

// recordingExecutor is the real executor that records what it was asked
// to run.
type recordingExecutor struct {
	Executor
	mu    sync.Mutex
	calls []execCall
}

func (r *recordingExecutor) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error {
	r.mu.Lock()
	r.calls = append(r.calls, execCall{Pod: pod, Container: container, Command: command})
	r.mu.Unlock()
	return r.Executor.Exec(ctx, namespace, pod, container, command, stdout, stderr)
}

func (r *recordingExecutor) recorded() []execCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// TestAStoppedGatheringCopiesWhatIsThereAndCleansUp stops gatherings on the
// test control plane before their gathers ran. Stops while a gather runs
// stay on the fake clientset (TestAStopWhileTheGatherRunsCopiesWhatIsThere
// says why).
func TestAStoppedGatheringCopiesWhatIsThereAndCleansUp(t *testing.T) {
	cfg := testConfig()
	cfg.ImagePullGrace = time.Hour
	ctx, k, g, admin := startFlow(t, cfg)
	tests := []struct {
		name  string
		image string
		// stopWhen is what a pod of the gathering must be for the test to
		// stop the job; nil stops it before the gathering starts.
		stopWhen  func(p *corev1.Pod) bool
		cause     error
		files     map[string]string // what the running pod leaves
		wantFiles []string          // under the pod's archive directory
		wantExec  bool
		wantLog   string
	}{
		{
			name:    "a timeout before the gathering started",
			image:   forkliftImage,
			cause:   fmt.Errorf("%w after 1s", mustgather.ErrTimedOut),
			wantLog: "gathering stopped: timed out after 1s",
		},
		{
			name:     "a shutdown while the image is pulled",
			image:    kube.UnpullableRegistry + "a/slow:1",
			stopWhen: func(p *corev1.Pod) bool { return len(p.Status.ContainerStatuses) > 0 },
			cause:    mustgather.ErrShutdown,
			wantLog:  "nothing to copy: the copy container is not running",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingExecutor{Executor: g.exec}
			g.exec = rec
			defer func() { g.exec = rec.Executor }()
			id := mustgather.ID(600 + i)
			job := newTestJob(t, mustgather.Gathering{ID: id, Image: tt.image})
			var pod string
			if tt.stopWhen == nil {
				job.stop(tt.cause)
			}
			done := make(chan error, 1)
			go func() { done <- g.Gather(ctx, job.Job) }()
			if tt.stopWhen != nil {
				p := k.WaitPod(t, func(p *corev1.Pod) bool { return p.Labels[LabelGathering] == id.String() && tt.stopWhen(p) })
				pod = p.Name
				if err := writeTree(k.PodDir(p.Namespace, p.Name), tt.files); err != nil {
					t.Fatal(err)
				}
				job.stop(tt.cause)
			}
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				t.Fatalf("the gathering did not end:\n%s", job.log)
			}
			t.Logf("error: %v\nlog:\n%s", err, job.log)
			if !errors.Is(err, tt.cause) {
				t.Fatalf("error %v does not wrap %v", err, tt.cause)
			}
			dir := archiveDirs(job.log.String())[pod]
			var want []string
			for _, f := range tt.wantFiles {
				want = append(want, dir+"/"+f)
			}
			if diff := cmp.Diff(want, slices.Sorted(maps.Keys(job.files(t)))); diff != "" {
				t.Errorf("archive (-want +got):\n%s", diff)
			}
			execs := rec.recorded()
			if tt.wantExec {
				want := []execCall{{Pod: pod, Container: "copy", Command: copyStoppedCommand("/must-gather/")}}
				if diff := cmp.Diff(want, execs); diff != "" {
					t.Errorf("exec (-want +got):\n%s", diff)
				}
			} else if len(execs) != 0 {
				t.Errorf("exec calls %v, want none", execs)
			}
			if !strings.Contains(job.log.String(), tt.wantLog) {
				t.Errorf("log does not say %q", tt.wantLog)
			}
			leftNothingBehind(t, ctx, admin, id)
		})
	}
}

// stallingExecutor is the real executor whose streams stall, once pass
// bytes have come, until their context ends: the fault is made at the
// exec stream, since the test environment's exec does not stall.
type stallingExecutor struct {
	Executor
	pass    int64
	stalled chan struct{} // closed when a stream stalls
	once    sync.Once
}

func (s *stallingExecutor) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error {
	return s.Executor.Exec(ctx, namespace, pod, container, command, &stallingWriter{w: stdout, left: s.pass, ctx: ctx, stall: func() {
		s.once.Do(func() { close(s.stalled) })
	}}, stderr)
}

type stallingWriter struct {
	w     io.Writer
	left  int64
	ctx   context.Context
	stall func()
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= s.left {
		s.left -= int64(len(p))
		return s.w.Write(p)
	}
	n, err := s.w.Write(p[:s.left])
	s.left = 0
	if err != nil {
		return n, err
	}
	s.stall()
	<-s.ctx.Done()
	return n, s.ctx.Err()
}

func TestACopyCutShortByTheEndOfItsContextFailsKeepsTheArchiveAndStillCleansUp(t *testing.T) {
	ctx, k, g, admin := startFlow(t, testConfig())
	// The tar stream: the header of ./, big.log's and then the first 4096
	// bytes of its content.
	se := &stallingExecutor{Executor: g.exec, pass: 2*512 + 4096, stalled: make(chan struct{})}
	g.exec = se
	const id = mustgather.ID(701)
	job := newTestJob(t, mustgather.Gathering{ID: id, Image: forkliftImage})
	gctx, cancelGather := context.WithCancel(ctx)
	defer cancelGather()
	done := make(chan error, 1)
	go func() { done <- g.Gather(gctx, job.Job) }()
	p := k.WaitPod(t, func(p *corev1.Pod) bool {
		return p.Labels[LabelGathering] == id.String() && p.Status.Phase == corev1.PodRunning
	})
	if err := writeTree(k.PodDir(p.Namespace, p.Name), map[string]string{"big.log": strings.Repeat("x", 1<<20)}); err != nil {
		t.Fatal(err)
	}
	k.FinishGather(t, p.Namespace, p.Name, 0)
	receive(t, se.stalled, "the copy")
	cancelGather()
	err := receive(t, done, "the end of the gathering")
	t.Logf("error: %v\nlog:\n%s", err, job.log)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "copy output") {
		t.Errorf("error %q does not name the copy", err)
	}
	// The file the copy was in keeps its size, zero-filled, so that the
	// archive stays well-formed, and the log says so.
	dir := archiveDirs(job.log.String())[p.Name]
	files := job.files(t)
	if big, ok := files[dir+"/big.log"]; !ok || len(big) != 1<<20 || !strings.HasPrefix(big, strings.Repeat("x", 4096)+"\x00") {
		t.Errorf("big.log is not the 4096 bytes copied, zero-filled to its size (%d bytes)", len(big))
	}
	if _, ok := files[dir+"/gather.logs"]; !ok {
		t.Error("gather.logs is not in the archive")
	}
	if log := job.log.String(); !strings.Contains(log, "content ended after 4096 of 1048576 bytes") {
		t.Error("the log does not say what was cut")
	}
	leftNothingBehind(t, ctx, admin, id)
}

// TestTheCreatedPodIsTheGoldenOne compares the pod the gatherer created
// with the golden pod (TestThePodSpecMatchesTheGoldenFile) as the same API
// server stores it (a dry-run create, with the server's defaults), but for
// what the server and its binder add to each pod of their own: the node,
// and the service account token's volume.
func TestTheCreatedPodIsTheGoldenOne(t *testing.T) {
	ctx, k, g, admin := startFlow(t, testConfig())
	runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 801, Image: forkliftImage, Timeout: "2m"}, 1, func(pods []*corev1.Pod) {
		got := pods[0]
		want, err := admin.CoreV1().Pods(got.Namespace).Create(ctx,
			g.newPod(podSpec{image: forkliftImage, command: "/usr/bin/gather", sourceDir: "/must-gather/", affinity: placement{}.affinity()}, nil),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(podSpecOfItsOwn(want.Spec), podSpecOfItsOwn(got.Spec)); diff != "" {
			t.Errorf("pod spec (-want +got):\n%s", diff)
		}
	})
}

// podSpecOfItsOwn returns s without its node and its service account
// token's volume, whose name the API server makes up for each pod.
func podSpecOfItsOwn(s corev1.PodSpec) corev1.PodSpec {
	s = *s.DeepCopy()
	s.NodeName = ""
	token := func(name string) bool { return strings.HasPrefix(name, "kube-api-access-") }
	s.Volumes = slices.DeleteFunc(s.Volumes, func(v corev1.Volume) bool { return token(v.Name) })
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return token(m.Name) })
		}
	}
	return s
}
