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
	// (context.Cause is ErrTimedOut), the runner is shutting down
	// (ErrShutdown) or someone canceled it (ErrCanceled). The gatherer then stops the work and still archives
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
	// Defer, when set, takes what removes the work's leftovers (a
	// Reattacher's work, which a runner that takes over re-attaches to),
	// for the runner to call once the archive is stored, with a context
	// and the log to report to, instead of Gather doing it before it
	// returns: a runner that dies while it uploads the archive then leaves
	// the work for the next one to re-attach to and archive again.
	Defer func(cleanup func(ctx context.Context, log io.Writer))
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
	// AddTarWith is AddTar with options.
	AddTarWith(ctx context.Context, prefix string, r io.Reader, opts TarOptions) error
	// AddTree copies the local directory root under prefix, never
	// following a link out of it.
	AddTree(ctx context.Context, root, prefix string) error
}

// TarOptions change how ArchiveWriter.AddTarWith copies a tar stream. The
// zero value copies every entry and fails on a tarball inside the stream
// that cannot be unpacked whole. Names are those in the archive (prefix
// joined, cleaned); size is 0 for anything but a regular file.
type TarOptions struct {
	// Skip, when set, reports whether an entry is in the archive already,
	// as a copy that is done again after a broken one finds it; such an
	// entry is not copied.
	Skip func(name string, size int64) bool
	// Added, when set, is called for each entry once it is in the archive
	// whole.
	Added func(name string, size int64)
	// Damaged, when set, is told of each tarball inside the stream that
	// could not be unpacked whole (garbage, truncated, or an entry that
	// would escape the archive), with why; what could be unpacked stays,
	// and the copy goes on with the next entry. Without it such a tarball
	// fails the copy.
	Damaged func(name string, err error)
	// NoUnpack stores tarballs inside the stream as files.
	NoUnpack bool
}

// ErrEntryCut is wrapped by the error for a file whose content ended or
// failed before its size: the entry is in the archive, filled up with zero
// bytes, and the archive stays well-formed.
var ErrEntryCut = errors.New("entry cut short")

// Causes of Job.Stop.
var (
	ErrTimedOut = errors.New("timed out")
	ErrShutdown = errors.New("the runner shut down before the gathering finished")
	ErrCanceled = errors.New("canceled")
)
