package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/client"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// newClient is a client of s with a quick poll, for tests.
func (s *system) newClient(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.base, append([]client.Option{client.WithPollInterval(20*time.Millisecond, 200*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchOK GETs u without credentials and returns its body, failing the
// test unless it is 200.
func fetchOK(t *testing.T, u string) []byte {
	t.Helper()
	resp, b := fetch(t, http.DefaultClient, u)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return b
}

// apiErr is err as the client's *APIError, failing the test if it is not one
// of kind.
func apiErr(t *testing.T, what string, err, kind error) *client.APIError {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got %v, want %v", what, err, kind)
	}
	ae, ok := errors.AsType[*client.APIError](err)
	if !ok {
		t.Fatalf("%s: %T is not an *APIError", what, err)
	}
	return ae
}

// TestTheClientRunsAGatheringToItsArchive drives the whole system through
// the Go client: every call, and each error the API answers, with Wait on
// the event stream and, on a system without the notifier, by polling.
func TestTheClientRunsAGatheringToItsArchive(t *testing.T) {
	for _, tt := range []struct {
		name   string
		env    map[string]string
		events int // the status of the gathering's event stream
	}{
		{"waiting on the event stream", nil, http.StatusOK},
		{"polling a system without an event stream", map[string]string{"FUNCTIONS": "api,runner,recorder"}, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, t.TempDir(), tt.env)
			c := s.newClient(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			created, err := c.Create(ctx, client.Request{CustomName: "plan:client", Command: gatherCommand, Timeout: "10m"})
			if err != nil {
				t.Fatal(err)
			}
			if created.ID == 0 || created.Status != client.StatusNew || created.Timeout != "10m" || created.CustomName != "plan:client" {
				t.Errorf("created %+v", created)
			}
			var mu sync.Mutex
			var seen []client.Status
			g, err := c.Wait(ctx, "plan:client", client.WaitOptions{Progress: func(g *client.Gathering) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, g.Status)
			}})
			if err != nil {
				t.Fatal(err)
			}
			if g.ID != created.ID || g.Status != client.StatusCompleted || g.ArchiveName == "" || g.ArchiveSize == 0 {
				t.Fatalf("waited for %+v", g)
			}
			if len(seen) == 0 || seen[len(seen)-1] != client.StatusCompleted {
				t.Errorf("progress saw %v", seen)
			}
			id := fmt.Sprint(g.ID)
			if status, body := s.send(t, http.MethodGet, "/must-gather/"+id+"/events", "", ""); status != tt.events {
				t.Errorf("the system's event stream answers %d %s, want %d", status, body, tt.events)
			}
			for _, ref := range []string{id, "plan:client"} {
				got, err := c.Get(ctx, ref)
				if err != nil || got.ID != g.ID || got.Status != client.StatusCompleted {
					t.Errorf("Get(%q) = %+v, %v", ref, got, err)
				}
			}
			list, err := c.List(ctx, client.ListOptions{CustomName: "plan:client", Status: client.StatusCompleted, Limit: 5})
			if err != nil || len(list) != 1 || list[0].ID != g.ID {
				t.Errorf("List = %+v, %v", list, err)
			}
			if list, err := c.List(ctx, client.ListOptions{Status: client.StatusError}); err != nil || len(list) != 0 {
				t.Errorf("List of errors = %+v, %v", list, err)
			}

			var archive bytes.Buffer
			var last, total int64
			n, err := c.Download(ctx, id, &archive, client.DownloadOptions{Progress: func(w, tot int64) { last, total = w, tot }})
			if err != nil || n != g.ArchiveSize || last != n || total != n {
				t.Fatalf("Download: %d bytes (progress %d of %d), %v; archive-size %d", n, last, total, err, g.ArchiveSize)
			}
			if want := fetchOK(t, s.base+"/must-gather/"+id+"/data"); !bytes.Equal(archive.Bytes(), want) {
				t.Errorf("Download gave %d bytes unlike the %d of /data", archive.Len(), len(want))
			}
			files := archivetest.ReadTarGz(t, bytes.NewReader(archive.Bytes()))
			if files["namespaces/openshift-mtv/crs/plan.yaml"] != "kind: Plan\n" {
				t.Errorf("archive holds %v", slices.Collect(func(yield func(string) bool) {
					for k := range files {
						if !yield(k) {
							return
						}
					}
				}))
			}
			link, err := c.URL(ctx, id)
			if err != nil || link.ExpiresAt.Before(time.Now()) {
				t.Fatalf("URL = %+v, %v", link, err)
			}
			if got := fetchOK(t, link.URL); !bytes.Equal(got, archive.Bytes()) {
				t.Errorf("the link gave %d bytes, not the archive's %d", len(got), archive.Len())
			}

			// The errors of each call.
			_, err = c.Get(ctx, "no-such-gathering")
			apiErr(t, "Get of an unknown name", err, client.ErrNotFound)
			_, err = c.Download(ctx, "987654", io.Discard, client.DownloadOptions{})
			apiErr(t, "Download of an unknown id", err, client.ErrNotFound)
			_, err = c.Wait(ctx, "987654", client.WaitOptions{})
			apiErr(t, "Wait for an unknown id", err, client.ErrNotFound)
			_, err = c.URL(ctx, "987654")
			apiErr(t, "URL of an unknown id", err, client.ErrNotFound)
			_, err = c.Create(ctx, client.Request{Command: "true", Timeout: "forever"})
			if ae := apiErr(t, "Create with a bad timeout", err, client.ErrInvalid); ae.Field != "timeout" || ae.StatusCode != 400 || ae.Message == "" {
				t.Errorf("Create with a bad timeout: %+v", ae)
			}
			_, err = c.Create(ctx, client.Request{Command: "true", Plan: "p"})
			apiErr(t, "Create with command and plan", err, client.ErrInvalid)
			_, err = c.List(ctx, client.ListOptions{Status: "done"})
			if ae := apiErr(t, "List with an unknown status", err, client.ErrInvalid); ae.Field != "status" {
				t.Errorf("List with an unknown status: %+v", ae)
			}

			running, err := c.Create(ctx, client.Request{Command: "sleep 600"})
			if err != nil {
				t.Fatal(err)
			}
			rid := fmt.Sprint(running.ID)
			_, err = c.Download(ctx, rid, io.Discard, client.DownloadOptions{})
			if ae := apiErr(t, "Download of a running gathering", err, client.ErrConflict); ae.Status != client.StatusNew && ae.Status != client.StatusInProgress {
				t.Errorf("Download of a running gathering: %+v", ae)
			}
			_, err = c.URL(ctx, rid)
			apiErr(t, "URL of a running gathering", err, client.ErrConflict)
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancelShort()
			if _, err := c.Wait(short, rid, client.WaitOptions{}); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Wait past its context: %v", err)
			}

			failed, err := c.Create(ctx, client.Request{Command: "echo partial > part.txt; echo failing; exit 3"})
			if err != nil {
				t.Fatal(err)
			}
			fid := fmt.Sprint(failed.ID)
			if g, err := c.Wait(ctx, fid, client.WaitOptions{}); err != nil || g.Status != client.StatusError {
				t.Fatalf("Wait for a failing gathering: %+v, %v", g, err)
			}
			_, err = c.Download(ctx, fid, io.Discard, client.DownloadOptions{})
			if ae := apiErr(t, "Download of a gathering in error", err, client.ErrConflict); ae.Status != client.StatusError {
				t.Errorf("Download of a gathering in error: %+v", ae)
			}
			var partial bytes.Buffer
			if _, err := c.Download(ctx, fid, &partial, client.DownloadOptions{Partial: true}); err != nil {
				t.Fatal(err)
			}
			if files := archivetest.ReadTarGz(t, &partial); files["part.txt"] != "partial\n" {
				t.Errorf("partial archive holds %v", files)
			}

			// Pages walks every gathering, a page at a time.
			var paged []int64
			for page, err := range c.Pages(ctx, client.ListOptions{}, 1) {
				if err != nil || len(page) != 1 {
					t.Fatalf("page %d of Pages: %+v, %v", len(paged), page, err)
				}
				paged = append(paged, page[0].ID)
			}
			if want := []int64{g.ID, running.ID, failed.ID}; !slices.Equal(paged, want) {
				t.Errorf("Pages of 1 passed ids %v, want %v", paged, want)
			}
		})
	}
}

