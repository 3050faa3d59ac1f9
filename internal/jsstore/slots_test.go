package jsstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func newSlots(t testing.TB, js jetstream.JetStream, ttl time.Duration) *Slots {
	t.Helper()
	s, err := NewSlots(context.Background(), js, Config{SlotBucket: testenv.Name("slots"), LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSlotsNeverGiveMoreThanTheCapToConcurrentTakers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStream(t, testenv.NATS(t))
	// Takers in several "processes": Slots values of their own on one bucket.
	bucket := testenv.Name("slots")
	var takers []*Slots
	for range 3 {
		s, err := NewSlots(ctx, js, Config{SlotBucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		takers = append(takers, s)
	}
	const max = 3
	var took atomic.Int32
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			_, err := takers[i%3].Take(ctx, mustgather.ID(i+1), "holder", max)
			switch {
			case err == nil:
				took.Add(1)
			case !errors.Is(err, mustgather.ErrNoSlot):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if took.Load() != max {
		t.Errorf("%d takers got a slot, want %d", took.Load(), max)
	}
	if _, running, err := takers[0].Queue(ctx); err != nil || running != max {
		t.Errorf("Queue: %d running, %v; want %d", running, err, max)
	}
}

func TestAFreeSlotGoesToTheLowestWaitingIdAndAHolderRenewsItsOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSlots(t, jetStream(t, testenv.NATS(t)), 30*time.Second)
	if _, err := s.Take(ctx, 1, "a", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, 1, "a", 1); err != nil {
		t.Errorf("renewing its own slot: %v", err)
	}
	for _, id := range []mustgather.ID{3, 2} {
		if running, err := s.Take(ctx, id, "b", 1); !errors.Is(err, mustgather.ErrNoSlot) || running != 1 {
			t.Fatalf("Take(%d) with the cap full: %d, %v", id, running, err)
		}
		if err := s.Wait(ctx, id, "b"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Wait(ctx, 2, "c"); !errors.Is(err, mustgather.ErrLeaseHeld) {
		t.Errorf("a second runner waiting with 2: %v, want ErrLeaseHeld", err)
	}
	if waiting, _, _ := s.Queue(ctx); !waiting[2] || !waiting[3] || len(waiting) != 2 {
		t.Errorf("Queue: %v, want 2 and 3", waiting)
	}
	if err := s.Free(ctx, 1, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, 3, "b", 1); !errors.Is(err, mustgather.ErrNoSlot) {
		t.Errorf("3 took the free slot before 2, which waits longer: %v", err)
	}
	if _, err := s.Take(ctx, 2, "b", 1); err != nil {
		t.Errorf("2 did not take the free slot: %v", err)
	}
	if waiting, running, _ := s.Queue(ctx); waiting[2] || !waiting[3] || running != 1 {
		t.Errorf("after 2 took the slot: waiting %v, %d running; want 3 waiting, 1 running", waiting, running)
	}
}

func TestASlotWhoseHolderStopsRenewingItLapses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSlots(t, jetStream(t, testenv.NATS(t)), time.Second)
	if _, err := s.Take(ctx, 1, "dead", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx, 5, "dead"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, 2, "live", 1); !errors.Is(err, mustgather.ErrNoSlot) {
		t.Fatalf("Take with the cap full: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the dead holder's slot and place to lapse", func() bool {
		_, err := s.Take(ctx, 2, "live", 1)
		return err == nil
	})
	testenv.Eventually(t, 10*time.Second, "the dead holder's place in the queue to lapse", func() bool {
		waiting, _, err := s.Queue(ctx)
		return err == nil && !waiting[5]
	})
}

func TestEverySlotCallOnAServerThatIsGoneReturnsAnErrorInsteadOfWaitingOnItsContext(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	s := newSlots(t, jetStream(t, srv), time.Minute)
	ctx := context.Background()
	if _, err := s.Take(ctx, 1, "a", 1); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	// Each call has a context without an end, as a runner's has; every
	// request it makes waits at most RequestWait, so each one returns.
	calls := map[string]func() error{
		"Take":  func() error { _, err := s.Take(ctx, 2, "b", 1); return err },
		"renew": func() error { _, err := s.Take(ctx, 1, "a", 1); return err },
		"Wait":  func() error { return s.Wait(ctx, 2, "b") },
		"Free":  func() error { return s.Free(ctx, 1, "a") },
		"Queue": func() error { _, _, err := s.Queue(ctx); return err },
	}
	errs := make(chan string, len(calls))
	for name, call := range calls {
		go func() {
			err := call()
			if err == nil {
				errs <- name + " succeeded on a server that is gone"
				return
			}
			errs <- ""
		}()
	}
	deadline := time.After(10 * RequestWait)
	for range calls {
		select {
		case msg := <-errs:
			if msg != "" {
				t.Error(msg)
			}
		case <-deadline:
			t.Fatal("a slot call still waits on a server that is gone")
		}
	}
}
