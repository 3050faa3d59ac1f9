package mustgather

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ID identifies a gathering. Ids are allocated by the Store: unique,
// increasing and never reused.
type ID uint64

// String returns the decimal form used in URLs, subjects and keys.
func (id ID) String() string { return strconv.FormatUint(uint64(id), 10) }

// ParseID parses the decimal form of an ID. Zero is not a valid id.
func ParseID(s string) (ID, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	// Digits only, checked first: most refs that are no id are
	// custom-names, and strconv's error for them allocates.
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return ID(n), true
}

// Status is where a gathering is in its life.
type Status string

// The statuses of the seed's API.
const (
	StatusNew        Status = "new"
	StatusInProgress Status = "inprogress"
	StatusCompleted  Status = "completed"
	StatusError      Status = "error"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusNew, StatusInProgress, StatusCompleted, StatusError:
		return true
	}
	return false
}

// Terminal reports whether s is final: completed or error.
func (s Status) Terminal() bool { return s == StatusCompleted || s == StatusError }

// CanTransition reports whether a gathering may go from one status to
// another. Nothing returns to new, and a terminal status never changes.
// inprogress to inprogress is a progress update.
func CanTransition(from, to Status) bool {
	if !from.Valid() || !to.Valid() || from.Terminal() || to == StatusNew {
		return false
	}
	return true
}

// Gathering is one must-gather run. Its JSON form is the seed's API object,
// field for field.
type Gathering struct {
	ID          ID        `json:"id"`
	CreatedAt   Timestamp `json:"created-at"`
	UpdatedAt   Timestamp `json:"updated-at"`
	CustomName  string    `json:"custom-name"`
	Status      Status    `json:"status"`
	Image       string    `json:"image"`
	ImageStream string    `json:"image-stream"`
	NodeName    string    `json:"node-name"`
	Command     string    `json:"command"`
	SourceDir   string    `json:"source-dir"`
	Timeout     string    `json:"timeout"`
	Server      string    `json:"server"`
	ArchiveSize int64     `json:"archive-size"`
	ArchiveName string    `json:"archive-name"`
	ExecOutput  string    `json:"exec-output"`

	// Since and SinceTime go beyond the seed; they appear only when set.
	Since     string `json:"since,omitempty"`
	SinceTime string `json:"since-time,omitempty"`
	// NodeSelector and HostNetwork, beyond the seed too, are the
	// request's (see Request).
	NodeSelector string `json:"node-selector,omitempty"`
	HostNetwork  bool   `json:"host-network,omitempty"`
	// Redact says that secrets are redacted from the archive; Redaction,
	// once the gathering has ended, says how much was.
	Redact    bool       `json:"redact,omitempty"`
	Redaction *Redaction `json:"redaction,omitempty"`
	// RequestedBy is the user whose token started the gathering; empty
	// with authorization off.
	RequestedBy string `json:"requested-by,omitempty"`
	// Cause says why a gathering started when no user asked for it, such
	// as "migration ns/name failed"; empty for a gathering a user asked for.
	Cause string `json:"cause,omitempty"`

	// Seq is the sequence number of the last Update applied; it is stored
	// with the gathering but not part of the API object.
	Seq uint64 `json:"-"`
	// Reason says why an ended gathering failed, as its last Update said,
	// such as ReasonCanceled; it appears only when set.
	Reason string `json:"reason,omitempty"`
	// Preface is text that exec-output always begins with, such as the
	// failure that started the gathering, so that whoever reads the output
	// sees it before the run's own output. It is set at creation, stored,
	// and not part of the API object.
	Preface string `json:"-"`
	// CancelRequested is set on a gathering in progress that someone asked
	// to cancel: the runner that holds it stops it and ends it with
	// ReasonCanceled. Stored, not part of the API object.
	CancelRequested bool `json:"-"`
	// Revision is the store's version of the record when it was read, for
	// compare-and-set (Store.ApplyAt); it is not stored.
	Revision uint64 `json:"-"`
}

