package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress keeps one line on stderr up to date. On a terminal it rewrites
// the line in place, at most every 100 ms; elsewhere (a log, a pipe) it
// writes a line only when the phase changes, so a log gets no
// carriage-return spam.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	shown    bool      // a line is on the terminal, not ended
	phase    string    // of the last line written elsewhere
	last     time.Time // when the terminal's line was last written
}

// termWidth is the longest line progress writes on a terminal.
const termWidth = 79

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// update shows line. phase names what the line is about: elsewhere than on
// a terminal, a line whose phase is the last one's is not written; "" is a
// phase of its own that only a terminal shows (a download's byte counts).
func (p *progress) update(phase, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.terminal {
		if phase == "" || phase == p.phase {
			return
		}
		p.phase = phase
		fmt.Fprintln(p.w, line)
		return
	}
	if phase == "" && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	// A line longer than the terminal wraps, and \r then rewrites only
	// its last part: keep it within the narrowest usual width.
	if r := []rune(line); len(r) > termWidth {
		line = string(r[:termWidth-1]) + "…"
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.shown = true
}

// note ends the progress line and writes text below it.
func (p *progress) note(text string) {
	if text == "" {
		return
	}
	p.done()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, text)
}

// done ends the line on a terminal.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
