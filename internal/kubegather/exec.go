package kubegather

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// Executor runs a command in a container and streams its output. A
// command that exits with a non-zero status returns an error with an
// ExitStatus() int method.
type Executor interface {
	Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error
}

// LogFollower streams a container's log from its start and goes on with
// what the container writes next. The stream may end before the container
// does.
type LogFollower interface {
	Follow(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)
}

// NewExecutor returns an Executor that talks to cfg's API server over
// SPDY and falls back to WebSocket where SPDY is refused (API servers
// without it, proxies) before anything was streamed. SPDY comes first,
// unlike kubectl exec, for throughput: kube-apiserver passes an SPDY exec
// through as an upgraded connection, while for a WebSocket one it
// translates every frame of the kubelet's SPDY stream. In the copy
// benchmark (BenchmarkCopyFromExec) that translation took kube-apiserver
// three times the CPU and cut the copy to 60% of its SPDY throughput.
func NewExecutor(cfg *rest.Config) (Executor, error) {
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("exec client: %w", err)
	}
	return &restExecutor{cfg: cfg, rest: core.RESTClient()}, nil
}

type restExecutor struct {
	cfg  *rest.Config
	rest rest.Interface
}

func (e *restExecutor) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, stderr io.Writer) error {
	u := e.rest.Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   command,
			Stdout:    stdout != nil,
			Stderr:    stderr != nil,
		}, scheme.ParameterCodec).URL()
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", u)
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", namespace, pod, err)
	}
	var streamed atomic.Bool
	err = spdy.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: noting(stdout, &streamed), Stderr: noting(stderr, &streamed)})
	if _, exited := exitCode(err); err != nil && !streamed.Load() && ctx.Err() == nil && !exited {
		// Nothing came, so running the command again cannot repeat output.
		ws, wsErr := remotecommand.NewWebSocketExecutor(e.cfg, "GET", u.String())
		if wsErr != nil {
			return fmt.Errorf("exec in %s/%s: %w", namespace, pod, wsErr)
		}
		err = ws.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	}
	if err != nil {
		return fmt.Errorf("exec in %s/%s container %s: %w", namespace, pod, container, err)
	}
	return nil
}

// noting returns w, noting in streamed when anything is written to it.
func noting(w io.Writer, streamed *atomic.Bool) io.Writer {
	if w == nil {
		return nil
	}
	return watchedWriter{w, streamed}
}

type watchedWriter struct {
	w        io.Writer
	streamed *atomic.Bool
}

func (w watchedWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.streamed.Store(true)
	}
	return w.w.Write(p)
}

// NewLogFollower returns a LogFollower that reads logs through c, each
// line starting with the kubelet's RFC 3339 timestamp, as oc shows them.
func NewLogFollower(c kubernetes.Interface) LogFollower { return logFollower{c} }

type logFollower struct{ c kubernetes.Interface }

func (f logFollower) Follow(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error) {
	rc, err := f.c.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container:  container,
		Follow:     true,
		Timestamps: true,
	}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow log of %s/%s container %s: %w", namespace, pod, container, err)
	}
	return rc, nil
}
