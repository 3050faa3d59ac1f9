package jsstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// watched runs st.Watch from after in the background and returns its
// changes, as a channel closed when the watch ends, and a function that
// stops it.
func watched(t *testing.T, st *Store, after uint64) (<-chan mustgather.Change, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan mustgather.Change, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(changes)
		err := st.Watch(ctx, after, func(c mustgather.Change) error {
			changes <- c
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch: %v", err)
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return changes, stop
}

func next(t *testing.T, changes <-chan mustgather.Change) mustgather.Change {
	t.Helper()
	select {
	case c := <-changes:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
		return mustgather.Change{}
	}
}

func TestWatchPassesTheWritesOfRecordsWithTheirRevisions(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	a := mustCreate(t, st, gathering("a"))
	b := mustCreate(t, st, gathering("b"))
	a2, err := st.Claim(context.Background(), a.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("from now: the caught-up mark at once, then each write", func(t *testing.T) {
		changes, stop := watched(t, st, mustgather.FromNow)
		defer stop()
		if c := next(t, changes); !c.CaughtUp {
			t.Fatalf("first change %+v, want the caught-up mark", c)
		}
		b2 := mustApply(t, st, mustgather.Update{ID: b.ID, Seq: 1, Status: mustgather.StatusInProgress, Time: time.Now(), ExecOutput: "x"})
		if c := next(t, changes); !cmp.Equal(c.Gathering, b2) {
			t.Errorf("change %+v, want %+v", c.Gathering, b2)
		}
	})
	t.Run("after a revision: the latest write of each record since, then the mark", func(t *testing.T) {
		// After b's creation only a was written (its claim), and, by the
		// subtest before, b.
		changes, stop := watched(t, st, b.Revision)
		defer stop()
		var got []mustgather.ID
		var revs []uint64
		for c := next(t, changes); !c.CaughtUp; c = next(t, changes) {
			got = append(got, c.Gathering.ID)
			revs = append(revs, c.Gathering.Revision)
		}
		if !cmp.Equal(got, []mustgather.ID{a.ID, b.ID}) || revs[0] != a2.Revision || revs[1] <= a2.Revision {
			t.Errorf("changes of %v at %v, want %d at %d then %d", got, revs, a.ID, a2.Revision, b.ID)
		}
	})
	t.Run("after 0: every record", func(t *testing.T) {
		changes, stop := watched(t, st, 0)
		defer stop()
		n := 0
		for c := next(t, changes); !c.CaughtUp; c = next(t, changes) {
			n++
		}
		if n != 2 {
			t.Errorf("%d records, want 2", n)
		}
	})
	t.Run("after the last revision: the mark alone, then each write", func(t *testing.T) {
		cur, err := st.Get(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		changes, stop := watched(t, st, cur.Revision)
		defer stop()
		if c := next(t, changes); !c.CaughtUp {
			t.Fatalf("first change %+v, want the caught-up mark", c)
		}
		b3 := mustApply(t, st, mustgather.Update{ID: b.ID, Seq: 2, Status: mustgather.StatusCompleted, Time: time.Now(), ArchiveName: "b.tar.gz"})
		if c := next(t, changes); c.Gathering.Revision != b3.Revision || c.Gathering.Status != mustgather.StatusCompleted {
			t.Errorf("change %+v, want the completion at %d", c, b3.Revision)
		}
	})
}

func TestRevisionIsTheLatestWritesRevision(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	if rev, err := st.Revision(context.Background()); err != nil || rev != 0 {
		t.Errorf("an empty bucket: %d %v, want 0", rev, err)
	}
	g := mustCreate(t, st, gathering("a"))
	rev, err := st.Revision(context.Background())
	// The custom-name's index is written after the record.
	if err != nil || rev <= g.Revision {
		t.Errorf("after a create at %d: %d %v, want later", g.Revision, rev, err)
	}
	g = mustApply(t, st, mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusInProgress, Time: time.Now()})
	if rev, err := st.Revision(context.Background()); err != nil || rev != g.Revision {
		t.Errorf("after an update at %d: %d %v", g.Revision, rev, err)
	}
}

func TestWrittenAfterTellsWhetherAWriteFollowsARevision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	writtenAfter := func(rev uint64) bool {
		t.Helper()
		newer, err := st.WrittenAfter(ctx, rev)
		if err != nil {
			t.Fatal(err)
		}
		return newer
	}
	if writtenAfter(0) {
		t.Error("an empty bucket has a write after revision 0")
	}
	g := mustCreate(t, st, gathering("a"))
	last, err := st.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !writtenAfter(0) || !writtenAfter(g.Revision) || writtenAfter(last) {
		t.Errorf("after a create at %d, the last write at %d: written after 0 %v, after %d %v, after %d %v; want true, true, false",
			g.Revision, last, writtenAfter(0), g.Revision, writtenAfter(g.Revision), last, writtenAfter(last))
	}
	// The writes before the latest are gone from the bucket, the record's
	// earlier revision among them (a bucket keeps one revision a key); a
	// later write still follows them.
	g = mustApply(t, st, mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusInProgress, Time: time.Now()})
	if !writtenAfter(last) || writtenAfter(g.Revision) {
		t.Errorf("after an update at %d: written after %d %v, after %d %v; want true, false", g.Revision, last, writtenAfter(last), g.Revision, writtenAfter(g.Revision))
	}
}

// following is a Follow running in the background.
type following struct {
	ids    []mustgather.ID // the records passed before CaughtUp; read once caught is closed
	caught chan struct{}
	ended  chan error
}

func follow(ctx context.Context, st *Store) *following {
	f := &following{caught: make(chan struct{}), ended: make(chan error, 1)}
	go func() {
		done := false
		f.ended <- st.Follow(ctx, func(w mustgather.Write) error {
			switch {
			case done:
			case w.CaughtUp:
				done = true
				close(f.caught)
			case w.Gathering != nil:
				f.ids = append(f.ids, w.Gathering.ID)
			}
			return nil
		})
	}()
	return f
}

// caughtUp waits until f has caught up, and returns the records it passed
// before, or the error it ended with first.
func (f *following) caughtUp(t *testing.T) ([]mustgather.ID, error) {
	t.Helper()
	select {
	case <-f.caught:
		return f.ids, nil
	case err := <-f.ended:
		return nil, err
	case <-time.After(30 * time.Second):
		t.Fatal("Follow has neither caught up nor ended in 30 s")
		return nil, nil
	}
}

func TestFollowEndsWhenTheConnectionDropsAndPassesEveryKeyWhenFollowedAgain(t *testing.T) {
	t.Parallel()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts := natsserver.Options{Port: port, StoreDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := natsserver.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	js, err := jetstream.New(testenv.Conn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, js, Config{})
	g, err := st.Create(ctx, gathering("before"))
	if err != nil {
		t.Fatal(err)
	}
	f := follow(ctx, st)
	if got, err := f.caughtUp(t); err != nil || !slices.Equal(got, []mustgather.ID{g.ID}) {
		t.Fatalf("Follow passed %v before it caught up (%v), want [%d]", got, err, g.ID)
	}
	srv.Stop()
	select {
	case err := <-f.ended:
		if !errors.Is(err, errConnectionLost) {
			t.Errorf("Follow ended with %v, want errConnectionLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Follow goes on 30 s after its server stopped")
	}

	if srv, err = natsserver.Start(ctx, opts); err != nil {
		t.Fatal(err)
	}
	var h mustgather.Gathering
	err = testenv.Poll(ctx, 20*time.Millisecond, func() error {
		var err error
		h, err = st.Create(ctx, gathering("after"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []mustgather.ID
	err = testenv.Poll(ctx, 50*time.Millisecond, func() error {
		var err error
		got, err = follow(ctx, st).caughtUp(t)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []mustgather.ID{g.ID, h.ID}; !slices.Equal(got, want) {
		t.Errorf("followed again, Follow passed %v before it caught up, want %v", got, want)
	}
}
