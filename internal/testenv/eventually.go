package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

const (
	eventuallyInterval = 10 * time.Millisecond
	readyInterval      = 50 * time.Millisecond
)

// Eventually polls cond every 10ms until it returns true, and fails the test
// with what when it has not within timeout. cond runs on the test's
// goroutine, so it may fail the test itself.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := Poll(ctx, eventuallyInterval, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

var errNotYet = errors.New("not yet")

// Poll calls f until it returns nil or ctx ends, waiting interval after
// each call, and then returns f's last error with why ctx ended. The wait
// comes after the call, not on a fixed beat, so that a slow f (listing
// thousands of records under load) never runs back to back.
func Poll(ctx context.Context, interval time.Duration, f func() error) error {
	wait := time.NewTimer(interval)
	defer wait.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		wait.Reset(interval)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-wait.C:
		}
	}
}
