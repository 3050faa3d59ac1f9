package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// useKube decides between the Kubernetes and the process gatherer.
func (c config) useKube(getenv func(string) string) bool {
	switch c.Gatherer {
	case "kube":
		return true
	case "process":
		return false
	}
	return getenv("KUBERNETES_SERVICE_HOST") != "" || c.Kubeconfig != "" || len(c.KubeContexts) > 0
}

// newGatherer returns the runner's Gatherer and a sweep function that
// deletes leftovers of crashed runners: namespaces in the clusters, or the
// processes and folders the process gatherer's gatherings left.
func newGatherer(cfg config, useKube bool, log *slog.Logger) (mustgather.Gatherer, func(context.Context) error, error) {
	if !useKube {
		log.Warn("runner uses the process gatherer: gatherings run their command with /bin/sh on this machine; this mode is for development")
		g := cfg.Process
		g.Logger = log
		return &g, g.Sweep, nil
	}
	clusters, err := kubegather.LoadClusters(cfg.Kubeconfig, cfg.KubeContexts)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes gatherer: %w", err)
	}
	router, err := kubegather.NewRouterForClusters(clusters, cfg.Kube, log)
	if err != nil {
		return nil, nil, err
	}
	var hosts []string
	for name, c := range clusters {
		if name == "" {
			name = "(default)"
		}
		hosts = append(hosts, name+"="+c.Host)
	}
	log.Info("runner uses the kubernetes gatherer", "clusters", hosts)
	return router, router.Sweep, nil
}

// runSweeper sweeps at once and then every interval until ctx ends.
func runSweeper(ctx context.Context, sweep func(context.Context) error, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := sweep(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("sweep leftovers", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
