package auth

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

func TestReviewerAgainstARealAPIServer(t *testing.T) {
	k := kube.Start(t)
	ctx := context.Background()
	admin, noRights := k.Admin.BearerToken, k.NoRights.BearerToken
	expired := k.ServiceAccountToken(t, "default", "expired", time.Now().Add(-time.Minute))
	current := k.ServiceAccountToken(t, "default", "current", time.Now().Add(time.Hour))

	t.Run("each token gets the decision its rights call for", func(t *testing.T) {
		r, err := New(map[string]*rest.Config{"": k.Admin}, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			token   string
			access  mustgather.Access
			want    string
			wantErr error
		}{
			{"the cluster-admin may do everything", admin, mustgather.AccessAdmin, kube.AdminUser, nil},
			{"the cluster-admin may read metrics", admin, mustgather.AccessMetrics, kube.AdminUser, nil},
			{"a user without rights is known but forbidden", noRights, mustgather.AccessAdmin, kube.NoRightsUser, mustgather.ErrForbidden},
			{"a user without rights may not read metrics", noRights, mustgather.AccessMetrics, kube.NoRightsUser, mustgather.ErrForbidden},
			{"a garbage token is not authenticated", "garbage-token", mustgather.AccessAdmin, "", mustgather.ErrUnauthenticated},
			{"an expired service-account token is not authenticated", expired, mustgather.AccessAdmin, "", mustgather.ErrUnauthenticated},
			{"the same account's current token is authenticated but forbidden", current, mustgather.AccessAdmin, "system:serviceaccount:default:current", mustgather.ErrForbidden},
			{"no token is not authenticated", "", mustgather.AccessAdmin, "", mustgather.ErrUnauthenticated},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p, err := r.Authorize(ctx, tt.token, "", tt.access)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if p.Username != tt.want {
					t.Errorf("user = %q, want %q", p.Username, tt.want)
				}
			})
		}
	})

	t.Run("a decision within the TTL makes no review; after it, one more", func(t *testing.T) {
		var n atomic.Int64
		r, err := New(map[string]*rest.Config{"": kube.CountRequests(k.Admin, &n)}, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		r.now = func() time.Time { return now }
		for _, tok := range []string{admin, noRights, "garbage"} {
			if _, err := r.Authorize(ctx, tok, "", mustgather.AccessAdmin); err != nil && tok == admin {
				t.Fatal(err)
			}
		}
		first := n.Load()
		for _, tok := range []string{admin, noRights, "garbage"} {
			_, _ = r.Authorize(ctx, tok, "", mustgather.AccessAdmin)
		}
		if got := n.Load(); got != first {
			t.Errorf("%d requests to the API server within the TTL, want none", got-first)
		}
		if _, err := r.Authorize(ctx, admin, "", mustgather.AccessMetrics); err != nil {
			t.Fatal(err)
		}
		if n.Load() == first {
			t.Error("another access was answered from the cache of the first")
		}
		first = n.Load()
		now = now.Add(DefaultConfig().CacheTTL)
		if _, err := r.Authorize(ctx, admin, "", mustgather.AccessAdmin); err != nil {
			t.Fatal(err)
		}
		if n.Load() == first {
			t.Error("no review after the TTL")
		}
	})

	t.Run("each server is reviewed on its own cluster", func(t *testing.T) {
		var local, other atomic.Int64
		r, err := New(map[string]*rest.Config{"": kube.CountRequests(k.Admin, &local), "other": kube.CountRequests(k.Admin, &other), "down": kube.Unreachable(t, k.Admin)}, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Authorize(ctx, admin, "other", mustgather.AccessAdmin); err != nil {
			t.Fatal(err)
		}
		if local.Load() != 0 || other.Load() == 0 {
			t.Errorf("requests: local %d, other %d; want only other", local.Load(), other.Load())
		}
		if _, err := r.Authorize(ctx, admin, "down", mustgather.AccessAdmin); !errors.Is(err, mustgather.ErrAuthUnavailable) {
			t.Errorf("err = %v, want ErrAuthUnavailable", err)
		}
		if _, err := r.Authorize(ctx, admin, "unknown", mustgather.AccessAdmin); !errors.Is(err, mustgather.ErrAuthUnavailable) {
			t.Errorf("err = %v, want ErrAuthUnavailable", err)
		}
	})

	t.Run("an unreachable API server is unavailable, and that is not cached", func(t *testing.T) {
		var n atomic.Int64
		r, err := New(map[string]*rest.Config{"": kube.CountRequests(kube.Unreachable(t, k.Admin), &n)}, Config{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err := r.Authorize(ctx, admin, "", mustgather.AccessAdmin)
			if !errors.Is(err, mustgather.ErrAuthUnavailable) {
				t.Fatalf("err = %v, want ErrAuthUnavailable", err)
			}
		}
		if n.Load() < 2 {
			t.Errorf("%d requests, want a review each time", n.Load())
		}
	})
}
