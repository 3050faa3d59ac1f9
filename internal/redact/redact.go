// Package redact removes secrets from the files of a gathering's archive
// while the archive streams, so that the archive can be attached to a
// support ticket.
//
// A file is read as lines. Built-in rules find the values of Kubernetes
// Secrets (data and stringData, in YAML and JSON, in lists too), PEM
// private keys (also base64-encoded, as in kubeconfigs), bearer tokens and
// JWTs, passwords in URLs, the values of keys named like a password, secret,
// token, API key, access key or credentials (YAML, JSON, INI and key=value),
// and cloud access keys. Configured rules add regular expressions, each for
// the files a glob selects.
//
// A file of at most Config.BufferBytes is redacted as a document: each
// secret value is replaced by Marker, so the file may change length. A
// larger file, whose size the tar header has already stated, is masked in
// place: each secret byte becomes '*', so the size stays. Both keep keys,
// structure and every byte that is not secret; a file with no match stays
// byte for byte the same. A file that is not text (a NUL byte, or mostly
// invalid UTF-8, in its first 8 KiB) is withheld, since nothing in it can
// be checked.
//
// A Report gathers, per file and rule, how many values were redacted, and
// which files were withheld, never the values themselves.
package redact

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Marker replaces each secret value in a file redacted as a document.
const Marker = "***REDACTED***"

// maskByte replaces each byte of a secret value in a file masked in place.
const maskByte = '*'

// sniffSize is how much of a file decides whether it is text.
const sniffSize = 8 << 10

// Config holds the redaction settings.
type Config struct {
	// BufferBytes is the largest file redacted as a document in memory;
	// larger files are masked in place, line by line, and at most this
	// much of one is held at a time.
	BufferBytes int
	// Rules are added to the built-in rules.
	Rules []Rule
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{BufferBytes: 8 << 20}
}

// Rule is a configured redaction rule.
type Rule struct {
	// Name names the rule in redactions.json.
	Name string `json:"name"`
	// Regex is a regular expression (Go syntax) matched against each line.
	// When it has a group named mask, that group is redacted; otherwise the
	// whole match is.
	Regex string `json:"regex"`
	// Files is a path.Match glob of the archive paths the rule applies to;
	// a glob without '/' is matched against the file's base name too.
	// Empty: every file.
	Files string `json:"files,omitempty"`
}

// ErrRules wraps the errors of rules that cannot be used.
var ErrRules = errors.New("invalid redaction rules")

// ParseRules reads rules from s: a JSON array of rules, or the name of a
// file that holds one. Empty s means no rules.
func ParseRules(s string) ([]Rule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	data := []byte(s)
	if s[0] != '[' {
		b, err := os.ReadFile(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRules, err)
		}
		data = b
	}
	var rules []Rule
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rules); err != nil {
		return nil, fmt.Errorf("%w: a JSON array of {\"name\", \"regex\", \"files\"} objects: %w", ErrRules, err)
	}
	if _, err := compileRules(rules); err != nil {
		return nil, err
	}
	return rules, nil
}

type customRule struct {
	name  string
	re    *regexp.Regexp
	mask  int // the group to redact; 0 is the whole match
	files string
}

func compileRules(rules []Rule) ([]customRule, error) {
	var out []customRule
	seen := map[string]bool{}
	for i, r := range rules {
		if strings.TrimSpace(r.Name) == "" {
			return nil, fmt.Errorf("%w: rule %d has no name", ErrRules, i+1)
		}
		if seen[r.Name] || slices.Contains(BuiltinRules, r.Name) {
			return nil, fmt.Errorf("%w: rule name %q is used twice", ErrRules, r.Name)
		}
		seen[r.Name] = true
		re, err := regexp.Compile(r.Regex)
		if err != nil || r.Regex == "" {
			return nil, fmt.Errorf("%w: rule %q: regex: %v", ErrRules, r.Name, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("%w: rule %q: regex matches the empty string", ErrRules, r.Name)
		}
		if _, err := path.Match(r.Files, ""); err != nil {
			return nil, fmt.Errorf("%w: rule %q: files: %w", ErrRules, r.Name, err)
		}
		mask := max(re.SubexpIndex("mask"), 0)
		out = append(out, customRule{name: r.Name, re: re, mask: mask, files: r.Files})
	}
	return out, nil
}

func (c *customRule) applies(name string) bool {
	if c.files == "" {
		return true
	}
	if ok, _ := path.Match(c.files, name); ok {
		return true
	}
	if !strings.Contains(c.files, "/") {
		ok, _ := path.Match(c.files, path.Base(name))
		return ok
	}
	return false
}

// Redactor holds compiled rules. It is safe for concurrent use; each
// gathering gets its own Report.
type Redactor struct {
	bufferBytes int
	custom      []customRule
}

// New returns a Redactor for cfg.
func New(cfg Config) (*Redactor, error) {
	custom, err := compileRules(cfg.Rules)
	if err != nil {
		return nil, err
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = DefaultConfig().BufferBytes
	}
	return &Redactor{bufferBytes: cfg.BufferBytes, custom: custom}, nil
}

// BufferBytes returns the largest file redacted as a document.
func (r *Redactor) BufferBytes() int { return r.bufferBytes }

// Bytes redacts b, the content of the file name, as a document and
// returns the result and the count of redacted values per rule. It does
// not check whether b is text.
func (r *Redactor) Bytes(name string, b []byte) ([]byte, map[string]int) {
	var out bytes.Buffer
	var hits []hit
	counts := r.redactInto(&out, &hits, name, b)
	return out.Bytes(), counts
}

func (r *Redactor) redactInto(out *bytes.Buffer, hits *[]hit, name string, b []byte) map[string]int {
	out.Grow(len(b))
	e := r.newEngine(name, documentMode, out, len(b)+1)
	e.hits, e.indexed = findNeedles((*hits)[:0], b), true
	*hits = e.hits
	if len(e.hits) == 0 && len(e.custom) == 0 {
		// No rule can match: the values of Secrets, private keys and
		// credentials all come with a needle ("secret", "-----begin ",
		// "passw"...).
		out.Write(b)
		return e.counts
	}
	e.detect(b)
	e.src = b
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			e.feed(b, false, false)
			break
		}
		e.feed(b[:i], true, false)
		b = b[i+1:]
		e.pos += i + 1
	}
	e.finish()
	return e.counts
}

