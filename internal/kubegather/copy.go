package kubegather

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// copyOutput streams the source dir out of the copy container into the
// archive, under a directory named after the image, and adds the gather's
// log as gather.logs beside it. It runs under ctx, which outlives a
// stopped job.
//
// A copy stream that breaks off is opened again, up to CopyAttempts
// streams in all with a pause that doubles between them, and read on from
// where it broke once its first bytes prove to be the same as those
// already read; when they are not (the output changed in between), the
// copy starts over and skips the entries already in the archive whole.
// A tarball in the output that cannot be unpacked whole is copied again as
// it is, next to what could be unpacked. Whatever happens, the archive
// stays well-formed: a copy that fails leaves in it what was copied.
func (p *podRun) copyOutput(ctx context.Context) error {
	pod := p.lastPod()
	st := containerStatus(pod, copyContainer)
	if st == nil || st.State.Running == nil {
		p.r.out.printf(p.prefix, "nothing to copy: the copy container is not running")
		return nil
	}
	gst := containerStatus(pod, gatherContainer)
	finished := gst != nil && gst.State.Terminated != nil
	cmd := copyCommand(p.dir)
	if !finished {
		cmd = copyStoppedCommand(p.dir)
	}

	p.r.archiveMu.Lock()
	defer p.r.archiveMu.Unlock()
	dir := p.r.dirName(pod, p.image, p.node)
	p.r.out.printf(p.prefix, "copying gather output into %s/", dir)

	c := &outputCopy{p: p, dir: dir, whole: map[wholeEntry]bool{}}
	c.stderr.limit = 16 << 10
	copyErr := c.copyTree(ctx, cmd)
	keepErr := c.keepDamaged(ctx)
	for line := range strings.SplitSeq(strings.TrimSpace(c.stderr.String()), "\n") {
		if line != "" {
			p.r.out.printf(p.prefix, "copy: %s", line)
		}
	}
	logErr := p.r.job.Archive.AddBytes(dir+"/gather.logs", p.gatherLog(), p.r.g.now())
	switch {
	case copyErr != nil:
		p.r.out.printf(p.prefix, "gather output copied in part: %d entries are in %s/ whole, the rest of the output is not", len(c.whole), dir)
		return copyErr
	case keepErr != nil:
		return keepErr
	case logErr != nil:
		return logErr
	}
	p.r.out.printf(p.prefix, "gather output copied")
	return nil
}

// outputCopy is the copy of one pod's output.
type outputCopy struct {
	p       *podRun
	dir     string // in the archive
	stderr  limitedBuffer
	whole   map[wholeEntry]bool // entries in the archive whole
	damaged []string            // tarballs that could not be unpacked whole
}

type wholeEntry struct {
	name string
	size int64
}

func (c *outputCopy) printf(format string, args ...any) {
	c.p.r.out.printf(c.p.prefix, format, args...)
}

// stream returns a copy stream of cmd's output with an attempts budget of
// its own.
func (c *outputCopy) stream(ctx context.Context, cmd []string, tries *int) *copyStream {
	return &copyStream{
		ctx: ctx,
		exec: func(ctx context.Context, stdout io.Writer) error {
			return c.p.r.g.exec.Exec(ctx, c.p.r.ns, c.p.name, copyContainer, cmd, stdout, &c.stderr)
		},
		tries: tries,
		wait:  c.p.r.g.cfg.PollInterval / 5,
		note:  c.printf,
	}
}

// copyTree copies cmd's tar stream into the archive.
func (c *outputCopy) copyTree(ctx context.Context, cmd []string) error {
	tries := c.p.r.g.cfg.CopyAttempts
	opts := mustgather.TarOptions{
		Skip:  func(name string, size int64) bool { return c.whole[wholeEntry{name, size}] },
		Added: func(name string, size int64) { c.whole[wholeEntry{name, size}] = true },
		Damaged: func(name string, err error) {
			if slices.Contains(c.damaged, name) {
				return
			}
			c.damaged = append(c.damaged, name)
			c.printf("%s could not be unpacked whole: %v", name, err)
		},
	}
	for {
		s := c.stream(ctx, cmd, &tries)
		err := c.p.r.job.Archive.AddTarWith(ctx, c.dir, s, opts)
		if err == nil {
			// tar pads its stream past the end marker; let it finish.
			_, err = io.Copy(io.Discard, s)
		}
		s.close()
		exitErr := s.exitErr
		if code, ok := exitCode(exitErr); ok && code == 1 && err == nil {
			// GNU tar: some files changed while they were read; the
			// stream is whole.
			exitErr = nil
		}
		switch {
		case err == nil:
			return exitErr
		case exitErr != nil:
			return fmt.Errorf("%w (archive: %w)", exitErr, err)
		case errors.Is(err, errOutputChanged) && tries > 0:
			twice := ""
			if errors.Is(err, mustgather.ErrEntryCut) {
				twice = "; the file it cut is in the archive twice, and the later, whole one is what tar extracts"
			}
			c.printf("the gather output changed since the copy began: copying it again, skipping the %d entries already copied whole%s", len(c.whole), twice)
			continue
		}
		return err
	}
}

