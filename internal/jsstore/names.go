package jsstore

import (
	"context"
	"sync"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// nameWrites merges the custom-name index writes of one Store. While a
// write of a name is under way, the Creates that arrive with the same name
// wait for it, and then one write, for the highest of their ids, serves
// them all: concurrent Creates of one name in one process no longer race
// each other's compare-and-set, each losing round costing a read and a
// write more. Writes of other processes still race, and retry.
type nameWrites struct {
	mu    sync.Mutex
	names map[string]*nameQueue // the names with a write under way
}

// nameQueue is the writes of one name: the one under way, and the batch
// that waits for it.
type nameQueue struct {
	next *nameBatch // nil while nothing waits
}

type nameBatch struct {
	id   mustgather.ID // the highest id of the Creates that wait
	done chan struct{} // closed once err is set
	err  error
}

// index points the index of name at id, or a higher id, by write, merged
// with the other writes of name in this process, and returns when it does.
func (n *nameWrites) index(ctx context.Context, name string, id mustgather.ID, write func(context.Context, mustgather.ID) error) error {
	n.mu.Lock()
	if n.names == nil {
		n.names = make(map[string]*nameQueue)
	}
	q, busy := n.names[name]
	if !busy {
		n.names[name] = &nameQueue{}
		n.mu.Unlock()
		err := write(ctx, id)
		n.handOver(name, write)
		return err
	}
	b := q.next
	if b == nil {
		b = &nameBatch{done: make(chan struct{})}
		q.next = b
	}
	b.id = max(b.id, id)
	n.mu.Unlock()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handOver ends a write of name: it starts the batch that waited for it,
// if any, on a goroutine of its own, as its Creates may give up waiting.
func (n *nameWrites) handOver(name string, write func(context.Context, mustgather.ID) error) {
	n.mu.Lock()
	q := n.names[name]
	b := q.next
	if b == nil {
		delete(n.names, name)
		n.mu.Unlock()
		return
	}
	q.next = nil
	n.mu.Unlock()
	go func() {
		ctx, cancel := bound(context.Background())
		b.err = write(ctx, b.id)
		cancel()
		close(b.done)
		n.handOver(name, write)
	}()
}