// IsText reports whether head, the start of a file, reads as text: no NUL
// byte, and at most one byte in twenty outside valid UTF-8. A rune cut at
// the end of head counts as valid.
func IsText(head []byte) bool {
	if bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	bad := 0
	for i := 0; i < len(head); {
		r, n := utf8.DecodeRune(head[i:])
		if r == utf8.RuneError && n == 1 {
			if len(head)-i < utf8.UTFMax && !utf8.FullRune(head[i:]) {
				break
			}
			bad++
		}
		i += n
	}
	return bad*20 <= len(head)
}

// Report collects what was redacted in one gathering. It is safe for
// concurrent use.
type Report struct {
	mu       sync.Mutex
	counts   map[string]map[string]int // file -> rule -> count
	order    []string                  // files in the order first redacted
	withheld []Withheld
}

// Withheld is a file left out of the archive.
type Withheld struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// Redaction is one line of redactions.json: how many values rule
// redacted in file.
type Redaction struct {
	File  string `json:"file"`
	Rule  string `json:"rule"`
	Count int    `json:"count"`
}

// Summary is how much a gathering's redaction changed.
type Summary struct {
	// Files is how many files had values redacted.
	Files int
	// Matches is how many values were redacted in all.
	Matches int
	// Withheld is how many files were left out.
	Withheld int
}

// NewReport returns an empty Report.
func NewReport() *Report { return &Report{counts: map[string]map[string]int{}} }

// Add records counts, per rule, for file.
func (p *Report) Add(file string, counts map[string]int) {
	if len(counts) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.counts[file]
	if m == nil {
		m = map[string]int{}
		p.counts[file] = m
		p.order = append(p.order, file)
	}
	for rule, n := range counts {
		m[rule] += n
	}
}

// Withhold records that file was left out, and why.
func (p *Report) Withhold(file, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.withheld = append(p.withheld, Withheld{File: file, Reason: reason})
}

// Summary returns the totals.
func (p *Report) Summary() Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Summary{Files: len(p.counts), Withheld: len(p.withheld)}
	for _, m := range p.counts {
		for _, n := range m {
			s.Matches += n
		}
	}
	return s
}

// JSON returns the report as redactions.json holds it: the redactions
// (file, rule, count), in the order the files were written, and the
// withheld files.
func (p *Report) JSON() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	doc := struct {
		Redactions []Redaction `json:"redactions"`
		Withheld   []Withheld  `json:"withheld"`
	}{Redactions: []Redaction{}, Withheld: append([]Withheld{}, p.withheld...)}
	for _, f := range p.order {
		rules := make([]string, 0, len(p.counts[f]))
		for r := range p.counts[f] {
			rules = append(rules, r)
		}
		slices.Sort(rules)
		for _, r := range rules {
			doc.Redactions = append(doc.Redactions, Redaction{File: f, Rule: r, Count: p.counts[f][r]})
		}
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}

// Reader returns a reader of the file name's size bytes from src, masked
// in place: the same size, each secret byte replaced by '*'. Counts go to
// rep once the line that holds them is read. The caller has checked that
// the file is text. Lines longer than the bound are masked in pieces.
func (r *Redactor) Reader(name string, size int64, src io.Reader, rep *Report) io.Reader {
	limit := min(r.bufferBytes, 1<<20)
	mr := &maskReader{br: bufio.NewReaderSize(io.LimitReader(src, size), max(limit, sniffSize)), name: name, rep: rep, left: size}
	mr.e = r.newEngine(name, maskMode, &mr.out, r.bufferBytes)
	mr.e.copyHeld = true
	if head, _ := mr.br.Peek(sniffSize); len(head) > 0 {
		mr.e.detect(head)
	}
	return mr
}

type maskReader struct {
	br   *bufio.Reader
	e    *engine
	out  bytes.Buffer
	name string
	rep  *Report
	left int64 // bytes of the file not read yet
	cont bool  // the next line continues one cut at the buffer's size
	err  error
}

func (m *maskReader) Read(p []byte) (int, error) {
	for m.out.Len() == 0 && m.err == nil {
		line, err := m.br.ReadSlice('\n')
		m.left -= int64(len(line))
		switch {
		case err == nil:
			m.e.feed(line[:len(line)-1], true, m.cont)
			m.cont = false
		case errors.Is(err, bufio.ErrBufferFull):
			m.e.feed(line, false, m.cont)
			m.cont = true
		default:
			if len(line) > 0 {
				m.e.feed(line, false, m.cont)
			}
			m.left = 0
			if err != io.EOF {
				m.err = err
			}
		}
		if m.left <= 0 {
			// The caller may stop at the file's size without reading to
			// the end, so the end is handled with the last line.
			m.e.finish()
			m.rep.Add(m.name, m.e.counts)
			if m.err == nil {
				m.err = io.EOF
			}
		}
	}
	if m.out.Len() > 0 {
		return m.out.Read(p)
	}
	return 0, m.err
}
