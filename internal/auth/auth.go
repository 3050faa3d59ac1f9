// Package auth decides who may use the API: it asks a cluster's API server
// who a bearer token belongs to (TokenReview) and whether that user may do
// everything there (a SubjectAccessReview for cluster-admin) or read
// metrics (get on the non-resource URL /metrics). It implements
// mustgather.Authorizer. Decisions are cached for a short time under a
// SHA-256 of the token; the token itself is never kept, logged or put in
// an error.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Config is how the Reviewer works.
type Config struct {
	// CacheTTL is how long a decision (allowed, forbidden or not
	// authenticated) is reused for the same token, server and access.
	CacheTTL time.Duration
	// Timeout bounds each review request to an API server.
	Timeout time.Duration
}

// DefaultConfig returns the defaults: decisions kept for 10s, reviews
// given 5s.
func DefaultConfig() Config {
	return Config{CacheTTL: 10 * time.Second, Timeout: 5 * time.Second}
}

// Reviewer reviews tokens against the clusters it was given.
type Reviewer struct {
	cfg      Config
	now      func() time.Time
	clusters map[string]kubernetes.Interface

	mu    sync.Mutex
	cache map[[sha256.Size]byte]decision
}

var _ mustgather.Authorizer = (*Reviewer)(nil)

type decision struct {
	p       mustgather.Principal
	err     error
	expires time.Time
}

// New returns a Reviewer for clusters, keyed by server name ("" is the
// default cluster), as kubegather.LoadClusters returns them. Each config
// is the service's own credentials, which need to create TokenReviews and
// SubjectAccessReviews.
func New(clusters map[string]*rest.Config, cfg Config) (*Reviewer, error) {
	d := DefaultConfig()
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = d.CacheTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	r := &Reviewer{cfg: cfg, now: time.Now, clusters: map[string]kubernetes.Interface{}, cache: map[[sha256.Size]byte]decision{}}
	for server, rc := range clusters {
		rc = rest.CopyConfig(rc)
		rc.Timeout = cfg.Timeout
		c, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("review client for %s: %w", rc.Host, err)
		}
		r.clusters[server] = c
	}
	return r, nil
}

// Authorize implements mustgather.Authorizer. An API server that does not
// answer, or answers with an error, is ErrAuthUnavailable and is not
// cached, so that the next request asks again.
func (r *Reviewer) Authorize(ctx context.Context, token, server string, a mustgather.Access) (mustgather.Principal, error) {
	if token == "" {
		return mustgather.Principal{}, fmt.Errorf("%w: no token", mustgather.ErrUnauthenticated)
	}
	c, ok := r.clusters[server]
	if !ok {
		return mustgather.Principal{}, fmt.Errorf("%w: no cluster %q to review the token against", mustgather.ErrAuthUnavailable, server)
	}
	key := cacheKey(token, server, a)
	now := r.now()
	r.mu.Lock()
	d, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d.p, d.err
	}
	p, err := review(ctx, c, token, a)
	if err == nil || !isUnavailable(err) {
		r.remember(key, decision{p: p, err: err, expires: now.Add(r.cfg.CacheTTL)}, now)
	}
	return p, err
}

// cacheKey is a SHA-256 of what was asked: the access, the server and the
// token, each ended so that no two questions share a key.
func cacheKey(token, server string, a mustgather.Access) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", a, server, token)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// remember caches d, first dropping expired decisions once the cache has
// grown, so that many distinct tokens cannot grow it without bound.
func (r *Reviewer) remember(key [sha256.Size]byte, d decision, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= 1024 {
		for k, old := range r.cache {
			if !now.Before(old.expires) {
				delete(r.cache, k)
			}
		}
	}
	r.cache[key] = d
}

func isUnavailable(err error) bool {
	return err != nil && !errors.Is(err, mustgather.ErrUnauthenticated) && !errors.Is(err, mustgather.ErrForbidden)
}

// review asks the cluster who token belongs to, then whether that user has
// access a.
func review(ctx context.Context, c kubernetes.Interface, token string, a mustgather.Access) (mustgather.Principal, error) {
	tr, err := c.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		// The API server's error never holds the token: it is in the body
		// we sent, not in the answer.
		return mustgather.Principal{}, fmt.Errorf("%w: token review: %w", mustgather.ErrAuthUnavailable, err)
	}
	if !tr.Status.Authenticated {
		return mustgather.Principal{}, fmt.Errorf("%w: the cluster does not accept the token", mustgather.ErrUnauthenticated)
	}
	u := tr.Status.User
	p := mustgather.Principal{Username: u.Username}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra(u.Extra),
	}}
	switch a {
	case mustgather.AccessAdmin:
		sar.Spec.ResourceAttributes = &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}
	case mustgather.AccessMetrics:
		sar.Spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{Verb: "get", Path: "/metrics"}
	default:
		return p, fmt.Errorf("%w: unknown access %q", mustgather.ErrForbidden, a)
	}
	res, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return p, fmt.Errorf("%w: subject access review: %w", mustgather.ErrAuthUnavailable, err)
	}
	if !res.Status.Allowed || res.Status.Denied {
		what := "cluster-admin"
		if a == mustgather.AccessMetrics {
			what = "allowed to get /metrics"
		}
		return p, fmt.Errorf("%w: user %q is not %s", mustgather.ErrForbidden, u.Username, what)
	}
	return p, nil
}

func extra(in map[string]authenticationv1.ExtraValue) map[string]authorizationv1.ExtraValue {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]authorizationv1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authorizationv1.ExtraValue(v)
	}
	return out
}
