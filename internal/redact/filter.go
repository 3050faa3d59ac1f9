package redact

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sync"
)

// ReasonNotText says why a file was withheld.
const ReasonNotText = "not text (a binary file, or an archive that could not be unpacked): nothing in it can be checked"

// Filter redacts each file of an archive as the archive is written, and
// reports to its Report. It implements the archive writer's filter. It is
// not safe for concurrent use, as the archive writer is not.
type Filter struct {
	r    *Redactor
	rep  *Report
	buf  []byte // a file read whole, reused
	hits []hit  // and where needles are in it
	out  bytes.Buffer
}

// Filter returns a Filter that redacts with r and reports to rep.
func (r *Redactor) Filter(rep *Report) *Filter { return &Filter{r: r, rep: rep} }

// File returns what the archive stores of the file name: redacted as a
// document when it is at most the bound, masked in place when larger,
// and nothing (keep false) when it is not text.
func (f *Filter) File(name string, size int64, src io.Reader) (int64, io.Reader, bool, error) {
	if size <= int64(f.r.bufferBytes) {
		if cap(f.buf) < int(size) {
			f.buf = make([]byte, size)
		}
		b := f.buf[:size]
		if _, err := io.ReadFull(src, b); err != nil {
			return 0, nil, false, fmt.Errorf("read for redaction: %w", err)
		}
		if !IsText(b[:min(len(b), sniffSize)]) {
			f.rep.Withhold(name, ReasonNotText)
			return 0, nil, false, nil
		}
		f.out.Reset()
		counts := f.r.redactInto(&f.out, &f.hits, name, b)
		f.rep.Add(name, counts)
		return int64(f.out.Len()), &f.out, true, nil
	}
	br := bufio.NewReaderSize(src, sniffSize)
	head, err := br.Peek(sniffSize)
	if err != nil && err != io.EOF {
		return 0, nil, false, fmt.Errorf("read for redaction: %w", err)
	}
	if !IsText(head) {
		f.rep.Withhold(name, ReasonNotText)
		return 0, nil, false, nil
	}
	return size, f.r.Reader(name, size, br, f.rep), true, nil
}

// Writer redacts what is written to it, a line at a time as a document,
// and writes the result to the writer it wraps. Counts go to its Report
// under its name when it is closed. It is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	e       *engine
	w       io.Writer
	out     bytes.Buffer
	partial []byte
	cont    bool
	name    string
	rep     *Report
	closed  bool
}

// maxLine is how much of a line without end a Writer keeps before it
// redacts the part it has.
const maxLine = 64 << 10

// Writer returns a Writer to w whose counts go to rep as name's.
func (r *Redactor) Writer(name string, w io.Writer, rep *Report) *Writer {
	x := &Writer{w: w, name: name, rep: rep}
	x.e = r.newEngine(name, documentMode, &x.out, r.bufferBytes)
	x.e.copyHeld = true
	return x
}

// Write implements io.Writer. It reports len(p) written once the lines
// it completes are passed on.
func (x *Writer) Write(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return 0, fmt.Errorf("redact: write after close")
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			x.partial = append(x.partial, p...)
			if len(x.partial) >= maxLine {
				x.e.feed(x.partial, false, x.cont)
				x.partial, x.cont = x.partial[:0], true
			}
			break
		}
		line := p[:i]
		if len(x.partial) > 0 {
			line = append(x.partial, line...)
		}
		x.e.feed(line, true, x.cont)
		x.partial, x.cont = x.partial[:0], false
		p = p[i+1:]
	}
	return n, x.flush()
}

func (x *Writer) flush() error {
	if x.out.Len() == 0 {
		return nil
	}
	// The engine has copied every line it holds, so the buffer can go.
	_, err := x.w.Write(x.out.Bytes())
	x.out.Reset()
	return err
}

// Close redacts what is left, a last line without its end included, and
// records the counts. It does not close the wrapped writer.
func (x *Writer) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	if len(x.partial) > 0 {
		x.e.feed(x.partial, false, x.cont)
	}
	x.e.finish()
	x.rep.Add(x.name, x.e.counts)
	return x.flush()
}
