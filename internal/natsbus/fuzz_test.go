package natsbus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
)

// FuzzDecode checks that any message on the stream, in either mode of the
// CloudEvents NATS binding, decodes to an event or is malformed, which
// the consumer terminates instead of retrying; never a panic.
func FuzzDecode(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "eventing", "testdata", "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("application/cloudevents+json", "", b)
	}
	f.Add("application/json", "1.0", []byte(`{"id":1}`))
	f.Add("", "", []byte(`not json`))
	f.Add("application/cloudevents-batch+json", "", []byte(`[]`))
	f.Fuzz(func(t *testing.T, contentType, specVersion string, data []byte) {
		msg := nats.NewMsg("mustgather.status.1")
		msg.Data = data
		if contentType != "" {
			msg.Header.Set("Content-Type", contentType)
		}
		if specVersion != "" {
			// Binary mode: attributes in ce- headers.
			msg.Header.Set("ce-specversion", specVersion)
			msg.Header.Set("ce-id", "x")
			msg.Header.Set("ce-source", "s")
			msg.Header.Set("ce-type", eventing.TypeStarted)
		}
		if _, err := natsbus.Decode(context.Background(), msg); err != nil && !errors.Is(err, eventing.ErrMalformed) {
			t.Fatalf("%v is not ErrMalformed", err)
		}
	})
}
