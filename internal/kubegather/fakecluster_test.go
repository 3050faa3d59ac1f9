package kubegather

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// behaviour is what a fake pod of an image does.
type behaviour struct {
	lines []string          // the gather's log
	hang  bool              // the gather never ends
	files map[string]string // what the gather writes into the source dir
	// logCut ends the first log stream after that many lines while the
	// gather still runs, as an API server that cuts a long request.
	logCut int
	// logNeverEnds keeps log streams open after the gather has ended.
	logNeverEnds bool
}

// fakeCluster is a fake clientset with a fake kubelet: pods created in it
// start, log, write files and terminate as their image's behaviour says.
type fakeCluster struct {
	t      *testing.T
	kube   *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	behave map[string]behaviour // by image

	mu      sync.Mutex
	seq     map[string]int
	pods    map[string]*fakePod
	created []string // "<resource>/<name>" in order
	execs   []execCall
	wg      sync.WaitGroup

	// podsRunning receives a pod's name once its gather runs and has
	// written its log and files; podsEnded once its gather has
	// terminated.
	podsRunning chan string
	podsEnded   chan string
}

type execCall struct {
	Pod, Container string
	Command        []string
}

type fakePod struct {
	name, ns, image string
	b               behaviour
	dir             string // the source dir's content

	mu      sync.Mutex
	lines   []string
	logDone bool
	changed chan struct{}
	follows int           // log streams opened
	cut     chan struct{} // closed when the first stream was cut (logCut)
}

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

func newFakeCluster(t *testing.T, behave map[string]behaviour, objects ...runtime.Object) *fakeCluster {
	c := &fakeCluster{
		t:           t,
		kube:        fake.NewClientset(objects...),
		behave:      behave,
		seq:         map[string]int{},
		pods:        map[string]*fakePod{},
		podsRunning: make(chan string, 16),
		podsEnded:   make(chan string, 16),
	}
	scheme := runtime.NewScheme()
	c.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{imageStreamTags: "ImageStreamTagList",
			forkliftControllers: "ForkliftControllerList", clusterServiceVersions: "ClusterServiceVersionList",
			clusterOperators: "ClusterOperatorList"})
	// Not OpenShift: the config API answers 404, as on a cluster without it.
	c.dyn.PrependReactor("list", "clusteroperators", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(clusterOperators.GroupResource(), "")
	})
	c.kube.PrependReactor("create", "*", c.create)
	t.Cleanup(c.wg.Wait)
	return c
}

// create gives generated names, as the API server does, and starts the
// kubelet of a pod.
func (c *fakeCluster) create(a k8stesting.Action) (bool, runtime.Object, error) {
	obj := a.(k8stesting.CreateAction).GetObject().DeepCopyObject()
	m, err := meta.Accessor(obj)
	if err != nil {
		return true, nil, err
	}
	res := a.GetResource().Resource
	c.mu.Lock()
	if m.GetName() == "" && m.GetGenerateName() != "" {
		c.seq[res]++
		m.SetName(fmt.Sprintf("%s%d", m.GetGenerateName(), c.seq[res]))
	}
	m.SetUID(types.UID("uid-" + m.GetName()))
	if ns := a.GetNamespace(); ns != "" {
		m.SetNamespace(ns)
	}
	m.SetCreationTimestamp(metav1.NewTime(testNow))
	c.mu.Unlock()
	if err := c.kube.Tracker().Create(a.GetResource(), obj, a.GetNamespace()); err != nil {
		return true, nil, err
	}
	c.mu.Lock()
	c.created = append(c.created, res+"/"+m.GetName())
	c.mu.Unlock()
	if pod, ok := obj.(*corev1.Pod); ok {
		c.startPod(pod.DeepCopy())
	}
	return true, obj, nil
}

func (c *fakeCluster) startPod(pod *corev1.Pod) {
	image := pod.Spec.Containers[0].Image
	b := c.behave[image]
	p := &fakePod{name: pod.Name, ns: pod.Namespace, image: image, b: b, dir: c.t.TempDir(), changed: make(chan struct{}), cut: make(chan struct{})}
	c.mu.Lock()
	c.pods[pod.Name] = p
	c.mu.Unlock()
	c.wg.Go(func() { c.kubelet(p) })
}

func (c *fakeCluster) pod(name string) *fakePod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[name]
}

func (c *fakeCluster) createdObjects() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.created...)
}

func (c *fakeCluster) execCalls() []execCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]execCall(nil), c.execs...)
}

func imageIDOf(image string) string {
	return strings.TrimSuffix(image, ":latest") + "@sha256:5eed"
}

