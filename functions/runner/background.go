package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
)

// ErrStopping is returned by Background.Handle once the runner is shutting
// down: the event is to be delivered again, to another runner.
var ErrStopping = errors.New("the runner is shutting down")

// Background takes requested events for a transport that waits for each
// answer, such as an HTTP delivery from a Knative Trigger: a gathering
// outlives any request, so Handle answers once the lease is held and the
// claim recorded, and the gathering runs on in the background, its lease
// renewed, under the Background's context rather than the request's. A
// redelivery of the event finds the gathering claimed and is answered at
// once. If the process dies, the lease lapses and the reaper ends the
// gathering; nothing runs it twice.
type Background struct {
	r     *Runner
	ctx   context.Context
	slots chan struct{}
	// mu orders claims against Wait: a claim that got in before Wait
	// gets its run counted.
	mu      sync.RWMutex
	stopped bool
	wg      sync.WaitGroup
}

// Background returns a Background that runs at most concurrency gatherings
// at once, each until it ends or ctx ends; when ctx ends they stop, are
// archived and reported, as Handle's are.
func (r *Runner) Background(ctx context.Context, concurrency int) *Background {
	return &Background{r: r, ctx: ctx, slots: make(chan struct{}, max(concurrency, 1))}
}

// Handle claims the event's gathering and starts running it. It returns
// nil once the claim is recorded, or when there is nothing to run (see
// Runner.Handle), such as for a redelivery. With every slot busy it returns
// an error wrapping eventing.ErrBusy without claiming anything, so that
// the event comes again later, here or to another runner.
func (b *Background) Handle(ctx context.Context, e cloudevents.Event) error {
	g, log, err := b.r.admit(ctx, e)
	if g == nil {
		return err
	}
	select {
	case b.slots <- struct{}{}:
	default:
		return fmt.Errorf("runner: all %d gathering slots are busy: %w", cap(b.slots), eventing.ErrBusy)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.stopped || b.ctx.Err() != nil {
		<-b.slots
		return ErrStopping
	}
	holder := newHolder()
	if err := b.r.takeSlot(ctx, *g, holder, log); err != nil {
		<-b.slots
		return err
	}
	c, err := b.r.claim(ctx, *g, holder, log)
	if c == nil {
		b.r.freeSlot(ctx, g.ID, holder, log)
		<-b.slots
		return err
	}
	b.wg.Go(func() {
		defer func() { <-b.slots }()
		b.r.run(b.ctx, c.g, c.holder, c.log)
	})
	return nil
}

// Wait refuses new events and waits for the gatherings under way to end;
// call it once the Background's context has ended, so that they stop.
func (b *Background) Wait() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.wg.Wait()
}
