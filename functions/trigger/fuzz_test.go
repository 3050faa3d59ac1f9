package trigger

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/forklift"
)

// FuzzApiServerSourceEvent checks the decoding of an ApiServerSource
// event's data: any bytes name a Forklift Migration or Plan with a
// namespace and a name, or are malformed, which the receiver drops instead
// of asking for the event again; never a panic.
func FuzzApiServerSourceEvent(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("testdata: %v %v", paths, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"y"}}`))
	f.Add([]byte(`{"apiVersion":"forklift.konveyor.io/v1beta1","kind":"Plan","metadata":{"name":"","namespace":"y"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := cloudevents.NewEvent()
		e.SetID("fuzz")
		e.SetType(EventUpdate)
		e.SetSource("https://kubernetes.default.svc")
		e.DataEncoded = data
		c, err := changeOf(e)
		if err != nil {
			if !errors.Is(err, eventing.ErrMalformed) {
				t.Fatalf("%v is not ErrMalformed", err)
			}
			return
		}
		if (c.Kind != forklift.KindMigration && c.Kind != forklift.KindPlan) || c.Namespace == "" || c.Name == "" {
			t.Fatalf("read %+v", c)
		}
	})
}
