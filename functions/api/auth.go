package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// maxTokenBytes bounds a bearer token. Service-account and OAuth tokens
// are a few kilobytes at most.
const maxTokenBytes = 16 << 10

// The headers a bearer token comes in.
const (
	headerAuthorization  = "Authorization"
	headerForwardedToken = "X-Forwarded-Access-Token"
)

// tokenError is a request whose token is missing or malformed. It never
// holds the token.
type tokenError struct {
	header string
	msg    string
}

func (e *tokenError) Error() string { return e.header + ": " + e.msg }
func (e *tokenError) Unwrap() error { return mustgather.ErrUnauthenticated }

// bearerToken returns the token of h: from X-Forwarded-Access-Token when
// forwarded is set and the header is there, as an OAuth proxy in front of
// the API sends it, else from "Authorization: Bearer <token>". A token is
// the b64token of RFC 6750: letters, digits, "-._~+/", then any "=".
func bearerToken(h http.Header, forwarded bool) (string, error) {
	if forwarded {
		if v := h.Values(headerForwardedToken); len(v) > 0 {
			if len(v) > 1 {
				return "", &tokenError{headerForwardedToken, "given more than once"}
			}
			return checkToken(headerForwardedToken, strings.TrimSpace(v[0]))
		}
	}
	v := h.Values(headerAuthorization)
	switch {
	case len(v) == 0:
		return "", &tokenError{headerAuthorization, "missing; send Authorization: Bearer <token>"}
	case len(v) > 1:
		return "", &tokenError{headerAuthorization, "given more than once"}
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", &tokenError{headerAuthorization, "not a bearer token; send Authorization: Bearer <token>"}
	}
	return checkToken(headerAuthorization, strings.TrimLeft(tok, " "))
}

func checkToken(header, tok string) (string, error) {
	if tok == "" {
		return "", &tokenError{header, "empty token"}
	}
	if len(tok) > maxTokenBytes {
		return "", &tokenError{header, fmt.Sprintf("token longer than %d bytes", maxTokenBytes)}
	}
	body := strings.TrimRight(tok, "=")
	if body == "" {
		return "", &tokenError{header, "malformed token"}
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
		if !ok {
			return "", &tokenError{header, "malformed token"}
		}
	}
	return tok, nil
}

// authorize returns who sent r if their token has access a on server ("":
// the default cluster). With authorization off everyone may, as nobody.
func authorize(d Deps, r *http.Request, server string, a mustgather.Access) (mustgather.Principal, error) {
	if d.Auth == nil {
		return mustgather.Principal{}, nil
	}
	tok, err := bearerToken(r.Header, d.ForwardedToken)
	if err != nil {
		return mustgather.Principal{}, err
	}
	return d.Auth.Authorize(r.Context(), tok, server, a)
}

// requireToken answers 401 at once to a request without a well-formed
// token, before its body is read; the handler then decides against which
// cluster to review it.
func requireToken(d Deps, h http.Handler) http.Handler {
	if d.Auth == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := bearerToken(r.Header, d.ForwardedToken); err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// requireAccess lets only callers with access a on the default cluster
// reach h.
func requireAccess(d Deps, a mustgather.Access, h http.Handler) http.Handler {
	if d.Auth == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := authorize(d, r, "", a); err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// respondUnlessDenied answers err, found before the caller was authorized,
// only to a cluster-admin of the default cluster; anyone else learns only
// that they are not one, and nothing about the gatherings.
func respondUnlessDenied(w http.ResponseWriter, r *http.Request, d Deps, err error) {
	if _, aerr := authorize(d, r, "", mustgather.AccessAdmin); aerr != nil {
		err = aerr
	}
	respondErr(w, r, d.Logger, err)
}

// Guard authorizes requests and answers errors as the API does, for the
// handlers of Deps.Routes, so that a route served beside the API follows
// its rules: a bearer token reviewed against the gathering's cluster, and
// 401, 403 and 503 as JSON.
type Guard struct{ d Deps }

// Guard returns the guard of the API that d configures.
func (d Deps) Guard() Guard {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return Guard{d: d}
}

// Authorize returns who sent r if their token has access a on server ("":
// the default cluster); with authorization off, nobody.
func (g Guard) Authorize(r *http.Request, server string, a mustgather.Access) (mustgather.Principal, error) {
	return authorize(g.d, r, server, a)
}

// RequireAccess lets only callers with access a on the default cluster
// reach h.
func (g Guard) RequireAccess(a mustgather.Access, h http.Handler) http.Handler {
	return requireAccess(g.d, a, h)
}

// RequireToken answers 401 at once to a request without a well-formed
// token; h then decides against which cluster to review it.
func (g Guard) RequireToken(h http.Handler) http.Handler { return requireToken(g.d, h) }

// Error answers r with err as the API answers it: the status its kind
// says, and a JSON body.
func (g Guard) Error(w http.ResponseWriter, r *http.Request, err error) {
	respondErr(w, r, g.d.Logger, err)
}

// ErrorUnlessDenied answers err, found before the caller was authorized,
// only to a cluster-admin of the default cluster, and anyone else with
// why they may not ask.
func (g Guard) ErrorUnlessDenied(w http.ResponseWriter, r *http.Request, err error) {
	respondUnlessDenied(w, r, g.d, err)
}

// Lookup finds the gathering that ref names, as GET /must-gather/{id}
// does: an id, or else the newest gathering with that custom-name.
func Lookup(ctx context.Context, s mustgather.Store, ref string) (mustgather.Gathering, error) {
	return lookup(ctx, s, ref)
}
