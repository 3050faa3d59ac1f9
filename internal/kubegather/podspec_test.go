package kubegather

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// TestTheGatheringsSinceReachesTheImage checks the gather container's env
// of the pod as the real kube-apiserver stored it. (node-name pinning is
// checked by TestPodsAvoidNodesThatAreNotReadyAndPreferTheControlPlane.)
func TestTheGatheringsSinceReachesTheImage(t *testing.T) {
	k, g := startGatherer(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tests := []struct {
		name string
		g    mustgather.Gathering
		env  corev1.EnvVar
	}{
		{"since", mustgather.Gathering{ID: 501, Image: forkliftImage, Since: "90m"}, corev1.EnvVar{Name: "MUST_GATHER_SINCE", Value: "1h30m0s"}},
		{"since-time", mustgather.Gathering{ID: 502, Image: forkliftImage, SinceTime: "2026-01-01T00:00:00Z"}, corev1.EnvVar{Name: "MUST_GATHER_SINCE_TIME", Value: "2026-01-01T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" becomes "+tt.env.Name, func(t *testing.T) {
			runOnTestCluster(t, ctx, k, g, tt.g, 1, func(pods []*corev1.Pod) {
				env := pods[0].Spec.Containers[0].Env
				if !slices.Contains(env, tt.env) {
					t.Errorf("gather container env %v lacks %v", env, tt.env)
				}
			})
		})
	}
}
