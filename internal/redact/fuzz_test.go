package redact_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// FuzzRedact: no input panics; a document grows by at most the markers
// and is unchanged without a match; masked in place, a file keeps its size
// and changes only bytes that become '*'.
func FuzzRedact(f *testing.F) {
	for _, dir := range []string{"secret", "harmless"} {
		for _, b := range corpusFS(f, dir) {
			f.Add(b, 64)
		}
	}
	f.Add([]byte("data:\n  a: |\n    x\nkind: Secret\n"), 8)
	f.Add([]byte(`{"data":{"a":"\"b\\"},"kind":"Secret"}`), 16)
	f.Fuzz(func(t *testing.T, in []byte, bound int) {
		r, err := redact.New(redact.Config{BufferBytes: bound&0xffff + 1})
		if err != nil {
			t.Fatal(err)
		}
		out, counts := r.Bytes("f", in)
		n := 0
		for _, c := range counts {
			n += c
		}
		if len(out) > len(in)+n*len(redact.Marker) {
			t.Fatalf("document grew from %d to %d bytes with %d markers", len(in), len(out), n)
		}
		if n == 0 && !bytes.Equal(in, out) {
			t.Fatalf("no match, but the document changed: %q -> %q", in, out)
		}
		rep := redact.NewReport()
		masked, err := io.ReadAll(r.Reader("f", int64(len(in)), bytes.NewReader(in), rep))
		if err != nil {
			t.Fatal(err)
		}
		if len(masked) != len(in) {
			t.Fatalf("masked in place: %d bytes, want %d", len(masked), len(in))
		}
		for i := range in {
			if masked[i] != in[i] && masked[i] != '*' {
				t.Fatalf("masked in place: byte %d is %q, was %q", i, masked[i], in[i])
			}
		}
		if rep.Summary().Matches == 0 && !bytes.Equal(in, masked) {
			t.Fatalf("no match, but the masked file changed: %q -> %q", in, masked)
		}
	})
}
