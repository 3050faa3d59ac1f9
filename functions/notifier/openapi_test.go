package notifier

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/kubev2v/must-gather-functions/functions/api"
)

func init() {
	// An event stream is text to the document.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.FileBodyDecoder)
}

func TestTheStreamsAnswerAsTheOpenAPIDocumentSays(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{MaxClients: 1}, envOptions{})
	g := e.create(t, "documented")
	e.claim(t, g.ID)
	g = e.apply(t, completed(g.ID, 1))
	rev := strconv.FormatUint(g.Revision, 10)

	for _, tt := range []struct {
		name, path string
		header     []string
		status     int
	}{
		{"a finished gathering's stream", "/must-gather/documented/events", nil, 200},
		{"a resumed stream of a finished gathering", "/must-gather/1/events", []string{"Last-Event-ID", rev}, 200},
		{"an unknown gathering", "/must-gather/999/events", nil, 404},
		{"a bad Last-Event-ID", "/events", []string{"Last-Event-ID", "x"}, 400},
		{"more streams than the server serves", "/events", nil, 503},
	} {
		t.Run(tt.name+" answers "+strconv.Itoa(tt.status)+" as documented", func(t *testing.T) {
			if tt.status == 503 {
				hold := e.open(t, "/events")
				hold.connected(t)
				defer hold.close()
			}
			req, err := http.NewRequest(http.MethodGet, e.base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(tt.header); i += 2 {
				req.Header.Set(tt.header[i], tt.header[i+1])
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("no route in the document: %v", err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			if err := openapi3filter.ValidateRequest(context.Background(), in); (err != nil) != (tt.status == 400) {
				t.Errorf("the document's verdict on the request: %v", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tt.status {
				t.Fatalf("%d %s (%v), want %d", resp.StatusCode, body, err, tt.status)
			}
			err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
				Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
			})
			if err != nil {
				t.Errorf("response does not match the document: %v\n%s", err, body)
			}
		})
	}
}
