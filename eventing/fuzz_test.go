package eventing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
)

// seedEvents adds every golden event as a seed, so that the fuzzer starts
// from what the functions really send.
func seedEvents(f *testing.F) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("golden events: %v %v", paths, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"` + eventing.TypeStarted + `","subject":"1","data":{"id":1,"seq":1,"status":"inprogress"}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"` + eventing.TypeRequested + `","subject":"0","data":"not an object"}`))
	f.Add([]byte(`{}`))
}

// FuzzParseEvent checks that any event as JSON (structured mode, as the
// stream and Knative carry it) is either read by ParseRequested or
// ParseStatus into what it says, or refused as malformed, which consumers
// drop instead of retrying; never a panic, never another error.
func FuzzParseEvent(f *testing.F) {
	seedEvents(f)
	f.Fuzz(func(t *testing.T, wire []byte) {
		var e cloudevents.Event
		if err := json.Unmarshal(wire, &e); err != nil {
			return
		}
		if g, err := eventing.ParseRequested(e); err != nil {
			if !errors.Is(err, eventing.ErrMalformed) {
				t.Fatalf("ParseRequested: %v is not ErrMalformed", err)
			}
		} else if g.ID == 0 || g.ID.String() != e.Subject() {
			t.Fatalf("requested event with subject %q read as gathering %d", e.Subject(), g.ID)
		}
		u, err := eventing.ParseStatus(e)
		if err != nil {
			if !errors.Is(err, eventing.ErrMalformed) {
				t.Fatalf("ParseStatus: %v is not ErrMalformed", err)
			}
			return
		}
		if u.ID == 0 || u.Seq == 0 || !u.Status.Valid() || u.ID.String() != e.Subject() {
			t.Fatalf("status event read as %+v", u)
		}
		// What was read is what the runner would send for it: made again,
		// it reads back the same.
		again, err := eventing.NewStatus(u, e.Source())
		if err != nil {
			t.Fatalf("NewStatus of a parsed update %+v: %v", u, err)
		}
		back, err := eventing.ParseStatus(again)
		if err != nil || back.ID != u.ID || back.Seq != u.Seq || back.Status != u.Status || back.ExecOutput != u.ExecOutput || back.Reason != u.Reason {
			t.Fatalf("status %+v made again reads back %+v, %v", u, back, err)
		}
	})
}

// FuzzVerifyEvent checks the recorder's signature check on any event:
// Verify never panics, accepts an event only when it carries the signature
// of its content under the key, and refuses it once anything the signature
// covers changes.
func FuzzVerifyEvent(f *testing.F) {
	seedEvents(f)
	key := []byte("the events signing key, 32 bytes or more")
	f.Fuzz(func(t *testing.T, wire []byte) {
		var e cloudevents.Event
		if err := json.Unmarshal(wire, &e); err != nil {
			return
		}
		if err := eventing.Verify(e, key); err != nil && !errors.Is(err, eventing.ErrUnsigned) && !errors.Is(err, eventing.ErrBadSignature) {
			t.Fatalf("Verify: %v is neither unsigned nor a bad signature", err)
		}
		signed := e.Clone()
		eventing.Sign(&signed, key)
		if err := eventing.Verify(signed, key); err != nil {
			t.Fatalf("Verify of a signed event: %v", err)
		}
		if err := eventing.Verify(signed, []byte("another key of 32 bytes or more!!")); !errors.Is(err, eventing.ErrBadSignature) {
			t.Fatalf("Verify under another key: %v, want ErrBadSignature", err)
		}
		forged := signed.Clone()
		forged.SetSubject(signed.Subject() + "1")
		if err := eventing.Verify(forged, key); !errors.Is(err, eventing.ErrBadSignature) {
			t.Fatalf("Verify with a changed subject: %v, want ErrBadSignature", err)
		}
		// A valid event keeps its signature through the wire, as a
		// transport carries it (sdk-go reads some invalid events it does
		// not write back).
		if signed.Validate() != nil {
			return
		}
		b, err := json.Marshal(signed)
		if err != nil {
			t.Fatalf("a valid signed event does not encode: %v", err)
		}
		var carried cloudevents.Event
		if err := json.Unmarshal(b, &carried); err != nil {
			t.Fatalf("a signed event does not read back: %v\n%s", err, b)
		}
		// The signature holds exactly when what it covers came through
		// unchanged: sdk-go writes an extension named "data" over the
		// data, which then reads back as the data.
		same := bytes.Equal(eventing.Canonical(carried), eventing.Canonical(signed))
		if err := eventing.Verify(carried, key); (err == nil) != same {
			t.Fatalf("Verify after the wire: %v, though what the signature covers is the same: %v\n%s", err, same, b)
		}
	})
}
