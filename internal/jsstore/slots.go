package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Slots caps how many gatherings run at once across every process that
// shares its bucket. The bucket holds
//
//	slot.<n>   "<id> <holder>": slot n, 0 <= n < the cap, runs gathering id
//	wait.<id>  holder: gathering id waits for a slot in holder's runner
//
// A slot is taken with KV Create, so that of two runners after the last
// free slot one gets it. Both kinds of key are renewed like leases, and
// the bucket's TTL removes those of a runner that died. Every call waits
// at most RequestWait for each request it makes, so that a NATS that
// restarts never holds up a runner. Slots implements mustgather.Slots.
type Slots struct {
	kv jetstream.KeyValue
	// mu guards held: the slots taken through this Slots, so that freeing
	// one needs no read of the bucket.
	mu   sync.Mutex
	held map[string]heldSlot // by slotValue
}

// heldSlot is a slot this Slots took, at the revision last written.
type heldSlot struct {
	n   int
	rev uint64
}

var _ mustgather.Slots = (*Slots)(nil)

// Key prefixes of the slots bucket.
const (
	prefixSlot = "slot."
	prefixWait = "wait."
)

// NewSlots opens the slots bucket of cfg (SlotBucket, LeaseTTL, Replicas,
// Storage), creating it if needed.
func NewSlots(ctx context.Context, js jetstream.JetStream, cfg Config) (*Slots, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("jsstore config: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.SlotBucket,
		Description: "must-gather run slots and the gatherings waiting for one",
		History:     1,
		TTL:         cfg.LeaseTTL,
		Replicas:    cfg.Replicas,
		Storage:     cfg.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", cfg.SlotBucket, err)
	}
	return &Slots{kv: boundedKV{kv}, held: map[string]heldSlot{}}, nil
}

// slotState is what the bucket holds, read in one pass.
type slotState struct {
	slots map[int]jetstream.KeyValueEntry // by slot number
	waits map[mustgather.ID]string        // holder by gathering id
}