// keepDamaged copies each tarball that could not be unpacked whole once
// more, as it is, to where it was in the output.
func (c *outputCopy) keepDamaged(ctx context.Context) error {
	var errs []error
	for _, name := range c.damaged {
		rel := strings.TrimPrefix(name, c.dir+"/")
		tries := c.p.r.g.cfg.CopyAttempts
		s := c.stream(ctx, copyFileCommand(c.p.dir, rel), &tries)
		err := c.p.r.job.Archive.AddTarWith(ctx, c.dir, s, mustgather.TarOptions{NoUnpack: true})
		if err == nil {
			_, err = io.Copy(io.Discard, s)
		}
		s.close()
		if err == nil {
			err = s.exitErr
		}
		if err != nil {
			c.printf("%s not kept as it is: %v", name, err)
			errs = append(errs, fmt.Errorf("keep damaged tarball %s: %w", name, err))
			continue
		}
		c.printf("%s kept as it is, next to what could be unpacked from it", name)
	}
	return joinErrors(errs)
}

// copyFileCommand streams one file of the source dir, rel to it, as an
// uncompressed tar.
func copyFileCommand(dir, rel string) []string {
	return []string{"tar", "cf", "-", "-C", path.Clean(dir), "./" + rel}
}

// errOutputChanged is returned by a copy stream opened again whose first
// bytes are not those already read.
var errOutputChanged = errors.New("the gather output changed since the copy began")

// errCopyStopped ends an exec whose output is no longer read.
var errCopyStopped = errors.New("copy stream no longer read")

// copyStream reads the output of a command run with exec. When the stream
// breaks off (an error that is not the command's own exit status), it runs
// the command again, while tries last, and goes on where it broke, having
// checked that the new stream starts with the same bytes (a 64-bit hash
// of them). A command that ends with a non-zero exit status ends the stream
// with io.EOF and leaves the status in exitErr.
type copyStream struct {
	ctx   context.Context
	exec  func(ctx context.Context, stdout io.Writer) error
	tries *int // streams that may still be opened
	wait  time.Duration
	note  func(format string, args ...any)

	// sum is a hash of the bytes read: maphash, several times cheaper
	// than SHA-256, which took a sixth of the copy's CPU time. It only
	// has to tell output that changed by accident, not by design: a pod
	// that means to put other bytes in the archive writes them in its
	// output.
	sum      maphash.Hash
	read     int64
	breaks   int
	cur      *execRun
	exitErr  error
	finished bool
}

// execRun is one run of the command.
type execRun struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan error
}

func (s *copyStream) start() *execRun {
	*s.tries--
	ctx, cancel := context.WithCancel(s.ctx)
	pr, pw := io.Pipe()
	e := &execRun{pr: pr, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := s.exec(ctx, pw)
		pw.CloseWithError(err) // nil: io.EOF
		e.done <- err
	}()
	return e
}

// stop ends the run and returns the command's error.
func (e *execRun) stop() error {
	e.cancel()
	e.pr.CloseWithError(errCopyStopped)
	return <-e.done
}

func (s *copyStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.finished {
			return 0, io.EOF
		}
		if s.cur == nil {
			e := s.start()
			if err := s.resume(e); err != nil {
				execErr := e.stop()
				if errors.Is(err, errOutputChanged) {
					return 0, err
				}
				if execErr == nil || errors.Is(execErr, errCopyStopped) {
					execErr = err
				}
				if err := s.retry(execErr); err != nil {
					return 0, err
				}
				continue
			}
			s.cur = e
		}
		n, err := s.cur.pr.Read(p)
		if n > 0 {
			s.sum.Write(p[:n])
			s.read += int64(n)
			return n, nil
		}
		if err == nil {
			continue
		}
		execErr := s.cur.stop()
		s.cur = nil
		if _, ok := exitCode(execErr); ok || execErr == nil {
			s.finished, s.exitErr = true, execErr
			return 0, io.EOF
		}
		if err := s.retry(execErr); err != nil {
			return 0, err
		}
	}
}

// resume reads the bytes of a new run that were read before, and checks
// that they are the same.
func (s *copyStream) resume(e *execRun) error {
	if s.read == 0 {
		return nil
	}
	var h maphash.Hash
	h.SetSeed(s.sum.Seed())
	_, err := io.CopyN(&h, e.pr, s.read)
	_, exited := exitCode(err)
	switch {
	case err == io.EOF || exited:
		return fmt.Errorf("%w: it is shorter than the %d bytes already read", errOutputChanged, s.read)
	case err != nil:
		return err
	case h.Sum64() != s.sum.Sum64():
		return fmt.Errorf("%w: its first %d bytes, already read, differ", errOutputChanged, s.read)
	}
	s.note("copy stream opened again and read on from byte %d, the same as before up to there", s.read)
	return nil
}

// retry waits before the next run after err broke a run off, or returns
// why there is none.
func (s *copyStream) retry(err error) error {
	if s.ctx.Err() != nil {
		if cause := context.Cause(s.ctx); !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return err
	}
	s.breaks++
	if *s.tries <= 0 {
		return fmt.Errorf("copy stream broke off %d times, no more attempts (MUST_GATHER_COPY_ATTEMPTS): %w", s.breaks, err)
	}
	wait := min(s.wait<<(s.breaks-1), 30*time.Second)
	s.note("copy stream broke off after %d bytes: %v; opening it again in %s (attempts left: %d)", s.read, err, wait, *s.tries)
	if !sleep(s.ctx, wait) {
		return fmt.Errorf("%w: %w", context.Cause(s.ctx), err)
	}
	return nil
}

// close ends a run still going.
func (s *copyStream) close() {
	if s.cur != nil {
		s.cur.stop()
		s.cur = nil
	}
}

// exitCode returns the exit status carried by an exec error.
func exitCode(err error) (int, bool) {
	var e interface{ ExitStatus() int }
	if errors.As(err, &e) {
		return e.ExitStatus(), true
	}
	return 0, false
}

// limitedBuffer keeps the first limit bytes written to it. It is safe for
// concurrent use.
type limitedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
