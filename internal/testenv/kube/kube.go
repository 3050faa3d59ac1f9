// Package kube runs a Kubernetes control plane on loopback for tests: etcd,
// kube-apiserver and kwok, from the binaries that `make tools` builds. It
// links client-go; tests that need only NATS and MinIO use testenv alone.
package kube

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/retry"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// pollInterval is how often the control plane's readiness is checked.
const pollInterval = 20 * time.Millisecond

// Versions of the control plane that `make kube-tools` builds; keep them in
// step with the Makefile and tools/kube (TestKubeVersionsMatchTheBuild checks).
const (
	Version     = "v1.37.2"
	EtcdVersion = "v3.6.16"
	KwokVersion = "v0.8.0"
)

// The users of a Start, from its token file.
const (
	AdminUser    = "admin"     // in the group system:masters
	NoRightsUser = "no-rights" // in no group and bound to no role
)

// APIServerBinary returns where kube-apiserver is: $KUBE_APISERVER_BIN,
// or the cache folder that `make tools` builds into.
func APIServerBinary() string {
	return testenv.ToolPath("KUBE_APISERVER_BIN", "kube", Version, "kube-apiserver")
}

// EtcdBinary returns where etcd is: $ETCD_BIN, or the cache folder that
// `make tools` builds into.
func EtcdBinary() string { return testenv.ToolPath("ETCD_BIN", "etcd", EtcdVersion, "etcd") }

// KwokBinary returns where kwok is: $KWOK_BIN, or the cache folder that
// `make tools` installs into.
func KwokBinary() string { return testenv.ToolPath("KWOK_BIN", "kwok", KwokVersion, "kwok") }

// Available reports whether the binaries that Start runs are
// installed.
func Available() bool {
	for _, bin := range []string{APIServerBinary(), EtcdBinary(), KwokBinary(), filepath.Join(KwokManifests(), ".complete")} {
		if _, err := os.Stat(bin); err != nil {
			return false
		}
	}
	return true
}

// KwokManifests returns the folder with kwok's own stage and CRD manifests,
// which `make tools` copies from the kwok module of KwokVersion:
// $KWOK_MANIFESTS, or the cache folder.
func KwokManifests() string {
	return testenv.ToolPath("KWOK_MANIFESTS", "kwok", KwokVersion, "manifests")
}

// kwokStages returns kwok's stages for --config: node-initialize, pod-ready
// and pod-delete of its "fast" set. pod-complete is left out, since a
// gathering's pod never completes by itself: the test ends its gather
// container with Cluster.FinishGather. There is no KwokConfiguration document:
// an explicit one skips kwok's defaulting, and kwok then exits with
// "playStageParallelism must be greater than 0".
func kwokStages() ([]byte, error) {
	var out []byte
	for _, f := range []string{"node-initialize.yaml", "pod-ready.yaml", "pod-delete.yaml"} {
		b, err := kwokManifest(f)
		if err != nil {
			return nil, err
		}
		out = append(append(out, "\n---\n"...), b...)
	}
	return out, nil
}

func kwokManifest(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(KwokManifests(), name))
	if err != nil {
		return nil, fmt.Errorf("kwok manifest (run `make tools`, or set KWOK_MANIFESTS): %w", err)
	}
	return b, nil
}

