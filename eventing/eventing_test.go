package eventing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var at = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("", 2*3600))

func golden(t *testing.T, name string, e cloudevents.Event) {
	t.Helper()
	got, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./eventing -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n%s", name, cmp.Diff(string(want), string(got)))
	}
}

func TestRequestedEventMatchesItsGoldenFileAndReadsBack(t *testing.T) {
	g := mustgather.Gathering{
		ID: 15, CreatedAt: mustgather.Timestamp{Time: at}, UpdatedAt: mustgather.Timestamp{Time: at},
		CustomName: "plan:mig-plan-cold", Status: mustgather.StatusNew,
		Image: "quay.io/kubev2v/forklift-must-gather:latest", Command: "PLAN=mig-plan-cold NS=openshift-mtv /usr/bin/targeted",
		Timeout: "30m",
	}
	e, err := eventing.NewRequested(g)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "requested", e)
	back, err := eventing.ParseRequested(e)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, back); diff != "" {
		t.Errorf("read back (-sent +read):\n%s", diff)
	}
}

func TestARequeuedEventIsARequestedEventWithAnIDOfItsOwn(t *testing.T) {
	g := mustgather.Gathering{
		ID: 15, CreatedAt: mustgather.Timestamp{Time: at}, UpdatedAt: mustgather.Timestamp{Time: at},
		CustomName: "plan:mig-plan-cold", Status: mustgather.StatusNew,
		Image: "quay.io/kubev2v/forklift-must-gather:latest", Command: "PLAN=mig-plan-cold NS=openshift-mtv /usr/bin/targeted",
		Timeout: "30m",
	}
	first, err := eventing.NewRequested(g)
	if err != nil {
		t.Fatal(err)
	}
	e, err := eventing.NewRequeued(g, 2, eventing.SourceReaper, at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "requeued", e)
	back, err := eventing.ParseRequested(e)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, back); diff != "" {
		t.Errorf("read back (-sent +read):\n%s", diff)
	}
	again, err := eventing.NewRequeued(g, 2, eventing.SourceReaper, at.Add(time.Minute+time.Second))
	if err != nil {
		t.Fatal(err)
	}
	next, err := eventing.NewRequeued(g, 3, eventing.SourceReaper, at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID() != again.ID() {
		t.Errorf("the same attempt sent twice has ids %q and %q, want one", e.ID(), again.ID())
	}
	if ids := map[string]bool{first.ID(): true, e.ID(): true, next.ID(): true}; len(ids) != 3 {
		t.Errorf("the first event and attempts 2 and 3 share ids: %q %q %q", first.ID(), e.ID(), next.ID())
	}
	if _, err := eventing.NewRequeued(g, 0, eventing.SourceReaper, at); err == nil {
		t.Error("attempt 0 is the API's event, yet NewRequeued made it")
	}
}

func TestStatusEventsMatchTheirGoldenFilesAndReadBack(t *testing.T) {
	tests := []struct {
		name   string
		source string
		u      mustgather.Update
		typ    string
	}{
		{"started", eventing.SourceRunner, mustgather.Update{ID: 15, Seq: 1, Status: mustgather.StatusInProgress, Time: at}, eventing.TypeStarted},
		{"progress", eventing.SourceRunner, mustgather.Update{ID: 15, Seq: 2, Status: mustgather.StatusInProgress, Time: at.Add(time.Second),
			ExecOutput: "[must-gather-abcde] OUT gathering plan mig-plan-cold\n"}, eventing.TypeProgress},
		{"completed", eventing.SourceRunner, mustgather.Update{ID: 15, Seq: 3, Status: mustgather.StatusCompleted, Time: at.Add(time.Minute),
			ExecOutput: "[must-gather-abcde] OUT done\n", ArchiveName: "must-gather-15-plan-mig-plan-cold.tar.gz", ArchiveSize: 95334}, eventing.TypeCompleted},
		{"failed", eventing.SourceRunner, mustgather.Update{ID: 15, Seq: 4, Status: mustgather.StatusError, Time: at.Add(time.Minute),
			ExecOutput: "partial\nerror: timed out after 30m\n", ArchiveName: "must-gather-15.tar.gz", ArchiveSize: 1024, Reason: "timed out after 30m"}, eventing.TypeFailed},
		{"completed-redacted", eventing.SourceRunner, mustgather.Update{ID: 16, Seq: 3, Status: mustgather.StatusCompleted, Time: at.Add(time.Minute),
			ExecOutput: "token=***REDACTED***\n", ArchiveName: "must-gather-16.tar.gz", ArchiveSize: 2048,
			Redaction: &mustgather.Redaction{Files: 3, Matches: 7, Withheld: 1}}, eventing.TypeCompleted},
		{"reaped", eventing.SourceReaper, mustgather.Update{ID: 15, Seq: 2, Status: mustgather.StatusError, Time: at.Add(time.Hour),
			ExecOutput: "error: the runner stopped before the gathering finished\n", Reason: "the runner stopped before the gathering finished"}, eventing.TypeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is a "+tt.typ+" event", func(t *testing.T) {
			e, err := eventing.NewStatus(tt.u, tt.source)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type() != tt.typ {
				t.Errorf("type = %q, want %q", e.Type(), tt.typ)
			}
			golden(t, "status-"+tt.name, e)
			back, err := eventing.ParseStatus(e)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.u, back, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("read back (-sent +read):\n%s", diff)
			}
		})
	}
}

func TestMalformedEventsAreRecognised(t *testing.T) {
	ok, _ := eventing.NewStatus(mustgather.Update{ID: 2, Seq: 1, Status: mustgather.StatusInProgress, Time: at}, eventing.SourceRunner)
	tests := []struct {
		name   string
		mutate func(e *cloudevents.Event)
	}{
		{"a subject that differs from the data id", func(e *cloudevents.Event) { e.SetSubject("3") }},
		{"a type that does not match the status", func(e *cloudevents.Event) { e.SetType(eventing.TypeCompleted) }},
		{"data that is not JSON", func(e *cloudevents.Event) { _ = e.SetData("text/plain", "x") }},
		{"a type that is not a status type", func(e *cloudevents.Event) { e.SetType("com.example.other") }},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is malformed", func(t *testing.T) {
			e := ok.Clone()
			tt.mutate(&e)
			if _, err := eventing.ParseStatus(e); !errors.Is(err, eventing.ErrMalformed) {
				t.Errorf("ParseStatus error = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := eventing.ParseRequested(ok); !errors.Is(err, eventing.ErrMalformed) {
		t.Errorf("ParseRequested of a status event: %v, want ErrMalformed", err)
	}
}
