package jsstore

import (
	"sync"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// TestConcurrentCreatesOfOneNameFindTheirOwnOrANewer starts many Creates of
// one custom-name at once, in two processes' stores on one bucket: when a
// Create returns, GetByName finds its gathering or a newer one, and at the
// end the newest of all.
func TestConcurrentCreatesOfOneNameFindTheirOwnOrANewer(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	cfg := Config{Bucket: testenv.Name("gatherings"), LeaseBucket: testenv.Name("leases")}
	stores := []*Store{newStore(t, jetStream(t, ns), cfg), newStore(t, jetStream(t, ns), cfg)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var newest uint64
	for w := range 16 {
		st := stores[w%2]
		wg.Go(func() {
			for range 5 {
				g, err := st.Create(t.Context(), gathering("shared"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				newest = max(newest, uint64(g.ID))
				mu.Unlock()
				found, err := stores[(w+1)%2].GetByName(t.Context(), "shared")
				if err != nil || found.ID < g.ID {
					t.Errorf("GetByName after Create of %d = %d, %v; want %d or newer", g.ID, found.ID, err, g.ID)
				}
			}
		})
	}
	wg.Wait()
	if found, err := stores[0].GetByName(t.Context(), "shared"); err != nil || uint64(found.ID) != newest {
		t.Errorf("GetByName at the end = %d, %v; want the newest, %d", found.ID, err, newest)
	}
}
