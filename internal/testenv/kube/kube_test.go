package kube_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

func TestKubeVersionsMatchTheBuild(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"../../../Makefile", "KUBE_VERSION := " + kube.Version + "\n"},
		{"../../../Makefile", "ETCD_VERSION := " + kube.EtcdVersion + "\n"},
		{"../../../Makefile", "KWOK_VERSION := " + kube.KwokVersion + "\n"},
		{"../../../tools/kube/go.mod", "require k8s.io/kubernetes " + kube.Version + "\n"},
		{"../../../tools/kube/cmd/etcd/go.mod", "require go.etcd.io/etcd/server/v3 " + kube.EtcdVersion + "\n"},
	} {
		data, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), c.want) {
			t.Errorf("%s does not contain %q", c.file, c.want)
		}
	}
}

// TestKubeCluster proves what a gatherer relies on, in the order of a
// gathering: its namespace and binding, its pod scheduled and running, the
// gather container's logs, its end, the copy out of the copy container, and
// the deletion of the namespace.
func TestKubeCluster(t *testing.T) {
	k := kube.Start(t)
	admin := clientset(t, k.Admin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := testenv.Name("gather")

	t.Run("the server tells the pinned version", func(t *testing.T) {
		v, err := admin.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != kube.Version {
			t.Errorf("server version %s, want %s", v.GitVersion, kube.Version)
		}
	})

	t.Run("the kubeconfig file reaches the cluster as the admin", func(t *testing.T) {
		config, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		review, err := clientset(t, config).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := review.Status.UserInfo.Username; got != kube.AdminUser {
			t.Errorf("user %q, want %q", got, kube.AdminUser)
		}
	})

	t.Run("a namespace and a cluster role binding for its service account can be created", func(t *testing.T) {
		_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "default"}},
		}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a pod created without a node is bound to the node and runs", func(t *testing.T) {
		began := time.Now()
		pod := runGatherPod(ctx, t, k, admin, ns, "must-gather")
		t.Logf("pod running %v after its creation", time.Since(began).Round(time.Millisecond))
		if pod.Spec.NodeName != k.Node {
			t.Errorf("pod is on node %q, want %q", pod.Spec.NodeName, k.Node)
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Running == nil {
				t.Errorf("container %s is not running: %+v", cs.Name, cs.State)
			}
		}
	})

	t.Run("the logs of the gather container stream as they are written", func(t *testing.T) {
		k.AppendLogs(t, ns, "must-gather", "gather", "first line\n")
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		stream, err := admin.CoreV1().Pods(ns).GetLogs("must-gather", &corev1.PodLogOptions{Container: "gather", Follow: true}).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		r := bufio.NewReader(stream)
		for _, want := range []string{"first line\n", "second line\n", "third line\n"} {
			got, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read %q: %v", want, err)
			}
			if got != want {
				t.Fatalf("read %q, want %q", got, want)
			}
			if want == "first line\n" {
				k.AppendLogs(t, ns, "must-gather", "gather", "second line\nthird line")
			}
		}
	})

	for _, code := range []int{0, 3} {
		t.Run("the gather container ends with exit code "+strconv.Itoa(code)+", and its log stream, while the copy container runs", func(t *testing.T) {
			name := "exit-" + strconv.Itoa(code)
			runGatherPod(ctx, t, k, admin, ns, name)
			k.AppendLogs(t, ns, name, "gather", "gathering\n")
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			logs := admin.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: "gather", Follow: true})
			stream, err := logs.Stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			k.AppendLogs(t, ns, name, "gather", "done\n")

			k.FinishGather(t, ns, name, code)

			got, err := io.ReadAll(stream)
			if err != nil {
				t.Fatalf("follow the log to its end: %v (read %q)", err, got)
			}
			if string(got) != "gathering\ndone\n" {
				t.Errorf("followed log %q, want %q", got, "gathering\ndone\n")
			}
			got, err = admin.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: "gather"}).DoRaw(ctx)
			if err != nil || string(got) != "gathering\ndone\n" {
				t.Errorf("log after the end %q (err %v), want %q", got, err, "gathering\ndone\n")
			}
			pod, err := admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			states := map[string]string{}
			for _, cs := range pod.Status.ContainerStatuses {
				switch {
				case cs.State.Terminated != nil:
					states[cs.Name] = "terminated " + strconv.Itoa(int(cs.State.Terminated.ExitCode))
				case cs.State.Running != nil:
					states[cs.Name] = "running"
				}
			}
			want := map[string]string{"gather": "terminated " + strconv.Itoa(code), "copy": "running"}
			if diff := cmp.Diff(want, states); diff != "" {
				t.Errorf("container states (-want +got):\n%s", diff)
			}
			if pod.Status.Phase != corev1.PodRunning {
				t.Errorf("pod phase %s, want Running", pod.Status.Phase)
			}
		})
	}

	t.Run("exec of tar in the copy container returns the tree the test wrote", func(t *testing.T) {
		want := map[string]string{
			"version":                            "must-gather 1.0\n",
			"namespaces/openshift-mtv/pods.yaml": "kind: PodList\n",
			"timestamp":                          "2026-11-25\n",
		}
		dir := k.PodDir(ns, "must-gather")
		for name, content := range want {
			path := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, proto := range []string{"websocket-with-spdy-fallback", "spdy"} {
			t.Run(proto, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				err := execIn(ctx, t, k.Admin, admin, proto, ns, "must-gather", "copy",
					[]string{"tar", "cf", "-", "-C", "/must-gather", "."}, &stdout, &stderr)
				if err != nil {
					t.Fatalf("exec: %v: %s", err, stderr.String())
				}
				if diff := cmp.Diff(want, untar(t, &stdout)); diff != "" {
					t.Errorf("tree (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("access reviews allow the admin and deny the user without rights", func(t *testing.T) {
		attrs := &authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: ns}
		for _, c := range []struct {
			name   string
			config *rest.Config
			user   string
			groups []string
			want   bool
		}{
			{"admin", k.Admin, kube.AdminUser, []string{"system:masters"}, true},
			{"no-rights", k.NoRights, kube.NoRightsUser, nil, false},
			{"the bound service account", nil, "system:serviceaccount:" + ns + ":default", []string{"system:serviceaccounts"}, true},
		} {
			t.Run(c.name, func(t *testing.T) {
				if c.config != nil {
					ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}
					got, err := clientset(t, c.config).AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, ssar, metav1.CreateOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if got.Status.Allowed != c.want {
						t.Errorf("SelfSubjectAccessReview allowed = %v, want %v", got.Status.Allowed, c.want)
					}
				}
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					ResourceAttributes: attrs, User: c.user, Groups: c.groups,
				}}
				got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got.Status.Allowed != c.want {
					t.Errorf("SubjectAccessReview allowed = %v, want %v", got.Status.Allowed, c.want)
				}
			})
		}
		_, err := clientset(t, k.NoRights).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("no-rights lists pods: err = %v, want Forbidden", err)
		}
	})

	t.Run("a deleted namespace goes away with its pods", func(t *testing.T) {
		began := time.Now()
		if err := admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 15*time.Second, "namespace "+ns+" to be gone", func() bool {
			_, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		t.Logf("namespace gone %v after its deletion", time.Since(began).Round(time.Millisecond))
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 0 {
			t.Errorf("%d pods left in the deleted namespace", len(pods.Items))
		}
	})
}

