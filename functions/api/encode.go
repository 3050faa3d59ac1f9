package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// writeJSON writes v as indented JSON, which is how the seed's curl
// examples show it.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Every type the API writes marshals; this is a programming error.
		panic(fmt.Sprintf("api: encode %T: %v", v, err))
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	// Clients poll gatherings for their status; a cached answer is a stale one.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// The media types a request that starts a gathering may be sent as.
const (
	mediaJSON      = "application/json"
	mediaForm      = "application/x-www-form-urlencoded"
	mediaMultipart = "multipart/form-data"
)

// readBody reads the whole body of r, at most max bytes; a larger one is a
// *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, max))
}

// decodeRequest decodes the Request in body, sent with the Content-Type
// header contentType. It does not validate values (see Request.Validate) but
// rejects unknown and repeated fields and values that are not strings with a
// *mustgather.FieldError, and a media type it does not read with a
// *mediaTypeError. An empty body is a request with every field left to its
// default.
func decodeRequest(contentType string, body []byte) (mustgather.Request, error) {
	if contentType == "" {
		if len(body) == 0 {
			return mustgather.Request{}, nil
		}
		return mustgather.Request{}, &mediaTypeError{got: ""}
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return mustgather.Request{}, &mediaTypeError{got: contentType}
	}
	switch mediaType {
	case mediaJSON:
		return decodeJSON(body)
	case mediaForm:
		return decodeForm(body)
	case mediaMultipart:
		boundary := params["boundary"]
		if boundary == "" {
			return mustgather.Request{}, &mustgather.FieldError{Field: "Content-Type", Message: "multipart/form-data needs a boundary parameter"}
		}
		return decodeMultipart(body, boundary)
	}
	return mustgather.Request{}, &mediaTypeError{got: mediaType}
}

// fields collects request fields by name, rejecting unknown and repeated
// ones.
type fields struct {
	req  mustgather.Request
	seen map[string]bool
}

// claim checks that name is a request field not seen before.
func (f *fields) claim(name string) error {
	if name == "" {
		return bodyErr("a field has an empty name")
	}
	if !slices.Contains(mustgather.RequestFields, name) {
		return &mustgather.FieldError{Field: clip(name), Message: "unknown field; known fields: " + strings.Join(mustgather.RequestFields, ", ")}
	}
	if f.seen[name] {
		return repeated(name)
	}
	if f.seen == nil {
		f.seen = make(map[string]bool, len(mustgather.RequestFields))
	}
	f.seen[name] = true
	return nil
}

func repeated(name string) error {
	return &mustgather.FieldError{Field: name, Message: "given more than once"}
}

// clip shortens a caller's unknown field name before it is echoed back.
func clip(name string) string {
	const max = 64
	if len(name) <= max {
		return name
	}
	return strings.ToValidUTF8(name[:max], "") + "..."
}

func bodyErr(format string, args ...any) error {
	return &mustgather.FieldError{Field: "body", Message: fmt.Sprintf(format, args...)}
}

// decodeJSON reads one JSON object of string fields. It walks the tokens
// rather than unmarshalling into a struct because encoding/json matches
// names case-insensitively and keeps the last of repeated names, and the
// API wants both to be errors.
func decodeJSON(body []byte) (mustgather.Request, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return mustgather.Request{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return mustgather.Request{}, jsonErr(err)
	}
	if tok != json.Delim('{') {
		return mustgather.Request{}, bodyErr("must be a JSON object")
	}
	var f fields
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return mustgather.Request{}, jsonErr(err)
		}
		name := tok.(string) // inside an object, the decoder only yields string keys here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return mustgather.Request{}, jsonErr(err)
		}
		if err := f.claim(name); err != nil {
			return mustgather.Request{}, err
		}
		var value string
		if raw[0] != '"' || json.Unmarshal(raw, &value) != nil {
			return mustgather.Request{}, &mustgather.FieldError{Field: name, Message: "must be a string"}
		}
		f.req.Set(name, value)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return mustgather.Request{}, jsonErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return mustgather.Request{}, bodyErr("must hold one JSON object and nothing after it")
	}
	return f.req, nil
}

func jsonErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return bodyErr("malformed JSON: unexpected end of input")
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return bodyErr("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	return bodyErr("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// decodeForm reads an application/x-www-form-urlencoded body.
func decodeForm(body []byte) (mustgather.Request, error) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return mustgather.Request{}, bodyErr("malformed form: %v", err)
	}
	// Sorted, so that the field an error names does not depend on map order.
	var f fields
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if err := f.claim(name); err != nil {
			return mustgather.Request{}, err
		}
		if len(values[name]) > 1 {
			return mustgather.Request{}, repeated(name)
		}
		f.req.Set(name, values[name][0])
	}
	return f.req, nil
}

// decodeMultipart reads a multipart/form-data body. A part may carry a file
// name (curl -F 'command=<file' and -F 'command=@file' both work); its
// content is the value.
func decodeMultipart(body []byte, boundary string) (mustgather.Request, error) {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var f fields
	for parts := 0; ; parts++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			// The reader takes a body without a single boundary for an
			// empty form; only an empty body, or a closing boundary alone,
			// is one.
			if parts == 0 && len(body) > 0 && !bytes.Contains(body, []byte("--"+boundary+"--")) {
				return mustgather.Request{}, bodyErr("malformed multipart form: no part and no closing boundary --%s--", boundary)
			}
			return f.req, nil
		}
		if err != nil {
			return mustgather.Request{}, bodyErr("malformed multipart form: %v", err)
		}
		name := p.FormName()
		if name == "" {
			return mustgather.Request{}, bodyErr("multipart part without a form field name")
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return mustgather.Request{}, bodyErr("malformed multipart form: %v", err)
		}
		if err := f.claim(name); err != nil {
			return mustgather.Request{}, err
		}
		f.req.Set(name, string(value))
	}
}

// query returns r's query parameters, rejecting unknown and repeated ones
// so that a misspelt filter is an error rather than silently ignored. An
// empty value is the same as a missing one.
func query(r *http.Request, known ...string) (map[string]string, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &mustgather.FieldError{Field: "query", Message: fmt.Sprintf("malformed query: %v", err)}
	}
	q := make(map[string]string, len(values))
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if !slices.Contains(known, name) {
			msg := "unknown query parameter"
			if len(known) > 0 {
				msg += "; known: " + strings.Join(known, ", ")
			}
			return nil, &mustgather.FieldError{Field: clip(name), Message: msg}
		}
		if len(values[name]) > 1 {
			return nil, repeated(name)
		}
		if v := values[name][0]; v != "" {
			q[name] = v
		}
	}
	return q, nil
}