// Cluster is a Kubernetes control plane on loopback: etcd, kube-apiserver and
// kwok, which plays the kubelet of one simulated node. There is no
// scheduler and no kube-controller-manager: in their place the test
// environment binds new pods to the node, creates the "default" service
// account of new namespaces, and finalizes deleted namespaces after deleting
// their content.
//
// A pod's containers run nothing. Exec into any of them runs the command on
// the host in the pod's directory (see PodDir), with `tar` mapping paths
// under /must-gather into it; their logs are what AppendLogs wrote; they run
// until the pod is deleted, except the gather container, which FinishGather
// terminates, ending its log streams as a kubelet would. Other log streams
// with Follow end only when the client stops them, even when the pod is
// deleted.
type Cluster struct {
	Kubeconfig string       // path of a kubeconfig file for the admin user
	Admin      *rest.Config // AdminUser, in system:masters
	NoRights   *rest.Config // NoRightsUser, with no rights at all
	Node       string       // name of the simulated node that kwok plays

	dir     string
	kwokCA  []byte            // verifies kwok's serving certificate
	saKey   *ecdsa.PrivateKey // signs service-account tokens, as kube-apiserver does
	client  kubernetes.Interface
	dynamic dynamic.Interface
	procs   []*testenv.Process // etcd, kube-apiserver, kwok: stopped in reverse order
	ctrl    *kubeController
	kubelet *kubeletProxy
}

// Pids returns the process ids of etcd, kube-apiserver and kwok, by the
// names of their processes, for benchmarks that sample them.
func (k *Cluster) Pids() map[string]int {
	pids := map[string]int{}
	for _, p := range k.procs {
		pids[p.Name] = p.Pid()
	}
	return pids
}

// Start starts etcd, kube-apiserver and kwok on random loopback ports
// with their data in a temporary directory, and stops them when the test
// ends. It takes a few seconds. It fails the test if the binaries are
// missing (see Available).
func Start(t testing.TB) *Cluster {
	t.Helper()
	for _, b := range []struct{ env, path string }{
		{"ETCD_BIN", EtcdBinary()},
		{"KUBE_APISERVER_BIN", APIServerBinary()},
		{"KWOK_BIN", KwokBinary()},
	} {
		if _, err := os.Stat(b.path); err != nil {
			t.Fatalf("kube: binary not found at %s (run `make tools`, or set %s): %v", b.path, b.env, err)
		}
	}
	began := time.Now()
	k := &Cluster{Node: "kwok-node", dir: t.TempDir()}
	t.Cleanup(func() { k.stop(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := k.start(ctx); err != nil {
		t.Fatalf("kube: %v", err)
	}
	t.Logf("kube: cluster started in %v", time.Since(began).Round(time.Millisecond))
	return k
}

func (k *Cluster) start(ctx context.Context) error {
	pki, err := newKubePKI(k.dir)
	if err != nil {
		return err
	}
	adminToken, noRightsToken := testenv.Name("admin"), testenv.Name("no-rights")
	tokens := filepath.Join(k.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("%s,%s,uid-admin,\"system:masters\"\n%s,%s,uid-no-rights\n",
		adminToken, AdminUser, noRightsToken, NoRightsUser)), 0o600); err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}},
	}

	var etcdURL string
	err = k.startProcess(ctx, "etcd", func() ([]string, func() error, error) {
		clientPort, peerPort, err := freePort2()
		if err != nil {
			return nil, nil, err
		}
		etcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		// A failed try may have left a member with other URLs.
		data := filepath.Join(k.dir, "etcd")
		if err := os.RemoveAll(data); err != nil {
			return nil, nil, err
		}
		args := []string{EtcdBinary(),
			"--name=default",
			"--data-dir=" + data,
			"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			"--unsafe-no-fsync", "--log-level=warn",
		}
		return args, func() error { return httpReady(ctx, client, etcdURL+"/health", "", `"health":"true"`) }, nil
	})
	if err != nil {
		return err
	}

	var host string
	err = k.startProcess(ctx, "kube-apiserver", func() ([]string, func() error, error) {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, nil, err
		}
		host = fmt.Sprintf("https://127.0.0.1:%d", port)
		args := []string{APIServerBinary(),
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
			// The lease reconciler rejects a loopback advertise address.
			"--endpoint-reconciler-type=none",
			"--tls-cert-file=" + pki.apiserverCert, "--tls-private-key-file=" + pki.apiserverKey,
			"--token-auth-file=" + tokens, "--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + pki.serviceAccountKey,
			"--service-account-signing-key-file=" + pki.serviceAccountKey,
			"--service-cluster-ip-range=10.96.0.0/16",
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-certificate-authority=" + pki.caCert,
			"--enable-priority-and-fairness=false",
			"--allow-privileged=true",
			"--profiling=false",
		}
		return args, func() error { return httpReady(ctx, client, host+"/readyz", adminToken, "ok") }, nil
	})
	if err != nil {
		return err
	}

	k.Admin = &rest.Config{Host: host, BearerToken: adminToken, QPS: 100, Burst: 200,
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.caPEM}}
	k.NoRights = &rest.Config{Host: host, BearerToken: noRightsToken, QPS: 100, Burst: 200,
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.caPEM}}
	k.Kubeconfig = filepath.Join(k.dir, "kubeconfig")
	if err := writeKubeconfig(k.Kubeconfig, host, pki.caPEM, adminToken); err != nil {
		return err
	}
	// The test environment's own client does not print the warnings of
	// deprecated APIs that deleting a namespace's content touches.
	quiet := rest.CopyConfig(k.Admin)
	quiet.WarningHandler = rest.NoWarnings{}
	if k.client, err = kubernetes.NewForConfig(quiet); err != nil {
		return err
	}
	if k.dynamic, err = dynamic.NewForConfig(quiet); err != nil {
		return err
	}
	if err := k.installKwokCRDs(ctx); err != nil {
		return err
	}
	k.ctrl = startKubeController(k)

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.Node, Labels: map[string]string{
		"kubernetes.io/hostname": k.Node,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}}}
	if _, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	if k.kubelet, err = listenKubeletProxy(k.dir, pki); err != nil {
		return err
	}
	k.kwokCA = pki.caPEM
	k.saKey = pki.saKey
	if err := k.startKwok(ctx, pki); err != nil {
		return err
	}
	return k.ctrl.waitSynced(ctx)
}

