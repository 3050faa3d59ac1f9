// Package jsstore keeps gatherings and runner leases in NATS JetStream
// key-value buckets. Its Store implements mustgather.Store and
// mustgather.Leases.
//
// Ids come from a stream of their own, <bucket>-ids, whose one subject gets
// a small message for each id: the stream's sequence number is the id. The
// server hands out sequence numbers one after another, so thousands of
// concurrent Creates get unique, increasing ids without retrying a
// compare-and-set on a shared counter. The stream keeps only its last
// message; its sequence survives restarts.
//
// The gatherings bucket holds these keys:
//
//	meta.last-id      the last id of stores before the ids stream; read once
//	                  to start the stream after it
//	g.<id>            the gathering, as JSON, with the Seq of its last update
//	name.<b64(name)>  the id of the newest gathering with that custom-name
//	open.<id>         present until the gathering is settled: it has ended
//	                  and its final status event is published
//
// Every change of g.<id> and name.<...> is a compare-and-set on
// the key's revision, retried on conflict, so that several processes can
// share a bucket without losing an update and without any state in memory.
// b64 is base64.RawURLEncoding, whose alphabet is valid in a key.
//
// The leases bucket holds one key per leased gathering id, whose value names
// the holder; taking, renewing and releasing are compare-and-set on it, so
// a runner never touches another's lease. The bucket's TTL removes a key
// that has not been written for that long, which is how a lease lapses when
// its runner stops renewing it.
package jsstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// minLeaseTTL is the smallest MaxAge nats-server accepts for a stream.
const minLeaseTTL = 100 * time.Millisecond

// Keys and key prefixes of the gatherings bucket.
const (
	keyLastID    = "meta.last-id"
	prefixRecord = "g."
	prefixName   = "name."
	prefixOpen   = "open."
)

// Config configures a Store. A zero field takes its value from
// DefaultConfig.
type Config struct {
	// Bucket is the KV bucket of gatherings.
	Bucket string
	// LeaseBucket is the KV bucket of runner leases. It must differ from
	// Bucket.
	LeaseBucket string
	// SlotBucket is the KV bucket of run slots (see Slots). It must differ
	// from Bucket and LeaseBucket.
	SlotBucket string
	// LeaseTTL is how long after its last Hold a lease lapses; at least
	// 100ms (the smallest bucket TTL nats-server accepts).
	LeaseTTL time.Duration
	// Replicas is the number of copies of each bucket in a cluster.
	Replicas int
	// Storage is where the buckets are kept; the zero value is
	// jetstream.FileStorage.
	Storage jetstream.StorageType
}

// DefaultConfig returns the defaults documented in the README, which
// also stand in for the zero fields of a Config.
func DefaultConfig() Config {
	return Config{Bucket: "must-gather", LeaseBucket: "must-gather-leases", SlotBucket: "must-gather-slots", LeaseTTL: 30 * time.Second, Replicas: 1}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Bucket == "" {
		c.Bucket = d.Bucket
	}
	if c.LeaseBucket == "" {
		c.LeaseBucket = d.LeaseBucket
	}
	if c.SlotBucket == "" {
		c.SlotBucket = d.SlotBucket
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = d.LeaseTTL
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	switch {
	case c.Bucket == c.LeaseBucket:
		return c, fmt.Errorf("bucket and lease bucket are both %q", c.Bucket)
	case c.SlotBucket == c.Bucket || c.SlotBucket == c.LeaseBucket:
		return c, fmt.Errorf("slot bucket %q is also another bucket", c.SlotBucket)
	case c.LeaseTTL < minLeaseTTL:
		return c, fmt.Errorf("lease TTL %s is below the minimum of %s", c.LeaseTTL, minLeaseTTL)
	case c.Replicas < 0:
		return c, fmt.Errorf("replicas %d is negative", c.Replicas)
	}
	return c, nil
}

// Store keeps gatherings and leases in JetStream KV buckets. It keeps no
// data of its own: any number of Stores, in any number of processes, may
// share the same buckets. Its methods are safe for concurrent use.
type Store struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	leases    jetstream.KeyValue
	ids       jetstream.Stream
	idSubject string
	names     nameWrites
	// records is the bucket's stream, read by WrittenAfter; nil when the
	// bucket is replicated, where the read could be a lagging replica's.
	records jetstream.Stream
}

