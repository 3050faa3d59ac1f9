package archive

import (
	"errors"
	"io"
	"sync"
)

// The compressor's queue: the tar stream goes to gzip in chunks of
// chunkSize, at most queueChunks of them waiting. That is the work one
// side can be ahead of the other: while gzip compresses what the queue
// holds, the goroutine that adds files reads, filters (redacts) and tars
// the next ones, so on two cores the two take the time of the slower, not
// the sum. 4 MiB covers the documents a gathering mostly holds.
const (
	chunkSize   = 256 << 10
	queueChunks = 16
)

// errQueueClosed is returned by a write after close.
var errQueueClosed = errors.New("archive: write to a closed compressor queue")

// asyncWriter hands what is written to it to a goroutine that writes it
// to w, holding at most queueChunks chunks not yet written. The first
// error of w is returned by the writes that follow it and by close; after
// it the goroutine drops what comes, so the writer never blocks on it.
// Write and close are for one goroutine.
type asyncWriter struct {
	w      io.Writer
	queue  chan []byte // filled chunks, in order
	free   chan []byte // chunks to fill
	cur    []byte      // the chunk being filled
	made   int         // chunks made so far
	done   chan struct{}
	closed bool

	mu  sync.Mutex
	err error
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		w:     w,
		queue: make(chan []byte, queueChunks),
		free:  make(chan []byte, queueChunks+1),
		done:  make(chan struct{}),
	}
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for c := range a.queue {
		if a.failed() == nil {
			if _, err := a.w.Write(c); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		a.free <- c[:0]
	}
}

func (a *asyncWriter) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// chunk returns an empty chunk: a returned one, or a new one while fewer
// than queueChunks+1 exist (the free channel holds them all).
func (a *asyncWriter) chunk() []byte {
	select {
	case c := <-a.free:
		return c
	default:
	}
	if a.made < queueChunks+1 {
		a.made++
		return make([]byte, 0, chunkSize)
	}
	return <-a.free
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.closed {
		return 0, errQueueClosed
	}
	if err := a.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if a.cur == nil {
			a.cur = a.chunk()
		}
		m := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+m]
		p = p[m:]
		if len(a.cur) == cap(a.cur) {
			a.queue <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// close hands on what is left, waits until w has it all, and returns the
// first error of w.
func (a *asyncWriter) close() error {
	if !a.closed {
		a.closed = true
		if len(a.cur) > 0 {
			a.queue <- a.cur
			a.cur = nil
		}
		close(a.queue)
	}
	<-a.done
	return a.failed()
}
