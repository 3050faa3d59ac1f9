package kubegather

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// fault is what faultyExecutor does to one exec.
type fault struct {
	// fail makes the exec fail at once, as when the API server cannot
	// reach the kubelet.
	fail bool
	// cutAfter > 0 breaks the stream off after that many bytes.
	cutAfter int64
	// afterCut runs once the stream has broken off.
	afterCut func()
}

// faultyExecutor is the real executor, with faults injected into the copy
// streams: the n-th exec into a pod (from 1) gets faultFor(pod, n).
type faultyExecutor struct {
	Executor
	faultFor func(pod string, n int) fault

	mu    sync.Mutex
	calls map[string]int
}

func (f *faultyExecutor) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[pod]++
	n := f.calls[pod]
	f.mu.Unlock()
	ft := f.faultFor(pod, n)
	switch {
	case ft.fail:
		return fmt.Errorf("injected fault: error dialing backend: dial tcp: connection refused")
	case ft.cutAfter <= 0:
		return f.Executor.Exec(ctx, namespace, pod, container, command, stdout, stderr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cw := &cutWriter{w: stdout, left: ft.cutAfter, cancel: cancel}
	err := f.Executor.Exec(ctx, namespace, pod, container, command, cw, stderr)
	if !cw.cut.Load() {
		return err
	}
	if ft.afterCut != nil {
		ft.afterCut()
	}
	return fmt.Errorf("injected fault: stream broke off after %d bytes: %w", ft.cutAfter, io.ErrUnexpectedEOF)
}

func (f *faultyExecutor) execs(pod string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[pod]
}

// cutWriter passes left bytes on and then fails, ending the exec.
type cutWriter struct {
	w      io.Writer
	left   int64
	cancel context.CancelFunc
	cut    atomic.Bool
}

var errInjectedCut = errors.New("injected fault: stream cut")

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.w.Write(p)
	}
	n, _ := c.w.Write(p[:c.left])
	c.left = 0
	c.cut.Store(true)
	c.cancel()
	return n, errInjectedCut
}

// podOutput is what a test's gather pod leaves in its source dir: a log
// that the copy streams are cut in, and Forklift's must-gather.tar.gz.
type podOutput struct {
	files   map[string]string // beside the tarball
	tarball []byte            // must-gather.tar.gz
	inner   map[string]string // what the tarball unpacks to
}

func newPodOutput(t *testing.T) podOutput {
	inner := map[string]string{
		"must-gather/namespaces/openshift-mtv/crs/plan/mig-plan-cold.yaml": "kind: Plan\n",
		"must-gather/namespaces/openshift-mtv/logs/controller.log":         string(archivetest.Data(23, 200<<10)),
	}
	return podOutput{
		files: map[string]string{
			"cluster-scoped-resources/nodes.yaml": "kind: NodeList\n",
			"logs/big.log":                        string(archivetest.Data(19, 300<<10)),
			"timestamp-of-gather":                 "done\n",
		},
		tarball: tarGz(t, inner),
		inner:   inner,
	}
}

// write puts the output into dir.
func (o podOutput) write(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{"must-gather.tar.gz": string(o.tarball)}
	for name, content := range o.files {
		files[name] = content
	}
	if err := writeTree(dir, files); err != nil {
		t.Fatal(err)
	}
}

// tarGz packs files, as Forklift's gather packs must-gather.tar.gz.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range sortedKeys(files) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: testNow}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// want returns the files the archive must hold under dir for this output,
// the tarball unpacked.
func (o podOutput) want(dir string) map[string]string {
	want := map[string]string{}
	for name, content := range o.files {
		want[dir+"/"+name] = content
	}
	for name, content := range o.inner {
		want[dir+"/"+name] = content
	}
	return want
}

var cutFile = regexp.MustCompile(`archive: add (\S+): content ended after (\d+) of \d+ bytes, the rest filled with zero bytes`)

