package sinks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the HTTP header that carries a delivery's signature
// when a secret is configured:
//
//	X-Must-Gather-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//
// v1 is the HMAC-SHA256, keyed with the secret, of
//
//	<t> "\n" <event id (the ce-id header)> "\n" <request body>
//
// so a receiver that checks it with Verify detects a changed body, a body
// moved under another event id, and a request replayed after the
// tolerance. Every attempt is signed anew, with its own t.
const SignatureHeader = "X-Must-Gather-Signature"

// DefaultTolerance is how far from the receiver's clock a signature's
// timestamp may be for Verify to accept it, as receivers are advised.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	// ErrInvalidSignature: the header is missing or malformed, or no v1
	// value matches the secret, event id and body.
	ErrInvalidSignature = errors.New("invalid signature")
	// ErrSignatureExpired: the signature matches but its timestamp is
	// further than the tolerance from now, as a replayed request's is.
	ErrSignatureExpired = errors.New("signature timestamp outside tolerance")
)

// Sign returns the value of SignatureHeader for the event id and body,
// signed with secret at time at.
func Sign(secret []byte, id string, body []byte, at time.Time) string {
	t := at.Unix()
	return fmt.Sprintf("t=%d,v1=%s", t, hex.EncodeToString(mac(secret, t, id, body)))
}

func mac(secret []byte, t int64, id string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(strconv.FormatInt(t, 10)))
	h.Write([]byte{'\n'})
	h.Write([]byte(id))
	h.Write([]byte{'\n'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks header, the value of SignatureHeader, against the event id
// (the ce-id header) and the raw request body with secret, and rejects a
// timestamp further than tolerance from now (DefaultTolerance if
// tolerance is 0). It accepts a header with several v1 values, one of which
// must match. It returns nil, or an error that wraps ErrInvalidSignature or
// ErrSignatureExpired.
func Verify(secret []byte, header, id string, body []byte, tolerance time.Duration, now time.Time) error {
	if tolerance == 0 {
		tolerance = DefaultTolerance
	}
	if strings.ContainsRune(id, '\n') {
		// No header holds one, and it would make the signed text ambiguous.
		return fmt.Errorf("%w: the event id holds a newline", ErrInvalidSignature)
	}
	var (
		t     int64
		haveT bool
		sigs  [][]byte
	)
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %q is not key=value", ErrInvalidSignature, part)
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: timestamp %q is not a number", ErrInvalidSignature, v)
			}
			t, haveT = n, true
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return fmt.Errorf("%w: v1 is not hex", ErrInvalidSignature)
			}
			sigs = append(sigs, b)
		}
	}
	if !haveT || len(sigs) == 0 {
		return fmt.Errorf("%w: want t=<unix seconds>,v1=<hex>", ErrInvalidSignature)
	}
	want := mac(secret, t, id, body)
	match := false
	for _, s := range sigs {
		match = hmac.Equal(s, want) || match
	}
	if !match {
		return fmt.Errorf("%w: no v1 matches", ErrInvalidSignature)
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s from now", ErrSignatureExpired, d.Round(time.Second))
	}
	return nil
}
