package redact

import (
	"bytes"
	"slices"
)

type mode int

const (
	documentMode mode = iota // values become Marker
	maskMode                 // values become as many '*'
)

// object is a Kubernetes object (or any mapping) whose kind decides whether
// the values of its data and stringData are redacted. kubectl writes kind
// after data, so those values wait, held, until the kind is known or the
// object ends.
type object struct{ state int8 } // 0 undecided, 1 a Secret, -1 not

// span is a part of a line to redact.
type span struct {
	start, end int
	rule       string
	obj        *object // nil: redact; else only if obj turns out a Secret
	quiet      bool    // a continuation, not counted again
}

type heldLine struct {
	line  []byte
	nl    bool
	spans []span
}

// engine redacts one file, a line at a time.
type engine struct {
	mode   mode
	out    *bytes.Buffer
	name   string
	custom []*customRule
	json   bool
	limit  int // most bytes held while an object's kind is unknown
	// copyHeld: the lines fed live in a buffer that is reused, so a line
	// held is copied.
	copyHeld bool
	counts   map[string]int

	lower []byte
	// hits are where needles occur in the document (indexed), or in the
	// current line of a stream; hi is the first not before pos, where the
	// current line starts.
	hits    []hit
	hi      int
	pos     int
	indexed bool
	// src is the document fed, where it is one (indexed): a line that
	// stays as it is is not copied on its own but with the lines around
	// it, from src[copied:] up to the next line that changes.
	src    []byte
	copied int
	spans  []span
	queue  []heldLine
	queued int
	pem    bool
	pemN   int // lines of the PEM block so far
	y      yamlState
	j      jsonState
}

func (r *Redactor) newEngine(name string, m mode, out *bytes.Buffer, limit int) *engine {
	e := &engine{mode: m, out: out, name: name, limit: limit, counts: map[string]int{}}
	for i := range r.custom {
		if r.custom[i].applies(name) {
			e.custom = append(e.custom, &r.custom[i])
		}
	}
	e.y.reset()
	return e
}

// detect decides from the start of the file whether it is JSON.
func (e *engine) detect(head []byte) {
	t := bytes.TrimLeft(head, " \t\r\n\ufeff")
	e.json = len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// feed takes one line, without its newline; nl says whether it had one,
// cont that it continues a line cut at the buffer's size.
func (e *engine) feed(line []byte, nl, cont bool) {
	e.spans = e.spans[:0]
	if !e.indexed {
		// A stream: the needles of this line alone.
		e.hits, e.hi, e.pos = findNeedles(e.hits[:0], line), 0, 0
	}
	quiet := e.quietLine(len(line))
	var lower []byte
	if !quiet {
		lower = e.lowerLine(line)
	}
	if !quiet || e.pem {
		e.pemLine(line, lower)
	}
	switch {
	case e.json:
		e.j.scan(e, line)
	case !cont:
		e.y.line(e, line)
	}
	if !quiet {
		e.lineRules(line, lower)
	}
	for _, c := range e.custom {
		for _, m := range c.re.FindAllSubmatchIndex(line, -1) {
			if s, t := m[2*c.mask], m[2*c.mask+1]; s >= 0 && t > s {
				e.add(s, t, c.name, nil)
			}
		}
	}
	if len(e.queue) == 0 && e.decided(e.spans) {
		if e.src != nil && len(e.spans) == 0 {
			return // copied later, with the lines around it
		}
		e.flushSource(line, nl)
		e.write(line, nl, e.spans)
		return
	}
	e.flushSource(line, nl)
	h := heldLine{nl: nl, spans: slices.Clone(e.spans)}
	if e.copyHeld {
		h.line = slices.Clone(line) // the caller's buffer is reused
	} else {
		h.line = line
	}
	e.queue = append(e.queue, h)
	e.queued += len(line) + 1
	if e.queued > e.limit {
		// Nothing more can be held: what is still undecided is taken for
		// a Secret, which errs on the side of the secret.
		e.decideAll(1)
	}
	e.release()
}

func (e *engine) add(start, end int, rule string, obj *object) {
	if end > start {
		e.spans = append(e.spans, span{start: start, end: end, rule: rule, obj: obj})
	}
}

func (e *engine) decided(spans []span) bool {
	for _, s := range spans {
		if s.obj != nil && s.obj.state == 0 {
			return false
		}
	}
	return true
}

// release writes the held lines that no longer wait for a decision.
func (e *engine) release() {
	n := 0
	for n < len(e.queue) && e.decided(e.queue[n].spans) {
		h := e.queue[n]
		e.write(h.line, h.nl, h.spans)
		e.queued -= len(h.line) + 1
		n++
	}
	if n > 0 {
		e.queue = append(e.queue[:0], e.queue[n:]...)
	}
}

// decideAll decides every undecided object held.
func (e *engine) decideAll(state int8) {
	for _, h := range e.queue {
		for _, s := range h.spans {
			if s.obj != nil && s.obj.state == 0 {
				s.obj.state = state
			}
		}
	}
}

// finish ends the file: objects whose kind never came are not Secrets.
func (e *engine) finish() {
	e.decideAll(-1)
	e.release()
	if e.src != nil {
		e.out.Write(e.src[e.copied:])
		e.copied = len(e.src)
	}
}

// flushSource writes the lines of the document that stayed as they were,
// up to the current line, which the caller then writes or holds.
func (e *engine) flushSource(line []byte, nl bool) {
	if e.src == nil {
		return
	}
	e.out.Write(e.src[e.copied:e.pos])
	e.copied = e.pos + len(line)
	if nl {
		e.copied++
	}
}

// write writes line with its spans redacted, and counts them.
func (e *engine) write(line []byte, nl bool, spans []span) {
	spans = slices.DeleteFunc(spans, func(s span) bool { return s.obj != nil && s.obj.state < 0 })
	if len(spans) == 0 {
		e.out.Write(line)
		if nl {
			e.out.WriteByte('\n')
		}
		return
	}
	slices.SortStableFunc(spans, func(a, b span) int { return a.start - b.start })
	at, end := 0, 0
	for _, s := range spans {
		switch {
		case s.end <= end:
			continue // inside one already redacted
		case s.start < end:
			// Overlaps the one before: extend it, count it once.
			if e.mode == maskMode {
				e.mask(s.end - end)
			}
		default:
			if !s.quiet {
				e.counts[s.rule]++
			}
			e.out.Write(line[at:s.start])
			if e.mode == maskMode {
				e.mask(s.end - s.start)
			} else {
				e.out.WriteString(Marker)
			}
		}
		at, end = s.end, s.end
	}
	e.out.Write(line[at:])
	if nl {
		e.out.WriteByte('\n')
	}
}

func (e *engine) mask(n int) {
	for range n {
		e.out.WriteByte(maskByte)
	}
}

// asciiLower returns b in ASCII lower case, in buf if it has room.
func asciiLower(buf, b []byte) []byte {
	buf = append(buf[:0], b...)
	for i, c := range buf {
		if 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	return buf
}

// lowerLine returns line in ASCII lower case, in a buffer reused per line.
func (e *engine) lowerLine(line []byte) []byte {
	e.lower = append(e.lower[:0], line...)
	for i, c := range e.lower {
		if 'A' <= c && c <= 'Z' {
			e.lower[i] = c + 'a' - 'A'
		}
	}
	return e.lower
}