var (
	_ mustgather.Store  = (*Store)(nil)
	_ mustgather.Leases = (*Store)(nil)
)

// New returns a Store on the buckets that cfg names, creating them, or
// updating their configuration, as needed.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("jsstore config: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "must-gather gatherings",
		History:     1,
		Replicas:    cfg.Replicas,
		Storage:     cfg.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
	}
	leases, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.LeaseBucket,
		Description: "must-gather runner leases",
		History:     1,
		TTL:         cfg.LeaseTTL,
		Replicas:    cfg.Replicas,
		Storage:     cfg.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", cfg.LeaseBucket, err)
	}
	s := &Store{js: js, kv: boundedKV{kv}, leases: boundedKV{leases}, idSubject: "_MUST_GATHER_IDS." + cfg.Bucket}
	if s.ids, err = s.openIDs(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Replicas <= 1 {
		if s.records, err = js.Stream(ctx, "KV_"+cfg.Bucket); err != nil {
			return nil, fmt.Errorf("open the stream of bucket %s: %w", cfg.Bucket, err)
		}
	}
	return s, nil
}

// openIDs opens the stream that hands out ids, creating it, after the last
// id a store without it handed out, if it is not there.
func (s *Store) openIDs(ctx context.Context, cfg Config) (jetstream.Stream, error) {
	name := cfg.Bucket + "-ids"
	st, err := s.js.Stream(ctx, name)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	last, err := s.legacyLastID(ctx)
	if err != nil {
		return nil, err
	}
	st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "must-gather ids: the sequence is the last id handed out",
		Subjects:    []string{s.idSubject},
		MaxMsgs:     1,
		Discard:     jetstream.DiscardOld,
		FirstSeq:    uint64(last) + 1,
		Replicas:    cfg.Replicas,
		Storage:     cfg.Storage,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another process created it first.
		return s.js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", name, err)
	}
	return st, nil
}

// legacyLastID returns the last id in meta.last-id, or 0 when there is none.
func (s *Store) legacyLastID(ctx context.Context) (mustgather.ID, error) {
	e, err := s.kv.Get(ctx, keyLastID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", keyLastID, err)
	}
	last, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s holds %q: %w", keyLastID, e.Value(), err)
	}
	return mustgather.ID(last), nil
}

// Ping reports whether both buckets can be reached; it reads their status
// and nothing else.
func (s *Store) Ping(ctx context.Context) error {
	for _, kv := range []jetstream.KeyValue{s.kv, s.leases} {
		if _, err := kv.Status(ctx); err != nil {
			return fmt.Errorf("ping bucket %s: %w", kv.Bucket(), err)
		}
	}
	return nil
}

// record is the stored form of a gathering. Gathering.Seq, Reason and
// Preface are not part of the API object, so they are kept beside it.
type record struct {
	Gathering mustgather.Gathering `json:"gathering"`
	Seq       uint64               `json:"seq"`
	Reason    string               `json:"reason,omitempty"`
	Preface   string               `json:"preface,omitempty"`
	Cancel    bool                 `json:"cancel,omitempty"`
}

func encode(g mustgather.Gathering) ([]byte, error) {
	return json.Marshal(record{Gathering: g, Seq: g.Seq, Reason: g.Reason, Preface: g.Preface, Cancel: g.CancelRequested})
}

// decode reads a record stored at revision rev.
func decode(data []byte, rev uint64) (mustgather.Gathering, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return mustgather.Gathering{}, fmt.Errorf("decode record: %w", err)
	}
	r.Gathering.Seq, r.Gathering.Reason, r.Gathering.Preface, r.Gathering.Revision = r.Seq, r.Reason, r.Preface, rev
	r.Gathering.CancelRequested = r.Cancel
	return r.Gathering, nil
}

func recordKey(id mustgather.ID) string { return prefixRecord + id.String() }
func openKey(id mustgather.ID) string   { return prefixOpen + id.String() }
func nameKey(name string) string {
	return prefixName + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// conflict reports whether err is a lost compare-and-set: Create of a key
// that exists, or Update with a revision that is no longer the latest.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// retry runs attempt until it returns something other than a lost
// compare-and-set, or ctx ends. Each lost attempt means another writer
// succeeded, so the loop always makes progress.
func retry(ctx context.Context, attempt func() error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := attempt(); !conflict(err) {
			return err
		}
	}
}

