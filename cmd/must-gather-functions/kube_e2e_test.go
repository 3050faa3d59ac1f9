package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// kubeEnv is the whole system (api, runner with the Kubernetes gatherer,
// recorder, MinIO) against a real kube-apiserver whose node kwok plays.
type kubeEnv struct {
	*system
	kube   *kube.Cluster
	client kubernetes.Interface
}

func startKube(t *testing.T, k *kube.Cluster, dataDir string, extra map[string]string) *kubeEnv {
	t.Helper()
	m := testenv.MinIO(t)
	env := map[string]string{
		"GATHERER": "kube", "KUBECONFIG": k.Kubeconfig,
		"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": testenv.Name("kube"), "S3_USE_TLS": "false",
		"MUST_GATHER_IMAGE_PULL_GRACE": "1s",
	}
	for k, v := range extra {
		env[k] = v
	}
	client, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeEnv{system: start(t, dataDir, env), kube: k, client: client}
}

// pod waits for the gather pod of gathering id.
func (e *kubeEnv) pod(t *testing.T, id uint64) *corev1.Pod {
	t.Helper()
	return e.kube.WaitPod(t, func(p *corev1.Pod) bool {
		return p.Labels[kubegather.LabelGathering] == fmt.Sprint(id) && p.Status.Phase == corev1.PodRunning
	})
}

// waitGone polls until the gathering's namespace and binding are deleted.
func (e *kubeEnv) waitGone(t *testing.T, id uint64) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: kubegather.LabelGathering + "=" + fmt.Sprint(id)}
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("the namespace and binding of gathering %d to be deleted", id), func() bool {
		nss, err1 := e.client.CoreV1().Namespaces().List(context.Background(), sel)
		crbs, err2 := e.client.RbacV1().ClusterRoleBindings().List(context.Background(), sel)
		return err1 == nil && err2 == nil && len(nss.Items) == 0 && len(crbs.Items) == 0
	})
}

