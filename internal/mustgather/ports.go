package mustgather

import (
	"context"
	"io"
	"time"
)

// Store keeps gatherings. Implementations allocate ids that are unique,
// increasing and never reused, and change records with compare-and-set so
// that concurrent writers never lose an update.
type Store interface {
	// Create allocates an id for g, stores it and returns it.
	Create(ctx context.Context, g Gathering) (Gathering, error)
	// Get returns the gathering with the id, or ErrNotFound.
	Get(ctx context.Context, id ID) (Gathering, error)
	// GetByName returns the newest gathering whose custom-name is name, or
	// ErrNotFound. It must not scan every record.
	GetByName(ctx context.Context, name string) (Gathering, error)
	// List returns the gatherings that match f, ordered by id.
	List(ctx context.Context, f Filter) ([]Gathering, error)
	// Claim moves a gathering from new to inprogress exactly once; every
	// later call returns ErrAlreadyClaimed.
	Claim(ctx context.Context, id ID, now time.Time) (Gathering, error)
	// Apply applies u to its gathering; ErrStale means it was ignored.
	Apply(ctx context.Context, u Update) (Gathering, error)
	// ApplyAt applies u only if the gathering's record is still at revision
	// rev (Gathering.Revision as the caller read it), so that a decision made
	// on what the caller read cannot overwrite a change made since: it
	// returns ErrStale when the record has changed.
	ApplyAt(ctx context.Context, u Update, rev uint64) (Gathering, error)
	// Unfinished returns the ids of gatherings that are not settled: new,
	// inprogress, or ended with their final status event perhaps not yet
	// published. A reaper finishes those whose runner is gone without
	// scanning every record. It may return ids that have been settled.
	Unfinished(ctx context.Context) ([]ID, error)
	// Settle drops an ended gathering from Unfinished. Whoever ends a
	// gathering calls it once the final status event is published.
	Settle(ctx context.Context, id ID) error
	// Cancel cancels a gathering by compare-and-set (see Gathering.Cancel),
	// so that it cannot race a claim or a final status: a new one ends at
	// once (ended is true; the caller announces it), one in progress is
	// marked for its runner to stop. It returns ErrEnded, with the
	// gathering, for one that has ended.
	Cancel(ctx context.Context, id ID, now time.Time, note string) (g Gathering, ended bool, err error)
	// Note sets the exec-output of a gathering that is still new (see
	// Gathering.Note); ErrAlreadyClaimed when it is not.
	Note(ctx context.Context, id ID, note string) error
	// Delete removes an ended gathering's record, and its custom-name from
	// the name index if the name still stands for it, so that GetByName no
	// longer finds it. With rev > 0 it deletes only if the record is still
	// at revision rev, else it returns ErrStale. It returns ErrNotEnded for a
	// gathering that is new or inprogress, and ErrNotFound for one that is
	// not there, as when another caller deleted it first. The caller deletes
	// the archive first.
	Delete(ctx context.Context, id ID, rev uint64) error
}

// Filter selects gatherings for Store.List. Zero values select everything.
type Filter struct {
	CustomName string
	Status     Status
	// Limit keeps only the Limit gatherings with the highest ids, or with
	// Paged the lowest.
	Limit int
	// After keeps only the gatherings with higher ids: a cursor, the last
	// id of the page before.
	After ID
	// Paged makes Limit keep the gatherings with the lowest ids after
	// After, so that a client pages through every gathering from After 0.
	Paged bool
}

// Match reports whether g passes the filter's field tests (not Limit).
func (f Filter) Match(g Gathering) bool {
	return (f.CustomName == "" || g.CustomName == f.CustomName) && (f.Status == "" || g.Status == f.Status)
}

// Leases records which gatherings a live runner is working on. A lease
// lapses by itself when its holder stops renewing it. Each lease names its
// holder, so that a runner never renews or releases another's lease.
type Leases interface {
	// Hold takes the lease on id for holder, or renews it if holder has it.
	// It returns ErrLeaseHeld when another holder has it.
	Hold(ctx context.Context, id ID, holder string) error
	// Release drops the lease on id if holder has it.
	Release(ctx context.Context, id ID, holder string) error
	// Held reports whether a lease on id is in force.
	Held(ctx context.Context, id ID) (bool, error)
}

// Slots caps how many gatherings run at once across every runner process.
// A slot, and a place in the queue of gatherings waiting for one, lapse
// like a lease when their holder stops renewing them, so that a dead
// runner's slot frees itself.
type Slots interface {
	// Take takes a slot for gathering id on behalf of holder, or renews
	// it if holder has it, when fewer than max are taken and no gathering
	// with a lower id waits for the free ones. Otherwise it returns an error
	// wrapping ErrNoSlot, and how many slots are taken.
	Take(ctx context.Context, id ID, holder string, max int) (running int, err error)
	// Wait enters id in the queue of gatherings waiting for a slot, or
	// renews its place; ErrLeaseHeld when another holder has it there.
	Wait(ctx context.Context, id ID, holder string) error
	// Free gives up holder's slot and place in the queue of id, if any.
	Free(ctx context.Context, id ID, holder string) error
	// Queue returns the gatherings that live runners hold waiting for a
	// slot, and how many slots are taken.
	Queue(ctx context.Context) (waiting map[ID]bool, running int, err error)
}