// jsonNames lists the JSON names of struct type t's fields.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// TestTheClientsTypesHaveTheAPIsFields keeps the client module's own types
// in step with the domain's: a field added to the API is a field of the
// client.
func TestTheClientsTypesHaveTheAPIsFields(t *testing.T) {
	for _, tt := range []struct{ api, client reflect.Type }{
		{reflect.TypeFor[mustgather.Gathering](), reflect.TypeFor[client.Gathering]()},
		{reflect.TypeFor[mustgather.Request](), reflect.TypeFor[client.Request]()},
	} {
		if diff := cmp.Diff(jsonNames(tt.api), jsonNames(tt.client)); diff != "" {
			t.Errorf("%s and %s differ (-api +client):\n%s", tt.api, tt.client, diff)
		}
	}
}

// TestTheClientTellsUnauthorizedFromForbidden runs the system with AUTH=on
// against a real kube-apiserver.
func TestTheClientTellsUnauthorizedFromForbidden(t *testing.T) {
	k := kube.Start(t)
	s := start(t, t.TempDir(), map[string]string{"AUTH": "on", "KUBECONFIG": k.Kubeconfig, "GATHERER": "process"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.newClient(t).List(ctx, client.ListOptions{})
	apiErr(t, "without a token", err, client.ErrUnauthorized)
	_, err = s.newClient(t, client.WithToken(k.NoRights.BearerToken)).Create(ctx, client.Request{Command: "true"})
	apiErr(t, "without rights", err, client.ErrForbidden)
	admin := s.newClient(t, client.WithToken(k.Admin.BearerToken))
	g, err := admin.Create(ctx, client.Request{Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if g.RequestedBy != kube.AdminUser {
		t.Errorf("requested-by %q", g.RequestedBy)
	}
	if g, err := admin.Wait(ctx, fmt.Sprint(g.ID), client.WaitOptions{}); err != nil || g.Status != client.StatusCompleted {
		t.Errorf("Wait as cluster-admin: %+v, %v", g, err)
	}
}
