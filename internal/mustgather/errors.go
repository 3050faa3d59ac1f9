package mustgather

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers test with errors.Is. The HTTP layer maps each
// of them to one status code.
var (
	// ErrInvalid marks a request that breaks a rule; see FieldError.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound is returned when no gathering matches an id or name.
	ErrNotFound = errors.New("gathering not found")
	// ErrNotCompleted is returned when an archive is asked for before the
	// gathering has completed.
	ErrNotCompleted = errors.New("gathering is not completed")
	// ErrAlreadyClaimed is returned by Store.Claim when another runner, or an
	// earlier delivery of the same event, has already started the gathering.
	ErrAlreadyClaimed = errors.New("gathering already claimed")
	// ErrStale is returned by Gathering.Apply and Store.Apply when an update is
	// older than, or the same as, what the gathering already holds, or when
	// the gathering has already ended, and by Store.ApplyAt when the record
	// changed since it was read. Such an update is ignored.
	ErrStale = errors.New("stale update")
	// ErrTransition is returned for a status change the state machine forbids.
	ErrTransition = errors.New("illegal status transition")
	// ErrLeaseHeld is returned by Leases.Hold when another holder has the
	// lease.
	ErrLeaseHeld = errors.New("lease held by another runner")
	// ErrNotEnded is returned by Store.Delete for a gathering that is new
	// or inprogress.
	ErrNotEnded = errors.New("gathering has not ended")
	// ErrEnded is returned when a gathering that has ended is asked to be
	// canceled.
	ErrEnded = errors.New("gathering has ended")
	// ErrNoSlot is returned by Slots.Take when every slot is taken, or
	// the free ones go to gatherings that waited longer.
	ErrNoSlot = errors.New("no free slot")
	// ErrArchiveTooLarge is returned when a gathering's archive grows past
	// the configured maximum size; the upload is aborted and nothing of the
	// archive is kept.
	ErrArchiveTooLarge = errors.New("archive too large")
	// ErrUnauthenticated is returned by an Authorizer for a missing,
	// malformed, unknown or expired token.
	ErrUnauthenticated = errors.New("not authenticated")
	// ErrForbidden is returned by an Authorizer when the token's user is
	// known but lacks the access asked for.
	ErrForbidden = errors.New("forbidden")
	// ErrAuthUnavailable is returned by an Authorizer that could not reach
	// a decision, such as when the cluster's API server does not answer.
	// It never means yes.
	ErrAuthUnavailable = errors.New("authorization unavailable")
)

// FieldError names the request field that is invalid and why. It wraps
// ErrInvalid.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }

// Unwrap makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
