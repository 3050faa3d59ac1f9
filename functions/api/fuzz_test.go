package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// FuzzDecodeRequest checks that any body, sent as any media type, decodes
// and validates to either a valid request or an error the API answers with
// 400 naming a field, or 415, and never panics. The seed corpus is in
// testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("application/json", []byte(`{"image": "quay.io/maufart/forklift-must-gather", "timeout": "15m"}`))
	f.Add("application/x-www-form-urlencoded", []byte("custom-name=plan1&command=PLAN%3Dplan1+%2Fusr%2Fbin%2Ftargeted"))
	f.Add("multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"timeout\"\r\n\r\n5m\r\n--b--\r\n"))
	f.Add("", []byte(""))
	f.Add("application/json", []byte(`{"custom-name": "\ud83d\ude80 \ud800 \u00e9", "command": "a && b"}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req, err := decodeRequest(contentType, body)
		if err != nil {
			status, answer := httpError(err)
			switch {
			case errors.As(err, new(*mustgather.FieldError)) && status == http.StatusBadRequest && answer.Field != "":
			case errors.As(err, new(*mediaTypeError)) && status == http.StatusUnsupportedMediaType && answer.Field == "Content-Type":
			default:
				t.Fatalf("decode error %T %v answers %d %+v; want a FieldError (400) or a media type error (415)", err, err, status, answer)
			}
			if answer.Error == "" {
				t.Fatalf("empty error message for %v", err)
			}
			return
		}
		valid, err := req.Validate(testPolicy)
		if err != nil {
			fe, ok := errors.AsType[*mustgather.FieldError](err)
			if !ok || !slices.Contains(mustgather.RequestFields, fe.Field) {
				t.Fatalf("Validate error %T %v; want a FieldError naming a request field", err, err)
			}
			return
		}
		if again, err := valid.Validate(testPolicy); err != nil || again != valid {
			t.Fatalf("Validate is not idempotent: %+v, %v", again, err)
		}

		// A valid request comes back unchanged when sent again as JSON and
		// as a form.
		b, err := json.Marshal(valid)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := decodeRequest("application/json", b); err != nil || got != valid {
			t.Fatalf("JSON round trip of %+v: %+v, %v", valid, got, err)
		}
		form := url.Values{}
		var byName map[string]string
		if err := json.Unmarshal(b, &byName); err != nil {
			t.Fatal(err)
		}
		for k, v := range byName {
			form.Set(k, v)
		}
		if got, err := decodeRequest("application/x-www-form-urlencoded", []byte(form.Encode())); err != nil || got != valid {
			t.Fatalf("form round trip of %+v: %+v, %v", valid, got, err)
		}
	})
}

// FuzzBearerToken checks that any Authorization and
// X-Forwarded-Access-Token headers yield either a token the API may pass
// on, taken from the header it came in, or a 401 that does not echo the
// header, and never a panic. The seed corpus is in
// testdata/fuzz/FuzzBearerToken.
func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer abc.def-ghi_jkl~mno+pqr/stu==", "", false)
	f.Add("bearer  sha256~token", "", false)
	f.Add("Basic dXNlcjpwYXNz", "sha256~forwarded", true)
	f.Add("Bearer", "", false)
	f.Add("Bearer a b", "", false)
	f.Add("", "eyJhbGciOiJFUzI1NiJ9.e30.sig", true)
	f.Fuzz(func(t *testing.T, authorization, forwardedToken string, forwarded bool) {
		h := http.Header{}
		if authorization != "" {
			h.Set("Authorization", authorization)
		}
		if forwardedToken != "" {
			h.Set("X-Forwarded-Access-Token", forwardedToken)
		}
		tok, err := bearerToken(h, forwarded)
		if err != nil {
			status, answer := httpError(err)
			if status != http.StatusUnauthorized {
				t.Fatalf("%v answers %d, want 401", err, status)
			}
			// Every message is shorter than this; a longer one would hold
			// what the client sent.
			if len(answer.Error) > 100 {
				t.Fatalf("answer %q is long enough to echo a header", answer.Error)
			}
			return
		}
		if tok == "" || len(tok) > maxTokenBytes {
			t.Fatalf("token of %d bytes", len(tok))
		}
		from := authorization
		if forwarded && forwardedToken != "" {
			from = forwardedToken
		}
		if !strings.Contains(from, tok) {
			t.Fatalf("token %q is not from the header %q", tok, from)
		}
		if strings.ContainsAny(tok, " \t\r\n\",;") {
			t.Fatalf("token %q holds a separator", tok)
		}
	})
}
