package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// podCounter counts the pods created for each gathering, from a watch
// started before any was.
type podCounter struct {
	mu   sync.Mutex
	uids map[string]map[string]bool // by gathering id
}

func countPods(t *testing.T, client kubernetes.Interface) *podCounter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := client.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{LabelSelector: kubegather.LabelGathering})
	if err != nil {
		t.Fatal(err)
	}
	c := &podCounter{uids: map[string]map[string]bool{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type != watch.Added {
				continue
			}
			c.mu.Lock()
			id := p.Labels[kubegather.LabelGathering]
			if c.uids[id] == nil {
				c.uids[id] = map[string]bool{}
			}
			c.uids[id][string(p.UID)] = true
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *podCounter) created(id uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.uids[fmt.Sprint(id)])
}

func TestAGatheringWhoseRunnerIsKilledIsCarriedOnByAnotherRunner(t *testing.T) {
	k := kube.Start(t)
	client, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	pods := countPods(t, client)
	m := testenv.MinIO(t)
	nats := testenv.NATS(t)
	const leaseTTL = 3 * time.Second
	shared := map[string]string{
		"NATS_URL": nats.ClientURL(), "AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0",
		"GATHERER": "kube", "KUBECONFIG": k.Kubeconfig, "MUST_GATHER_IMAGE_PULL_GRACE": "1s",
		"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": testenv.Name("reattach"), "S3_USE_TLS": "false",
		"LEASE_TTL": leaseTTL.String(), "RUNNER_REAP_INTERVAL": minReapInterval.String(),
	}
	with := func(fns string) map[string]string { return functionsEnv(shared, fns) }
	api := start(t, t.TempDir(), with("api,recorder"))
	e := &kubeEnv{system: api, kube: k, client: client}

	t.Run("the next runner re-attaches to the pod, follows the rest of its log and archives all of it", func(t *testing.T) {
		a := startChild(t, with("runner"))
		g := api.post(t, "application/json", strings.NewReader(`{"command": "gather", "timeout": "5m"}`))
		pod := e.pod(t, g.ID)
		fill(t, k.PodDir(pod.Namespace, pod.Name), map[string]string{"namespaces/openshift-mtv/crs/plan/cold.yaml": "kind: Plan\n"})
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "first line\nsecond line\n")
		testenv.Eventually(t, 30*time.Second, "exec-output to show the log so far", func() bool {
			cur, _ := api.get(t, fmt.Sprint(g.ID))
			return strings.Contains(cur.ExecOutput, "second line")
		})

		a.kill()
		// Written while no runner lives.
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "third line\n")
		startChild(t, with("runner"))
		testenv.Eventually(t, leaseTTL+30*time.Second, "exec-output to show the re-attach", func() bool {
			cur, _ := api.get(t, fmt.Sprint(g.ID))
			return strings.Contains(cur.ExecOutput, fmt.Sprintf("re-attached to pod %s/%s after runner ", pod.Namespace, pod.Name)) &&
				strings.Contains(cur.ExecOutput, "third line")
		})
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "fourth line\n")
		k.FinishGather(t, pod.Namespace, pod.Name, 0)

		done := api.waitEnded(t, g.ID)
		if done.Status != "completed" {
			t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
		}
		for _, line := range []string{"first line", "second line", "third line", "fourth line"} {
			if n := strings.Count(done.ExecOutput, line); n != 1 {
				t.Errorf("exec-output shows %q %d times:\n%s", line, n, done.ExecOutput)
			}
		}
		files := api.download(t, done)
		var plan, gatherLog string
		for name, content := range files {
			switch {
			case strings.HasSuffix(name, "/namespaces/openshift-mtv/crs/plan/cold.yaml"):
				plan = content
			case strings.HasSuffix(name, "/gather.logs"):
				gatherLog = content
			}
		}
		if plan != "kind: Plan\n" {
			t.Errorf("plan %q in the archive of %v", plan, keysOf(files))
		}
		for _, line := range []string{"first line", "second line", "third line", "fourth line"} {
			if n := strings.Count(gatherLog, line); n != 1 {
				t.Errorf("gather.logs holds %q %d times:\n%s", line, n, gatherLog)
			}
		}
		if logs := files["must-gather.logs"]; !strings.Contains(logs, "re-attached") || !strings.Contains(logs, "fourth line") {
			t.Errorf("must-gather.logs:\n%s", logs)
		}
		if n := pods.created(g.ID); n != 1 {
			t.Errorf("%d pods created for the gathering, want 1", n)
		}
		e.waitGone(t, g.ID)
	})

	t.Run("a runner whose lease lapsed while it still ran stops, records nothing and leaves the pod to the runner that took over", func(t *testing.T) {
		ctx := context.Background()
		js, err := jetstream.New(testenv.Conn(t, nats))
		if err != nil {
			t.Fatal(err)
		}
		a := startChild(t, with("runner"))
		g := api.post(t, "application/json", strings.NewReader(`{"command": "gather", "timeout": "5m"}`))
		pod := e.pod(t, g.ID)
		fill(t, k.PodDir(pod.Namespace, pod.Name), map[string]string{"result.txt": "gathered\n"})
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "first line\n")
		testenv.Eventually(t, 30*time.Second, "exec-output to show the log so far", func() bool {
			cur, _ := api.get(t, fmt.Sprint(g.ID))
			return strings.Contains(cur.ExecOutput, "first line")
		})
		ns, err := client.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		runnerA := ns.Annotations[kubegather.AnnotationRunner]
		leases, err := js.KeyValue(ctx, "must-gather-leases")
		if err != nil {
			t.Fatal(err)
		}
		startChild(t, with("runner"))
		// The lease lapses, as it would if runner A could not reach NATS
		// for LEASE_TTL, while A still runs.
		testenv.Eventually(t, 30*time.Second, "runner B to take the gathering over", func() bool {
			if l, err := leases.Get(ctx, fmt.Sprint(g.ID)); err == nil && string(l.Value()) == runnerA {
				_ = leases.Delete(ctx, fmt.Sprint(g.ID), jetstream.LastRevision(l.Revision()))
			}
			cur, _ := api.get(t, fmt.Sprint(g.ID))
			return strings.Contains(cur.ExecOutput, "after runner "+runnerA+" stopped")
		})
		testenv.Eventually(t, 30*time.Second, "runner A to stop", func() bool {
			return strings.Contains(a.Tail(200), "another runner took the gathering over")
		})
		if _, err := client.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{}); err != nil {
			t.Fatalf("namespace of the gathering after runner A stopped: %v", err)
		}
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "second line\n")
		k.FinishGather(t, pod.Namespace, pod.Name, 0)
		done := api.waitEnded(t, g.ID)
		if done.Status != "completed" {
			t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
		}
		for _, line := range []string{"first line", "second line"} {
			if n := strings.Count(done.ExecOutput, line); n != 1 {
				t.Errorf("exec-output shows %q %d times:\n%s", line, n, done.ExecOutput)
			}
		}
		var result string
		for name, content := range api.download(t, done) {
			if strings.HasSuffix(name, "/result.txt") {
				result = content
			}
		}
		if result != "gathered\n" {
			t.Errorf("result.txt %q", result)
		}
		if n := pods.created(g.ID); n != 1 {
			t.Errorf("%d pods created for the gathering, want 1", n)
		}
		e.waitGone(t, g.ID)
	})

	t.Run("a failed gather of the default image that a runner re-attached to gets the fallback collection", func(t *testing.T) {
		a := startChild(t, with("runner"))
		g := api.post(t, "application/json", strings.NewReader(`{"command": "gather", "timeout": "5m"}`))
		pod := e.pod(t, g.ID)
		a.kill()
		startChild(t, with("runner"))
		testenv.Eventually(t, leaseTTL+30*time.Second, "exec-output to show the re-attach", func() bool {
			cur, _ := api.get(t, fmt.Sprint(g.ID))
			return strings.Contains(cur.ExecOutput, "re-attached to pod")
		})
		k.FinishGather(t, pod.Namespace, pod.Name, 1)
		// The test cluster has no Forklift: the fallback says so.
		done := api.waitEnded(t, g.ID)
		if done.Status != "error" || !strings.Contains(done.ExecOutput, "exited with code 1") ||
			!strings.Contains(done.ExecOutput, "inspect: no ForkliftController found") {
			t.Errorf("%s\n%s", done.Status, done.ExecOutput)
		}
		if n := pods.created(g.ID); n != 1 {
			t.Errorf("%d pods created for the gathering, want 1", n)
		}
		e.waitGone(t, g.ID)
	})

	t.Run("a gathering whose pod was deleted while no runner lived fails", func(t *testing.T) {
		a := startChild(t, with("runner"))
		g := api.post(t, "application/json", strings.NewReader(`{"command": "gather", "timeout": "5m"}`))
		pod := e.pod(t, g.ID)
		a.kill()
		err := client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil {
			t.Fatal(err)
		}
		startChild(t, with("runner"))
		done := api.waitEnded(t, g.ID)
		if done.Status != "error" || !strings.Contains(done.ExecOutput, "the runner stopped before the gathering finished") ||
			!strings.Contains(done.ExecOutput, "is gone") {
			t.Errorf("%s\n%s", done.Status, done.ExecOutput)
		}
		if n := pods.created(g.ID); n != 1 {
			t.Errorf("%d pods created for the gathering, want 1", n)
		}
		e.waitGone(t, g.ID)
	})
}