// NewGathering returns the gathering a validated request starts, with status
// new, created and updated at now. The Store assigns its ID.
func NewGathering(r Request, now time.Time) Gathering {
	return Gathering{
		CreatedAt:   Timestamp{now},
		UpdatedAt:   Timestamp{now},
		CustomName:  r.CustomName,
		Status:      StatusNew,
		Image:       r.Image,
		ImageStream: r.ImageStream,
		NodeName:    r.NodeName,
		Command:     r.Command,
		SourceDir:   r.SourceDir,
		Timeout:     r.Timeout,
		Server:      r.Server,
		Since:       r.Since,
		SinceTime:   r.SinceTime,

		NodeSelector: r.NodeSelector,
		HostNetwork:  r.HostNetwork,
		Redact:       r.Redact != nil && *r.Redact,
	}
}

// Redaction says how much the redaction of a gathering's archive changed.
type Redaction struct {
	// Files is how many files had values redacted, must-gather.logs
	// included.
	Files int `json:"files"`
	// Matches is how many values were redacted in all.
	Matches int `json:"matches"`
	// Withheld is how many files were left out because they are not text.
	Withheld int `json:"withheld"`
}

// TimeoutDuration returns the gathering's timeout. A stored gathering always
// holds a valid one; def is used for an empty or unparsable value.
func (g Gathering) TimeoutDuration(def time.Duration) time.Duration {
	d, err := ParseTimeout(g.Timeout)
	if err != nil || d <= 0 {
		return def
	}
	return d
}

// Update is one status change of a gathering, as a runner reports it in a
// status event. Seq orders the updates of one gathering: it starts at 1 and
// grows with each update, so a repeated or late update can be recognised.
type Update struct {
	ID          ID
	Seq         uint64
	Status      Status
	Time        time.Time
	ExecOutput  string
	ArchiveName string
	ArchiveSize int64
	// Reason says why a gathering failed; it is also the last line of
	// ExecOutput.
	Reason string
	// Redaction, in a final update of a redacted gathering whose archive
	// was stored, says how much was redacted.
	Redaction *Redaction
}

// Apply returns g with u applied. It returns ErrStale, and g unchanged, when
// g has already ended or already holds u or a later update, and
// ErrTransition when the status change is not allowed.
func (g Gathering) Apply(u Update) (Gathering, error) {
	if u.ID != g.ID {
		return g, fmt.Errorf("update for gathering %d applied to %d: %w", u.ID, g.ID, ErrTransition)
	}
	if g.Status.Terminal() || u.Seq <= g.Seq {
		return g, ErrStale
	}
	if !CanTransition(g.Status, u.Status) {
		return g, fmt.Errorf("gathering %d from %s to %s: %w", g.ID, g.Status, u.Status, ErrTransition)
	}
	g.Status = u.Status
	g.Seq = u.Seq
	if u.Time.After(g.UpdatedAt.Time) {
		g.UpdatedAt = Timestamp{u.Time}
	}
	g.ExecOutput = withPreface(g.Preface, u.ExecOutput)
	g.Reason = u.Reason
	if u.ArchiveName != "" {
		g.ArchiveName = u.ArchiveName
		g.ArchiveSize = u.ArchiveSize
	}
	if u.Redaction != nil {
		g.Redaction = u.Redaction
	}
	return g, nil
}

// Final returns the update that g's final status was set by, so that its
// final status event can be published again. It is meaningful only for a
// gathering that has ended.
func (g Gathering) Final() Update {
	return Update{
		ID: g.ID, Seq: g.Seq, Status: g.Status, Time: g.UpdatedAt.Time, ExecOutput: g.ExecOutput,
		ArchiveName: g.ArchiveName, ArchiveSize: g.ArchiveSize, Reason: g.Reason, Redaction: g.Redaction,
	}
}

// SameRequest reports whether o asks for the same gathering as g: the same
// id, creation time and requested fields (what a requested event carries),
// whatever their statuses. A runner checks a requested event against the
// stored record with it, and acts on the record.
func (g Gathering) SameRequest(o Gathering) bool {
	return g.ID == o.ID && g.CreatedAt.Equal(o.CreatedAt.Time) && g.CustomName == o.CustomName &&
		g.Image == o.Image && g.ImageStream == o.ImageStream && g.NodeName == o.NodeName &&
		g.Command == o.Command && g.SourceDir == o.SourceDir && g.Timeout == o.Timeout &&
		g.Server == o.Server && g.Since == o.Since && g.SinceTime == o.SinceTime && g.RequestedBy == o.RequestedBy &&
		g.Cause == o.Cause && g.NodeSelector == o.NodeSelector && g.HostNetwork == o.HostNetwork &&
		g.Redact == o.Redact
}

