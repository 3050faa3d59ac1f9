package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// endedError is a DELETE of a gathering that has ended, without the proof
// that the caller saw it end: ?purge=true or If-Match with its revision.
// A cancel that lost the race to a final status gets it too, so that the
// gathering stays as it ended.
type endedError struct{ g mustgather.Gathering }

func (e *endedError) Error() string {
	return fmt.Sprintf("gathering %d has ended (%s) and was not changed; to delete it and its archive, send DELETE with ?purge=true, or with If-Match: \"%d\" (its ETag)",
		e.g.ID, e.g.Status, e.g.Revision)
}

func (e *endedError) Unwrap() error { return mustgather.ErrEnded }

// preconditionError is a request whose If-Match names another revision of
// the gathering than the one stored.
type preconditionError struct {
	g   mustgather.Gathering
	got string
}

func (e *preconditionError) Error() string {
	return fmt.Sprintf("If-Match %s is not the gathering's revision; gathering %d is %s at revision \"%d\" (its ETag)", clip(e.got), e.g.ID, e.g.Status, e.g.Revision)
}

// etag is the entity tag of g's record: its store revision.
func etag(g mustgather.Gathering) string { return `"` + strconv.FormatUint(g.Revision, 10) + `"` }

// ifMatch reports whether r has If-Match, and fails when it names another
// revision than g's. "*" matches any.
func ifMatch(r *http.Request, g mustgather.Gathering) (bool, error) {
	v := r.Header.Values("If-Match")
	if len(v) == 0 {
		return false, nil
	}
	want := etag(g)
	for _, h := range v {
		for t := range strings.SplitSeq(h, ",") {
			if t = strings.TrimSpace(t); t == want || t == "*" {
				return true, nil
			}
		}
	}
	return true, &preconditionError{g: g, got: strings.Join(v, ", ")}
}

// handleDelete cancels a gathering that is new or in progress, and deletes
// one that has ended, with its archive, when the caller shows that it saw
// it end (?purge=true or If-Match). A new gathering ends at once (200); one
// in progress is stopped by its runner, which archives what it gathered
// (202). A cancel that meets a gathering that has ended, as when it loses
// the race to completion, changes nothing (409).
func handleDelete(d Deps, count *prometheus.CounterVec) http.Handler {
	counted := func(result string) {
		if count != nil {
			count.WithLabelValues(result).Inc()
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		purge, err := boolParam(r, "purge")
		g, who, ok := authorizedGathering(w, r, d, err)
		if !ok {
			return
		}
		matched, err := ifMatch(r, g)
		if err != nil {
			counted("precondition_failed")
			respondErr(w, r, d.Logger, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), writeTimeout)
		defer cancel()
		if g.Status.Terminal() {
			if !purge && !matched {
				counted("conflict")
				respondErr(w, r, d.Logger, &endedError{g: g})
				return
			}
			if err := deleteEnded(ctx, d, g); err != nil {
				respondErr(w, r, d.Logger, err)
				return
			}
			audit(ctx, d, "delete", who, g, "was", g.Status)
			counted("deleted")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		note := "canceled on request"
		if who.Username != "" {
			note += " of " + who.Username
		}
		c, ended, err := mustgather.Cancel(ctx, d.Store, d.Events, g.ID, d.Now(), note)
		switch {
		case errors.Is(err, mustgather.ErrEnded):
			// A final status came first: it stands.
			counted("conflict")
			respondErr(w, r, d.Logger, &endedError{g: c})
			return
		case err != nil && !ended:
			respondErr(w, r, d.Logger, err)
			return
		case err != nil:
			d.Logger.WarnContext(ctx, "gathering canceled but its end not announced; the reaper will announce it", "gathering", g.ID, "err", err)
		}
		audit(ctx, d, "cancel", who, c, "was", g.Status)
		w.Header().Set("ETag", etag(c))
		if ended {
			counted("canceled")
			writeJSON(w, http.StatusOK, c)
			return
		}
		counted("cancel_requested")
		writeJSON(w, http.StatusAccepted, c)
	})
}

// deleteEnded deletes g's archive and then its record, by compare-and-set
// on the revision the caller saw.
func deleteEnded(ctx context.Context, d Deps, g mustgather.Gathering) error {
	if g.ArchiveName != "" {
		if err := d.Archives.Delete(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName)); err != nil {
			return fmt.Errorf("delete the archive of gathering %d: %w", g.ID, err)
		}
	}
	err := d.Store.Delete(ctx, g.ID, g.Revision)
	if errors.Is(err, mustgather.ErrStale) {
		// Ended records change only by deletion.
		err = fmt.Errorf("%w: gathering %d was deleted meanwhile", mustgather.ErrNotFound, g.ID)
	}
	return err
}

// boolParam reads the query parameter name as a boolean, false when it is
// not there; it allows no other parameter.
func boolParam(r *http.Request, name string) (bool, error) {
	q, err := query(r, name)
	if err != nil {
		return false, err
	}
	s, ok := q[name]
	if !ok {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, &mustgather.FieldError{Field: name, Message: fmt.Sprintf("must be true or false; got %q", clip(s))}
	}
	return v, nil
}