func fill(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTheWholeSystemGathersFromARealAPIServer(t *testing.T) {
	k := kube.Start(t)

	t.Run("a gathering runs to a downloadable archive and leaves nothing behind", func(t *testing.T) {
		e := startKube(t, k, t.TempDir(), nil)
		g := e.post(t, "application/json", strings.NewReader(`{"custom-name": "plan:cold", "plan": "cold", "timeout": "120"}`))
		pod := e.pod(t, g.ID)

		// While it runs: its own namespace, a binding of cluster-admin to the
		// namespace's default service account, and the pod.
		ns, err := e.client.CoreV1().Namespaces().Get(context.Background(), pod.Namespace, metav1.GetOptions{})
		if err != nil || !strings.HasPrefix(ns.Name, "openshift-must-gather-") || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
			t.Errorf("namespace %+v: %v", ns, err)
		}
		crbs, err := e.client.RbacV1().ClusterRoleBindings().List(context.Background(), metav1.ListOptions{LabelSelector: kubegather.LabelGathering + "=" + fmt.Sprint(g.ID)})
		if err != nil || len(crbs.Items) != 1 || crbs.Items[0].RoleRef.Name != "cluster-admin" ||
			crbs.Items[0].Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: "default", Namespace: pod.Namespace}) {
			t.Errorf("binding %+v: %v", crbs, err)
		}
		if cmd := strings.Join(pod.Spec.Containers[0].Command, " ") + " " + strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(cmd, "PLAN='cold' /usr/bin/targeted") || strings.Contains(cmd, "NS=") {
			t.Errorf("gather container runs %q", cmd)
		}

		fill(t, k.PodDir(pod.Namespace, pod.Name), map[string]string{
			"namespaces/openshift-mtv/crs/plan/cold.yaml":                   "kind: Plan\n",
			"namespaces/openshift-mtv/logs/forklift-controller/current.log": "reconciled\n",
		})
		k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "gathering plan cold\n")
		// exec-output shows the log while the gathering runs.
		var cur gathering
		testenv.Eventually(t, 30*time.Second, "exec-output to show the pod log", func() bool {
			cur, _ = e.get(t, fmt.Sprint(g.ID))
			return strings.Contains(cur.ExecOutput, "gathering plan cold")
		})
		if cur.Status != "inprogress" {
			t.Errorf("status %s while the gather runs", cur.Status)
		}
		k.FinishGather(t, pod.Namespace, pod.Name, 0)

		done := e.waitEnded(t, g.ID)
		if done.Status != "completed" {
			t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
		}
		if !strings.Contains(done.ExecOutput, "["+pod.Name+"] POD") {
			t.Errorf("exec-output lines are not prefixed with the pod name:\n%s", done.ExecOutput)
		}
		files := e.download(t, done)
		var plan, logs string
		for name, content := range files {
			switch {
			case strings.HasSuffix(name, "/namespaces/openshift-mtv/crs/plan/cold.yaml"):
				plan = content
			case strings.HasSuffix(name, "/namespaces/openshift-mtv/logs/forklift-controller/current.log"):
				logs = content
			}
		}
		if plan != "kind: Plan\n" || logs != "reconciled\n" || !strings.Contains(files["must-gather.logs"], "gathering plan cold") {
			t.Errorf("archive holds %v", keysOf(files))
		}
		if _, ok := files["timestamp"]; !ok {
			t.Errorf("archive lacks timestamp: %v", keysOf(files))
		}
		e.waitGone(t, g.ID)
	})

	t.Run("a pod that never finishes times out, keeps what it gathered and leaves nothing behind", func(t *testing.T) {
		e := startKube(t, k, t.TempDir(), nil)
		g := e.post(t, "application/json", strings.NewReader(`{"command": "sleep infinity", "timeout": "3s"}`))
		pod := e.pod(t, g.ID)
		fill(t, k.PodDir(pod.Namespace, pod.Name), map[string]string{"partial.txt": "so far\n"})
		done := e.waitEnded(t, g.ID)
		if done.Status != "error" || !strings.Contains(done.ExecOutput, "timed out after 3s") {
			t.Errorf("%s\n%s", done.Status, done.ExecOutput)
		}
		e.waitGone(t, g.ID)
	})

	t.Run("an image that cannot be pulled is reported in exec-output", func(t *testing.T) {
		e := startKube(t, k, t.TempDir(), nil)
		// The test environment plays a kubelet that cannot pull images of
		// this registry.
		g := e.post(t, "application/json", strings.NewReader(`{"image": "`+kube.UnpullableRegistry+`missing:1", "timeout": "2m"}`))
		done := e.waitEnded(t, g.ID)
		if done.Status != "error" || !strings.Contains(done.ExecOutput, "ErrImagePull") || !strings.Contains(done.ExecOutput, "Failed to pull image") {
			t.Errorf("%s\n%s", done.Status, done.ExecOutput)
		}
		e.waitGone(t, g.ID)
	})

	t.Run("a runner stopped mid-gathering leaves nothing behind, and the sweeper removes a crashed runner's leftovers", func(t *testing.T) {
		dir := t.TempDir()
		e := startKube(t, k, dir, nil)
		g := e.post(t, "application/json", strings.NewReader(`{"command": "sleep infinity", "timeout": "10m"}`))
		e.pod(t, g.ID)
		e.stop() // SIGTERM
		e.waitGone(t, g.ID)

		// What a runner killed with SIGKILL would leave: a labelled namespace
		// and binding past their leftover time.
		ctx := context.Background()
		labels := map[string]string{kubegather.LabelManagedBy: kubegather.ManagedBy, kubegather.LabelOwner: kubegather.ManagedBy, kubegather.LabelGathering: "999"}
		past := map[string]string{kubegather.AnnotationLeftoverAfter: time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}
		ns, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			GenerateName: "openshift-must-gather-", Labels: labels, Annotations: past}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "must-gather-", Labels: labels, Annotations: past},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns.Name}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e = startKube(t, k, dir, nil) // the sweeper runs at start
		e.waitGone(t, 999)
		if got, _ := e.get(t, fmt.Sprint(g.ID)); got.Status != "error" {
			t.Errorf("gathering of the stopped runner: %s", got.Status)
		}
		if _, err := e.client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("leftover namespace: %v", err)
		}
	})
}

func keysOf(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// TestTheWholeSystemGathersFromTheClusterOfKUBECONFIG runs against a real
// cluster, when there is one: KUBECONFIG names it, and
// MUST_GATHER_E2E_IMAGE (default UBI 9, which has bash and tar) is an image
// its nodes can pull.
func TestTheWholeSystemGathersFromTheClusterOfKUBECONFIG(t *testing.T) {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("KUBECONFIG is not set: no real cluster to gather from (make e2e covers a local kube-apiserver)")
	}
	image := os.Getenv("MUST_GATHER_E2E_IMAGE")
	if image == "" {
		image = "registry.access.redhat.com/ubi9/ubi:latest"
	}
	s := start(t, t.TempDir(), map[string]string{"GATHERER": "kube", "KUBECONFIG": kubeconfig})
	body := fmt.Sprintf(`{"image": %q, "command": "mkdir -p /must-gather/e2e && echo gathered > /must-gather/e2e/result.txt && echo done", "timeout": "5m"}`, image)
	g := s.post(t, "application/json", strings.NewReader(body))
	done := s.waitEndedWithin(t, g.ID, 6*time.Minute)
	if done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	files := s.download(t, done)
	found := false
	for name, content := range files {
		if strings.HasSuffix(name, "/e2e/result.txt") && content == "gathered\n" {
			found = true
		}
	}
	if !found || !strings.Contains(files["must-gather.logs"], "done") {
		t.Errorf("archive holds %v", keysOf(files))
	}
}
