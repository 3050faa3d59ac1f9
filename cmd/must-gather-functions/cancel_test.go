package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/client"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// waitFor polls gathering id until it is in status with out in its
// exec-output.
func (s *system) waitFor(t *testing.T, id uint64, status, out string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("gathering %d %s with %q", id, status, out), func() bool {
		g, code := s.get(t, fmt.Sprint(id))
		return code == http.StatusOK && g.Status == status && strings.Contains(g.ExecOutput, out)
	})
}

func TestCancelAndPurgeEndToEnd(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	env := s3Env(m)
	env["RUNNER_MAX_RUNNING"] = "1"
	s := start(t, t.TempDir(), env)

	done := gatherAndWait(t, s, "kept")
	link, _ := s.link(t, done.ID)
	if resp, _ := fetch(t, http.DefaultClient, link.URL); resp.StatusCode != http.StatusOK {
		t.Fatalf("the download link: %d", resp.StatusCode)
	}

	running := s.post(t, "application/json", strings.NewReader(`{"command": "echo partial > part.txt; echo started; sleep 60", "timeout": "5m"}`))
	s.waitFor(t, running.ID, "inprogress", "started")
	waiting := s.post(t, "application/json", strings.NewReader(`{"command": "echo should not run"}`))
	s.waitFor(t, waiting.ID, "new", "waiting for a slot: 1 of 1 running")

	t.Run("a gathering waiting for a slot is canceled at once", func(t *testing.T) {
		code, body := s.send(t, http.MethodDelete, fmt.Sprintf("/must-gather/%d", waiting.ID), "", "")
		var g struct{ Status, Reason string }
		if err := json.Unmarshal(body, &g); err != nil || code != http.StatusOK || g.Status != "error" || g.Reason != "canceled" {
			t.Fatalf("DELETE: %d %s", code, body)
		}
	})
	t.Run("a running gathering is stopped and keeps what it gathered", func(t *testing.T) {
		if code, body := s.send(t, http.MethodDelete, fmt.Sprintf("/must-gather/%d", running.ID), "", ""); code != http.StatusAccepted {
			t.Fatalf("DELETE: %d %s", code, body)
		}
		g := s.waitEndedWithin(t, running.ID, 30*time.Second)
		if g.Status != "error" || g.Reason != "canceled" || !strings.Contains(g.ExecOutput, "canceled: the gathering was stopped on request") {
			t.Fatalf("%s %q\n%s", g.Status, g.Reason, g.ExecOutput)
		}
		resp, err := http.Get(fmt.Sprintf("%s/must-gather/%d/data?partial=true", s.base, running.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("partial archive: %d", resp.StatusCode)
		}
		if files := archivetest.ReadTarGz(t, resp.Body); files["part.txt"] != "partial\n" {
			t.Errorf("partial archive: %v", slices.Collect(maps.Keys(files)))
		}
		if got, _ := s.get(t, fmt.Sprint(waiting.ID)); got.Status != "error" || strings.Contains(got.ExecOutput, "should not run") {
			t.Errorf("the canceled waiting gathering ran: %s\n%s", got.Status, got.ExecOutput)
		}
	})
	t.Run("a completed gathering is deleted only with purge, and its link stops working", func(t *testing.T) {
		if code, body := s.send(t, http.MethodDelete, fmt.Sprintf("/must-gather/%d", done.ID), "", ""); code != http.StatusConflict || !strings.Contains(string(body), `"status": "completed"`) {
			t.Fatalf("DELETE without purge: %d %s", code, body)
		}
		if resp, _ := fetch(t, http.DefaultClient, link.URL); resp.StatusCode != http.StatusOK {
			t.Fatalf("the link after a DELETE without purge: %d", resp.StatusCode)
		}
		if code, body := s.send(t, http.MethodDelete, "/must-gather/kept?purge=true", "", ""); code != http.StatusNoContent {
			t.Fatalf("DELETE with purge: %d %s", code, body)
		}
		if resp, _ := fetch(t, http.DefaultClient, link.URL); resp.StatusCode != http.StatusNotFound {
			t.Errorf("the link after the purge: %d, want 404", resp.StatusCode)
		}
		if _, code := s.get(t, "kept"); code != http.StatusNotFound {
			t.Errorf("GET after the purge: %d, want 404", code)
		}
	})
	t.Run("the client cancels, and deletes only what has ended", func(t *testing.T) {
		ctx := context.Background()
		c := s.newClient(t)
		g, err := c.Create(ctx, client.Request{Command: "echo started; sleep 60", Timeout: "5m"})
		if err != nil {
			t.Fatal(err)
		}
		s.waitFor(t, uint64(g.ID), "inprogress", "started")
		if err := c.Delete(ctx, fmt.Sprint(g.ID)); !errors.Is(err, client.ErrNotEnded) {
			t.Fatalf("Delete of a running gathering: %v, want ErrNotEnded", err)
		}
		got, err := c.Cancel(ctx, fmt.Sprint(g.ID))
		if err != nil || got.Status != client.StatusInProgress {
			t.Fatalf("Cancel: %+v, %v", got, err)
		}
		if ended := s.waitEndedWithin(t, uint64(g.ID), 30*time.Second); ended.Reason != client.ReasonCanceled {
			t.Fatalf("ended %s %q", ended.Status, ended.Reason)
		}
		_, err = c.Cancel(ctx, fmt.Sprint(g.ID))
		if ae := apiErr(t, "Cancel of an ended gathering", err, client.ErrConflict); ae.Status != client.StatusError {
			t.Errorf("its status: %s", ae.Status)
		}
		if err := c.Delete(ctx, fmt.Sprint(g.ID)); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		_, err = c.Get(ctx, fmt.Sprint(g.ID))
		apiErr(t, "Get after Delete", err, client.ErrNotFound)
	})
}
