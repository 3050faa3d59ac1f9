package api

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// The limit on POSTs of one user that the binary starts with: a burst of
// DefaultPostBurst gatherings, then DefaultPostRate a minute.
const (
	DefaultPostRate  = 10
	DefaultPostBurst = 20
)

// maxBuckets bounds how many users' buckets are kept between sweeps of
// the full ones.
const maxBuckets = 10000

// rateLimitError is a request over its user's limit.
type rateLimitError struct {
	rate, burst int
	retryAfter  time.Duration
}

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("too many gatherings requested: at most %d a minute per user after a burst of %d; retry in %ds",
		e.rate, e.burst, e.seconds())
}

// seconds is Retry-After's value: whole seconds, rounded up, at least 1.
func (e *rateLimitError) seconds() int { return max(1, int(math.Ceil(e.retryAfter.Seconds()))) }

// limiter is a token bucket per key: each holds up to burst tokens and
// gains rate a minute; a request takes one. It lives in the process, so
// each API replica counts on its own.
type limiter struct {
	rate, burst int
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// newLimiter returns a limiter of rate a minute after burst, or nil, which
// allows everything, when rate is not positive. A burst below 1 is 1.
func newLimiter(rate, burst int, now func() time.Time) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: rate, burst: max(burst, 1), now: now, buckets: map[string]bucket{}}
}

// allow takes a token from key's bucket, or says how long until there is
// one.
func (l *limiter) allow(key string) error {
	if l == nil {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = bucket{tokens: float64(l.burst), at: now}
	}
	b = l.refill(b, now)
	if b.tokens < 1 {
		l.buckets[key] = b
		wait := time.Duration((1 - b.tokens) / float64(l.rate) * float64(time.Minute))
		return &rateLimitError{rate: l.rate, burst: l.burst, retryAfter: wait}
	}
	b.tokens--
	l.buckets[key] = b
	return nil
}

func (l *limiter) refill(b bucket, now time.Time) bucket {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(float64(l.burst), b.tokens+el.Minutes()*float64(l.rate))
		b.at = now
	}
	return b
}

// sweep drops the buckets that are full again: a new one is the same.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now).tokens >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}
