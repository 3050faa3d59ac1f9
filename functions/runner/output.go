package runner

import (
	"strconv"
	"sync"
	"unicode/utf8"
)

// outputLog collects a gathering's live output. It keeps the last tailSize
// bytes for exec-output and the first fullLimit bytes for must-gather.logs,
// and counts writes so the progress reporter knows when there is news. It is
// safe for concurrent use.
type outputLog struct {
	mu        sync.Mutex
	tail      []byte
	tailSize  int
	full      []byte
	fullLimit int
	dropped   int64
	version   uint64
}

func newOutputLog(tailSize, fullLimit int) *outputLog {
	return &outputLog{tailSize: tailSize, fullLimit: fullLimit}
}

// Write implements io.Writer; it never fails.
func (o *outputLog) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.version++
	o.tail = append(o.tail, p...)
	if len(o.tail) > o.tailSize*2 {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-o.tailSize:]...)
	}
	room := o.fullLimit - len(o.full)
	switch {
	case room >= len(p):
		o.full = append(o.full, p...)
	case room > 0:
		o.full = append(o.full, p[:room]...)
		o.dropped += int64(len(p) - room)
	default:
		o.dropped += int64(len(p))
	}
	return len(p), nil
}

// WriteString implements io.StringWriter.
func (o *outputLog) WriteString(s string) (int, error) { return o.Write([]byte(s)) }

// Tail returns the last tailSize bytes, starting at a line or at least a
// character boundary, and the write count it reflects.
func (o *outputLog) Tail() (string, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.tail
	if len(t) > o.tailSize {
		t = t[len(t)-o.tailSize:]
		// Start at the next line when one begins in the first 1 KiB.
		for i := 0; i < len(t) && i < 1024; i++ {
			if t[i] == '\n' {
				t = t[i+1:]
				break
			}
		}
		for len(t) > 0 && !utf8.RuneStart(t[0]) {
			t = t[1:]
		}
	}
	return string(t), o.version
}

// Full returns the log for the archive, with a note when it was cut.
func (o *outputLog) Full() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := append([]byte(nil), o.full...)
	if o.dropped > 0 {
		b = append(b, []byte("\n[must-gather-functions] log cut: "+strconv.FormatInt(o.dropped, 10)+" more bytes were not kept\n")...)
	}
	return b
}
