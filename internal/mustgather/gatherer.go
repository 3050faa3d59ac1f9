package mustgather

import (
	"context"
	"errors"
	"io"
	"time"
)

// Gatherer runs one gathering and writes what it gathers into the job's
// archive and its output into the job's log.
type Gatherer interface {
	Gather(ctx context.Context, job Job) error
}

// Job is one gathering for a Gatherer.
type Job struct {
	Gathering Gathering
	// Stop is done when the gathering must stop: its timeout passed
	// (context.Cause is ErrTimedOut) or the runner is shutting down
	// (ErrShutdown). The gatherer then stops the work and still archives
	// what was gathered, under the Gather ctx, which lasts a little longer.
	Stop context.Context
	// Archive receives the archive's entries. The runner adds
	// must-gather.logs and timestamp itself.
	Archive ArchiveWriter
	// Log receives live output; it is safe for concurrent use.
	Log io.Writer
	// Runner names the run that carries the job, as its lease does. A
	// gatherer whose work outlives its runner records it there, so that a
	// runner that re-attaches (see Reattacher) can say whom it took over
	// from.
	Runner string
}

// ArchiveWriter receives the entries of a gathering's archive as a stream.
// It is not safe for concurrent use. Entry names are relative to the
// archive root, and one that would escape it is refused.
type ArchiveWriter interface {
	// AddBytes adds a regular file named name holding b.
	AddBytes(name string, b []byte, modTime time.Time) error
	// AddTar copies the entries of the uncompressed tar stream r under
	// prefix ("" is the archive root).
	AddTar(ctx context.Context, prefix string, r io.Reader) error
	// AddTree copies the local directory root under prefix, never
	// following a link out of it.
	AddTree(ctx context.Context, root, prefix string) error
}

// Causes of Job.Stop.
var (
	ErrTimedOut = errors.New("timed out")
	ErrShutdown = errors.New("the runner shut down before the gathering finished")
)
