package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &trackedBody{ReadCloser: r.Body, closed: make(chan struct{})}
		tracked := *r
		tracked.Body = body
		tracked.GetBody = nil
		r = &tracked
	}
	resp, err := t.next.RoundTrip(r)
	if o, ok := r.Context().Value(outageKey{}).(*outage); ok && !errors.Is(err, context.Canceled) {
		o.seen(resp, err)
	}
	// minio-go retries a request by seeking its body back to the start,
	// and net/http may still be reading the body of a request that failed
	// (or was answered early) in its write loop (golang.org/issue/51907):
	// a retry raced that loop when S3 went away in the middle of a part.
	// The write loop closes the body once it is done with it; the retry
	// waits for that.
	switch {
	case body == nil:
	case err != nil:
		body.wait()
	case resp.StatusCode >= http.StatusMultipleChoices:
		// The write ends once the answer is read: net/http then finishes
		// or breaks off the write.
		resp.Body = &waitOnClose{ReadCloser: resp.Body, body: body}
	}
	return resp, err
}

// trackedBody tells when net/http has closed a request's body, which it
// does when it is done reading it.
type trackedBody struct {
	io.ReadCloser
	once   sync.Once
	closed chan struct{}
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { close(b.closed) })
	return err
}

// bodyWaitLimit bounds the wait for net/http to close a request's body,
// which it does as soon as the connection is broken off; the bound only
// guards against a transport that never does.
const bodyWaitLimit = time.Minute

func (b *trackedBody) wait() {
	t := time.NewTimer(bodyWaitLimit)
	defer t.Stop()
	select {
	case <-b.closed:
	case <-t.C:
	}
}

// waitOnClose is the body of an answer that minio-go may retry after: its
// Close waits until the request's body is no longer read.
type waitOnClose struct {
	io.ReadCloser
	body *trackedBody
}

func (w *waitOnClose) Close() error {
	err := w.ReadCloser.Close()
	w.body.wait()
	return err
}

// uploadRetries is how many times minio-go may retry one request of an
// upload: enough never to be the limit, since the upload's retry budget is.
const uploadRetries = 1 << 20
