package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

func TestDeleteCancelsAnUnfinishedGatheringAndDeletesAnEndedOneOnlyWhenAskedTo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.create(`{"custom-name": "plan1"}`)                                                                     // 1 new
	e.claim(e.create(`{}`).ID)                                                                               // 2 inprogress
	e.finish(e.create(`{"custom-name": "vm1"}`).ID, mustgather.StatusCompleted, map[string]string{"f": "x"}) // 3 completed
	e.finish(e.create(`{}`).ID, mustgather.StatusError, map[string]string{"f": "partial"})                   // 4 error, partial archive
	e.finish(e.create(`{}`).ID, mustgather.StatusCompleted, map[string]string{"f": "y"})                     // 5 completed
	etag5 := e.do(http.MethodGet, "/must-gather/5", "", nil).header.Get("ETag")

	t.Run("a new gathering ends at once in error, canceled, and its end is announced", func(t *testing.T) {
		resp := e.do(http.MethodDelete, "/must-gather/plan1", "", nil)
		if resp.status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.status, resp.body)
		}
		var g mustgather.Gathering
		if err := json.Unmarshal(resp.body, &g); err != nil {
			t.Fatal(err)
		}
		if g.Status != mustgather.StatusError || g.Reason != mustgather.ReasonCanceled || g.ExecOutput != "canceled on request\n" {
			t.Errorf("answer: %s %q %q", g.Status, g.Reason, g.ExecOutput)
		}
		if !strings.Contains(string(resp.body), `"reason": "canceled"`) {
			t.Errorf("the answer has no reason field: %s", resp.body)
		}
		if unfinished, _ := e.store.Unfinished(ctx); slices.Contains(unfinished, 1) {
			t.Errorf("gathering 1 is still unsettled: %v", unfinished)
		}
		if types := statusEvents(t, e, 1); !cmp.Equal(types, []string{"failed:canceled"}) {
			t.Errorf("status events %v, want one failed event with reason canceled", types)
		}
	})
	t.Run("one in progress is marked for its runner and answered 202", func(t *testing.T) {
		resp := e.do(http.MethodDelete, "/must-gather/2", "", nil)
		if resp.status != http.StatusAccepted {
			t.Fatalf("status %d, want 202: %s", resp.status, resp.body)
		}
		stored, _ := e.store.Get(ctx, 2)
		if stored.Status != mustgather.StatusInProgress || !stored.CancelRequested {
			t.Errorf("stored %s, cancel requested %v", stored.Status, stored.CancelRequested)
		}
	})
	conflicts := []struct {
		name, path string
		header     []string
		status     int
		want       errorBody
	}{
		{"a completed gathering without purge", "/must-gather/vm1", nil, http.StatusConflict, errorBody{
			Error:  `gathering 3 has ended (completed) and was not changed; to delete it and its archive, send DELETE with ?purge=true, or with If-Match: "` + revision(t, e, 3) + `" (its ETag)`,
			Status: mustgather.StatusCompleted}},
		{"a completed gathering with another revision", "/must-gather/5", []string{"If-Match", `"1"`}, http.StatusPreconditionFailed, errorBody{
			Error: `If-Match "1" is not the gathering's revision; gathering 5 is completed at revision ` + etag5 + ` (its ETag)`,
			Field: "If-Match", Status: mustgather.StatusCompleted}},
		{"purge that is no boolean", "/must-gather/5?purge=yes", nil, http.StatusBadRequest, errorBody{
			Error: `must be true or false; got "yes"`, Field: "purge"}},
		{"an unknown gathering", "/must-gather/99?purge=true", nil, http.StatusNotFound, errorBody{
			Error: `gathering not found: no gathering has id or custom-name "99"`}},
	}
	for _, tt := range conflicts {
		t.Run(fmt.Sprintf("%s is answered %d and changes nothing", tt.name, tt.status), func(t *testing.T) {
			resp := e.do(http.MethodDelete, tt.path, "", nil, tt.header...)
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			if diff := cmp.Diff(tt.want, errorOf(t, resp)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for _, p := range []string{"/must-gather/3/data", "/must-gather/5/data"} {
				if got := e.do(http.MethodGet, p, "", nil); got.status != http.StatusOK {
					t.Errorf("GET %s: %d, want the archive still there", p, got.status)
				}
			}
		})
	}
	deletes := []struct {
		name, path string
		header     []string
		id         mustgather.ID
	}{
		{"a completed gathering with purge=true", "/must-gather/vm1?purge=true", nil, 3},
		{"a failed gathering with purge=true", "/must-gather/4?purge=true", nil, 4},
		{"a completed gathering with If-Match of its ETag", "/must-gather/5", []string{"If-Match", etag5}, 5},
	}
	for _, tt := range deletes {
		t.Run(tt.name+" is deleted with its archive", func(t *testing.T) {
			g, _ := e.store.Get(ctx, tt.id)
			resp := e.do(http.MethodDelete, tt.path, "", nil, tt.header...)
			if resp.status != http.StatusNoContent {
				t.Fatalf("status %d, want 204: %s", resp.status, resp.body)
			}
			if got := e.do(http.MethodGet, fmt.Sprintf("/must-gather/%d", tt.id), "", nil); got.status != http.StatusNotFound {
				t.Errorf("GET after the delete: %d, want 404", got.status)
			}
			if _, err := e.archives.Open(ctx, mustgather.ArchiveKey(tt.id, g.ArchiveName)); !errors.Is(err, mustgather.ErrNotFound) {
				t.Errorf("the archive after the delete: %v, want ErrNotFound", err)
			}
			if again := e.do(http.MethodDelete, tt.path, "", nil, tt.header...); again.status != http.StatusNotFound {
				t.Errorf("a second delete: %d, want 404", again.status)
			}
		})
	}
	for _, want := range []string{"action=cancel user=\"\" gathering=1", "action=cancel user=\"\" gathering=2", "action=delete user=\"\" gathering=3"} {
		if !strings.Contains(e.log.String(), want) {
			t.Errorf("no audit line with %s in the log", want)
		}
	}
}

