package eventing_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// goldenKey signs the golden events; a key of the real length.
var goldenKey = []byte("0123456789abcdef0123456789abcdef")

func signedCompleted(t *testing.T) cloudevents.Event {
	t.Helper()
	e, err := eventing.NewStatus(mustgather.Update{ID: 15, Seq: 3, Status: mustgather.StatusCompleted, Time: at.Add(time.Minute),
		ExecOutput: "[must-gather-abcde] OUT done\n", ArchiveName: "must-gather-15-plan-mig-plan-cold.tar.gz", ArchiveSize: 95334}, eventing.SourceRunner)
	if err != nil {
		t.Fatal(err)
	}
	eventing.Sign(&e, goldenKey)
	return e
}

func TestASignedEventMatchesItsGoldenFilesAndVerifies(t *testing.T) {
	e := signedCompleted(t)
	golden(t, "status-completed-signed", e)

	path := filepath.Join("testdata", "status-completed.canonical")
	got := eventing.Canonical(e)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("canonical form differs from %s (-want +got):\n%s", path, diff)
	}

	// The golden file read back, as any receiver reads it, verifies.
	raw, err := os.ReadFile(filepath.Join("testdata", "status-completed-signed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back cloudevents.Event
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if err := eventing.Verify(back, goldenKey); err != nil {
		t.Errorf("Verify of the golden event: %v", err)
	}
}

func TestASignatureFailsOnAnyChangeToWhatItCovers(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(e *cloudevents.Event)
		want   error
	}{
		{"another id", func(e *cloudevents.Event) { e.SetID("gathering-15-4-completed") }, eventing.ErrBadSignature},
		{"another type", func(e *cloudevents.Event) { e.SetType(eventing.TypeFailed) }, eventing.ErrBadSignature},
		{"another source", func(e *cloudevents.Event) { e.SetSource(eventing.SourceReaper) }, eventing.ErrBadSignature},
		{"another subject", func(e *cloudevents.Event) { e.SetSubject("16") }, eventing.ErrBadSignature},
		{"another time", func(e *cloudevents.Event) { e.SetTime(e.Time().Add(time.Nanosecond)) }, eventing.ErrBadSignature},
		{"other data", func(e *cloudevents.Event) {
			_ = e.SetData(cloudevents.ApplicationJSON, map[string]any{"id": 15, "seq": 3, "status": "completed", "archive-name": "evil.tar.gz"})
		}, eventing.ErrBadSignature},
		{"a signature of another key", func(e *cloudevents.Event) { eventing.Sign(e, []byte("another key, also 32 bytes long!")) }, eventing.ErrBadSignature},
		{"a signature that is not one", func(e *cloudevents.Event) { e.SetExtension(eventing.SignatureExtension, "sha256=00") }, eventing.ErrBadSignature},
		{"no signature", func(e *cloudevents.Event) { e.SetExtension(eventing.SignatureExtension, nil) }, eventing.ErrUnsigned},
	}
	for _, tt := range tests {
		t.Run(tt.name+" fails verification", func(t *testing.T) {
			e := signedCompleted(t).Clone()
			tt.mutate(&e)
			if err := eventing.Verify(e, goldenKey); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("re-indented JSON data and an added extension still verify", func(t *testing.T) {
		e := signedCompleted(t).Clone()
		indented, err := json.MarshalIndent(json.RawMessage(e.Data()), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		e.DataEncoded = indented
		e.SetExtension("knativearrivaltime", "2026-11-25T10:01:00Z")
		if err := eventing.Verify(e, goldenKey); err != nil {
			t.Errorf("Verify = %v", err)
		}
	})
}
