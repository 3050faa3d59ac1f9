// Package view keeps the gatherings of a Store in memory, current through
// the Store's feed of writes (mustgather.Records), so that reads by id, by
// custom-name and lists cost no round trip per record and stay flat as
// records grow.
//
// A View is a copy, and a copy lags. Sync closes the gap for a reader: it
// asks the feed for the revision of the latest write, in a call that began
// after the reader arrived (one call shared by every reader that arrives
// before it begins), and waits until the view has applied it. The call
// first asks whether the feed holds any write after what the view has
// applied, which costs less, and is the common answer of a view that keeps
// up. A read after
// Sync therefore sees every write acknowledged before it began, whichever
// process made it, as a read of the Store would. No reader is answered on
// the strength of a call that began before it arrived, however recent:
// a write acknowledged in between would be missed.
//
// Each record is kept as the API answers it (Record.Body), built once per
// write, with the few fields reads test beside it. A record whose
// exec-output is longer than Config.OutputBytes is kept without its body:
// whoever answers with it reads it from the Store.
package view

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// ErrBehind is returned by Sync when the view could not catch up with the
// store in time (or has not started): the caller reads the store instead.
var ErrBehind = errors.New("the view of gatherings is behind the store")

// Config configures a View. A zero field takes its value from
// DefaultConfig.
type Config struct {
	// OutputBytes is the longest exec-output a record is kept in memory
	// with; a longer one is read from the store when it is answered.
	OutputBytes int
	// Wait bounds how long Sync waits for the view to catch up.
	Wait time.Duration
	// Retry is how long Run waits before following the feed again after
	// it failed.
	Retry time.Duration
	// Logger receives the failures of the feed; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults that stand in for a Config's zero
// fields.
func DefaultConfig() Config {
	return Config{OutputBytes: 4 << 10, Wait: 5 * time.Second, Retry: time.Second}
}

// Record is a gathering as the view holds it. Records are never changed
// once built: a write replaces the record, so that a reader may keep one.
type Record struct {
	ID         mustgather.ID
	CustomName string
	Status     mustgather.Status
	Server     string
	// Revision is the store's revision of the record, its ETag.
	Revision uint64
	// Body is the gathering as Encode made it; nil when its exec-output is
	// longer than Config.OutputBytes.
	Body []byte

	gen  uint64                 // the Follow that last passed it
	elem atomic.Pointer[[]byte] // Body as Element made it, once asked
}

// Element returns Body as form makes it (form appends it to dst), made by
// the first call and kept with the record for the others: the form a list
// writes a record in, so that a list of the same records again costs a
// copy. form must be the same function for every call.
func (r *Record) Element(form func(dst, body []byte) []byte) []byte {
	if b := r.elem.Load(); b != nil {
		return *b
	}
	b := form(make([]byte, 0, len(r.Body)+len(r.Body)/4), r.Body)
	r.elem.Store(&b)
	return b
}

// View is the gatherings of a store in memory. Its methods are safe for
// concurrent use; Run keeps it current.
type View struct {
	feed   mustgather.Records
	encode func(mustgather.Gathering) []byte
	cfg    Config

	mu    sync.RWMutex
	recs  []*Record // by id
	names map[string]nameEntry

	applied atomic.Uint64 // revision of the latest write applied
	// skips counts the writes passed with a revision more than one past
	// applied: the feed passed over revisions, writes that a later write
	// of the same key replaced before the feed read them (see catchUp).
	skips    atomic.Uint64
	caughtUp atomic.Bool // the first Follow has caught up
	running  atomic.Bool

	wakeMu  sync.Mutex
	wake    chan struct{} // closed when applied grows, if anyone waits
	waiting atomic.Bool

	revs revisions
}

type nameEntry struct {
	id  mustgather.ID
	gen uint64
}

// New returns a view of what feed passes, each gathering kept as encode
// makes it (as the API answers it). It holds nothing until Run runs.
func New(feed mustgather.Records, encode func(mustgather.Gathering) []byte, cfg Config) *View {
	d := DefaultConfig()
	if cfg.OutputBytes == 0 {
		cfg.OutputBytes = d.OutputBytes
	}
	if cfg.Wait <= 0 {
		cfg.Wait = d.Wait
	}
	if cfg.Retry <= 0 {
		cfg.Retry = d.Retry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := &View{feed: feed, encode: encode, cfg: cfg, names: make(map[string]nameEntry),
		revs: revisions{timeout: cfg.Wait, calls: make(chan struct{}, maxRevisionCalls)}}
	v.revs.read = v.latest
	return v
}

// latest returns the revision of the latest write, read after it was
// called. When the feed holds no write after the revision the view has
// applied, that is the one, and the feed's dearer Revision is not asked.
func (v *View) latest(ctx context.Context) (uint64, error) {
	applied := v.applied.Load()
	newer, err := v.feed.WrittenAfter(ctx, applied)
	if err != nil {
		return 0, err
	}
	if !newer {
		return applied, nil
	}
	return v.feed.Revision(ctx)
}

// Run follows the feed until ctx ends, following it again from the start
// when it fails, and returns ctx's error. Run once per View.
func (v *View) Run(ctx context.Context) error {
	if v.running.Swap(true) {
		return errors.New("view: Run called twice")
	}
	var said string // the failure last logged: said once until a Follow catches up
	for gen := uint64(1); ; gen++ {
		err := v.feed.Follow(ctx, func(w mustgather.Write) error {
			if w.CaughtUp {
				said = ""
			}
			return v.apply(gen, w)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if msg := err.Error(); msg != said {
			said = msg
			v.cfg.Logger.WarnContext(ctx, "following the store's writes failed; following them again", "err", err, "in", v.cfg.Retry)
		}
		select {
		case <-time.After(v.cfg.Retry):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready reports whether the view has caught up with the store once.
func (v *View) Ready(context.Context) error {
	if !v.caughtUp.Load() {
		return ErrBehind
	}
	return nil
}

// apply applies one write passed by the Follow numbered gen.
func (v *View) apply(gen uint64, w mustgather.Write) error {
	switch {
	case w.CaughtUp:
		v.sweep(gen)
		v.caughtUp.Store(true)
		return nil
	case w.Gathering != nil:
		v.put(v.record(gen, *w.Gathering))
	case w.Deleted != 0:
		v.remove(w.Deleted)
	case w.Name != "":
		v.mu.Lock()
		if w.NameID == 0 {
			delete(v.names, w.Name)
		} else {
			v.names[w.Name] = nameEntry{id: w.NameID, gen: gen}
		}
		v.mu.Unlock()
	}
	// A Follow that starts again passes writes the view has applied
	// already; the revision never goes back.
	if a := v.applied.Load(); w.Revision > a {
		if w.Revision > a+1 {
			v.skips.Add(1)
		}
		v.applied.Store(w.Revision)
		v.signal()
	}
	return nil
}

func (v *View) record(gen uint64, g mustgather.Gathering) *Record {
	r := &Record{ID: g.ID, CustomName: g.CustomName, Status: g.Status, Server: g.Server, Revision: g.Revision, gen: gen}
	if len(g.ExecOutput) <= v.cfg.OutputBytes {
		r.Body = v.encode(g)
		if cap(r.Body) > len(r.Body)+len(r.Body)/8 {
			// An encoder's buffer grows by doubling; what is kept for
			// as long as the record should not.
			r.Body = bytes.Clone(r.Body)
		}
	}
	return r
}

// find returns where the record with id is in v.recs, or would be.
func (v *View) find(id mustgather.ID) (int, bool) {
	return slices.BinarySearchFunc(v.recs, id, func(r *Record, id mustgather.ID) int {
		return cmpID(r.ID, id)
	})
}

func cmpID(a, b mustgather.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (v *View) put(r *Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	i, ok := v.find(r.ID)
	if ok {
		v.recs[i] = r
		return
	}
	// Ids grow, so this is nearly always an append.
	v.recs = slices.Insert(v.recs, i, r)
}

func (v *View) remove(id mustgather.ID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if i, ok := v.find(id); ok {
		v.recs = slices.Delete(v.recs, i, i+1)
	}
}

// sweep drops what a Follow numbered gen did not pass before it caught
// up: what was removed from the store while the view followed no feed.
func (v *View) sweep(gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.recs = slices.DeleteFunc(v.recs, func(r *Record) bool { return r.gen != gen })
	for name, e := range v.names {
		if e.gen != gen {
			delete(v.names, name)
		}
	}
}

// signal wakes the readers that wait for the view to catch up.
func (v *View) signal() {
	if !v.waiting.Load() {
		return
	}
	v.wakeMu.Lock()
	if v.wake != nil {
		close(v.wake)
		v.wake = nil
	}
	v.waiting.Store(false)
	v.wakeMu.Unlock()
}

// Sync waits until the view holds every write acknowledged before Sync was
// called. It returns an error wrapping ErrBehind when the view does not
// run, when the call for the latest revision fails or takes longer than
// Config.Wait (Sync may wait for the call under way before its own, so up
// to twice that), or when the view does not apply it within Config.Wait
// more; and ctx's error when ctx ends first.
func (v *View) Sync(ctx context.Context) error {
	if !v.running.Load() {
		return fmt.Errorf("%w: it does not run", ErrBehind)
	}
	// The revision call is bounded by its own timeout; a timer of this
	// reader's own is made only when the view has yet to catch up, which
	// is seldom.
	skips := v.skips.Load()
	rev, err := v.revs.latest(ctx)
	if err == nil && v.applied.Load() >= rev && v.skips.Load() == skips {
		return nil
	}
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, v.cfg.Wait)
		err = v.catchUp(wctx, rev, skips)
		cancel()
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %w", ErrBehind, err)
}

// catchUp waits until the view has applied rev, a revision read after
// the feed had passed over skips revisions, and until it has done so
// without passing over any more.
//
// The bucket keeps only the latest write of a key, so a feed that lags
// (as after a reconnect, or while it catches up from the start) finds an
// earlier write of a key gone, replaced by a later one, and passes over
// its revision. The later write may lie past rev: a key written before
// the reader arrived is in the view only once that write is. A revision
// read after the feed passed over another is past the write that replaced
// it, so after each pass the latest revision is read again and waited for.
func (v *View) catchUp(ctx context.Context, rev, skips uint64) error {
	for {
		if err := v.reach(ctx, rev); err != nil {
			return err
		}
		now := v.skips.Load()
		if now == skips {
			return nil
		}
		skips = now
		var err error
		if rev, err = v.revs.latest(ctx); err != nil {
			return err
		}
	}
}

// reach waits until the view has applied revision rev.
func (v *View) reach(ctx context.Context, rev uint64) error {
	for {
		if v.applied.Load() >= rev {
			return nil
		}
		v.wakeMu.Lock()
		if v.wake == nil {
			v.wake = make(chan struct{})
		}
		wake := v.wake
		v.waiting.Store(true)
		v.wakeMu.Unlock()
		// apply stores the revision before it looks for waiters: either it
		// sees this one, or this one sees the revision.
		if v.applied.Load() >= rev {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("at revision %d of %d: %w", v.applied.Load(), rev, ctx.Err())
		}
	}
}

// Get returns the record with id.
func (v *View) Get(id mustgather.ID) (*Record, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if i, ok := v.find(id); ok {
		return v.recs[i], true
	}
	return nil, false
}

// GetByName returns the record the custom-name index points name at, as
// the store's GetByName does: the newest gathering with that name.
func (v *View) GetByName(name string) (*Record, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	e, ok := v.names[name]
	if !ok {
		return nil, false
	}
	if i, ok := v.find(e.id); ok {
		return v.recs[i], true
	}
	return nil, false
}

// Page appends to dst the records that match f's field tests, with ids
// after after, in order of id, up to n of them, and returns it. Paging on
// from the last id of each page passes every record that exists from the
// first page to the last, in its state when its page was made.
func (v *View) Page(dst []*Record, f mustgather.Filter, after mustgather.ID, n int) []*Record {
	v.mu.RLock()
	defer v.mu.RUnlock()
	i, ok := v.find(after)
	if ok {
		i++
	}
	for ; i < len(v.recs) && n > 0; i++ {
		if r := v.recs[i]; match(f, r) {
			dst = append(dst, r)
			n--
		}
	}
	return dst
}

// Before returns the id after which the n records with the highest ids
// that match f's field tests follow: the cursor of the last n.
func (v *View) Before(f mustgather.Filter, n int) mustgather.ID {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for i := len(v.recs) - 1; i >= 0; i-- {
		if match(f, v.recs[i]) {
			if n--; n == 0 {
				return v.recs[i].ID - 1
			}
		}
	}
	return 0
}

// Len returns how many records the view holds.
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.recs)
}

func match(f mustgather.Filter, r *Record) bool {
	return (f.CustomName == "" || r.CustomName == f.CustomName) && (f.Status == "" || r.Status == f.Status)
}

// maxRevisionCalls is how many calls for the latest revision may be under
// way at once. A reader that arrives while one is under way needs another,
// begun after it arrived. One at a time, the readers of a busy replica
// share each call (about 11 readers a call under 32 clients); allowing two
// or four lets a reader wait less, but made 1.6 and 2.7 times the calls,
// and on two busy cores a GET cost 4 to 9 µs more CPU and was answered
// less often, not more.
const maxRevisionCalls = 1

// revisions asks for the latest revision on behalf of every reader that
// waits for it. A reader joins the round whose call has not begun yet, or
// opens one and makes its call itself (no hand-off to another goroutine)
// once fewer than maxRevisionCalls are under way, so that every reader that
// joined gets a revision read after it asked.
type revisions struct {
	read    func(context.Context) (uint64, error)
	timeout time.Duration // bounds each call
	calls   chan struct{} // holds a token for each call under way

	mu   sync.Mutex
	next *round // the round whose call has not begun; nil when none
}

type round struct {
	done chan struct{} // closed when rev and err are set
	rev  uint64
	err  error
}

// latest returns the revision of the latest write, read by a call that
// began after latest was called.
func (r *revisions) latest(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	rd := r.next
	lead := rd == nil
	if lead {
		rd = &round{done: make(chan struct{})}
		r.next = rd
	}
	r.mu.Unlock()
	if lead {
		select {
		case r.calls <- struct{}{}:
			r.call(rd)
		case <-ctx.Done():
			// The readers that joined still wait for this round.
			go func() {
				r.calls <- struct{}{}
				r.call(rd)
			}()
			return 0, ctx.Err()
		}
	}
	select {
	case <-rd.done:
		return rd.rev, rd.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// call answers rd, holding a token of r.calls, which it gives back.
func (r *revisions) call(rd *round) {
	r.mu.Lock()
	r.next = nil // begun: a reader from now on needs a round of its own
	r.mu.Unlock()
	// Not the leader's context: the readers that joined need the answer
	// even when the leader's client has gone away.
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	rd.rev, rd.err = r.read(ctx)
	cancel()
	<-r.calls
	close(rd.done)
}
