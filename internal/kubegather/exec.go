package kubegather

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
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
// WebSocket and falls back to SPDY where WebSocket is not upgraded (older
// API servers, proxies), as kubectl exec does.
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
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", u.String())
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", namespace, pod, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", u)
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", namespace, pod, err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", namespace, pod, err)
	}
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr}); err != nil {
		return fmt.Errorf("exec in %s/%s container %s: %w", namespace, pod, container, err)
	}
	return nil
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