// kubelet plays the pod's life: pull, run, log, write, terminate.
func (c *fakeCluster) kubelet(p *fakePod) {
	setStatus := func(mutate func(*corev1.PodStatus)) {
		obj, err := c.kube.Tracker().Get(podsGVR, p.ns, p.name)
		if err != nil {
			c.t.Errorf("kubelet: get pod %s: %v", p.name, err)
			return
		}
		pod := obj.(*corev1.Pod).DeepCopy()
		mutate(&pod.Status)
		if err := c.kube.Tracker().Update(podsGVR, pod, p.ns); err != nil {
			c.t.Errorf("kubelet: update pod %s: %v", p.name, err)
		}
	}
	containers := func(gather, cp corev1.ContainerState) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{
			{Name: gatherContainer, Image: p.image, ImageID: imageIDOf(p.image), State: gather},
			{Name: copyContainer, Image: p.image, ImageID: imageIDOf(p.image), State: cp},
		}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	setStatus(func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = containers(running, running)
	})
	if err := writeTree(p.dir, p.b.files); err != nil {
		c.t.Errorf("kubelet: write output: %v", err)
	}
	for i, l := range p.b.lines {
		if p.b.logCut > 0 && i == p.b.logCut {
			<-p.cut // the rest comes after the first stream was cut
		}
		p.log(l)
	}
	c.podsRunning <- p.name
	if p.b.hang {
		return
	}
	p.endLog()
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	setStatus(func(s *corev1.PodStatus) { s.ContainerStatuses = containers(done, running) })
	c.podsEnded <- p.name
}

// silencePodWatches makes every watch of pods deliver nothing, as a watch
// that lags behind the pod's changes: the gatherer learns of them only by
// reading the pod.
func (c *fakeCluster) silencePodWatches() {
	c.kube.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, watch.NewFake(), nil
	})
}

func writeTree(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// tarDir writes dir as `tar cf - -C dir .` does: "./", "./a/", "./a/b".
func tarDir(tw *tar.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := "./" + filepath.ToSlash(rel)
		if rel == "." {
			name = "./"
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = name
		if d.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
}

func (p *fakePod) log(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, line)
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *fakePod) endLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logDone = true
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *fakePod) snapshot() ([]string, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...), p.logDone, p.changed
}

// Follow implements LogFollower with a real stream of the fake pod's log.
func (c *fakeCluster) Follow(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error) {
	p := c.pod(pod)
	if p == nil || p.ns != namespace || container != gatherContainer {
		return nil, apierrors.NewNotFound(podsGVR.GroupResource(), pod)
	}
	p.mu.Lock()
	p.follows++
	cutThis := p.follows == 1 && p.b.logCut > 0
	p.mu.Unlock()
	pr, pw := io.Pipe()
	c.wg.Go(func() {
		sent := 0
		for {
			lines, done, changed := p.snapshot()
			for ; sent < len(lines); sent++ {
				if _, err := io.WriteString(pw, lines[sent]+"\n"); err != nil {
					return
				}
				if cutThis && sent+1 == p.b.logCut {
					pw.Close()
					close(p.cut)
					return
				}
			}
			if done && !p.b.logNeverEnds {
				pw.Close()
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			}
		}
	})
	return pr, nil
}

// Exec implements Executor: the copy container streams a real tar of the
// pod's source dir.
func (c *fakeCluster) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error {
	c.mu.Lock()
	c.execs = append(c.execs, execCall{Pod: pod, Container: container, Command: command})
	c.mu.Unlock()
	p := c.pod(pod)
	if p == nil || p.ns != namespace || container != copyContainer {
		return fmt.Errorf("no container %s in pod %s/%s", container, namespace, pod)
	}
	tw := tar.NewWriter(stdout)
	if err := tarDir(tw, p.dir); err != nil {
		return err
	}
	return tw.Close()
}

// syncBuffer is the job's log: safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testConfig() Config {
	return Config{
		PollInterval:   20 * time.Millisecond,
		LogDrain:       5 * time.Second,
		ImagePullGrace: 300 * time.Millisecond,
		CleanupTimeout: 5 * time.Second,
	}
}

func (c *fakeCluster) gatherer(cfg Config) *Gatherer {
	g := New(c.kube, c.dyn, c, c, cfg, nil)
	g.now = func() time.Time { return testNow }
	return g
}

// testJob is a job whose archive is kept in memory and whose Stop the
// test controls.
type testJob struct {
	mustgather.Job
	archive *bytes.Buffer
	aw      *archive.Writer
	log     *syncBuffer
	stop    context.CancelCauseFunc
}

func newTestJob(t *testing.T, g mustgather.Gathering) *testJob {
	stop, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	buf := &bytes.Buffer{}
	aw := archive.NewWriter(buf)
	log := &syncBuffer{}
	if g.ID == 0 {
		g.ID = 7
	}
	if g.Timeout == "" {
		g.Timeout = "10m"
	}
	return &testJob{
		Job:     mustgather.Job{Gathering: g, Stop: stop, Archive: aw, Log: log},
		archive: buf, aw: aw, log: log, stop: cancel,
	}
}

// files closes the archive and returns its regular files and their
// content.
func (j *testJob) files(t *testing.T) map[string]string {
	t.Helper()
	if err := j.aw.Close(); err != nil {
		t.Fatalf("close archive: %v", err)
	}
	return archivetest.ReadTarGz(t, bytes.NewReader(j.archive.Bytes()))
}

// receive waits for a value from ch, failing the test after a while.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// imageStreamTag makes namespace/nameTag an ImageStreamTag that points at
// image.
func (c *fakeCluster) imageStreamTag(t *testing.T, namespace, nameTag, image string) {
	t.Helper()
	ist := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
		"metadata": map[string]any{"name": nameTag, "namespace": namespace},
		"image":    map[string]any{"dockerImageReference": image},
	}}
	if _, err := c.dyn.Resource(imageStreamTags).Namespace(namespace).Create(context.Background(), ist, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
