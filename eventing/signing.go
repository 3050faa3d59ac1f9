package eventing

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// SignatureExtension is the CloudEvents extension attribute that carries an
// event's signature: "sha256=" and the lowercase hex HMAC-SHA256, under the
// shared signing key, of the event's Canonical form. Anyone who can post to
// a Broker can post an event; only those who hold the key can sign one.
const SignatureExtension = "mgfsignature"

// signaturePrefix names the algorithm, so that another can follow.
const signaturePrefix = "sha256="

// ErrUnsigned marks an event without a signature, received where one is
// required.
var ErrUnsigned = errors.New("event is not signed")

// ErrBadSignature marks an event whose signature does not match its
// content under the signing key: forged, or changed after it was signed.
var ErrBadSignature = errors.New("event signature does not match")

// Canonical returns the bytes an event's signature covers: a version line,
// then the event's id, type, source, subject, time and data, each as its
// length in bytes, a colon, the value and a newline. The time is RFC 3339
// with nanoseconds in UTC (empty if unset), as every CloudEvents binding
// carries it; JSON data is compacted, so that a transport that re-indents
// it leaves the signature valid, while any other data is taken byte for
// byte. Extensions, the signature among them, are not covered: a broker
// adds its own.
func Canonical(e cloudevents.Event) []byte {
	var b bytes.Buffer
	b.WriteString("mgfsignature-v1\n")
	field := func(v []byte) {
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.Write(v)
		b.WriteByte('\n')
	}
	var at string
	if t := e.Time(); !t.IsZero() {
		at = t.UTC().Format(time.RFC3339Nano)
	}
	for _, s := range []string{e.ID(), e.Type(), e.Source(), e.Subject(), at} {
		field([]byte(s))
	}
	data := e.Data()
	if json.Valid(data) {
		var c bytes.Buffer
		if json.Compact(&c, data) == nil {
			data = c.Bytes()
		}
	}
	field(data)
	return b.Bytes()
}

// signature returns the value of SignatureExtension for e under key.
func signature(e cloudevents.Event, key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(Canonical(e))
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Sign sets e's SignatureExtension under key. Sign it last: a change to
// what Canonical covers voids the signature.
func Sign(e *cloudevents.Event, key []byte) {
	e.SetExtension(SignatureExtension, signature(*e, key))
}

// Verify checks e's signature under key. It returns an error wrapping
// ErrUnsigned when e has none, and ErrBadSignature when it does not match.
func Verify(e cloudevents.Event, key []byte) error {
	v, ok := e.Extensions()[SignatureExtension]
	if !ok {
		return fmt.Errorf("event %s (%s): %w", e.ID(), e.Type(), ErrUnsigned)
	}
	got, _ := v.(string)
	if !strings.HasPrefix(got, signaturePrefix) || !hmac.Equal([]byte(got), []byte(signature(e, key))) {
		return fmt.Errorf("event %s (%s): %w", e.ID(), e.Type(), ErrBadSignature)
	}
	return nil
}