// revision returns the ETag value of gathering id, unquoted.
func revision(t *testing.T, e *env, id mustgather.ID) string {
	t.Helper()
	g, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(g.Revision)
}

// statusEvents returns the status events of gathering id in the stream,
// as type:reason.
func statusEvents(t *testing.T, e *env, id mustgather.ID) []string {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, streamName(t, e))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			break
		}
		if m.Subject != e.bus.StatusSubject(id) {
			continue
		}
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Reason string `json:"reason"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimPrefix(ev.Type, "io.konveyor.forklift.mustgather.gathering.")+":"+ev.Data.Reason)
	}
	return out
}

func TestACancelRacingCompletionNeverTouchesTheCompletedGathering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	outcomes := map[int]int{}
	for i := range 60 {
		g := e.create(`{}`)
		archive := tarGz(t, map[string]string{"f": fmt.Sprint(i)})
		name := mustgather.ArchiveName(g.ID, "")
		var wg sync.WaitGroup
		var runErr error
		wg.Go(func() {
			// A runner that claims, stores its archive and completes.
			if _, runErr = e.store.Claim(ctx, g.ID, time.Now()); runErr != nil {
				return
			}
			n, err := e.archives.Put(ctx, mustgather.ArchiveKey(g.ID, name), strings.NewReader(string(archive)))
			if err != nil {
				runErr = err
				return
			}
			_, runErr = e.store.Apply(ctx, mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusCompleted, ArchiveName: name, ArchiveSize: n})
		})
		if i%3 == 0 {
			wg.Wait() // a DELETE that comes after the end, without purge
		}
		resp := e.do(http.MethodDelete, fmt.Sprintf("/must-gather/%d", g.ID), "", nil)
		wg.Wait()
		outcomes[resp.status]++
		stored, err := e.store.Get(ctx, g.ID)
		if err != nil {
			t.Fatalf("round %d: the gathering is gone after DELETE %d: %v", i, resp.status, err)
		}
		switch resp.status {
		case http.StatusOK: // the cancel came first: nothing ran
			if !errors.Is(runErr, mustgather.ErrAlreadyClaimed) || stored.Status != mustgather.StatusError || stored.Reason != mustgather.ReasonCanceled {
				t.Fatalf("round %d: canceled, but the run: %v, stored %s %q", i, runErr, stored.Status, stored.Reason)
			}
		case http.StatusAccepted, http.StatusConflict: // the run came first, or ended first
			if runErr != nil || stored.Status != mustgather.StatusCompleted {
				t.Fatalf("round %d: DELETE %d, run %v, stored %s", i, resp.status, runErr, stored.Status)
			}
			if got := e.do(http.MethodGet, fmt.Sprintf("/must-gather/%d/data", g.ID), "", nil); got.status != http.StatusOK || string(got.body) != string(archive) {
				t.Fatalf("round %d: the completed gathering's archive: %d", i, got.status)
			}
		default:
			t.Fatalf("round %d: DELETE answered %d: %s", i, resp.status, resp.body)
		}
	}
	t.Logf("DELETE answers: %v", outcomes)
	if outcomes[http.StatusConflict] == 0 {
		t.Error("no DELETE lost the race to completion")
	}
}
