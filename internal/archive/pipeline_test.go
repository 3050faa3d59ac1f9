package archive

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// failAfter takes n bytes, then fails every write.
type failAfter struct {
	n   int
	got bytes.Buffer
}

var errSink = errors.New("sink failed")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.got.Len()+len(p) > f.n {
		return 0, errSink
	}
	return f.got.Write(p)
}

func TestTheCompressorQueueKeepsOrderAndHandsOnEverythingByClose(t *testing.T) {
	data := make([]byte, 3*queueChunks*chunkSize+12345)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	for _, tt := range []struct {
		name   string
		pieces func(int) int // size of the next write
	}{
		{"small writes", func(int) int { return 1 + rand.IntN(100) }},
		{"chunk-sized writes", func(int) int { return chunkSize }},
		{"writes larger than the queue", func(int) int { return (queueChunks + 3) * chunkSize }},
		{"mixed", func(i int) int { return []int{1, chunkSize - 1, 2*chunkSize + 1, 7}[i%4] }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			q := newAsyncWriter(&out)
			p := data
			for i := 0; len(p) > 0; i++ {
				n := min(tt.pieces(i), len(p))
				if m, err := q.Write(p[:n]); err != nil || m != n {
					t.Fatalf("write %d: %d, %v", n, m, err)
				}
				p = p[n:]
			}
			if err := q.close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("%d bytes out of %d, or in another order", out.Len(), len(data))
			}
			if _, err := q.Write([]byte("x")); !errors.Is(err, errQueueClosed) {
				t.Errorf("write after close: %v", err)
			}
		})
	}
}

func TestTheCompressorQueueReportsTheSinksErrorAndNeverBlocksAfterIt(t *testing.T) {
	sink := &failAfter{n: 5 * chunkSize}
	q := newAsyncWriter(sink)
	chunk := bytes.Repeat([]byte("x"), chunkSize)
	var werr error
	// Far more than the sink and the queue take: once the sink fails, the
	// writes fail (or are dropped) instead of blocking.
	for range 10 * queueChunks {
		if _, werr = q.Write(chunk); werr != nil {
			break
		}
	}
	cerr := q.close()
	if !errors.Is(cerr, errSink) {
		t.Fatalf("close: %v, want the sink's error", cerr)
	}
	if werr != nil && !errors.Is(werr, errSink) {
		t.Errorf("write: %v, want the sink's error", werr)
	}
	if sink.got.Len() != 5*chunkSize {
		t.Errorf("sink got %d bytes, want the %d it took", sink.got.Len(), 5*chunkSize)
	}
}

// TestAWriterWhoseUploadFailsSaysSoOnCloseAtTheLatest: the compressing
// goroutine's error reaches the Writer's caller.
func TestAWriterWhoseUploadFailsSaysSoOnCloseAtTheLatest(t *testing.T) {
	sink := &failAfter{n: 1000}
	w := NewWriter(sink)
	noise := make([]byte, 4<<20)
	for i := range noise {
		noise[i] = byte(rand.IntN(256))
	}
	addErr := w.AddBytes("noise", noise, time.Unix(0, 0))
	closeErr := w.Close()
	if !errors.Is(closeErr, errSink) || (addErr != nil && !errors.Is(addErr, errSink)) {
		t.Fatalf("add: %v; close: %v; want the sink's error", addErr, closeErr)
	}
	if err := w.Close(); !errors.Is(err, errSink) {
		t.Errorf("second close: %v", err)
	}
}