var copyingInto = regexp.MustCompile(`(?m)^\[([^\]]+)\] OUT \S+ copying gather output into (\S+)/$`)

// archiveDirs returns the archive directory of each pod, from the log.
func archiveDirs(log string) map[string]string {
	dirs := map[string]string{}
	for _, m := range copyingInto.FindAllStringSubmatch(log, -1) {
		dirs[m[1]] = m[2]
	}
	return dirs
}

// checkFiles fails the test unless files holds each of want.
func checkFiles(t *testing.T, files, want map[string]string) {
	t.Helper()
	for name, content := range want {
		got, ok := files[name]
		switch {
		case !ok:
			t.Errorf("%s is not in the archive", name)
		case got != content:
			t.Errorf("%s is in the archive with %d bytes that are not the %d gathered", name, len(got), len(content))
		}
	}
}

// TestACopyThatBreaksOffLosesNothing injects faults into the copy streams
// of gatherings on the test control plane (real kube-apiserver, kwok's
// exec running tar over the pod's directory): the faults come from a
// wrapper of the real executor, since the test environment cannot break
// an exec stream by itself.
func TestACopyThatBreaksOffLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := kube.Start(t)
	gatherer := func(t *testing.T, faultFor func(pod string, n int) fault) (*Gatherer, *faultyExecutor) {
		g, err := NewForConfig(k.Admin, testConfig(), nil)
		if err != nil {
			t.Fatal(err)
		}
		fe := &faultyExecutor{Executor: g.exec, faultFor: faultFor}
		g.exec = fe
		return g, fe
	}
	out := newPodOutput(t)
	id := mustgather.ID(100)
	gathering := func(image string) mustgather.Gathering {
		id++
		return mustgather.Gathering{ID: id, Image: image, Timeout: "2m"}
	}
	// one runs a single-image gathering whose pod leaves out, and returns
	// the archive's entries, the job's log, and the pod's archive dir.
	one := func(t *testing.T, g *Gatherer, onPod func(dir string)) ([]archivetest.Entry, string, string, error) {
		t.Helper()
		job, err := gatherOnTestCluster(t, ctx, k, g, gathering(forkliftImage), 1, func(pods []*corev1.Pod) map[string]int {
			dir := k.PodDir(pods[0].Namespace, pods[0].Name)
			out.write(t, dir)
			if onPod != nil {
				onPod(dir)
			}
			return nil
		})
		if cerr := job.aw.Close(); cerr != nil {
			t.Fatalf("the archive does not close: %v\n%s", cerr, job.log)
		}
		log := job.log.String()
		dirs := archiveDirs(log)
		if len(dirs) != 1 {
			t.Fatalf("want the copy of one pod in the log, got %v:\n%s", dirs, log)
		}
		var dir string
		for _, d := range dirs {
			dir = d
		}
		return archivetest.ReadTarGzEntries(t, bytes.NewReader(job.archive.Bytes())), log, dir, err
	}
	count := func(entries []archivetest.Entry) (map[string]string, map[string]int) {
		files, seen := map[string]string{}, map[string]int{}
		for _, e := range entries {
			files[e.Name] = e.Content
			seen[e.Name]++
		}
		return files, seen
	}

	t.Run("a stream cut in the middle of a file is read on where it broke, and nothing is in the archive twice", func(t *testing.T) {
		g, fe := gatherer(t, func(pod string, n int) fault {
			if n == 1 {
				return fault{cutAfter: 100 << 10}
			}
			return fault{}
		})
		entries, log, dir, err := one(t, g, nil)
		if err != nil {
			t.Fatalf("Gather: %v\n%s", err, log)
		}
		files, seen := count(entries)
		checkFiles(t, files, out.want(dir))
		for name, n := range seen {
			if n > 1 {
				t.Errorf("%s is in the archive %d times", name, n)
			}
		}
		if !strings.Contains(log, "read on from byte 102400") || !strings.Contains(log, "gather output copied") {
			t.Errorf("the log does not say that the copy was read on where it broke:\n%s", log)
		}
		if n := execsOf(fe); n != 2 {
			t.Errorf("%d execs, want 2 (the cut one and the one read on)", n)
		}
	})

	t.Run("an exec that fails at once is tried again", func(t *testing.T) {
		g, fe := gatherer(t, func(pod string, n int) fault { return fault{fail: n == 1} })
		entries, log, dir, err := one(t, g, nil)
		if err != nil {
			t.Fatalf("Gather: %v\n%s", err, log)
		}
		files, seen := count(entries)
		checkFiles(t, files, out.want(dir))
		for name, n := range seen {
			if n > 1 {
				t.Errorf("%s is in the archive %d times", name, n)
			}
		}
		if !strings.Contains(log, "copy stream broke off after 0 bytes: injected fault: error dialing backend") {
			t.Errorf("the log does not say that the first exec failed:\n%s", log)
		}
		if n := execsOf(fe); n != 2 {
			t.Errorf("%d execs, want 2", n)
		}
	})

	t.Run("an output that changed since the cut is copied again, skipping the files already copied whole", func(t *testing.T) {
		var podDir string
		g, _ := gatherer(t, func(pod string, n int) fault {
			if n == 1 {
				// Every header of the next tar stream differs.
				return fault{cutAfter: 100 << 10, afterCut: func() { touchAll(t, podDir, time.Now().Add(time.Hour)) }}
			}
			return fault{}
		})
		entries, log, dir, err := one(t, g, func(dir string) { podDir = dir })
		if err != nil {
			t.Fatalf("Gather: %v\n%s", err, log)
		}
		files, seen := count(entries)
		checkFiles(t, files, out.want(dir))
		var twice []string
		for name, n := range seen {
			if n > 1 {
				twice = append(twice, name)
			}
		}
		if len(twice) > 1 {
			t.Errorf("in the archive twice: %v; want at most the file the break cut", twice)
		}
		if !strings.Contains(log, "changed since the copy began: copying it again, skipping the") {
			t.Errorf("the log does not say that the copy started over:\n%s", log)
		}
	})

	t.Run("a copy that keeps breaking off ends in error after its attempts and keeps what it copied", func(t *testing.T) {
		g, fe := gatherer(t, func(pod string, n int) fault { return fault{cutAfter: 100 << 10} })
		entries, log, dir, err := one(t, g, nil)
		if err == nil || !strings.Contains(err.Error(), "copy stream broke off 4 times") {
			t.Fatalf("Gather = %v, want the copy to give up after 4 attempts\n%s", err, log)
		}
		files, _ := count(entries)
		m := cutFile.FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("the log does not name the file the break cut:\n%s", log)
		}
		written, _ := strconv.Atoi(m[2])
		if got, want := files[m[1]], out.want(dir)[m[1]]; len(got) != len(want) || got[:written] != want[:written] || strings.Trim(got[written:], "\x00") != "" {
			t.Errorf("%s, cut by the break, is not its first %d bytes zero-filled to its size", m[1], written)
		}
		if _, ok := files[dir+"/gather.logs"]; !ok {
			t.Error("gather.logs is not in the archive")
		}
		for _, want := range []string{"no more attempts (MUST_GATHER_COPY_ATTEMPTS)", "gather output copied in part"} {
			if !strings.Contains(log, want) {
				t.Errorf("the log does not say %q:\n%s", want, log)
			}
		}
		if n := execsOf(fe); n != testConfig().withDefaults().CopyAttempts {
			t.Errorf("%d execs, want %d", n, testConfig().withDefaults().CopyAttempts)
		}
	})

	damaged := []struct {
		name    string
		tarball func() []byte
	}{
		{"truncated", func() []byte { return out.tarball[:len(out.tarball)*2/3] }},
		{"turning into garbage", func() []byte {
			b := bytes.Clone(out.tarball)
			for i := len(b) / 2; i < len(b); i++ {
				b[i] = byte(i * 131)
			}
			return b
		}},
	}
	for _, tt := range damaged {
		t.Run("a must-gather.tar.gz "+tt.name+" is kept as it is next to what could be unpacked", func(t *testing.T) {
			g, _ := gatherer(t, func(string, int) fault { return fault{} })
			broken := tt.tarball()
			entries, log, dir, err := one(t, g, func(dir string) {
				if err := os.WriteFile(filepath.Join(dir, "must-gather.tar.gz"), broken, 0o644); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatalf("Gather: %v\n%s", err, log)
			}
			files, _ := count(entries)
			want := map[string]string{dir + "/must-gather.tar.gz": string(broken)}
			for name, content := range out.files {
				want[dir+"/"+name] = content
			}
			// The tarball's first file, the Plan, comes before the damage.
			want[dir+"/must-gather/namespaces/openshift-mtv/crs/plan/mig-plan-cold.yaml"] = "kind: Plan\n"
			checkFiles(t, files, want)
			for _, s := range []string{dir + "/must-gather.tar.gz could not be unpacked whole", dir + "/must-gather.tar.gz kept as it is, next to what could be unpacked from it", "gather output copied"} {
				if !strings.Contains(log, s) {
					t.Errorf("the log does not say %q:\n%s", s, log)
				}
			}
		})
	}

	t.Run("one image's failures cost no other image its output, and the error says what was lost", func(t *testing.T) {
		images := []string{"quay.io/example/one:1", "quay.io/example/two:2", "quay.io/example/three:3"}
		var mu sync.Mutex
		podImage := map[string]string{}
		g, _ := gatherer(t, func(pod string, n int) fault {
			mu.Lock()
			defer mu.Unlock()
			return fault{fail: podImage[pod] == images[1]}
		})
		job, err := gatherOnTestCluster(t, ctx, k, g, gathering(strings.Join(images, ",")), 3, func(pods []*corev1.Pod) map[string]int {
			codes := map[string]int{}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range pods {
				out.write(t, k.PodDir(p.Namespace, p.Name))
				podImage[p.Name] = p.Spec.Containers[0].Image
				if podImage[p.Name] == images[2] {
					codes[p.Name] = 3
				}
			}
			return codes
		})
		log := job.log.String()
		if err == nil {
			t.Fatalf("Gather succeeded with an image whose copy failed and one whose gather failed:\n%s", log)
		}
		files := job.files(t)
		dirs := archiveDirs(log)
		for pod, dir := range dirs {
			switch podImage[pod] {
			case images[1]:
				if !strings.Contains(err.Error(), "pod "+pod+": copy output: ") {
					t.Errorf("error %q does not name the copy of pod %s", err, pod)
				}
				if _, ok := files[dir+"/gather.logs"]; !ok {
					t.Errorf("gather.logs of the image whose copy failed is not in the archive")
				}
			case images[2]:
				if !strings.Contains(err.Error(), "exited with code 3") {
					t.Errorf("error %q does not say that the gather of image three failed", err)
				}
				checkFiles(t, files, out.want(dir))
			default:
				checkFiles(t, files, out.want(dir))
			}
		}
		if len(dirs) != 3 {
			t.Errorf("copies in the log: %v, want one per image", dirs)
		}
		if !strings.Contains(log, "gather output copied in part: 0 entries") {
			t.Errorf("the log does not say what of image two was lost:\n%s", log)
		}
	})
}

// execsOf returns the execs into the one pod fe has seen.
func execsOf(fe *faultyExecutor) int {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	n := 0
	for _, c := range fe.calls {
		n += c
	}
	return n
}

// touchAll sets the modification time of everything under dir.
func touchAll(t *testing.T, dir string, mtime time.Time) {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, mtime, mtime)
	})
	if err != nil {
		t.Error(err)
	}
}
