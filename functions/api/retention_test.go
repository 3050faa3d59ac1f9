package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// A gathering deleted after the retention period, as the runner deletes
// it (archive, then record), is gone from every view of the API, and the
// links made for it stop working.
func TestADeletedGatheringIsGoneAndItsSignedLinkStopsWorking(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withLocalLinks(t, nil, ""))
	g := e.create(`{"custom-name": "nightly"}`)
	e.finish(g.ID, mustgather.StatusCompleted, map[string]string{"a": "x"})
	g, err := e.store.Get(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	l := e.link(g.ID.String())
	if resp := plainGet(t, l.URL); resp.status != http.StatusOK {
		t.Fatalf("link before the deletion: %d %s", resp.status, resp.body)
	}

	if err := e.archives.Delete(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName)); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Delete(ctx, g.ID, g.Revision); err != nil {
		t.Fatal(err)
	}

	if resp := plainGet(t, l.URL); resp.status != http.StatusForbidden {
		t.Errorf("link after the deletion: %d %s; want 403, as any link that does not verify", resp.status, resp.body)
	}
	for _, path := range []string{
		fmt.Sprintf("/must-gather/%d", g.ID), "/must-gather/nightly",
		fmt.Sprintf("/must-gather/%d/data", g.ID), fmt.Sprintf("/must-gather/%d/url", g.ID),
	} {
		if resp := e.do(http.MethodGet, path, "", nil); resp.status != http.StatusNotFound {
			t.Errorf("GET %s: %d %s; want 404", path, resp.status, resp.body)
		}
	}
	if resp := e.do(http.MethodGet, "/must-gather", "", nil); resp.status != http.StatusOK || string(resp.body) != "[]\n" && string(resp.body) != "[]" {
		t.Errorf("list: %d %s; want an empty list", resp.status, resp.body)
	}
}