// Events publishes what happens to gatherings.
type Events interface {
	// Requested announces a new gathering to the runners.
	Requested(ctx context.Context, g Gathering) error
	// Requeued announces a gathering that is still new to the runners
	// again. Attempt n (1, 2, ...) is an event of its own, which reaches
	// the runners even if an earlier one was lost; it reports false when
	// attempt n was announced already (by another reaper), and is dropped.
	Requeued(ctx context.Context, g Gathering, attempt int) (bool, error)
	// Updated announces a status change.
	Updated(ctx context.Context, u Update) error
}

// ArchiveStore keeps the archives of gatherings, one object per gathering.
type ArchiveStore interface {
	// Put streams r into the object key and returns its size. It never holds
	// the whole archive in memory or on local disk, and leaves no partial
	// object behind when r fails.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Open returns the object key for reading, or ErrNotFound.
	Open(ctx context.Context, key string) (Archive, error)
	// Delete removes the object key, and any upload to it that has not
	// finished, such as one a dead runner abandoned; a missing object is
	// not an error.
	Delete(ctx context.Context, key string) error
}

// Archive is an open archive object. Seek lets HTTP serve byte ranges.
type Archive interface {
	io.ReadSeekCloser
	Size() int64
	ModTime() time.Time
}

// ArchivePrefix starts the object key of every archive.
const ArchivePrefix = "gatherings/"

// ArchiveKey returns the object key of a gathering's archive.
func ArchiveKey(id ID, archiveName string) string {
	return ArchivePrefix + id.String() + "/" + archiveName
}

// Access is what a caller asks to be allowed to do.
type Access string

const (
	// AccessAdmin is everything a gathering needs: cluster-admin.
	AccessAdmin Access = "admin"
	// AccessMetrics is reading the metrics endpoint.
	AccessMetrics Access = "metrics"
)

// Principal is the user a token belongs to.
type Principal struct {
	Username string
}

// Authorizer decides whether the bearer of a token has an access on a
// cluster. It never keeps or reveals the token.
type Authorizer interface {
	// Authorize returns the token's user when it has access a on server
	// ("" is the default cluster). It returns an error that wraps
	// ErrUnauthenticated, ErrForbidden or ErrAuthUnavailable otherwise.
	Authorize(ctx context.Context, token, server string, a Access) (Principal, error)
}

// FromNow is the revision a Changes watch starts after to see only the
// writes made from the moment it starts.
const FromNow = ^uint64(0)

// Change is one write to a gathering's record: the gathering as it was
// written, with Revision the write's revision. A Change with CaughtUp set
// carries no gathering: it marks that the watch has passed every write
// made before it started.
type Change struct {
	Gathering Gathering
	CaughtUp  bool
}

// Changes is a feed of the writes to gathering records. Revisions grow
// across all records, so that a revision says how far a reader has come.
type Changes interface {
	// Watch calls fn with each gathering whose record is written after
	// revision after, in the order of the writes, and once with a CaughtUp
	// Change as soon as it has passed every write made before the watch
	// started; of a gathering written more than once before that, only the
	// latest write may be passed. With after FromNow it passes the writes
	// made from the moment it starts, after CaughtUp. Watch runs until ctx
	// ends or fn returns an error, and returns that error (or the feed's).
	Watch(ctx context.Context, after uint64, fn func(Change) error) error
	// Revision returns the revision of the latest write, to records or
	// not: no Change has a higher one yet.
	Revision(ctx context.Context) (uint64, error)
	// WrittenAfter reports whether the feed may hold a write after revision
	// rev. false says it holds none: once Follow has passed rev, it has
	// passed every write made before WrittenAfter was called. It costs less
	// than Revision where it can, and may say true whenever it cannot tell.
	WrittenAfter(ctx context.Context, rev uint64) (bool, error)
}

// Write is one write to a Store's keys as a Records feed passes it: a
// gathering's record stored (Gathering set) or deleted (Deleted set), or
// the custom-name index pointed at an id (Name and NameID set) or dropped
// (Name set, NameID 0). Revision is the write's revision; a Write with
// only a Revision is a write to neither, which still says how far the
// feed has come. A Write with CaughtUp set carries nothing else: the feed
// has passed every write made before it started.
type Write struct {
	Revision  uint64
	Gathering *Gathering
	Deleted   ID
	Name      string
	NameID    ID
	CaughtUp  bool
}

// Records is a feed of every write to a Store, which a copy of its records
// in memory (a view) follows to stay current.
type Records interface {
	// Follow calls fn with the latest write of every key there is, then a
	// CaughtUp Write, then each write from then on in order, until ctx ends,
	// fn returns an error or the feed breaks off (as when its connection
	// drops), and returns that error (or the feed's). Of a key written more
	// than once while Follow lags (as while it catches up), only the latest
	// write may be passed: Follow then passes over the revisions of the
	// others.
	Follow(ctx context.Context, fn func(Write) error) error
	// Revision returns the revision of the latest write: once Follow has
	// passed a Write with it, or a later one, it has passed every write
	// made before Revision was called, or a later write of the same key.
	// That later write may lie past the revision if Follow passed over a
	// revision (a Write more than one past the one before) on its way: a
	// Revision called after that pass is past it.
	Revision(ctx context.Context) (uint64, error)
	// WrittenAfter reports whether the feed may hold a write after revision
	// rev. false says it holds none: once Follow has passed rev, it has
	// passed every write made before WrittenAfter was called. It costs less
	// than Revision where it can, and may say true whenever it cannot tell.
	WrittenAfter(ctx context.Context, rev uint64) (bool, error)
}
