// Package presign makes download links for the archives of gatherings:
// URLs that work without credentials until they expire, so that a browser
// (or a trusted subscriber) can download an archive with a plain GET. With
// archives in S3 a link is a presigned GET of the object (see S3); with
// archives in a local folder it is a URL of the API itself signed with an
// expiring HMAC-SHA256 (see Local).
package presign

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Lifetimes of a link. S3 signs for at least a second and at most seven
// days, in whole seconds; local links follow the same rules.
const (
	DefaultTTL = 15 * time.Minute
	MinTTL     = time.Second
	MaxTTL     = 7 * 24 * time.Hour
)

// Config is how links are made.
type Config struct {
	// TTL is how long a link works, in whole seconds, from MinTTL to
	// MaxTTL.
	TTL time.Duration
	// PublicURL is where clients reach the API, such as
	// https://must-gather.example.com or a proxy's path to it; local links
	// start with it. Empty: each link starts with the base of the request
	// that asks for it (see RequestBase).
	PublicURL string
	// Secret is the key local links are signed with. Empty: a random key
	// of the process, which the links of other processes, and of this one
	// after a restart, do not verify with.
	Secret string
}

// DefaultConfig returns the documented defaults: links that work for
// DefaultTTL, based on the request, signed with a random key.
func DefaultConfig() Config { return Config{TTL: DefaultTTL} }

// minSecretBytes is the shortest Secret: HMAC-SHA256 wants a key as long as
// its output.
const minSecretBytes = 32

// Check reports what is wrong with c, each error naming the field it is
// about. It never quotes the secret.
func (c Config) Check() []error {
	var errs []error
	if err := CheckTTL(c.TTL); err != nil {
		errs = append(errs, fmt.Errorf("TTL: %w", err))
	}
	if err := CheckPublicURL(c.PublicURL); err != nil {
		errs = append(errs, fmt.Errorf("PublicURL: %w", err))
	}
	if err := CheckSecret(c.Secret); err != nil {
		errs = append(errs, fmt.Errorf("Secret: %w", err))
	}
	return errs
}

// CheckTTL reports whether ttl is a lifetime S3 can sign for.
func CheckTTL(ttl time.Duration) error {
	switch {
	case ttl < MinTTL || ttl > MaxTTL:
		return fmt.Errorf("must be from %s to %s (S3's limits), got %s", MinTTL, MaxTTL, ttl)
	case ttl%time.Second != 0:
		return fmt.Errorf("must be whole seconds, got %s", ttl)
	}
	return nil
}

// CheckPublicURL reports whether s, if set, is a base URL links can start
// with: http or https, a host, and optionally a port and a path.
func CheckPublicURL(s string) error {
	if s == "" {
		return nil
	}
	_, err := parseBase(s)
	return err
}

// CheckSecret reports whether s, if set, is long enough a key. It never
// quotes s.
func CheckSecret(s string) error {
	if s != "" && len(s) < minSecretBytes {
		return fmt.Errorf("must be at least %d bytes, got %d", minSecretBytes, len(s))
	}
	return nil
}

// Linker makes a download link for the archive of a gathering.
type Linker interface {
	// Link returns a URL that downloads g's archive without credentials
	// until expires. g must be completed with an archive; otherwise the
	// error wraps mustgather.ErrNotCompleted.
	Link(ctx context.Context, g mustgather.Gathering) (url string, expires time.Time, err error)
}

// Verifier checks the links of a Linker that the API serves itself.
type Verifier interface {
	// Verify reports whether a request for g's archive with the query
	// parameters expires and signature carries a link made for g that has
	// not expired. Its error wraps mustgather.ErrForbidden.
	Verify(g mustgather.Gathering, expires, signature string) error
}

// linkable reports, as an error, why g has no archive to link to.
func linkable(g mustgather.Gathering) error {
	if g.Status != mustgather.StatusCompleted || g.ArchiveName == "" {
		return fmt.Errorf("%w: gathering %d is %s without an archive to link to", mustgather.ErrNotCompleted, g.ID, g.Status)
	}
	return nil
}

// parseBase reads the base URL links start with: http(s), a host, and an
// optional path, without a query or fragment.
func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%q: want a scheme, a host, a port and a path only", s)
	}
	return u, nil
}
