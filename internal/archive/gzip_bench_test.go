package archive_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/kubev2v/must-gather-functions/internal/archivetest"
)

// BenchmarkGzip compares the standard library's gzip with
// github.com/klauspost/compress/gzip, which the archive writer uses, at
// the default level on 64 MiB of generated must-gather text and of random
// bytes held in memory. Both write standard gzip (RFC 1952), which the
// benchmark checks by reading klauspost's output back with compress/gzip.
// stored/input is the compression ratio.
func BenchmarkGzip(b *testing.B) {
	const size = 64 << 20
	for _, content := range []archivetest.Content{archivetest.Text, archivetest.Random} {
		b.Run(fmt.Sprintf("content=%s", content), func(b *testing.B) {
			data, err := io.ReadAll(archivetest.Files(archivetest.Tree(b, content, size)))
			if err != nil {
				b.Fatal(err)
			}
			impls := []struct {
				name  string
				write func(w io.Writer) io.WriteCloser
			}{
				{"stdlib", func(w io.Writer) io.WriteCloser { return stdgzip.NewWriter(w) }},
				{"klauspost", func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }},
			}
			for _, impl := range impls {
				b.Run("impl="+impl.name, func(b *testing.B) {
					b.SetBytes(int64(len(data)))
					var out bytes.Buffer
					for b.Loop() {
						out.Reset()
						zw := impl.write(&out)
						if _, err := zw.Write(data); err != nil {
							b.Fatal(err)
						}
						if err := zw.Close(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(out.Len())/float64(len(data)), "stored/input")
					zr, err := stdgzip.NewReader(&out)
					if err != nil {
						b.Fatalf("not standard gzip: %v", err)
					}
					back, err := io.ReadAll(zr)
					if err != nil || !bytes.Equal(back, data) {
						b.Fatalf("compress/gzip reads back %d bytes (error %v), want the %d written", len(back), err, len(data))
					}
				})
			}
		})
	}
}
