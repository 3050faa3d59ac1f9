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
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// writeJSON writes v as indented JSON, which is how the seed's curl
// examples show it. It leaves &, < and > as they are: the answers are read
// by people and programs, never embedded in HTML, and a command such as
// "a && b" should read as sent rather than as "a \u0026\u0026 b".
func writeJSON(w http.ResponseWriter, status int, v any) {
	writeEncoded(w, status, encodeJSON(v))
}

// encodeJSON returns v as the API writes it: indented, ending with a
// newline.
func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil { // Encode ends the value with a newline
		// Every type the API writes marshals; this is a programming error.
		panic(fmt.Sprintf("api: encode %T: %v", v, err))
	}
	return buf.Bytes()
}

// EncodeGathering returns g as GET /must-gather/{id} answers it, for a view
// (package view) to keep.
func EncodeGathering(g mustgather.Gathering) []byte { return encodeJSON(g) }

// writeEncoded writes b, made by encodeJSON, with status.
func writeEncoded(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	jsonHeaders(h)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// jsonHeaders sets the headers of every JSON answer but its length. The
// values are shared, not copied per answer: net/http only reads them, and
// Set and Add put new slices in their place.
func jsonHeaders(h http.Header) {
	h["Content-Type"] = headerJSON
	// Clients poll gatherings for their status; a cached answer is a stale one.
	h["Cache-Control"] = headerNoStore
	h["X-Content-Type-Options"] = headerNoSniff
}

var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
	headerNoSniff = []string{"nosniff"}
)

// The media types a request that starts a gathering may be sent as.
const (
	mediaJSON      = "application/json"
	mediaForm      = "application/x-www-form-urlencoded"
	mediaMultipart = "multipart/form-data"
)

// readBody reads the whole body of r: at most max bytes, a larger one is a
// *http.MaxBytesError; within timeout from now, a slower one is a
// *bodyError that times out. Any other failure to read is a *bodyError too:
// the body was cut off or framed wrongly (a bad chunk), which only the
// client can cause.
func readBody(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) ([]byte, error) {
	if r.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	if r.ContentLength == 0 {
		// No body. net/http already reads ahead on the connection for the
		// next request; a deadline set now would cut that read off, and
		// cancel the request's context, while the handler still works.
		return nil, nil
	}
	// This replaces the server's ReadTimeout, which counts from the
	// request's first byte, so that a stalled body ends when the API says.
	// Once the body is read, net/http clears it for the next request. A
	// writer that cannot set it (http.ErrNotSupported) leaves the server's.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, err
	}
	if err != nil {
		return nil, &bodyError{err: err, timeout: timeout}
	}
	return body, nil
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

// decodeJSON reads one JSON object of string fields (a bool field may
// also be true or false). It walks the tokens
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
		switch {
		case slices.Contains(mustgather.BoolRequestFields, name) && (string(raw) == "true" || string(raw) == "false"):
			value = string(raw)
		case slices.Contains(mustgather.BoolRequestFields, name) && raw[0] != '"':
			return mustgather.Request{}, &mustgather.FieldError{Field: name, Message: "must be true or false"}
		case raw[0] != '"' || json.Unmarshal(raw, &value) != nil:
			return mustgather.Request{}, &mustgather.FieldError{Field: name, Message: "must be a string"}
		}
		if msg := notUTF8(raw); msg != "" {
			return mustgather.Request{}, &mustgather.FieldError{Field: name, Message: msg}
		}
		if err := f.req.Set(name, value); err != nil {
			return mustgather.Request{}, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return mustgather.Request{}, jsonErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return mustgather.Request{}, bodyErr("must hold one JSON object and nothing after it")
	}
	return f.req, nil
}

// notUTF8 says why the JSON string literal lit does not hold valid UTF-8,
// or returns "" when it does. encoding/json turns invalid bytes, and \u
// escapes of half a surrogate pair, into U+FFFD, which would change the
// value without a word; the form decoders keep such bytes, for Validate to
// reject, so JSON must not be more lenient.
func notUTF8(lit []byte) string {
	if !utf8.Valid(lit) {
		return "must be valid UTF-8"
	}
	// lit is a valid literal: every \u has four hex digits after it.
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if lit[i] != 'u' {
			continue
		}
		r := hexRune(lit[i+1 : i+5])
		if !utf16.IsSurrogate(r) {
			i += 4
			continue
		}
		if i+11 < len(lit) && lit[i+5] == '\\' && lit[i+6] == 'u' &&
			utf16.DecodeRune(r, hexRune(lit[i+7:i+11])) != utf8.RuneError {
			i += 10
			continue
		}
		return fmt.Sprintf("must be valid UTF-8; %s is half of a surrogate pair", lit[i-1:i+5])
	}
	return ""
}

func hexRune(hex []byte) rune {
	n, _ := strconv.ParseUint(string(hex), 16, 32)
	return rune(n)
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
		if err := f.req.Set(name, values[name][0]); err != nil {
			return mustgather.Request{}, err
		}
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
		if err := f.req.Set(name, string(value)); err != nil {
			return mustgather.Request{}, err
		}
	}
}

// query returns r's query parameters, rejecting unknown and repeated ones
// so that a misspelt filter is an error rather than silently ignored. An
// empty value is the same as a missing one.
func query(r *http.Request, known ...string) (map[string]string, error) {
	if r.URL.RawQuery == "" {
		return nil, nil // reading a nil map is reading an empty one
	}
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
