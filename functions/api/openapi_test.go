package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

func init() {
	// The archive is opaque to the document: a binary string.
	openapi3filter.RegisterBodyDecoder("application/gzip", openapi3filter.FileBodyDecoder)
}

// loadOpenAPI loads and validates the embedded document, and returns a
// router over it that matches any host.
func loadOpenAPI(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

func TestOpenAPIDocumentIsServedAndDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp := e.do(http.MethodGet, "/openapi.yaml", "", nil)
	if resp.status != http.StatusOK || !bytes.Equal(resp.body, OpenAPI) {
		t.Fatalf("GET /openapi.yaml: %d, %d bytes; want 200 and the embedded document", resp.status, len(resp.body))
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	doc, _ := loadOpenAPI(t)
	var got []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			got = append(got, method+" "+path)
		}
	}
	want := []string{
		"DELETE /must-gather/{id}", "GET /events", "GET /healthz", "GET /metrics", "GET /must-gather", "GET /must-gather/{id}", "GET /must-gather/{id}/data",
		"GET /must-gather/{id}/events", "GET /must-gather/{id}/url", "GET /openapi.yaml", "GET /readyz", "POST /must-gather",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("operations in the document: %v, want the routes %v", got, want)
	}
}

func TestRealRequestsAndResponsesMatchTheOpenAPIDocument(t *testing.T) {
	t.Parallel()
	_, router := loadOpenAPI(t)
	e := newEnv(t)
	e.create(`{"custom-name": "plan1"}`)                                                                                // 1 new
	archive := e.finish(e.create(`{"custom-name": "vm1"}`).ID, mustgather.StatusCompleted, map[string]string{"f": "x"}) // 2
	e.claim(e.create(`{"custom-name": "running"}`).ID)                                                                  // 3 inprogress
	mpType, mpBody := multipartBody(t, "custom-name", "vm2", "timeout", "5m")

	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		header      []string
		status      int
		// specRejects says that the document itself rules the request out,
		// so that ValidateRequest must fail as the server does.
		specRejects bool
	}{
		{name: "POST JSON", method: "POST", path: "/must-gather", contentType: "application/json", body: `{"image": "quay.io/maufart/forklift-must-gather", "timeout": "15m"}`, status: 201},
		{name: "POST form", method: "POST", path: "/must-gather", contentType: "application/x-www-form-urlencoded", body: "custom-name=plan2&timeout=20m", status: 201},
		{name: "POST multipart", method: "POST", path: "/must-gather", contentType: mpType, body: string(mpBody), status: 201},
		{name: "POST with no body", method: "POST", path: "/must-gather", status: 201},
		{name: "list", method: "GET", path: "/must-gather", status: 200},
		{name: "filtered list", method: "GET", path: "/must-gather?custom-name=plan1&status=new&limit=5", status: 200},
		{name: "get by id", method: "GET", path: "/must-gather/2", status: 200},
		{name: "get by name", method: "GET", path: "/must-gather/plan1", status: 200},
		{name: "download", method: "GET", path: "/must-gather/2/data", status: 200},
		{name: "download a range", method: "GET", path: "/must-gather/vm1/data", header: []string{"Range", "bytes=0-9"}, status: 206},
		{name: "a range past the end", method: "GET", path: "/must-gather/vm1/data", header: []string{"Range", "bytes=100000-"}, status: 416},
		{name: "a failed precondition", method: "GET", path: "/must-gather/vm1/data", header: []string{"If-Match", `"x"`}, status: 412},
		{name: "unknown field", method: "POST", path: "/must-gather", contentType: "application/json", body: `{"colour": "red"}`, status: 400, specRejects: true},
		{name: "invalid value", method: "POST", path: "/must-gather", contentType: "application/json", body: `{"timeout": "soon"}`, status: 400},
		{name: "bad status filter", method: "GET", path: "/must-gather?status=done", status: 400, specRejects: true},
		{name: "bad limit", method: "GET", path: "/must-gather?limit=0", status: 400, specRejects: true},
		{name: "unknown gathering", method: "GET", path: "/must-gather/999", status: 404},
		{name: "archive of an unknown gathering", method: "GET", path: "/must-gather/999/data", status: 404},
		{name: "archive not ready", method: "GET", path: "/must-gather/1/data", status: 409},
		{name: "unsupported media type", method: "POST", path: "/must-gather", contentType: "text/plain", body: "hello", status: 415, specRejects: true},
		{name: "body too large", method: "POST", path: "/must-gather", contentType: "application/json", body: `{"command": "` + strings.Repeat("x", MaxBodyBytes) + `"}`, status: 413, specRejects: true},
		{name: "cancel a gathering in progress", method: "DELETE", path: "/must-gather/running", status: 202},
		{name: "cancel a new gathering", method: "DELETE", path: "/must-gather/plan1", status: 200},
		{name: "delete an ended gathering without purge", method: "DELETE", path: "/must-gather/2", status: 409},
		{name: "delete with another revision", method: "DELETE", path: "/must-gather/2", header: []string{"If-Match", `"1"`}, status: 412},
		{name: "delete with a bad purge", method: "DELETE", path: "/must-gather/2?purge=yes", status: 400, specRejects: true},
		{name: "delete an unknown gathering", method: "DELETE", path: "/must-gather/999", status: 404},
		{name: "purge an ended gathering", method: "DELETE", path: "/must-gather/2?purge=true", status: 204},
		{name: "liveness", method: "GET", path: "/healthz", status: 200},
		{name: "readiness", method: "GET", path: "/readyz", status: 200},
		{name: "metrics", method: "GET", path: "/metrics", status: 200},
		{name: "document", method: "GET", path: "/openapi.yaml", status: 200},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s answers %d as documented", tt.name, tt.status), func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			req := e.request(tt.method, tt.path, tt.contentType, body, tt.header...)
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("no route in the document: %v", err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: authOff}
			err = openapi3filter.ValidateRequest(ctx, in)
			if tt.specRejects && err == nil {
				t.Errorf("the document accepts a request the server rejects")
			}
			if !tt.specRejects && err != nil {
				t.Errorf("the document rejects the request: %v", err)
			}

			resp := e.do(tt.method, tt.path, tt.contentType, body, tt.header...)
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			if tt.path == "/must-gather/2/data" && !bytes.Equal(resp.body, archive) {
				t.Errorf("download differs from the archive")
			}
			if err := validateResponse(in, resp); err != nil {
				t.Errorf("response does not match the document: %v\nbody: %.500s", err, resp.body)
			}
		})
	}
}

// validateResponse checks that resp is an answer the document gives to the
// request in, with a documented status.
func validateResponse(in *openapi3filter.RequestValidationInput, resp response) error {
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.status,
		Header:                 resp.header,
		Body:                   io.NopCloser(bytes.NewReader(resp.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
}

// authOff validates requests to a server with authorization off: they
// carry no token, though the document asks for one.
var authOff = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