// read reads the bucket, waiting at most RequestWait: the watch that
// reads it waits for the server's last entry, which a server that
// restarts meanwhile may never send.
func (s *Slots) read(ctx context.Context) (slotState, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	st := slotState{slots: map[int]jetstream.KeyValueEntry{}, waits: map[mustgather.ID]string{}}
	err := eachLatest(ctx, s.kv, ">", false, func(e jetstream.KeyValueEntry) error {
		switch k := e.Key(); {
		case strings.HasPrefix(k, prefixSlot):
			if n, err := strconv.Atoi(strings.TrimPrefix(k, prefixSlot)); err == nil {
				st.slots[n] = e
			}
		case strings.HasPrefix(k, prefixWait):
			if id, ok := mustgather.ParseID(strings.TrimPrefix(k, prefixWait)); ok {
				st.waits[id] = string(e.Value())
			}
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("read bucket %s: %w", s.kv.Bucket(), err)
	}
	return st, nil
}

func slotValue(id mustgather.ID, holder string) []byte { return []byte(id.String() + " " + holder) }

// Take takes a free slot for id, or renews the one holder has for it. A
// free slot goes to id only when fewer gatherings with lower ids wait than
// there are free slots, so that waiting gatherings start in id order.
// Taking a slot ends id's wait.
func (s *Slots) Take(ctx context.Context, id mustgather.ID, holder string, max int) (int, error) {
	st, err := s.read(ctx)
	if err != nil {
		return 0, err
	}
	running := len(st.slots)
	val := slotValue(id, holder)
	for n, e := range st.slots {
		if string(e.Value()) == string(val) {
			rev, err := s.kv.Update(ctx, prefixSlot+strconv.Itoa(n), val, e.Revision())
			if err != nil {
				return running, fmt.Errorf("renew slot %d of gathering %d: %w", n, id, err)
			}
			s.remember(val, heldSlot{n: n, rev: rev})
			return running, nil
		}
	}
	ahead := 0
	for w := range st.waits {
		if w < id {
			ahead++
		}
	}
	if running >= max || ahead >= max-running {
		return running, fmt.Errorf("gathering %d: %d of %d running, %d waiting ahead: %w", id, running, max, ahead, mustgather.ErrNoSlot)
	}
	for n := range max {
		if _, taken := st.slots[n]; taken {
			continue
		}
		rev, err := s.kv.Create(ctx, prefixSlot+strconv.Itoa(n), val)
		if conflict(err) {
			running++
			continue
		}
		if err != nil {
			return running, fmt.Errorf("take slot %d for gathering %d: %w", n, id, err)
		}
		s.remember(val, heldSlot{n: n, rev: rev})
		if holder == st.waits[id] {
			if err := s.deleteWait(ctx, id, holder); err != nil {
				return running + 1, fmt.Errorf("gathering %d took slot %d, but still waits: %w", id, n, err)
			}
		}
		return running + 1, nil
	}
	return running, fmt.Errorf("gathering %d: %d of %d running: %w", id, running, max, mustgather.ErrNoSlot)
}

// Wait enters id in the queue for holder, or renews its place there.
func (s *Slots) Wait(ctx context.Context, id mustgather.ID, holder string) error {
	key := prefixWait + id.String()
	err := retry(ctx, func() error {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = s.kv.Create(ctx, key, []byte(holder))
			return err
		}
		if err != nil {
			return err
		}
		if string(e.Value()) != holder {
			return mustgather.ErrLeaseHeld
		}
		_, err = s.kv.Update(ctx, key, []byte(holder), e.Revision())
		return err
	})
	if err != nil {
		return fmt.Errorf("wait for a slot for gathering %d: %w", id, err)
	}
	return nil
}

// deleteWait drops holder's place in the queue for id; a place another
// holder has stays.
func (s *Slots) deleteWait(ctx context.Context, id mustgather.ID, holder string) error {
	key := prefixWait + id.String()
	return retry(ctx, func() error {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil || string(e.Value()) != holder {
			return err
		}
		return s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	})
}

func (s *Slots) remember(val []byte, h heldSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[string(val)] = h
}

// Free gives up holder's slot and place in the queue for id. A slot taken
// through this Slots is deleted at the revision it last wrote, without a
// read: a gathering that never waited costs one delete.
func (s *Slots) Free(ctx context.Context, id mustgather.ID, holder string) error {
	val := slotValue(id, holder)
	s.mu.Lock()
	h, ok := s.held[string(val)]
	delete(s.held, string(val))
	s.mu.Unlock()
	if ok {
		err := s.kv.Delete(ctx, prefixSlot+strconv.Itoa(h.n), jetstream.LastRevision(h.rev))
		if err == nil {
			return nil
		}
		if !conflict(err) {
			return fmt.Errorf("free slot %d of gathering %d: %w", h.n, id, err)
		}
		// Written since (another Slots renewed it, or it lapsed and was
		// taken again): look it up below.
	}
	if err := s.deleteWait(ctx, id, holder); err != nil {
		return fmt.Errorf("free the place of gathering %d: %w", id, err)
	}
	st, err := s.read(ctx)
	if err != nil {
		return err
	}
	for n, e := range st.slots {
		if string(e.Value()) != string(val) {
			continue
		}
		err := s.kv.Delete(ctx, prefixSlot+strconv.Itoa(n), jetstream.LastRevision(e.Revision()))
		if err != nil && !conflict(err) {
			return fmt.Errorf("free slot %d of gathering %d: %w", n, id, err)
		}
	}
	return nil
}

// Queue returns the gatherings in the queue, and how many slots are
// taken.
func (s *Slots) Queue(ctx context.Context) (map[mustgather.ID]bool, int, error) {
	st, err := s.read(ctx)
	if err != nil {
		return nil, 0, err
	}
	waiting := make(map[mustgather.ID]bool, len(st.waits))
	for id := range st.waits {
		waiting[id] = true
	}
	return waiting, len(st.slots), nil
}
