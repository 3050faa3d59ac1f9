package main

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubev2v/must-gather-functions/internal/cli"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// hostIP is an IPv4 address of this machine that is not loopback: the API
// server's service proxy refuses loopback targets.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address for the API server's service proxy to reach")
	return ""
}

// TestTheCLIReachesTheServiceThroughTheKubeconfigsAPIServer runs the
// command line with only a kubeconfig: it reaches the API through the
// real kube-apiserver's service proxy, to a Service whose Endpoints are
// the system's listener, with the kubeconfig's token forwarded to the API
// (AUTH=on, AUTH_FORWARDED_TOKEN=true).
func TestTheCLIReachesTheServiceThroughTheKubeconfigsAPIServer(t *testing.T) {
	ip := hostIP(t)
	k := kube.Start(t)
	s := start(t, t.TempDir(), map[string]string{
		"AUTH": "on", "AUTH_FORWARDED_TOKEN": "true", "KUBECONFIG": k.Kubeconfig, "GATHERER": "process",
		"HTTP_ADDRESS": net.JoinHostPort(ip, "0"),
	})
	u, err := url.Parse(s.base)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	const ns, svc = "mgf-cli", "mgf-api"
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(int32(port))}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller runs: the Service's endpoints are written by hand, and
	// the service proxy goes only to a Pod's address, so a Pod on no node
	// (kwok leaves it alone) gets this machine's address as its own.
	pod, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: svc},
		Spec:       corev1.PodSpec{NodeName: "no-node", Containers: []corev1.Container{{Name: "api", Image: "must-gather-functions"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if _, err := kc.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: svc, UID: pod.UID}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(port))}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "a.tar.gz")
	run := func(env map[string]string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		args = append([]string{args[0], "--kube-namespace", ns, "--kube-service", "http:" + svc + ":80"}, args[1:]...)
		code := cli.Main(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	viaKubeconfig := map[string]string{"KUBECONFIG": k.Kubeconfig}
	// The API server sees the EndpointSlice through its informer.
	testenv.Eventually(t, 30*time.Second, "the service proxy to reach the API", func() bool {
		code, _, _ := run(viaKubeconfig, "list")
		return code == cli.ExitOK
	})
	code, stdout, stderr := run(viaKubeconfig, "gather", "--command", gatherCommand, "--download", "-o", out)
	if code != cli.ExitOK {
		t.Fatalf("gather through the service proxy: exit %d\n%s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	if status, want := s.send(t, "GET", "/must-gather/"+id+"/data", k.Admin.BearerToken, ""); status != 200 || !bytes.Equal(mustRead(t, out), want) {
		t.Errorf("the archive through the proxy differs from /data")
	}
	if code, _, stderr := run(viaKubeconfig, "get", id, "--token", k.NoRights.BearerToken); code != cli.ExitDenied {
		t.Errorf("with a token without rights: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := run(viaKubeconfig, "get", id, "--kube-service", "http:no-such-service:80"); code != cli.ExitNotFound {
		t.Errorf("to a Service that does not exist: exit %d\n%s", code, stderr)
	}
}