// startKwok starts kwok with its stages, serving the kubelet API on a random
// loopback port behind k.kubelet, and waits until it has made the node Ready.
func (k *Cluster) startKwok(ctx context.Context, pki *kubePKI) error {
	stages, err := kwokStages()
	if err != nil {
		return err
	}
	config := filepath.Join(k.dir, "kwok.yaml")
	if err := os.WriteFile(config, stages, 0o644); err != nil {
		return err
	}
	// Exec runs commands on the host through kwok's PATH, with no path
	// mapping: this tar maps /must-gather into the pod's directory.
	bin := filepath.Join(k.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	tar, err := exec.LookPath("tar")
	if err != nil {
		return fmt.Errorf("kwok exec needs tar on the host: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "tar"), []byte(fmt.Sprintf(tarShim, tar)), 0o755); err != nil {
		return err
	}
	// kwok also reads ~/.kwok/kwok.yaml if it exists.
	home := filepath.Join(k.dir, "kwok-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+home)
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}},
	}
	return k.startProcessEnv(ctx, "kwok", env, func() ([]string, func() error, error) {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		k.kubelet.passTo(addr)
		args := []string{KwokBinary(),
			"--kubeconfig=" + k.Kubeconfig,
			"--config=" + config,
			"--manage-all-nodes=true",
			// The node's kubelet port, in its status, is the proxy's.
			"--node-ip=127.0.0.1", "--node-port=" + strconv.Itoa(k.kubelet.port()), "--server-address=" + addr,
			"--tls-cert-file=" + pki.kwokCert, "--tls-private-key-file=" + pki.kwokKey,
			"--enable-crds=ClusterExec,ClusterLogs",
		}
		return args, func() error {
			if err := httpReady(ctx, client, "https://"+addr+"/healthz", "", "ok"); err != nil {
				return err
			}
			if err := k.nodeReady(ctx); err != nil {
				return err
			}
			// kwok watches ClusterExec and ClusterLogs objects from about
			// a second after it starts: until then it knows no new ones.
			return k.pointKwokAtProbe(ctx)
		}, nil
	})
}