// withPreface returns out beginning with preface: runners report only the
// run's own output, and an output built on the stored one (a reaper's)
// already begins with it.
func withPreface(preface, out string) string {
	if preface == "" || strings.HasPrefix(out, preface) {
		return out
	}
	return preface + out
}

// Claim returns g moved from new to inprogress at now, or ErrAlreadyClaimed
// when g is no longer new.
func (g Gathering) Claim(now time.Time) (Gathering, error) {
	if g.Status != StatusNew {
		return g, fmt.Errorf("gathering %d is %s: %w", g.ID, g.Status, ErrAlreadyClaimed)
	}
	g.Status = StatusInProgress
	if now.After(g.UpdatedAt.Time) {
		g.UpdatedAt = Timestamp{now}
	}
	return g, nil
}

// ArchiveName returns the file name of the gathering's archive: unique per
// gathering, safe as a file name on every OS, and carrying a sanitized
// custom-name when there is one, so that a browser or `curl -OJ` saves each
// download under a name that tells them apart.
func ArchiveName(id ID, customName string) string {
	const maxPart = 64
	var b strings.Builder
	dash := false
	for _, r := range customName {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_'
		if !ok {
			if b.Len() > 0 && !dash {
				b.WriteByte('-')
				dash = true
			}
			continue
		}
		if b.Len() >= maxPart {
			break
		}
		b.WriteRune(r)
		dash = false
	}
	part := strings.Trim(b.String(), "-._")
	if part == "" {
		return fmt.Sprintf("must-gather-%d.tar.gz", id)
	}
	return fmt.Sprintf("must-gather-%d-%s.tar.gz", id, part)
}

// Timestamp is a time that marshals to JSON as RFC 3339 with all nine
// digits of nanoseconds and a numeric offset, as in the seed's example
// ("2021-06-30T15:19:17.514594773+02:00").
type Timestamp struct{ time.Time }

// TimestampLayout is the JSON layout of a Timestamp.
const TimestampLayout = "2006-01-02T15:04:05.000000000-07:00"

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.Format(TimestampLayout) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler; it accepts any RFC 3339 time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("timestamp %s: %w", b, err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// ReasonCanceled is the Reason of a gathering that ended because someone
// canceled it.
const ReasonCanceled = "canceled"

// Cancel returns g canceled at now: a new gathering ends in error with
// ReasonCanceled at once (ended reports true), and note as the last line
// of its output; one in progress gets CancelRequested, for its runner to
// stop it. It returns ErrEnded for a gathering that has ended.
func (g Gathering) Cancel(now time.Time, note string) (out Gathering, ended bool, err error) {
	switch g.Status {
	case StatusNew:
		g, err = g.Apply(Update{
			ID: g.ID, Seq: g.Seq + 1, Status: StatusError, Time: now, Reason: ReasonCanceled,
			ExecOutput: AppendLine(g.ExecOutput, note, 0),
		})
		return g, true, err
	case StatusInProgress:
		g.CancelRequested = true
		return g, false, nil
	}
	return g, false, fmt.Errorf("gathering %d is %s: %w", g.ID, g.Status, ErrEnded)
}

// Note returns g, still new, with its exec-output replaced by note (after
// its preface), such as to say why it waits. It returns ErrAlreadyClaimed
// for a gathering that is no longer new.
func (g Gathering) Note(note string) (Gathering, error) {
	if g.Status != StatusNew {
		return g, fmt.Errorf("gathering %d is %s: %w", g.ID, g.Status, ErrAlreadyClaimed)
	}
	g.ExecOutput = withPreface(g.Preface, note)
	return g, nil
}

// AppendLine returns out with line added as a line of its own, keeping
// only its last max bytes when max > 0.
func AppendLine(out, line string, max int) string {
	if out != "" && out[len(out)-1] != '\n' {
		out += "\n"
	}
	out += line + "\n"
	if max > 0 && len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}
