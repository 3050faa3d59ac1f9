// Package eventing is the event contract shared by all functions: the
// CloudEvents types and sources of must-gather-functions, the data each
// carries, and how they are built from and read into the domain.
//
// Every event is CloudEvents 1.0 with JSON data. Its subject is the
// gathering id, and its id is derived from what it reports: the gathering
// id and the update's sequence number (and, for a final status, the
// status), or for a requested event its requeue attempt, so that
// publishing the same event twice gives the same id and the broker can drop
// the copy, while a new attempt is a new event.
package eventing

import (
	"errors"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// TypePrefix starts every event type of the project.
const TypePrefix = "io.konveyor.forklift.mustgather."

// Event types.
const (
	// TypeRequested: a gathering was accepted and waits for a runner. Data:
	// the gathering, as the API returns it.
	TypeRequested = TypePrefix + "gathering.requested"
	// TypeStarted: a runner claimed the gathering (status inprogress).
	TypeStarted = TypePrefix + "gathering.started"
	// TypeProgress: more output (status inprogress), sent at most about once
	// a second.
	TypeProgress = TypePrefix + "gathering.progress"
	// TypeCompleted: the archive is stored (status completed).
	TypeCompleted = TypePrefix + "gathering.completed"
	// TypeFailed: the gathering ended in status error; data.reason says why.
	TypeFailed = TypePrefix + "gathering.failed"
)

// StatusTypes are the types of the status events, which the recorder
// takes.
var StatusTypes = []string{TypeStarted, TypeProgress, TypeCompleted, TypeFailed}

// Event sources.
const (
	SourceAPI     = "/must-gather-functions/api"
	SourceRunner  = "/must-gather-functions/runner"
	SourceReaper  = "/must-gather-functions/runner/reaper"
	SourceTrigger = "/must-gather-functions/trigger"
)

// ErrMalformed marks an event that can never be processed: wrong type,
// missing subject or undecodable data. Consumers drop such events rather
// than retry them.
var ErrMalformed = errors.New("malformed event")

// ErrBusy marks an event its consumer cannot take now for lack of
// capacity: it is to be delivered again later, to this consumer or
// another.
var ErrBusy = errors.New("no capacity for the event now")

// statusData is the data of a status event.
type statusData struct {
	ID          mustgather.ID     `json:"id"`
	Seq         uint64            `json:"seq"`
	Status      mustgather.Status `json:"status"`
	Time        time.Time         `json:"time"`
	ExecOutput  string            `json:"exec-output"`
	ArchiveName string            `json:"archive-name,omitempty"`
	ArchiveSize int64             `json:"archive-size,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	// Redaction is in the final status of a redacted gathering.
	Redaction *mustgather.Redaction `json:"redaction,omitempty"`
}

// NewRequested returns the gathering.requested event of g, as the API
// publishes it when it creates g.
func NewRequested(g mustgather.Gathering) (cloudevents.Event, error) {
	return newRequested(fmt.Sprintf("gathering-%d-requested", g.ID), g, SourceAPI, g.CreatedAt.Time)
}

// NewRequeued returns requeue attempt n (1, 2, ...) of the
// gathering.requested event of g, sent by source at time at for a
// gathering that is still new. Each attempt is an event of its own, with
// an id the broker has not seen for an earlier attempt, while two
// publishers of the same attempt give the same id.
func NewRequeued(g mustgather.Gathering, n int, source string, at time.Time) (cloudevents.Event, error) {
	if n < 1 {
		return cloudevents.Event{}, fmt.Errorf("requeue attempt %d of gathering %d: attempts count from 1", n, g.ID)
	}
	return newRequested(fmt.Sprintf("gathering-%d-requested-%d", g.ID, n), g, source, at)
}

func newRequested(id string, g mustgather.Gathering, source string, at time.Time) (cloudevents.Event, error) {
	e := cloudevents.NewEvent(cloudevents.VersionV1)
	e.SetID(id)
	e.SetType(TypeRequested)
	e.SetSource(source)
	e.SetSubject(g.ID.String())
	e.SetTime(at)
	if err := e.SetData(cloudevents.ApplicationJSON, g); err != nil {
		return e, fmt.Errorf("encode requested event %d: %w", g.ID, err)
	}
	return e, nil
}

// statusType returns the event type that reports u: started for the first
// inprogress update (Seq 1), progress for later ones, completed or failed
// for the end.
func statusType(u mustgather.Update) (string, error) {
	switch u.Status {
	case mustgather.StatusInProgress:
		if u.Seq == 1 {
			return TypeStarted, nil
		}
		return TypeProgress, nil
	case mustgather.StatusCompleted:
		return TypeCompleted, nil
	case mustgather.StatusError:
		return TypeFailed, nil
	}
	return "", fmt.Errorf("no event type for status %q: %w", u.Status, ErrMalformed)
}

// NewStatus returns the status event that reports u, sent by source.
func NewStatus(u mustgather.Update, source string) (cloudevents.Event, error) {
	e := cloudevents.NewEvent(cloudevents.VersionV1)
	typ, err := statusType(u)
	if err != nil {
		return e, err
	}
	id := fmt.Sprintf("gathering-%d-%d", u.ID, u.Seq)
	if u.Status.Terminal() {
		// A final status is decided in the store before it is published,
		// and published again by the reaper if its publisher died: its id
		// depends on the decision alone, not on who publishes it, and never
		// equals the id of a progress event with the same Seq.
		id += "-" + string(u.Status)
	}
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(source)
	e.SetSubject(u.ID.String())
	e.SetTime(u.Time)
	data := statusData{
		ID: u.ID, Seq: u.Seq, Status: u.Status, Time: u.Time, ExecOutput: u.ExecOutput,
		ArchiveName: u.ArchiveName, ArchiveSize: u.ArchiveSize, Reason: u.Reason, Redaction: u.Redaction,
	}
	if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
		return e, fmt.Errorf("encode status event %d/%d: %w", u.ID, u.Seq, err)
	}
	return e, nil
}

// ParseRequested reads the gathering out of a gathering.requested event.
func ParseRequested(e cloudevents.Event) (mustgather.Gathering, error) {
	var g mustgather.Gathering
	if e.Type() != TypeRequested {
		return g, fmt.Errorf("event %s has type %q, want %q: %w", e.ID(), e.Type(), TypeRequested, ErrMalformed)
	}
	if err := e.DataAs(&g); err != nil {
		return g, fmt.Errorf("event %s data: %v: %w", e.ID(), err, ErrMalformed)
	}
	if g.ID == 0 || e.Subject() != g.ID.String() {
		return g, fmt.Errorf("event %s: subject %q does not match data id %d: %w", e.ID(), e.Subject(), g.ID, ErrMalformed)
	}
	return g, nil
}

// isStatus reports whether typ is a status event type.
func isStatus(typ string) bool {
	return strings.HasPrefix(typ, TypePrefix+"gathering.") && typ != TypeRequested
}

// ParseStatus reads the update out of a status event.
func ParseStatus(e cloudevents.Event) (mustgather.Update, error) {
	var d statusData
	if !isStatus(e.Type()) {
		return mustgather.Update{}, fmt.Errorf("event %s has type %q, not a status type: %w", e.ID(), e.Type(), ErrMalformed)
	}
	if err := e.DataAs(&d); err != nil {
		return mustgather.Update{}, fmt.Errorf("event %s data: %v: %w", e.ID(), err, ErrMalformed)
	}
	u := mustgather.Update{
		ID: d.ID, Seq: d.Seq, Status: d.Status, Time: d.Time, ExecOutput: d.ExecOutput,
		ArchiveName: d.ArchiveName, ArchiveSize: d.ArchiveSize, Reason: d.Reason, Redaction: d.Redaction,
	}
	if u.ID == 0 || e.Subject() != u.ID.String() || u.Seq == 0 || !u.Status.Valid() {
		return u, fmt.Errorf("event %s: subject %q, id %d, seq %d, status %q: %w", e.ID(), e.Subject(), u.ID, u.Seq, u.Status, ErrMalformed)
	}
	if want, _ := statusType(u); want != e.Type() {
		return u, fmt.Errorf("event %s: type %q does not match status %q: %w", e.ID(), e.Type(), u.Status, ErrMalformed)
	}
	return u, nil
}