// nextID allocates an id: the sequence number of a message published to
// the ids stream. An id whose gathering is never written (the process died,
// or the write failed, or the answer to the publish was lost) is skipped,
// not reused.
func (s *Store) nextID(ctx context.Context) (mustgather.ID, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	ack, err := s.js.Publish(ctx, s.idSubject, nil, jetstream.WithExpectStream(s.ids.CachedInfo().Config.Name))
	if err != nil {
		return 0, err
	}
	return mustgather.ID(ack.Sequence), nil
}

// Create allocates the next id for g, stores g under it and returns it.
// g.ID is ignored. An unfinished gathering is entered in the index that
// Unfinished reads before its record is written, so that the index holds
// it even if this process dies in between.
func (s *Store) Create(ctx context.Context, g mustgather.Gathering) (mustgather.Gathering, error) {
	id, err := s.nextID(ctx)
	if err != nil {
		return mustgather.Gathering{}, fmt.Errorf("create gathering: allocate id: %w", err)
	}
	g.ID = id
	data, err := encode(g)
	if err != nil {
		return mustgather.Gathering{}, fmt.Errorf("create gathering %d: %w", id, err)
	}
	if !g.Status.Terminal() {
		if _, err := s.kv.Put(ctx, openKey(id), nil); err != nil {
			return mustgather.Gathering{}, fmt.Errorf("create gathering %d: index as unfinished: %w", id, err)
		}
	}
	// A failed write keeps its entry in the unfinished index: the write may
	// have succeeded with only its acknowledgement lost.
	rev, err := s.kv.Create(ctx, recordKey(id), data)
	if err != nil {
		return mustgather.Gathering{}, fmt.Errorf("create gathering %d: %w", id, err)
	}
	g.Revision = rev
	if g.CustomName != "" {
		if err := s.indexName(ctx, g.CustomName, id); err != nil {
			return mustgather.Gathering{}, fmt.Errorf("create gathering %d: index custom-name: %w", id, err)
		}
	}
	return g, nil
}

// indexName points the name index of name at id unless it already points at
// a newer gathering, so that the highest id wins whatever order concurrent
// Creates finish in. It runs after the record is written, so the index never
// points at a missing record.
func (s *Store) indexName(ctx context.Context, name string, id mustgather.ID) error {
	return s.names.index(ctx, name, id, func(ctx context.Context, id mustgather.ID) error { return s.writeName(ctx, name, id) })
}

// writeName is one index write of indexName.
func (s *Store) writeName(ctx context.Context, name string, id mustgather.ID) error {
	key := nameKey(name)
	val := []byte(id.String())
	return retry(ctx, func() error {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = s.kv.Create(ctx, key, val)
			return err
		}
		if err != nil {
			return err
		}
		if cur, ok := mustgather.ParseID(string(e.Value())); ok && cur >= id {
			return nil
		}
		_, err = s.kv.Update(ctx, key, val, e.Revision())
		return err
	})
}

// load returns the gathering with the id and the revision of its record,
// or an error wrapping mustgather.ErrNotFound.
func (s *Store) load(ctx context.Context, id mustgather.ID) (mustgather.Gathering, uint64, error) {
	e, err := s.kv.Get(ctx, recordKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return mustgather.Gathering{}, 0, mustgather.ErrNotFound
	}
	if err != nil {
		return mustgather.Gathering{}, 0, err
	}
	g, err := decode(e.Value(), e.Revision())
	return g, e.Revision(), err
}

// Get returns the gathering with the id, or an error wrapping
// mustgather.ErrNotFound.
func (s *Store) Get(ctx context.Context, id mustgather.ID) (mustgather.Gathering, error) {
	g, _, err := s.load(ctx, id)
	if err != nil {
		return mustgather.Gathering{}, fmt.Errorf("get gathering %d: %w", id, err)
	}
	return g, nil
}