// probe names the namespace, pod and container of the ClusterExec and
// ClusterLogs, created once kwok runs, that tell when kwok serves new ones.
const probe = "testenv-probe"

func (k *Cluster) pointKwokAtProbe(ctx context.Context) error {
	logs := k.logFile(probe, probe, probe)
	if err := os.MkdirAll(filepath.Dir(logs), 0o755); err != nil {
		return err
	}
	line := time.Now().UTC().Format(time.RFC3339Nano) + " stdout F ready\n"
	if err := os.WriteFile(logs, []byte(line), 0o644); err != nil {
		return err
	}
	return k.pointKwokAt(ctx, probe, probe, probe, k.PodDir(probe, probe), map[string]string{probe: logs})
}

// kwokServes reports whether kwok serves the logs of a pod's container and
// exec into it: nil, or which of them it does not serve.
func (k *Cluster) kwokServes(ctx context.Context, namespace, pod, container string) (missing *schema.GroupVersionResource, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kwok := *k.kubelet.upstream.Load()
	kwok.Path = "/containerLogs/" + namespace + "/" + pod + "/" + container
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, kwok.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.kubelet.client.Do(req)
	if err != nil {
		return &kwokResources.clusterLogs, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &kwokResources.clusterLogs, fmt.Errorf("GET %s: %s: %s", kwok.Path, resp.Status, body)
	}
	if err := kwokExec(ctx, kwok.Host, k.kwokCA, namespace, pod, container); err != nil {
		return &kwokResources.clusterExecs, err
	}
	return nil, nil
}

func kwokExec(ctx context.Context, addr string, caPEM []byte, namespace, pod, container string) error {
	u := &url.URL{Scheme: "https", Host: addr, Path: "/exec/" + namespace + "/" + pod + "/" + container,
		RawQuery: url.Values{"command": {"true"}, "output": {"1"}, "error": {"1"}}.Encode()}
	config := &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
	exec, err := remotecommand.NewSPDYExecutor(config, http.MethodPost, u)
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: &stderr}); err != nil {
		return fmt.Errorf("exec through kwok: %w: %s", err, stderr.String())
	}
	return nil
}