func clientset(t *testing.T, config *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runGatherPod creates a pod as a gatherer does, without a node, and waits
// until it runs.
func runGatherPod(ctx context.Context, t *testing.T, k *kube.Cluster, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "must-gather"}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{
				{Name: "gather", Image: "quay.io/kubev2v/forklift-must-gather:latest", Command: []string{"/usr/bin/gather"}},
				{Name: "copy", Image: "quay.io/kubev2v/forklift-must-gather:latest", Command: []string{"/bin/bash", "-c", "trap : TERM INT; sleep infinity & wait"}},
			},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return k.WaitPod(t, func(p *corev1.Pod) bool {
		return p.Namespace == ns && p.Name == name && p.Status.Phase == corev1.PodRunning
	})
}

// execIn runs cmd in a container as kubectl exec does: over WebSocket,
// falling back to SPDY, or over SPDY only.
func execIn(ctx context.Context, t *testing.T, config *rest.Config, cs kubernetes.Interface, proto, ns, pod, container string, cmd []string, stdout, stderr io.Writer) error {
	t.Helper()
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(config, http.MethodPost, req.URL())
	if err != nil {
		t.Fatal(err)
	}
	exec := spdy
	if proto != "spdy" {
		ws, err := remotecommand.NewWebSocketExecutor(config, http.MethodGet, req.URL().String())
		if err != nil {
			t.Fatal(err)
		}
		exec, err = remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
}

// untar returns the regular files of a tar stream by name.
func untar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	files := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = string(data)
	}
}