// GetByName returns the gathering with the highest id whose custom-name is
// name, or an error wrapping mustgather.ErrNotFound. It reads the name index
// and one record. Gatherings without a custom-name are not indexed, so an
// empty name is never found.
func (s *Store) GetByName(ctx context.Context, name string) (mustgather.Gathering, error) {
	if name == "" {
		return mustgather.Gathering{}, fmt.Errorf("get gathering by empty custom-name: %w", mustgather.ErrNotFound)
	}
	e, err := s.kv.Get(ctx, nameKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		err = mustgather.ErrNotFound
	}
	if err != nil {
		return mustgather.Gathering{}, fmt.Errorf("get gathering by custom-name %q: %w", name, err)
	}
	id, ok := mustgather.ParseID(string(e.Value()))
	if !ok {
		return mustgather.Gathering{}, fmt.Errorf("get gathering by custom-name %q: index holds %q", name, e.Value())
	}
	g, _, err := s.load(ctx, id)
	if err != nil {
		return mustgather.Gathering{}, fmt.Errorf("get gathering by custom-name %q: id %d: %w", name, id, err)
	}
	return g, nil
}

// List returns the gatherings that match f, ordered by id; with f.Limit > 0
// only the f.Limit of them with the highest ids, or with f.Paged the
// lowest. It holds every gathering
// created before the call began.
//
// It reads every record through one watcher, which streams the latest
// value of each key, rather than asking for the records one by one. A
// watcher is not a snapshot: a record rewritten while it runs can be left
// out of what it delivers before it says it is done. So List reads the last
// id handed out first, and gets each id up to it that the watcher delivered
// neither as a record nor as deleted, one by one: a few, even under load.
//
// Decoding JSON, not reading, bounds how fast a long list is made, so List
// decodes in parallel, and in full only the records it returns: a filter is
// tested on the custom-name and status alone, and the Limit is applied
// before the full decode.
func (s *Store) List(ctx context.Context, f mustgather.Filter) ([]mustgather.Gathering, error) {
	last, err := s.lastID(ctx)
	if err != nil {
		return nil, fmt.Errorf("list gatherings: %w", err)
	}
	type entry struct {
		data []byte
		rev  uint64
	}
	// A record written while the watcher runs may come twice; the later
	// value is the newer one.
	raw := make(map[mustgather.ID]entry)
	deleted := make(map[mustgather.ID]bool)
	err = eachLatest(ctx, s.kv, prefixRecord+"*", true, func(e jetstream.KeyValueEntry) error {
		id, ok := mustgather.ParseID(strings.TrimPrefix(e.Key(), prefixRecord))
		if !ok {
			return fmt.Errorf("key %s does not name an id", e.Key())
		}
		if e.Operation() != jetstream.KeyValuePut {
			delete(raw, id)
			deleted[id] = true
			return nil
		}
		delete(deleted, id)
		raw[id] = entry{e.Value(), e.Revision()}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list gatherings: %w", err)
	}
	for id := f.After + 1; id <= last; id++ {
		if _, ok := raw[id]; ok || deleted[id] {
			continue
		}
		e, err := s.kv.Get(ctx, recordKey(id))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			// Deleted, or an id whose creator died before writing it.
		case err != nil:
			return nil, fmt.Errorf("list gatherings: get %d: %w", id, err)
		default:
			raw[id] = entry{e.Value(), e.Revision()}
		}
	}
	ids := slices.Sorted(maps.Keys(raw))
	if f.After > 0 {
		first, _ := slices.BinarySearch(ids, f.After+1)
		ids = ids[first:]
	}
	if f.CustomName != "" || f.Status != "" {
		keep := make([]bool, len(ids))
		err := parallel(len(ids), func(i int) error {
			var err error
			keep[i], err = match(f, raw[ids[i]].data)
			if err != nil {
				return fmt.Errorf("gathering %d: %w", ids[i], err)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list gatherings: %w", err)
		}
		matched := ids[:0]
		for i, id := range ids {
			if keep[i] {
				matched = append(matched, id)
			}
		}
		ids = matched
	}
	switch {
	case f.Limit <= 0 || len(ids) <= f.Limit:
	case f.Paged:
		ids = ids[:f.Limit]
	default:
		ids = ids[len(ids)-f.Limit:]
	}
	list := make([]mustgather.Gathering, len(ids))
	err = parallel(len(ids), func(i int) error {
		var err error
		e := raw[ids[i]]
		list[i], err = decode(e.data, e.rev)
		if err != nil {
			return fmt.Errorf("gathering %d: %w", ids[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list gatherings: %w", err)
	}
	return list, nil
}

// lastID returns the last id handed out, or 0 when there is none.
func (s *Store) lastID(ctx context.Context) (mustgather.ID, error) {
	info, err := s.ids.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the last id: %w", err)
	}
	return mustgather.ID(info.State.LastSeq), nil
}

// match reports whether the record passes the field tests of f, decoding
// only the fields they test.
func match(f mustgather.Filter, data []byte) (bool, error) {
	var r struct {
		Gathering struct {
			CustomName string            `json:"custom-name"`
			Status     mustgather.Status `json:"status"`
		} `json:"gathering"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return false, fmt.Errorf("decode record: %w", err)
	}
	return f.Match(mustgather.Gathering{CustomName: r.Gathering.CustomName, Status: r.Gathering.Status}), nil
}

// parallelChunk is the fewest calls worth a goroutine of their own.
const parallelChunk = 256

// parallel calls fn(i) for every i in [0, n), spread over up to GOMAXPROCS
// goroutines, each calling it for one run of i, and returns the errors.
func parallel(n int, fn func(i int) error) error {
	workers := max(1, min(runtime.GOMAXPROCS(0), n/parallelChunk))
	size := (n + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*size, min((w+1)*size, n)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				if err := fn(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Claim moves the gathering from new to inprogress at now, by
// compare-and-set so that of any number of concurrent claims exactly one
// succeeds. The others get an error wrapping mustgather.ErrAlreadyClaimed,
// with the gathering as it is.
func (s *Store) Claim(ctx context.Context, id mustgather.ID, now time.Time) (mustgather.Gathering, error) {
	out, err := s.modify(ctx, id, func(g mustgather.Gathering) (mustgather.Gathering, error) { return g.Claim(now) })
	if err != nil {
		return out, fmt.Errorf("claim gathering %d: %w", id, err)
	}
	return out, nil
}

// Apply applies u to its gathering by compare-and-set, so that concurrent
// updates end at the one with the highest Seq whatever order they arrive
// in. An update the gathering already holds, an older one, or any update to
// an ended gathering is ignored: Apply returns the gathering as it is and an
// error wrapping mustgather.ErrStale. An ended gathering stays in
// Unfinished until Settle.
func (s *Store) Apply(ctx context.Context, u mustgather.Update) (mustgather.Gathering, error) {
	out, err := s.modify(ctx, u.ID, applying(u))
	if err != nil {
		return out, fmt.Errorf("apply update %d to gathering %d: %w", u.Seq, u.ID, err)
	}
	return out, nil
}

// ApplyAt applies u only if the record is still at revision rev: one
// compare-and-set, not retried. When the record has changed it returns the
// gathering as it is now and an error wrapping mustgather.ErrStale.
func (s *Store) ApplyAt(ctx context.Context, u mustgather.Update, rev uint64) (mustgather.Gathering, error) {
	out, err := s.change(ctx, u.ID, rev, applying(u))
	if conflict(err) {
		// Read what won, for the caller to see.
		if now, _, lerr := s.load(ctx, u.ID); lerr == nil {
			out = now
		}
		err = mustgather.ErrStale
	}
	if err != nil {
		return out, fmt.Errorf("apply update %d to gathering %d at revision %d: %w", u.Seq, u.ID, rev, err)
	}
	return out, nil
}

func applying(u mustgather.Update) func(mustgather.Gathering) (mustgather.Gathering, error) {
	return func(g mustgather.Gathering) (mustgather.Gathering, error) { return g.Apply(u) }
}

// modify changes the record of id with fn, reading it again and calling fn
// again for as long as another writer changes it in between.
func (s *Store) modify(ctx context.Context, id mustgather.ID, fn func(mustgather.Gathering) (mustgather.Gathering, error)) (mustgather.Gathering, error) {
	var out mustgather.Gathering
	err := retry(ctx, func() error {
		var err error
		out, err = s.change(ctx, id, 0, fn)
		return err
	})
	return out, err
}

// change loads the record of id, passes it to fn, and writes what fn
// returns back over the revision it read; with rev > 0, only if that is
// rev. It returns the gathering as it was read when fn fails or the write
// does.
func (s *Store) change(ctx context.Context, id mustgather.ID, rev uint64, fn func(mustgather.Gathering) (mustgather.Gathering, error)) (mustgather.Gathering, error) {
	g, cur, err := s.load(ctx, id)
	if err != nil {
		return g, err
	}
	if rev != 0 && cur != rev {
		return g, mustgather.ErrStale
	}
	next, err := fn(g)
	if err != nil {
		return g, err
	}
	if next.Revision, err = s.update(ctx, next, cur); err != nil {
		return g, err
	}
	return next, nil
}

// Settle drops id from the unfinished index. Reading first keeps repeated
// calls from writing a delete marker each.
func (s *Store) Settle(ctx context.Context, id mustgather.ID) error {
	_, err := s.kv.Get(ctx, openKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err == nil {
		err = s.kv.Delete(ctx, openKey(id))
	}
	if err != nil {
		return fmt.Errorf("settle gathering %d: %w", id, err)
	}
	return nil
}

// Delete removes the record of an ended gathering by compare-and-set on its
// revision (rev if it is not 0, else the one it reads), then its name
// index entry if that still holds this id, and its unfinished index entry.
// Of several callers deleting the same gathering at once, one succeeds and
// the others get an error wrapping mustgather.ErrNotFound (or ErrStale
// with rev). A Delete that dies between the record and the index entries
// leaves entries that point at no record: GetByName answers ErrNotFound
// until a new gathering takes the name, and Unfinished may list the id,
// as it may after a failed Create.
func (s *Store) Delete(ctx context.Context, id mustgather.ID, rev uint64) error {
	g, cur, err := s.load(ctx, id)
	switch {
	case err != nil:
		return fmt.Errorf("delete gathering %d: %w", id, err)
	case rev != 0 && cur != rev:
		return fmt.Errorf("delete gathering %d: record at revision %d, not %d: %w", id, cur, rev, mustgather.ErrStale)
	case !g.Status.Terminal():
		return fmt.Errorf("delete gathering %d: it is %s: %w", id, g.Status, mustgather.ErrNotEnded)
	}
	err = s.kv.Delete(ctx, recordKey(id), jetstream.LastRevision(cur))
	if conflict(err) {
		if rev != 0 {
			return fmt.Errorf("delete gathering %d: %w", id, mustgather.ErrStale)
		}
		// Ended records are not rewritten: another Delete won.
		return fmt.Errorf("delete gathering %d: %w", id, mustgather.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete gathering %d: %w", id, err)
	}
	if err := s.unindex(ctx, g); err != nil {
		return fmt.Errorf("delete gathering %d: %w", id, err)
	}
	return nil
}

// unindex removes g's entry from the unfinished index, and its name entry
// if that still holds g's id: a newer gathering with the name keeps it.
func (s *Store) unindex(ctx context.Context, g mustgather.Gathering) error {
	if err := s.Settle(ctx, g.ID); err != nil {
		return err
	}
	if g.CustomName == "" {
		return nil
	}
	key := nameKey(g.CustomName)
	return retry(ctx, func() error {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("custom-name index: %w", err)
		}
		if cur, ok := mustgather.ParseID(string(e.Value())); !ok || cur != g.ID {
			return nil
		}
		err = s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		if err != nil && !conflict(err) {
			return fmt.Errorf("custom-name index: %w", err)
		}
		return err
	})
}

// update writes g over the record at revision rev and returns the new
// revision; it fails with jetstream.ErrKeyRevisionMismatch when another
// writer got there first.
func (s *Store) update(ctx context.Context, g mustgather.Gathering, rev uint64) (uint64, error) {
	data, err := encode(g)
	if err != nil {
		return 0, err
	}
	return s.kv.Update(ctx, recordKey(g.ID), data, rev)
}

// Unfinished returns, in order, the ids of gatherings that are not
// settled. It reads only the small index of unfinished gatherings. The list
// may hold an id that has ended and not yet been settled, or, if a process
// died between writing the index and the record, an id that Get does not
// find.
func (s *Store) Unfinished(ctx context.Context) ([]mustgather.ID, error) {
	var ids []mustgather.ID
	err := eachLatest(ctx, s.kv, prefixOpen+"*", false, func(e jetstream.KeyValueEntry) error {
		id, ok := mustgather.ParseID(strings.TrimPrefix(e.Key(), prefixOpen))
		if !ok {
			return fmt.Errorf("key %s does not name an id", e.Key())
		}
		ids = append(ids, id)
		return nil
	}, jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("list unfinished gatherings: %w", err)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// errWatcherClosed is returned when a watcher ends before it has delivered
// every key, as when the connection closes.
var errWatcherClosed = errors.New("watcher closed before the last key")

// eachLatest calls fn with the latest value of every key that matches
// keys, and returns when all have been delivered. Deleted keys are skipped
// unless withDeletes is set, when fn gets their delete markers.
func eachLatest(ctx context.Context, kv jetstream.KeyValue, keys string, withDeletes bool, fn func(jetstream.KeyValueEntry) error, opts ...jetstream.WatchOpt) error {
	if !withDeletes {
		opts = append(opts, jetstream.IgnoreDeletes())
	}
	w, err := kv.Watch(ctx, keys, opts...)
	if err != nil {
		return err
	}
	defer stopWatcher(w)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errWatcherClosed
			}
			if e == nil {
				// The watcher has delivered the latest value of every key.
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stopWatcher stops w and drains its channel. The watcher's callback blocks
// while the channel is full, and the channel is closed only after the
// callback returns, so without the drain a watcher stopped early would leave
// a goroutine blocked forever. The drain ends when the channel closes.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
}

// Hold takes the lease on id for holder, or renews it if holder has it: it
// then lapses LeaseTTL later. It returns an error wrapping
// mustgather.ErrLeaseHeld when another holder has it.
func (s *Store) Hold(ctx context.Context, id mustgather.ID, holder string) error {
	key := id.String()
	err := retry(ctx, func() error {
		e, err := s.leases.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = s.leases.Create(ctx, key, []byte(holder))
			return err
		}
		if err != nil {
			return err
		}
		if string(e.Value()) != holder {
			return mustgather.ErrLeaseHeld
		}
		_, err = s.leases.Update(ctx, key, []byte(holder), e.Revision())
		return err
	})
	if err != nil {
		return fmt.Errorf("hold lease on gathering %d: %w", id, err)
	}
	return nil
}

// Release drops the lease on id if holder has it. Releasing a lease that is
// not held, or held by another, changes nothing and is not an error.
func (s *Store) Release(ctx context.Context, id mustgather.ID, holder string) error {
	key := id.String()
	err := retry(ctx, func() error {
		e, err := s.leases.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil || string(e.Value()) != holder {
			return err
		}
		return s.leases.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	})
	if err != nil {
		return fmt.Errorf("release lease on gathering %d: %w", id, err)
	}
	return nil
}

// Held reports whether a lease on id is in force: held, not released, and
// renewed within LeaseTTL.
func (s *Store) Held(ctx context.Context, id mustgather.ID) (bool, error) {
	_, err := s.leases.Get(ctx, id.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check lease on gathering %d: %w", id, err)
	}
	return true, nil
}

var _ mustgather.Changes = (*Store)(nil)

// Revision returns the revision of the latest write to the bucket.
func (s *Store) Revision(ctx context.Context) (uint64, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the revision of bucket %s: %w", s.kv.Bucket(), err)
	}
	kvs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, fmt.Errorf("read the revision of bucket %s: status of type %T", s.kv.Bucket(), st)
	}
	return kvs.StreamInfo().State.LastSeq, nil
}

// WrittenAfter reports whether the bucket holds a write after revision
// rev: one get of the first message after it, which the stream's server
// answers directly, without the JSON of the stream info that Revision
// reads. A replicated bucket's get may be answered by a replica that lags
// the leader, so there it always says true, for the caller to read the
// Revision.
func (s *Store) WrittenAfter(ctx context.Context, rev uint64) (bool, error) {
	if s.records == nil {
		return true, nil
	}
	_, err := s.records.GetMsg(ctx, rev+1, jetstream.WithGetMsgSubject("$KV."+s.kv.Bucket()+".>"))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read bucket %s after revision %d: %w", s.kv.Bucket(), rev, err)
	}
	return true, nil
}

// Watch calls fn with each gathering whose record is written after
// revision after (its entry's revision in the bucket), as
// mustgather.Changes says. The bucket keeps one revision per key, so a
// watch that resumes from a revision sees the latest write of each record
// written since, in the order of those writes. One watcher serves a whole
// watch: an ordered consumer, which NATS recreates from where it was
// after a reconnect; the watch ends with an error only if the connection
// closes.
func (s *Store) Watch(ctx context.Context, after uint64, fn func(mustgather.Change) error) error {
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	live := after == mustgather.FromNow
	if live {
		opts = append(opts, jetstream.UpdatesOnly())
	} else {
		// The stream's sequences start at 1: after 0 is every record.
		opts = append(opts, jetstream.ResumeFromRevision(after+1))
	}
	w, err := s.kv.Watch(ctx, prefixRecord+"*", opts...)
	if err != nil {
		return fmt.Errorf("watch gathering records: %w", err)
	}
	defer stopWatcher(w)
	if live {
		// An updates-only watcher sends no marker: it starts caught up
		// once its consumer exists, which it does when Watch returns.
		if err := fn(mustgather.Change{CaughtUp: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				// The watcher's subscription ends with ctx too.
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("watch gathering records: %w", errWatcherClosed)
			}
			var c mustgather.Change
			if e == nil {
				// The watcher has delivered what was there when it started.
				c.CaughtUp = true
			} else if c.Gathering, err = decode(e.Value(), e.Revision()); err != nil {
				return fmt.Errorf("watch gathering records: %s at revision %d: %w", e.Key(), e.Revision(), err)
			}
			if err := fn(c); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var _ mustgather.Records = (*Store)(nil)

// errConnectionLost is returned by Follow when the connection to NATS drops.
var errConnectionLost = errors.New("the connection to NATS dropped")

// Follow passes every write to the gatherings bucket, as mustgather.Records
// says: records stored and deleted, the custom-name index, and, as bare
// revisions, the other keys. Like Watch it runs on one ordered consumer,
// but only while the connection stays up: a restarted server has lost the
// consumer, which NATS makes again only at its next heartbeat check, ten
// seconds or more later, and then resumes past writes it finds replaced.
// Follow instead ends when the connection drops, for its caller to follow
// again, from the latest write of every key, as soon as the server is
// back.
//
// The CaughtUp Write is passed only once the watcher has delivered the
// latest write of every key and a write at least as recent as the latest
// one there was when Follow began, so that a caller that drops what it
// has not been passed by then drops nothing that exists.
func (s *Store) Follow(ctx context.Context, fn func(mustgather.Write) error) error {
	nc := s.js.Conn()
	lost := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer nc.RemoveStatusListener(lost)
	if !nc.IsConnected() {
		return fmt.Errorf("follow bucket %s: %w", s.kv.Bucket(), errConnectionLost)
	}
	rctx, cancel := bound(ctx)
	last, err := s.Revision(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("follow bucket %s: %w", s.kv.Bucket(), err)
	}
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("follow bucket %s: %w", s.kv.Bucket(), err)
	}
	defer stopWatcher(w)
	var seen uint64 // the latest revision passed
	marked, caughtUp := false, false
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("follow bucket %s: %w", s.kv.Bucket(), errWatcherClosed)
			}
			if e == nil {
				marked = true
			} else {
				wr, err := written(e)
				if err != nil {
					return fmt.Errorf("follow bucket %s: %s at revision %d: %w", s.kv.Bucket(), e.Key(), e.Revision(), err)
				}
				if err := fn(wr); err != nil {
					return err
				}
				seen = max(seen, e.Revision())
			}
			if marked && !caughtUp && seen >= last {
				caughtUp = true
				if err := fn(mustgather.Write{CaughtUp: true}); err != nil {
					return err
				}
			}
		case <-lost:
			return fmt.Errorf("follow bucket %s: %w", s.kv.Bucket(), errConnectionLost)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// written reads a write to the gatherings bucket.
func written(e jetstream.KeyValueEntry) (mustgather.Write, error) {
	w := mustgather.Write{Revision: e.Revision()}
	put := e.Operation() == jetstream.KeyValuePut
	key := e.Key()
	switch {
	case strings.HasPrefix(key, prefixRecord):
		id, ok := mustgather.ParseID(strings.TrimPrefix(key, prefixRecord))
		if !ok {
			return w, errors.New("the key names no id")
		}
		if !put {
			w.Deleted = id
			return w, nil
		}
		g, err := decode(e.Value(), e.Revision())
		if err != nil {
			return w, err
		}
		w.Gathering = &g
	case strings.HasPrefix(key, prefixName):
		name, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, prefixName))
		if err != nil {
			return w, fmt.Errorf("the key names no custom-name: %w", err)
		}
		w.Name = string(name)
		if put {
			id, ok := mustgather.ParseID(string(e.Value()))
			if !ok {
				return w, fmt.Errorf("the custom-name index holds %q", e.Value())
			}
			w.NameID = id
		}
	}
	return w, nil
}
