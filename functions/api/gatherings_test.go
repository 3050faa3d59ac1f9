package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
)

func multipartBody(t testing.TB, fields ...string) (contentType string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := mw.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

func TestCreateStartsAGatheringFromEachBodyKind(t *testing.T) {
	t.Parallel()
	mpType, mpBody := multipartBody(t,
		"custom-name", "vm-1", "image", "quay.io/konveyor/forklift-must-gather", "node-name", "worker-0",
		"command", "VM=vm-1 NS=default /usr/bin/targeted", "source-dir", "/must-gather", "timeout", "45m", "server", "prod")
	tests := []struct {
		name        string
		golden      string
		contentType string
		body        string
	}{
		{"a JSON body as in the seed's curl example", "json-seed", "application/json",
			`{"image": "quay.io/maufart/forklift-must-gather", "timeout": "15m"}`},
		{"a JSON body with a charset", "json-charset", "application/json; charset=utf-8",
			`{"custom-name": "plan1", "image-stream": "openshift/must-gather:latest"}`},
		{"a URL-encoded form as curl -d sends it", "form", "application/x-www-form-urlencoded",
			"custom-name=plan1&image=quay.io%2Fkonveyor%2Fforklift-must-gather&command=PLAN%3Dplan1+%2Fusr%2Fbin%2Ftargeted&timeout=1h"},
		{"a multipart form as curl -F sends it", "multipart", mpType, string(mpBody)},
		{"an empty body without a Content-Type takes every default", "empty", "", ""},
		{"an empty JSON object takes every default", "json-empty-object", "application/json", "{}"},
		{"an empty JSON body takes every default", "json-empty-body", "application/json", ""},
		{"a JSON body with a node selector and host network as a boolean", "json-nodes", "application/json",
			`{"node-selector": "node-role.kubernetes.io/worker", "host-network": true}`},
		{"a form with host network as a checkbox sends it", "form-host-network", "application/x-www-form-urlencoded",
			"node-selector=zone%3Da&host-network=on"},
		{"a JSON body asking for redaction", "json-redact", "application/json", `{"command": "true", "redact": true}`},
		{"a form with redaction as a checkbox", "form-redact", "application/x-www-form-urlencoded", "command=true&redact=on"},
		{"values are trimmed of surrounding white space", "json-trimmed", "application/json",
			`{"custom-name": "  plan1 ", "timeout": " 10m\t"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			resp := e.do(http.MethodPost, "/must-gather", tt.contentType, []byte(tt.body))
			if resp.status != http.StatusCreated {
				t.Fatalf("status %d, want 201; body %s", resp.status, resp.body)
			}
			if got := resp.header.Get("Location"); got != "/must-gather/1" {
				t.Errorf("Location = %q, want /must-gather/1", got)
			}
			if got := resp.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			golden(t, "create-"+tt.golden, resp.body)

			again := e.do(http.MethodGet, resp.header.Get("Location"), "", nil)
			if again.status != http.StatusOK || !bytes.Equal(again.body, resp.body) {
				t.Errorf("GET Location: %d %s, want 200 with the created gathering %s", again.status, again.body, resp.body)
			}
		})
	}
}

func TestCreateAnnouncesTheGatheringToRunners(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.create(`{"custom-name": "plan1", "command": "PLAN=plan1 /usr/bin/targeted"}`)

	ctx := context.Background()
	stream, err := e.js.Stream(ctx, streamName(t, e))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, e.bus.RequestedSubject())
	if err != nil {
		t.Fatalf("no requested event: %v", err)
	}
	ev, err := natsbus.Decode(ctx, natsMsg(msg))
	if err != nil {
		t.Fatal(err)
	}
	announced, err := eventing.ParseRequested(ev)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, announced, cmp.Comparer(func(a, b mustgather.Timestamp) bool { return a.Equal(b.Time) })); diff != "" {
		t.Errorf("announced gathering differs from the created one (-created +announced):\n%s", diff)
	}
}

func TestCreateStoresAndAnswers201WhenTheAnnouncementFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// With its stream gone, every publish fails; the reaper announces the
	// gathering later, so the request must still succeed.
	if err := e.js.DeleteStream(context.Background(), streamName(t, e)); err != nil {
		t.Fatal(err)
	}
	g := e.create(`{"custom-name": "plan1"}`)
	stored, err := e.store.Get(context.Background(), g.ID)
	if err != nil {
		t.Fatalf("gathering %d not stored: %v", g.ID, err)
	}
	if stored.Status != mustgather.StatusNew {
		t.Errorf("status %s, want new", stored.Status)
	}
	unfinished, err := e.store.Unfinished(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(unfinished, g.ID) {
		t.Errorf("Unfinished() = %v, want it to hold %d for the reaper", unfinished, g.ID)
	}
	if log := e.log.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "gathering=1") {
		t.Errorf("no warning naming the gathering in the log:\n%s", log)
	}
}

func TestListReturnsGatheringsByIDWithFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if resp := e.do(http.MethodGet, "/must-gather", "", nil); resp.status != http.StatusOK || string(resp.body) != "[]\n" {
		t.Fatalf("empty list: %d %q, want 200 []", resp.status, resp.body)
	}
	e.create(`{"custom-name": "plan1"}`)                                        // 1 new
	e.finish(e.create(`{"custom-name": "vm1"}`).ID, mustgather.StatusCompleted, // 2 completed
		map[string]string{"must-gather/version": "1"})
	e.claim(e.create(`{"custom-name": "plan1", "timeout": "1h"}`).ID) // 3 inprogress
	e.finish(e.create(`{}`).ID, mustgather.StatusError, nil)          // 4 error

	tests := []struct {
		name  string
		query string
		want  []mustgather.ID
	}{
		{"no filter lists every gathering", "", []mustgather.ID{1, 2, 3, 4}},
		{"custom-name keeps the gatherings with that name", "?custom-name=plan1", []mustgather.ID{1, 3}},
		{"status keeps the gatherings in that status", "?status=completed", []mustgather.ID{2}},
		{"limit keeps the newest, still in ascending order", "?limit=2", []mustgather.ID{3, 4}},
		{"limit larger than the list keeps all", "?limit=100", []mustgather.ID{1, 2, 3, 4}},
		{"filters combine", "?custom-name=plan1&limit=1", []mustgather.ID{3}},
		{"no match is an empty array", "?custom-name=vm1&status=new", []mustgather.ID{}},
		{"empty values are no filter", "?custom-name=&status=&limit=", []mustgather.ID{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/must-gather"+tt.query, "", nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			var list []mustgather.Gathering
			if err := json.Unmarshal(resp.body, &list); err != nil {
				t.Fatal(err)
			}
			if list == nil {
				t.Fatalf("body %s is null, want an array", resp.body)
			}
			ids := []mustgather.ID{}
			for _, g := range list {
				ids = append(ids, g.ID)
			}
			if diff := cmp.Diff(tt.want, ids); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	golden(t, "list", e.do(http.MethodGet, "/must-gather", "", nil).body)
}

func TestGetFindsAGatheringByIDOrCustomName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create(`{"custom-name": "plan1"}`)                  // 1
	e.create(`{"custom-name": "plan1", "timeout": "1h"}`) // 2, the newest plan1
	e.create(`{"custom-name": "7"}`)                      // 3, a name that looks like an id
	e.create(`{"custom-name": "1"}`)                      // 4, a name that is another gathering's id
	e.create(`{"custom-name": "my plan/1"}`)              // 5

	tests := []struct {
		name string
		ref  string
		want mustgather.ID
	}{
		{"a number is an id", "2", 2},
		{"a name is the newest gathering with it", "plan1", 2},
		{"a number that is no id is a name", "7", 3},
		{"an id wins over an equal name", "1", 1},
		{"a path-escaped name is unescaped", url.PathEscape("my plan/1"), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/must-gather/"+tt.ref, "", nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			var g mustgather.Gathering
			if err := json.Unmarshal(resp.body, &g); err != nil {
				t.Fatal(err)
			}
			if g.ID != tt.want {
				t.Errorf("got gathering %d, want %d", g.ID, tt.want)
			}
		})
	}
	golden(t, "get-by-name", e.do(http.MethodGet, "/must-gather/plan1", "", nil).body)
}

func TestGatheringJSONHasExactlyTheSeedFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(`{"custom-name": "vm1"}`).ID
	e.finish(id, mustgather.StatusCompleted, map[string]string{"a": "b"})
	resp := e.do(http.MethodGet, "/must-gather/1", "", nil)
	var fields map[string]any
	if err := json.Unmarshal(resp.body, &fields); err != nil {
		t.Fatal(err)
	}
	want := []string{"id", "created-at", "updated-at", "custom-name", "status", "image", "image-stream", "node-name",
		"command", "source-dir", "timeout", "server", "archive-size", "archive-name", "exec-output"}
	if diff := cmp.Diff(slices.Sorted(slices.Values(want)), slices.Sorted(maps.Keys(fields))); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	for k, v := range fields {
		if v == nil {
			t.Errorf("field %s is null", k)
		}
	}
	if _, ok := fields["id"].(float64); !ok {
		t.Errorf("id is %T, want a number", fields["id"])
	}
	if _, err := time.Parse(time.RFC3339Nano, fields["created-at"].(string)); err != nil {
		t.Errorf("created-at: %v", err)
	}
	golden(t, "get-completed", resp.body)
}

func TestDownloadStreamsTheArchive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	files := map[string]string{
		"must-gather/timestamp":                          "2021-06-30 15:19:17\n",
		"must-gather/namespaces/openshift-mtv/pods.yaml": strings.Repeat("kind: Pod\n", 500),
	}
	id := e.create(`{"custom-name": "vm1"}`).ID
	archive := e.finish(id, mustgather.StatusCompleted, files)
	name := mustgather.ArchiveName(id, "vm1")

	for _, ref := range []string{"1", "vm1"} {
		t.Run("GET by "+ref+" answers the whole archive byte for byte", func(t *testing.T) {
			resp := e.do(http.MethodGet, "/must-gather/"+ref+"/data", "", nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			if !bytes.Equal(resp.body, archive) {
				t.Fatalf("body is %d bytes and differs from the %d-byte archive", len(resp.body), len(archive))
			}
			if diff := cmp.Diff(files, archivetest.ReadTarGz(t, bytes.NewReader(resp.body))); diff != "" {
				t.Errorf("archive files (-want +got):\n%s", diff)
			}
			wantHeader := map[string]string{
				"Content-Type":        "application/gzip",
				"Content-Length":      fmt.Sprint(len(archive)),
				"Content-Disposition": `attachment; filename="` + name + `"`,
				"Accept-Ranges":       "bytes",
			}
			for k, want := range wantHeader {
				if got := resp.header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	t.Run("a Range request answers 206 with that range", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/must-gather/1/data", "", nil, "Range", "bytes=10-99")
		if resp.status != http.StatusPartialContent {
			t.Fatalf("status %d, want 206: %s", resp.status, resp.body)
		}
		if !bytes.Equal(resp.body, archive[10:100]) {
			t.Errorf("body differs from bytes 10-99 of the archive")
		}
		if got, want := resp.header.Get("Content-Range"), fmt.Sprintf("bytes 10-99/%d", len(archive)); got != want {
			t.Errorf("Content-Range = %q, want %q", got, want)
		}
	})
	t.Run("a Range that resumes a download answers the rest", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/must-gather/1/data", "", nil, "Range", "bytes=100-")
		if resp.status != http.StatusPartialContent || !bytes.Equal(resp.body, archive[100:]) {
			t.Errorf("status %d, %d bytes; want 206 with the last %d bytes", resp.status, len(resp.body), len(archive)-100)
		}
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method+" of a Range past the end answers 416 with a JSON error and the size", func(t *testing.T) {
			rng := fmt.Sprintf("bytes=%d-", len(archive)+10)
			resp := e.do(method, "/must-gather/1/data", "", nil, "Range", rng)
			if resp.status != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("status %d, want 416: %s", resp.status, resp.body)
			}
			if got, want := resp.header.Get("Content-Range"), fmt.Sprintf("bytes */%d", len(archive)); got != want {
				t.Errorf("Content-Range = %q, want %q", got, want)
			}
			if got := resp.header.Get("Content-Disposition"); got != "" {
				t.Errorf("Content-Disposition = %q on an error, want none: curl -OJ would save the error as the archive", got)
			}
			if got := resp.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if method == http.MethodHead {
				return
			}
			want := errorBody{Error: fmt.Sprintf("range %q cannot be satisfied: the archive has %d bytes", rng, len(archive))}
			if diff := cmp.Diff(want, errorOf(t, resp)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("a failed If-Match answers 412 with a JSON error", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/must-gather/1/data", "", nil, "If-Match", `"no-such-etag"`)
		if resp.status != http.StatusPreconditionFailed {
			t.Fatalf("status %d, want 412: %s", resp.status, resp.body)
		}
		want := errorBody{Error: "the archive does not meet the request's preconditions (If-Match, If-Unmodified-Since)"}
		if diff := cmp.Diff(want, errorOf(t, resp)); diff != "" {
			t.Errorf("body (-want +got):\n%s", diff)
		}
	})
	t.Run("HEAD answers the headers without a body", func(t *testing.T) {
		resp := e.do(http.MethodHead, "/must-gather/vm1/data", "", nil)
		if resp.status != http.StatusOK || len(resp.body) != 0 {
			t.Fatalf("status %d, %d body bytes; want 200 and none", resp.status, len(resp.body))
		}
		if got := resp.header.Get("Content-Length"); got != fmt.Sprint(len(archive)) {
			t.Errorf("Content-Length = %q, want %d", got, len(archive))
		}
		if got := resp.header.Get("Content-Disposition"); got != `attachment; filename="`+name+`"` {
			t.Errorf("Content-Disposition = %q", got)
		}
	})
	t.Run("If-Modified-Since at the archive's time answers 304", func(t *testing.T) {
		lm := e.do(http.MethodHead, "/must-gather/1/data", "", nil).header.Get("Last-Modified")
		if lm == "" {
			t.Skip("the archive store gives no modification time")
		}
		resp := e.do(http.MethodGet, "/must-gather/1/data", "", nil, "If-Modified-Since", lm)
		if resp.status != http.StatusNotModified {
			t.Errorf("status %d, want 304", resp.status)
		}
	})
}

func TestDownloadOfAnUnfinishedGatheringConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create(`{}`)                                                                     // 1 new
	e.claim(e.create(`{}`).ID)                                                         // 2 inprogress
	partial := e.finish(e.create(`{"custom-name": "vm1"}`).ID, mustgather.StatusError, // 3 error with a partial archive
		map[string]string{"must-gather/partial": "x"})
	e.finish(e.create(`{}`).ID, mustgather.StatusError, nil) // 4 error without an archive

	tests := []struct {
		name string
		path string
		want errorBody
	}{
		{"a new gathering", "/must-gather/1/data",
			errorBody{Error: "gathering 1 is new, not completed; ask again when its status is completed", Status: mustgather.StatusNew}},
		{"a gathering in progress", "/must-gather/2/data",
			errorBody{Error: "gathering 2 is inprogress, not completed; ask again when its status is completed", Status: mustgather.StatusInProgress}},
		{"a gathering in progress, even with partial=true", "/must-gather/2/data?partial=true",
			errorBody{Error: "gathering 2 is inprogress, not completed; ask again when its status is completed", Status: mustgather.StatusInProgress}},
		{"a failed gathering with a partial archive not asked for", "/must-gather/vm1/data",
			errorBody{Error: "gathering 3 is error, not completed; it ended in error, ask for its partial archive with ?partial=true", Status: mustgather.StatusError}},
		{"a failed gathering without an archive", "/must-gather/4/data?partial=true",
			errorBody{Error: "gathering 4 is error, not completed; it ended in error without an archive", Status: mustgather.StatusError}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" answers 409 with its status", func(t *testing.T) {
			resp := e.do(http.MethodGet, tt.path, "", nil)
			if resp.status != http.StatusConflict {
				t.Fatalf("status %d, want 409: %s", resp.status, resp.body)
			}
			if diff := cmp.Diff(tt.want, errorOf(t, resp)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("partial=true downloads the partial archive of a failed gathering", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/must-gather/3/data?partial=true", "", nil)
		if resp.status != http.StatusOK || !bytes.Equal(resp.body, partial) {
			t.Fatalf("status %d, %d bytes; want 200 and the %d-byte partial archive", resp.status, len(resp.body), len(partial))
		}
		if got, want := resp.header.Get("Content-Disposition"), `attachment; filename="must-gather-3-vm1.tar.gz"`; got != want {
			t.Errorf("Content-Disposition = %q, want %q", got, want)
		}
	})
	golden(t, "conflict", e.do(http.MethodGet, "/must-gather/2/data", "", nil).body)
}

func TestDownloadOfAMissingArchiveIsNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(`{}`).ID
	e.finish(id, mustgather.StatusCompleted, map[string]string{"a": "b"})
	g, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.archives.Delete(context.Background(), mustgather.ArchiveKey(id, g.ArchiveName)); err != nil {
		t.Fatal(err)
	}
	resp := e.do(http.MethodGet, "/must-gather/1/data", "", nil)
	want := errorBody{Error: "gathering not found: the archive of gathering 1 is no longer stored"}
	if resp.status != http.StatusNotFound {
		t.Fatalf("status %d, want 404: %s", resp.status, resp.body)
	}
	if diff := cmp.Diff(want, errorOf(t, resp)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func TestBadRequestsGetTheirStatusAndAJSONError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.create(`{"custom-name": "plan1"}`) // 1, new

	const known = "unknown field; known fields: custom-name, image, image-stream, node-name, command, source-dir, timeout, server, since, since-time, plan, vm, namespace, node-selector, host-network, redact"
	const mediaTypes = "application/json, application/x-www-form-urlencoded or multipart/form-data"
	tooBig := []byte(`{"command": "` + strings.Repeat("x", MaxBodyBytes) + `"}`)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		want        errorBody
	}{
		{"an unknown JSON field", "POST", "/must-gather", "application/json", `{"image": "quay.io/a/b", "colour": "red"}`,
			400, errorBody{Field: "colour", Error: known}},
		{"a JSON field in the wrong case", "POST", "/must-gather", "application/json", `{"Image": "quay.io/a/b"}`,
			400, errorBody{Field: "Image", Error: known}},
		{"a repeated JSON field", "POST", "/must-gather", "application/json", `{"image": "a", "image": "b"}`,
			400, errorBody{Field: "image", Error: "given more than once"}},
		{"a number where a string belongs", "POST", "/must-gather", "application/json", `{"timeout": 15}`,
			400, errorBody{Field: "timeout", Error: "must be a string"}},
		{"a number where true or false belongs", "POST", "/must-gather", "application/json", `{"host-network": 1}`,
			400, errorBody{Field: "host-network", Error: "must be true or false"}},
		{"a string other than true or false for host-network", "POST", "/must-gather", "application/json", `{"host-network": "maybe"}`,
			400, errorBody{Field: "host-network", Error: "must be true or false"}},
		{"a node name and a node selector", "POST", "/must-gather", "application/json", `{"node-name": "worker-0", "node-selector": "zone=a"}`,
			400, errorBody{Field: "node-selector", Error: "give node-name or node-selector, not both"}},
		{"a null where a string belongs", "POST", "/must-gather", "application/json", `{"timeout": null}`,
			400, errorBody{Field: "timeout", Error: "must be a string"}},
		{"a JSON array", "POST", "/must-gather", "application/json", `["image"]`,
			400, errorBody{Field: "body", Error: "must be a JSON object"}},
		{"JSON null", "POST", "/must-gather", "application/json", `null`,
			400, errorBody{Field: "body", Error: "must be a JSON object"}},
		{"truncated JSON", "POST", "/must-gather", "application/json", `{"image": "a"`,
			400, errorBody{Field: "body", Error: "malformed JSON: unexpected end of input"}},
		{"malformed JSON", "POST", "/must-gather", "application/json", `{"image": "a",}`,
			400, errorBody{Field: "body", Error: "malformed JSON at byte 14: invalid character '}' looking for beginning of object key string"}},
		{"a second JSON value after the object", "POST", "/must-gather", "application/json", `{"image": "a"} {}`,
			400, errorBody{Field: "body", Error: "must hold one JSON object and nothing after it"}},
		{"an unknown form field", "POST", "/must-gather", "application/x-www-form-urlencoded", "image=quay.io%2Fa%2Fb&colour=red",
			400, errorBody{Field: "colour", Error: known}},
		{"a repeated form field", "POST", "/must-gather", "application/x-www-form-urlencoded", "timeout=1m&timeout=2m",
			400, errorBody{Field: "timeout", Error: "given more than once"}},
		{"a malformed form", "POST", "/must-gather", "application/x-www-form-urlencoded", "image=%zz",
			400, errorBody{Field: "body", Error: `malformed form: invalid URL escape "%zz"`}},
		{"multipart without a boundary", "POST", "/must-gather", "multipart/form-data", "--x--",
			400, errorBody{Field: "Content-Type", Error: "multipart/form-data needs a boundary parameter"}},
		{"a malformed multipart body", "POST", "/must-gather", "multipart/form-data; boundary=x", "garbage",
			400, errorBody{Field: "body", Error: "malformed multipart form: no part and no closing boundary --x--"}},
		{"an invalid image", "POST", "/must-gather", "application/json", `{"image": "not an image!"}`,
			400, errorBody{Field: "image", Error: `"not an image!" is not a valid image reference`}},
		{"image and image-stream together", "POST", "/must-gather", "application/json", `{"image": "quay.io/a/b", "image-stream": "openshift/must-gather:latest"}`,
			400, errorBody{Field: "image-stream", Error: "give image or image-stream, not both"}},
		{"a timeout that is no duration", "POST", "/must-gather", "application/json", `{"timeout": "15 minutes"}`,
			400, errorBody{Field: "timeout", Error: `must be a duration such as 30s, 10m or 1h30m, or a number of seconds such as 600, got "15 minutes"`}},
		{"a timeout above the maximum", "POST", "/must-gather", "application/x-www-form-urlencoded", "timeout=3h",
			400, errorBody{Field: "timeout", Error: `must be at most 2h, got "3h"`}},
		{"an unknown server", "POST", "/must-gather", "application/json", `{"server": "staging"}`,
			400, errorBody{Field: "server", Error: `unknown server "staging"; known servers: prod`}},
		{"a relative source-dir", "POST", "/must-gather", "application/json", `{"source-dir": "must-gather"}`,
			400, errorBody{Field: "source-dir", Error: "must be an absolute path"}},
		{"a control character in custom-name", "POST", "/must-gather", "application/json", `{"custom-name": "a\u0007b"}`,
			400, errorBody{Field: "custom-name", Error: "must not contain control characters"}},
		{"a custom-name that is not UTF-8 in JSON", "POST", "/must-gather", "application/json", "{\"custom-name\": \"plan\xff1\"}",
			400, errorBody{Field: "custom-name", Error: "must be valid UTF-8"}},
		{"a custom-name with half a surrogate pair in JSON", "POST", "/must-gather", "application/json", `{"custom-name": "plan\ud8001"}`,
			400, errorBody{Field: "custom-name", Error: `must be valid UTF-8; \ud800 is half of a surrogate pair`}},
		{"a custom-name with a surrogate pair in the wrong order in JSON", "POST", "/must-gather", "application/json", `{"custom-name": "\udc00\ud800"}`,
			400, errorBody{Field: "custom-name", Error: `must be valid UTF-8; \udc00 is half of a surrogate pair`}},
		{"a custom-name that is not UTF-8 in a form", "POST", "/must-gather", "application/x-www-form-urlencoded", "custom-name=plan%FF1",
			400, errorBody{Field: "custom-name", Error: "must be valid UTF-8"}},
		{"a custom-name that is not UTF-8 in a multipart form", "POST", "/must-gather", "multipart/form-data; boundary=b",
			"--b\r\nContent-Disposition: form-data; name=\"custom-name\"\r\n\r\nplan\xff1\r\n--b--\r\n",
			400, errorBody{Field: "custom-name", Error: "must be valid UTF-8"}},
		{"another field that is not UTF-8 in JSON", "POST", "/must-gather", "application/json", "{\"timeout\": \"1\xffm\"}",
			400, errorBody{Field: "timeout", Error: "must be valid UTF-8"}},
		{"a right-to-left override in custom-name", "POST", "/must-gather", "application/json", `{"custom-name": "invoice\u202egpj.exe"}`,
			400, errorBody{Field: "custom-name", Error: "must not contain invisible or bidirectional formatting characters; found U+202E"}},
		{"a zero-width space in custom-name", "POST", "/must-gather", "application/x-www-form-urlencoded", "custom-name=plan%E2%80%8B1",
			400, errorBody{Field: "custom-name", Error: "must not contain invisible or bidirectional formatting characters; found U+200B"}},
		{"a body of an unsupported type", "POST", "/must-gather", "text/plain", "image=quay.io/a/b",
			415, errorBody{Field: "Content-Type", Error: `unsupported Content-Type "text/plain"; send ` + mediaTypes}},
		{"a body without a Content-Type", "POST", "/must-gather", "", `{"image": "quay.io/a/b"}`,
			415, errorBody{Field: "Content-Type", Error: "a request body needs a Content-Type: " + mediaTypes}},
		{"an unparsable Content-Type", "POST", "/must-gather", "application/json; charset", `{}`,
			415, errorBody{Field: "Content-Type", Error: `unsupported Content-Type "application/json; charset"; send ` + mediaTypes}},
		{"a body over 64 KiB", "POST", "/must-gather", "application/json", string(tooBig),
			413, errorBody{Error: "request body is larger than 65536 bytes"}},
		{"an unknown status filter", "GET", "/must-gather?status=done", "", "",
			400, errorBody{Field: "status", Error: `must be one of new, inprogress, completed, error; got "done"`}},
		{"a zero limit", "GET", "/must-gather?limit=0", "", "",
			400, errorBody{Field: "limit", Error: `must be a positive integer; got "0"`}},
		{"a limit that is no number", "GET", "/must-gather?limit=ten", "", "",
			400, errorBody{Field: "limit", Error: `must be a positive integer; got "ten"`}},
		{"an unknown list parameter", "GET", "/must-gather?name=plan1", "", "",
			400, errorBody{Field: "name", Error: "unknown query parameter; known: custom-name, status, limit, after"}},
		{"a repeated list parameter", "GET", "/must-gather?limit=1&limit=2", "", "",
			400, errorBody{Field: "limit", Error: "given more than once"}},
		{"a query parameter on a gathering", "GET", "/must-gather/1?verbose=1", "", "",
			400, errorBody{Field: "verbose", Error: "unknown query parameter"}},
		{"an unknown id or name", "GET", "/must-gather/999", "", "",
			404, errorBody{Error: `gathering not found: no gathering has id or custom-name "999"`}},
		{"a name no request could have given", "GET", "/must-gather/" + strings.Repeat("n", 300), "", "",
			404, errorBody{Error: `gathering not found: no gathering has id or custom-name "` + strings.Repeat("n", 64) + `..."`}},
		{"the archive of an unknown gathering", "GET", "/must-gather/nosuch/data", "", "",
			404, errorBody{Error: `gathering not found: no gathering has id or custom-name "nosuch"`}},
		{"a partial flag that is no boolean", "GET", "/must-gather/1/data?partial=maybe", "", "",
			400, errorBody{Field: "partial", Error: `must be true or false; got "maybe"`}},
		{"the archive of a new gathering", "GET", "/must-gather/plan1/data", "", "",
			409, errorBody{Error: "gathering 1 is new, not completed; ask again when its status is completed", Status: mustgather.StatusNew}},
		{"a method the route does not have", "PUT", "/must-gather/1", "", "",
			405, errorBody{Error: "method PUT not allowed; allowed: DELETE, GET, HEAD"}},
		{"a path that is no route", "GET", "/must-gathers", "", "",
			404, errorBody{Error: "no such resource: /must-gathers"}},
		{"a doubled slash", "GET", "//must-gather", "", "",
			404, errorBody{Error: "no such resource: //must-gather; did you mean /must-gather?"}},
		{"a POST to a doubled slash", "POST", "//must-gather", "application/json", `{"custom-name": "plan2"}`,
			404, errorBody{Error: "no such resource: //must-gather; did you mean /must-gather?"}},
		{"a path with ..", "GET", "/must-gather/x/../1/data", "", "",
			404, errorBody{Error: "no such resource: /must-gather/x/../1/data; did you mean /must-gather/1/data?"}},
		{"a path with .", "GET", "/must-gather/./1", "", "",
			404, errorBody{Error: "no such resource: /must-gather/./1; did you mean /must-gather/1?"}},
		{"a path with .. that is no route either", "GET", "/a/../b", "", "",
			404, errorBody{Error: "no such resource: /a/../b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" answers "+fmt.Sprint(tt.status), func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			resp := e.do(tt.method, tt.path, tt.contentType, body)
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			if diff := cmp.Diff(tt.want, errorOf(t, resp)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	list, err := e.store.List(context.Background(), mustgather.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("bad requests stored gatherings: %d in the store, want 1", len(list))
	}
	golden(t, "bad-request", e.do("POST", "/must-gather", "application/json", []byte(`{"colour": "red"}`)).body)
	golden(t, "not-found", e.do("GET", "/must-gather/nosuch", "", nil).body)
}

func TestJSONAnswersKeepAmpersandsAndAngleBracketsAsTheyAre(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		resp response
		want string
	}{
		{"a created gathering", e.do(http.MethodPost, "/must-gather", "application/json",
			[]byte(`{"custom-name": "R&D <plan>", "command": "a && b > /dev/null"}`)),
			"  \"custom-name\": \"R&D <plan>\",\n"},
		{"a created gathering's command", e.do(http.MethodGet, "/must-gather/1", "", nil),
			"  \"command\": \"a && b > /dev/null\",\n"},
		{"a list", e.do(http.MethodGet, "/must-gather", "", nil),
			"    \"custom-name\": \"R&D <plan>\",\n"},
		{"an error that echoes a field name", e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{"<a&b>": "x"}`)),
			"  \"field\": \"<a&b>\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is readable as curl prints it", func(t *testing.T) {
			if !strings.Contains(string(tt.resp.body), tt.want) {
				t.Errorf("body lacks %q:\n%s", tt.want, tt.resp.body)
			}
			if bytes.Contains(tt.resp.body, []byte(`\u00`)) {
				t.Errorf("body escapes characters:\n%s", tt.resp.body)
			}
		})
	}
}

// streamName finds the name of the env's event stream.
func streamName(t testing.TB, e *env) string {
	t.Helper()
	name, err := e.js.StreamNameBySubject(context.Background(), e.bus.RequestedSubject())
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// natsMsg turns a message read from a stream back into the message that
// was published.
func natsMsg(m *jetstream.RawStreamMsg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
}
