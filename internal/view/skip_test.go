package view_test

import (
	"context"
	"sync"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// scriptedFeed is a feed whose writes a test passes one by one, for the
// order of events the bucket's feed makes only by chance: the writes that
// come in while a revision is read. What a real bucket does is tested on
// NATS in view_test.go; this pins the view's side of the Records contract.
type scriptedFeed struct {
	writes chan mustgather.Write
	mu     sync.Mutex
	// revisions[i] is what the i-th Revision call returns, after it has
	// had the writes of passes[i] applied.
	revisions []uint64
	passes    [][]mustgather.Write
	calls     int
	applied   chan struct{}
}

func (f *scriptedFeed) Follow(ctx context.Context, fn func(mustgather.Write) error) error {
	for {
		select {
		case w := <-f.writes:
			if err := fn(w); err != nil {
				return err
			}
			f.applied <- struct{}{}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pass has the view apply ws, one after the other.
func (f *scriptedFeed) pass(ws ...mustgather.Write) {
	for _, w := range ws {
		f.writes <- w
		<-f.applied
	}
}

func (f *scriptedFeed) Revision(context.Context) (uint64, error) {
	f.mu.Lock()
	i := f.calls
	f.calls++
	f.mu.Unlock()
	f.pass(f.passes[i]...)
	return f.revisions[i], nil
}

func (f *scriptedFeed) WrittenAfter(context.Context, uint64) (bool, error) { return true, nil }

func put(id mustgather.ID, rev uint64) mustgather.Write {
	return mustgather.Write{Revision: rev, Gathering: &mustgather.Gathering{ID: id, Status: mustgather.StatusNew}}
}

func TestSyncWaitsForAWriteThatReplacedOneTheFeedPassedOver(t *testing.T) {
	// Gathering 3 is written at revision 3 and again at 6. The view lags:
	// by the time its feed gets there, revision 3 is gone, replaced, and the
	// feed passes over it, from 2 to 5. A reader that arrived after revision
	// 3 was acknowledged reads 5 as the latest revision, the view reaches 5,
	// and still does not hold gathering 3, which comes only at 6.
	f := &scriptedFeed{
		writes:    make(chan mustgather.Write),
		applied:   make(chan struct{}),
		revisions: []uint64{5, 6},
		passes: [][]mustgather.Write{
			{put(2, 2), put(5, 5)},
			{put(3, 6)},
		},
	}
	v := view.New(f, encode, view.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	f.pass(put(1, 1), mustgather.Write{CaughtUp: true})

	if err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Get(3); !ok {
		t.Error("after Sync the view does not hold gathering 3, written before the read began")
	}
	if f.calls != 2 {
		t.Errorf("Sync read the revision %d times, want 2: once, and once more after the feed passed over revisions", f.calls)
	}
}
