package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/presign"
)

// linkBody is the answer of GET /must-gather/{id}/url.
type linkBody struct {
	URL       string `json:"url"`
	ExpiresAt string `json:"expires-at"`
}

// handleURL hands a cluster-admin of a completed gathering's cluster a
// link that downloads its archive without credentials until it expires.
func handleURL(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := query(r)
		g, who, ok := authorizedGathering(w, r, d, err)
		if !ok {
			return
		}
		if err := downloadable(g, false); err != nil {
			if nce, ok := errors.AsType[*notCompletedError](err); ok && g.Status == mustgather.StatusError {
				nce.hint = "; only a completed gathering's archive has a download link"
			}
			respondErr(w, r, d.Logger, err)
			return
		}
		// A link to an archive that is gone would fail in the browser,
		// where the error is hard to read.
		a, err := openArchive(r.Context(), d, g)
		if err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		a.Close()
		ctx := presign.WithBase(r.Context(), presign.RequestBase(r, d.TrustForwarded))
		link, expires, err := d.Links.Link(ctx, g)
		if err != nil {
			respondErr(w, r, d.Logger, fmt.Errorf("link to the archive of gathering %d: %w", g.ID, err))
			return
		}
		audit(ctx, d, "presign", who, g, "expires-at", expires.UTC().Format(time.RFC3339))
		// The link is a credential until it expires: no cache keeps it.
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, linkBody{URL: link, ExpiresAt: expires.UTC().Format(time.RFC3339)})
	})
}

// signedOr serves a download that carries a signed link's parameters
// without a token, and every other request with next.
func signedOr(d Deps, next http.Handler) http.Handler {
	signed := handleSignedData(d)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has(presign.ParamSignature) || q.Has(presign.ParamExpires) {
			signed.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleSignedData streams the archive of a completed gathering to whoever
// holds a link that Links made for it and that has not expired. It is the
// one download that needs no token: the link is the credential. A link
// that does not verify, for a gathering that does not exist too, gets 403,
// so that the download path tells nobody without a link which gatherings
// exist.
func handleSignedData(d Deps) http.Handler {
	v, _ := d.Links.(presign.Verifier)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := query(r, presign.ParamExpires, presign.ParamSignature)
		if err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		if v == nil {
			respondErr(w, r, d.Logger, fmt.Errorf("%w: this server makes no signed download URLs; use a bearer token or GET /must-gather/{id}/url", mustgather.ErrForbidden))
			return
		}
		g, err := lookup(r.Context(), d.Store, r.PathValue("id"))
		switch {
		case err == nil:
			err = v.Verify(g, q[presign.ParamExpires], q[presign.ParamSignature])
		case errors.Is(err, mustgather.ErrNotFound):
			err = presign.ErrBadSignature
		}
		if err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		if err := downloadable(g, false); err != nil {
			respondErr(w, r, d.Logger, err)
			return
		}
		serveArchive(w, r, d, g, func() {
			audit(r.Context(), d, "download", mustgather.Principal{}, g, "via", "signed-url")
		})
	})
}
