package presign

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// The query parameters of a local link.
const (
	ParamExpires   = "expires"
	ParamSignature = "signature"
)

// ErrBadSignature is a local link whose signature does not match: made by
// another key, or changed since it was made.
var ErrBadSignature = fmt.Errorf("%w: the download URL's signature is not valid; ask for a new URL with GET /must-gather/{id}/url", mustgather.ErrForbidden)

// ErrNoBase is a local link asked for outside a request while no public
// URL of the API is configured.
var ErrNoBase = errors.New("presign: no base URL for a download link: the API's public URL is not configured and there is no request to take it from")

// ExpiredError is a local link whose time has passed. It wraps
// mustgather.ErrForbidden.
type ExpiredError struct{ At time.Time }

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("the download URL expired at %s; ask for a new URL with GET /must-gather/{id}/url", e.At.UTC().Format(time.RFC3339))
}

func (e *ExpiredError) Unwrap() error { return mustgather.ErrForbidden }

// Local links to archives through the API's own download path,
// <base>/must-gather/<id>/data?expires=<unix seconds>&signature=<hex>, where
// the signature is an HMAC-SHA256, under a key of the server's, of the
// gathering's id, its archive-name and expires. Such a request needs no
// bearer token; the API checks it with Verify.
type Local struct {
	key    []byte
	random bool
	ttl    time.Duration
	base   string // without a trailing slash; empty: the request's
	now    func() time.Time
}

var (
	_ Linker   = (*Local)(nil)
	_ Verifier = (*Local)(nil)
)

// NewLocal returns a Linker of local links made as c says, telling time
// with now (nil: time.Now).
func NewLocal(c Config, now func() time.Time) (*Local, error) {
	if err := errors.Join(c.Check()...); err != nil {
		return nil, fmt.Errorf("presign: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	l := &Local{key: []byte(c.Secret), ttl: c.TTL, base: strings.TrimSuffix(c.PublicURL, "/"), now: now}
	if len(l.key) == 0 {
		l.key, l.random = make([]byte, minSecretBytes), true
		if _, err := rand.Read(l.key); err != nil {
			return nil, fmt.Errorf("presign: random key: %w", err)
		}
	}
	return l, nil
}

// RandomKey reports whether the key is this process's own, made at random
// because no secret was configured: links made by one process do not work
// in another, nor after a restart.
func (l *Local) RandomKey() bool { return l.random }

// Link returns a signed URL of g's download path that works until ttl from
// now, rounded down to the second. It starts with the configured public
// URL, else with the base WithBase put on ctx, else fails with ErrNoBase.
func (l *Local) Link(ctx context.Context, g mustgather.Gathering) (string, time.Time, error) {
	if err := linkable(g); err != nil {
		return "", time.Time{}, err
	}
	base := l.base
	if base == "" {
		base, _ = ctx.Value(baseKey{}).(string)
	}
	if base == "" {
		return "", time.Time{}, ErrNoBase
	}
	expires := l.now().Add(l.ttl).Unix()
	q := url.Values{
		ParamExpires:   {strconv.FormatInt(expires, 10)},
		ParamSignature: {hex.EncodeToString(l.sign(g, expires))},
	}
	return base + "/must-gather/" + g.ID.String() + "/data?" + q.Encode(), time.Unix(expires, 0).UTC(), nil
}

// sign is the HMAC of what a link stands for. The fields are separated by
// a byte that none of them holds, so that no two links sign the same
// message.
func (l *Local) sign(g mustgather.Gathering, expires int64) []byte {
	m := hmac.New(sha256.New, l.key)
	fmt.Fprintf(m, "must-gather-download\x00%d\x00%s\x00%d", g.ID, g.ArchiveName, expires)
	return m.Sum(nil)
}

// Verify checks a link for g: its signature first, in constant time, and
// only then whether it has expired, so that nobody learns anything about a
// link that was not made here.
func (l *Local) Verify(g mustgather.Gathering, expires, signature string) error {
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	sig, err := hex.DecodeString(signature)
	if err != nil || !hmac.Equal(sig, l.sign(g, exp)) {
		return ErrBadSignature
	}
	if at := time.Unix(exp, 0); !l.now().Before(at) {
		return &ExpiredError{At: at}
	}
	return nil
}

type baseKey struct{}

// WithBase returns ctx carrying the base URL (scheme://host[/path]) that
// local links start with when no public URL is configured: the API puts
// the base of each request there.
func WithBase(ctx context.Context, base string) context.Context {
	return context.WithValue(ctx, baseKey{}, strings.TrimSuffix(base, "/"))
}

// RequestBase returns the scheme and host r reached the API at:
// https when r came over TLS, else http, and r's Host. Only when the API
// sits behind a proxy that sets them, and trustForwarded says so, do
// X-Forwarded-Proto and X-Forwarded-Host (their first value) count instead;
// otherwise any client could choose them. It returns "" when r names no
// usable host.
func RequestBase(r *http.Request, trustForwarded bool) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if trustForwarded {
		if p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	u, err := parseBase(scheme + "://" + host)
	if err != nil || u.Host != host || u.Path != "" {
		return ""
	}
	return u.String()
}

// firstValue is the first of a comma-separated list of header values, as
// proxies append theirs.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}