// pointKwokAt creates the ClusterExec and ClusterLogs, both called name,
// that tell kwok that exec into any container of a pod runs in root, with
// `tar` mapping /must-gather to it, and where the logs of its containers
// are, and waits until kwok serves both.
//
// kwok 0.8.0 can miss such an object for good: it caches the list it reads
// from its informer's store under the reflector's last resource version,
// which moves before the store has the new object, so a request in between
// keeps the old list until the next change of that kind (about 1 in 100
// new objects while other requests are served). A changed annotation on
// the missed object is that change.
func (k *Cluster) pointKwokAt(ctx context.Context, name, namespace, pod, root string, logFiles map[string]string) error {
	selector := map[string]any{
		"matchNamespaces": []any{namespace},
		"matchNames":      []any{pod},
	}
	var logs []any
	for container, path := range logFiles {
		logs = append(logs, map[string]any{"containers": []any{container}, "logsFile": path})
	}
	objects := []struct {
		gvr  schema.GroupVersionResource
		kind string
		spec map[string]any
	}{
		{kwokResources.clusterExecs, "ClusterExec", map[string]any{
			"selector": selector,
			// No containers: any container of the pod.
			"execs": []any{map[string]any{"local": map[string]any{
				"workDir": root,
				"envs":    []any{map[string]any{"name": "MUST_GATHER_ROOT", "value": root}},
			}}},
		}},
		{kwokResources.clusterLogs, "ClusterLogs", map[string]any{"selector": selector, "logs": logs}},
	}
	for _, o := range objects {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1",
			"kind":       o.kind,
			"metadata":   map[string]any{"name": name},
			"spec":       o.spec,
		}}
		_, err := k.dynamic.Resource(o.gvr).Create(ctx, obj, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s for pod %s/%s: %w", o.kind, namespace, pod, err)
		}
	}
	var container string
	for c := range logFiles {
		container = c // kwok knows all of the ClusterLogs or none
		break
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lastNudge := time.Now()
	err := testenv.Poll(ctx, pollInterval, func() error {
		missing, err := k.kwokServes(ctx, namespace, pod, container)
		if missing != nil && time.Since(lastNudge) >= 250*time.Millisecond {
			lastNudge = time.Now()
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"testenv.must-gather-functions/nudged":%q}}}`, lastNudge.Format(time.RFC3339Nano))
			if _, perr := k.dynamic.Resource(*missing).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); perr != nil {
				return fmt.Errorf("%w; nudge: %v", err, perr)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("kwok does not serve pod %s/%s: %w", namespace, pod, err)
	}
	return nil
}

// tarShim is the tar first in kwok's PATH: it rewrites arguments that name
// /must-gather or a path under it (alone, or after "=") to the same path
// under $MUST_GATHER_ROOT, the pod's directory, and runs the host's tar.
const tarShim = `#!/bin/sh
root=${MUST_GATHER_ROOT:?MUST_GATHER_ROOT is not set}
n=$#
for a; do
	case $a in
	/must-gather | /must-gather/*) a=$root${a#/must-gather} ;;
	*=/must-gather | *=/must-gather/*) a=${a%%%%=/must-gather*}=$root${a#*=/must-gather} ;;
	esac
	set -- "$@" "$a"
done
shift $n
exec '%s' "$@"
`

func (k *Cluster) nodeReady(ctx context.Context) error {
	node, err := k.client.CoreV1().Nodes().Get(ctx, k.Node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("node %s is not Ready", k.Node)
}

var kwokResources = struct{ clusterExecs, clusterLogs, crds schema.GroupVersionResource }{
	clusterExecs: schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterexecs"},
	clusterLogs:  schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterlogs"},
	crds:         schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
}

// installKwokCRDs creates the ClusterExec and ClusterLogs resources, through
// which the test environment tells kwok, pod by pod, where exec runs and
// where logs are, and waits until they are served.
func (k *Cluster) installKwokCRDs(ctx context.Context) error {
	var manifests [][]byte
	for _, file := range []string{"kwok.x-k8s.io_clusterexecs.yaml", "kwok.x-k8s.io_clusterlogs.yaml"} {
		data, err := kwokManifest(file)
		if err != nil {
			return err
		}
		manifests = append(manifests, data)
	}
	return k.installCRDs(ctx, manifests...)
}

// InstallCRDs creates the CustomResourceDefinitions of the YAML documents
// in manifests and waits until they are established and take objects
// without delay.
func (k *Cluster) InstallCRDs(t testing.TB, manifests ...[]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.installCRDs(ctx, manifests...); err != nil {
		t.Fatalf("kube: %v", err)
	}
}

func (k *Cluster) installCRDs(ctx context.Context, manifests ...[]byte) error {
	var names []string
	for _, data := range manifests {
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("decode CRD manifest: %w", err)
			}
			if len(obj) == 0 {
				continue
			}
			crd := &unstructured.Unstructured{Object: obj}
			if _, err := k.dynamic.Resource(kwokResources.crds).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create %s: %w", crd.GetName(), err)
			}
			names = append(names, crd.GetName())
		}
	}
	crds := k.dynamic.Resource(kwokResources.crds)
	for _, name := range names {
		err := testenv.Poll(ctx, pollInterval, func() error {
			crd, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					// kube-apiserver holds every create of a custom
					// resource for 2s while its CRD has been established
					// for less than 2s, so that the other servers of an HA
					// control plane see the CRD; alone, it needs no wait.
					c["lastTransitionTime"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
					if err := unstructured.SetNestedSlice(crd.Object, conds, "status", "conditions"); err != nil {
						return err
					}
					_, err := crds.UpdateStatus(ctx, crd, metav1.UpdateOptions{})
					return err
				}
			}
			return fmt.Errorf("%s is not established", name)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// PodDir returns the directory on the host that stands for the file system
// of a pod's containers, creating it: exec into any container of the pod
// runs there, and `tar` maps /must-gather to it. A test fills it before the
// gatherer copies from the pod; it may do so before the pod exists.
func (k *Cluster) PodDir(namespace, pod string) string {
	dir := filepath.Join(k.dir, "pods", namespace, pod, "root")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(err) // the test's temporary directory is broken
	}
	return dir
}

// terminationMessage is the message the kubelet gives a container that
// ended: with TerminationMessagePolicy FallbackToLogsOnError and an error,
// the tail of its log (at most 80 lines and 2,048 bytes), as the gather
// pod asks; else none (no container here writes a termination-log file).
func (k *Cluster) terminationMessage(p *corev1.Pod, container string, exitCode int) string {
	if exitCode == 0 {
		return ""
	}
	for _, c := range p.Spec.Containers {
		if c.Name != container || c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			continue
		}
		b, err := os.ReadFile(k.logFile(p.Namespace, p.Name, container))
		if err != nil {
			return ""
		}
		var lines []string
		for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			// The CRI log format: time, stream, tag, then the line.
			if f := strings.SplitN(line, " ", 4); len(f) == 4 {
				lines = append(lines, f[3])
			}
		}
		msg := strings.Join(lines[max(0, len(lines)-80):], "\n")
		if len(msg) > 2048 {
			msg = msg[len(msg)-2048:]
		}
		return msg
	}
	return ""
}

func (k *Cluster) logFile(namespace, pod, container string) string {
	return filepath.Join(k.dir, "pods", namespace, pod, "logs", container+".log")
}

// AppendLogs appends text, line by line, to the log of a container, which
// a log stream with Follow shows as it comes. A last line without a newline
// still counts as a line.
func (k *Cluster) AppendLogs(t testing.TB, namespace, pod, container, text string) {
	t.Helper()
	if text == "" {
		return
	}
	var b strings.Builder
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		// The CRI log format, which kwok reads.
		fmt.Fprintf(&b, "%s stdout F %s\n", now, line)
	}
	path := k.logFile(namespace, pod, container)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("kube: %v", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("kube: %v", err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("kube: append logs of %s/%s/%s: %v", namespace, pod, container, err)
	}
}

// FinishGather terminates the gather container of a pod with exitCode, as
// its kubelet would report it, while the pod's other containers keep
// running, and then ends the container's log streams. It waits for the
// container to be running, and for kwok to serve the pod's exec and logs,
// first. (On a real node the log stream may end before the status
// changes.)
func (k *Cluster) FinishGather(t testing.TB, namespace, pod string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := k.client.CoreV1().Pods(namespace)
	err := testenv.Poll(ctx, pollInterval, func() error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p, err := pods.Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				return err
			}
			i := containerStatus(p, "gather")
			if i < 0 || p.Status.ContainerStatuses[i].State.Running == nil {
				return fmt.Errorf("the gather container of pod %s/%s is not running", namespace, pod)
			}
			// A pod created with a node name runs before kwok may serve
			// its exec and logs; the copy after the gather needs them.
			if !k.ctrl.isPrepared(string(p.UID)) {
				return fmt.Errorf("kwok does not serve pod %s/%s yet", namespace, pod)
			}
			now := metav1.Now()
			cs := &p.Status.ContainerStatuses[i]
			reason := "Completed"
			if exitCode != 0 {
				reason = "Error"
			}
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode:   int32(exitCode),
				Reason:     reason,
				Message:    k.terminationMessage(p, "gather", exitCode),
				StartedAt:  cs.State.Running.StartedAt,
				FinishedAt: now,
			}}
			cs.Ready = false
			started := false
			cs.Started = &started
			for j, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
					p.Status.Conditions[j].Status = corev1.ConditionFalse
					p.Status.Conditions[j].Reason = "ContainersNotReady"
					p.Status.Conditions[j].Message = "containers with unready status: [gather]"
					p.Status.Conditions[j].LastTransitionTime = now
				}
			}
			_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		})
	})
	if err != nil {
		t.Fatalf("kube: finish gather: %v", err)
	}
	k.AppendLogs(t, namespace, pod, "gather", logEnd)
}

func containerStatus(p *corev1.Pod, name string) int {
	for i, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			return i
		}
	}
	return -1
}

// WaitPod waits up to 30 seconds for a pod, in any namespace, for which
// match returns true, and returns it.
func (k *Cluster) WaitPod(t testing.TB, match func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var found *corev1.Pod
	err := testenv.Poll(ctx, pollInterval, func() error {
		list, err := k.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range list.Items {
			if match(&list.Items[i]) {
				found = &list.Items[i]
				return nil
			}
		}
		return errors.New("no pod matches")
	})
	if err != nil {
		t.Fatalf("kube: wait for pod: %v", err)
	}
	return found
}

func (k *Cluster) stop(t testing.TB) {
	if k.ctrl != nil {
		k.ctrl.stop()
	}
	if k.kubelet != nil {
		k.kubelet.close()
	}
	for i := len(k.procs) - 1; i >= 0; i-- {
		k.procs[i].Stop()
	}
	if t.Failed() {
		for _, p := range k.procs {
			t.Logf("kube: last lines of %s:\n%s", p.Name, p.Tail(30))
		}
		if k.kubelet != nil {
			t.Logf("kube: last lines of the kubelet proxy:\n%s", testenv.Tail(k.kubelet.logFile.Name(), 30))
		}
		if k.ctrl != nil {
			for _, err := range k.ctrl.errors() {
				t.Logf("kube: test environment: %v", err)
			}
		}
	}
}

// startProcess starts a process made by try, which returns its arguments
// and a readiness check, on fresh ports up to three times in case another
// process took a port in between.
func (k *Cluster) startProcess(ctx context.Context, name string, try func() ([]string, func() error, error)) error {
	return k.startProcessEnv(ctx, name, nil, try)
}

func (k *Cluster) startProcessEnv(ctx context.Context, name string, env []string, try func() ([]string, func() error, error)) error {
	var lastErr error
	for range 3 {
		args, ready, err := try()
		if err != nil {
			return err
		}
		p, err := testenv.StartProcess(k.dir, name, env, args)
		if err != nil {
			return err
		}
		if err = p.WaitReady(ctx, ready); err == nil {
			k.procs = append(k.procs, p)
			return nil
		}
		p.Stop()
		lastErr = fmt.Errorf("%s: %w\n%s", name, err, p.Tail(30))
		if ctx.Err() != nil {
			break
		}
	}
	return lastErr
}

// httpReady checks that url answers 200 with a body that contains want.
func httpReady(ctx context.Context, c *http.Client, url, token, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

func writeKubeconfig(path, host string, caPEM []byte, token string) error {
	// JSON is YAML; base64 of the CA as the kubeconfig format wants it.
	cfg := fmt.Sprintf(`{
  "apiVersion": "v1", "kind": "Config",
  "clusters": [{"name": "kube", "cluster": {"server": %q, "certificate-authority-data": %q}}],
  "users": [{"name": %q, "user": {"token": %q}}],
  "contexts": [{"name": "kube", "context": {"cluster": "kube", "user": %q}}],
  "current-context": "kube"
}
`, host, base64Std(caPEM), AdminUser, token, AdminUser)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func freePort2() (int, int, error) {
	a, err := testenv.FreePort()
	if err != nil {
		return 0, 0, err
	}
	for {
		b, err := testenv.FreePort()
		if err != nil || b != a {
			return a, b, err
		}
	}
}
