package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// DefaultRetryFor is how long an upload waits for S3 to answer again by
// default.
const DefaultRetryFor = 2 * time.Minute

// OutageError is an upload given up on because S3 did not answer for
// longer than its retry budget.
type OutageError struct {
	Endpoint string
	Budget   time.Duration
	Last     error // the last failure seen
}

func (e *OutageError) Error() string {
	return fmt.Sprintf("S3 at %s did not answer for more than %s, the upload's retry budget; upload aborted: %v", e.Endpoint, e.Budget, e.Last)
}

func (e *OutageError) Unwrap() error { return e.Last }

// outage follows, for one upload, since when S3 has not answered. An
// upload's requests are retried by minio-go with a back-off that doubles
// from 200 ms up to 1 s; once S3 has been away longer than budget, the
// upload's context is cancelled with an OutageError, which stops minio-go.
type outage struct {
	endpoint string
	budget   time.Duration
	stop     context.CancelCauseFunc

	mu    sync.Mutex
	since time.Time // the first failure since S3 last answered; zero while it answers
}

type outageKey struct{}

// withOutage returns ctx carrying an outage of budget, and the context
// whose cause tells an OutageError.
func withOutage(ctx context.Context, endpoint string, budget time.Duration) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	o := &outage{endpoint: endpoint, budget: budget, stop: cancel}
	return context.WithValue(ctx, outageKey{}, o), cancel
}

// seen records how a request to S3 went.
func (o *outage) seen(resp *http.Response, err error) {
	answered := err == nil && resp.StatusCode < http.StatusInternalServerError
	o.mu.Lock()
	defer o.mu.Unlock()
	if answered {
		o.since = time.Time{}
		return
	}
	now := time.Now()
	if o.since.IsZero() {
		o.since = now
	}
	if now.Sub(o.since) > o.budget {
		last := err
		if last == nil {
			last = fmt.Errorf("%s", resp.Status)
		}
		o.stop(&OutageError{Endpoint: o.endpoint, Budget: o.budget, Last: last})
	}
}

// outageTransport tells the outage of a request's upload, if it has one,
// how the request went.
type outageTransport struct{ next http.RoundTripper }

func (t outageTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if o, ok := r.Context().Value(outageKey{}).(*outage); ok && !errors.Is(err, context.Canceled) {
		o.seen(resp, err)
	}
	return resp, err
}

// uploadRetries is how many times minio-go may retry one request of an
// upload: enough never to be the limit, since the upload's retry budget is.
const uploadRetries = 1 << 20
