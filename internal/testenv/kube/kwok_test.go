package kube

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestKwokServesEveryPodItIsPointedAt proves what every test with pods
// relies on: once pointKwokAt returns, kwok serves the pod's logs and exec,
// also while it serves other pods' logs. kwok 0.8.0 then misses about 1 in
// 100 new ClusterLogs for good unless the test environment nudges it, so
// without the nudge this test fails about half of its runs.
func TestKwokServesEveryPodItIsPointedAt(t *testing.T) {
	k := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Gatherers following logs: kwok reads its ClusterLogs on each request.
	reading, stopReading := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			u := *k.kubelet.upstream.Load()
			u.Path = "/containerLogs/" + probe + "/" + probe + "/" + probe
			for reading.Err() == nil {
				req, err := http.NewRequestWithContext(reading, http.MethodGet, u.String(), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if resp, err := k.kubelet.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	defer wg.Wait()
	defer stopReading()

	const pods = 100
	for i := range pods {
		ns, pod := "kwok-test", fmt.Sprintf("pod-%d", i)
		logs := k.logFile(ns, pod, "gather")
		if err := os.MkdirAll(filepath.Dir(logs), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(logs, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := k.pointKwokAt(ctx, "kwok-test-"+pod, ns, pod, k.PodDir(ns, pod), map[string]string{"gather": logs}); err != nil {
			t.Fatalf("pod %d of %d: %v", i+1, pods, err)
		}
		if missing, err := k.kwokServes(ctx, ns, pod, "gather"); err != nil {
			t.Fatalf("pod %d of %d: kwok does not serve its %s: %v", i+1, pods, missing.Resource, err)
		}
	}
}
