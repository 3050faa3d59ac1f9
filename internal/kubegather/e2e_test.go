package kubegather

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// TestE2EAGatheringOnARealCluster runs a gathering on the cluster of
// $KUBECONFIG's current context: it creates a namespace, a cluster-admin
// binding and a pod there, and deletes them again. The image
// ($MUST_GATHER_E2E_IMAGE, default UBI 9) needs bash and tar.
func TestE2EAGatheringOnARealCluster(t *testing.T) {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("KUBECONFIG is not set: no cluster to gather from")
	}
	image := os.Getenv("MUST_GATHER_E2E_IMAGE")
	if image == "" {
		image = "registry.access.redhat.com/ubi9/ubi:latest"
	}
	clusters, err := LoadClusters(kubeconfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := clusters[""]
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g, err := NewForConfig(rc, Config{Owner: "must-gather-functions-e2e", PollInterval: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	job := newTestJob(t, mustgather.Gathering{
		ID:      mustgather.ID(time.Now().Unix()),
		Image:   image,
		Command: "mkdir -p /must-gather/e2e && echo hello > /must-gather/e2e/hello.txt && echo gathered",
		Timeout: "5m",
	})
	stop, cancelStop := context.WithTimeoutCause(ctx, 5*time.Minute, fmt.Errorf("e2e: %w", context.DeadlineExceeded))
	defer cancelStop()
	job.Stop = stop
	err = g.Gather(ctx, job.Job)
	t.Logf("log:\n%s", job.log)
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var hello string
	for name, content := range job.files(t) {
		if strings.HasSuffix(name, "/e2e/hello.txt") {
			hello = content
		}
	}
	if hello != "hello\n" {
		t.Errorf("e2e/hello.txt = %q, want hello", hello)
	}
	if !strings.Contains(job.log.String(), "POD ") || !strings.Contains(job.log.String(), " gathered") {
		t.Error("the gather's log did not reach the job's log")
	}

	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: LabelGathering + "=" + job.Gathering.ID.String()}
	nss, err := kube.CoreV1().Namespaces().List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		if ns.DeletionTimestamp == nil {
			t.Errorf("namespace %s was not deleted", ns.Name)
		}
	}
	crbs, err := kube.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for _, b := range crbs.Items {
		if b.DeletionTimestamp == nil {
			t.Errorf("clusterrolebinding %s was not deleted", b.Name)
		}
	}
}
