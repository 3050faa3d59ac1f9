package s3store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/kubev2v/must-gather-functions/internal/archive"
)

const (
	benchFiles    = 64
	benchFileSize = 4 << 20
)

// BenchmarkArchiveStream compares uploading a 256 MiB tree of poorly
// compressible files as a streamed tar.gz (archive.Writer -> io.Pipe ->
// Store.Put) with uploading the same bytes as they are (minio-go PutObject,
// unknown size, same part size).
//
// peak-RSS-MiB is the peak resident set of the whole test process
// (getrusage ru_maxrss), which only grows: run each sub-benchmark in its own
// process for clean figures, e.g.
//
//	go test -run '^$' -bench 'ArchiveStream/raw' -benchtime 1x ./internal/s3store
//	go test -run '^$' -bench 'ArchiveStream/pipeline' -benchtime 1x ./internal/s3store
func BenchmarkArchiveStream(b *testing.B) {
	if testing.Short() {
		b.Skip("writes and uploads 256 MiB")
	}
	ctx := context.Background()
	cfg := config(b)
	cfg.PartSize = DefaultPartSize
	s := newStore(b, cfg)
	dir := benchTree(b)
	total := int64(benchFiles * benchFileSize)

	b.Run("pipeline", func(b *testing.B) {
		b.SetBytes(total)
		var size int64
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("pipeline/%d.tar.gz", i)
			n, err := stream(ctx, s, key, func(w *archive.Writer) error {
				return w.AddTree(ctx, dir, "must-gather")
			})
			if err != nil {
				b.Fatal(err)
			}
			size = n
			b.StopTimer()
			_ = s.Delete(ctx, key)
			b.StartTimer()
		}
		b.ReportMetric(float64(size)/float64(total), "stored/input")
		reportPeakRSS(b)
	})

	b.Run("raw", func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("raw/%d.bin", i)
			_, err := s.client.PutObject(ctx, s.bucket, key, &treeReader{dir: dir}, -1,
				minio.PutObjectOptions{PartSize: s.partSize, ContentType: "application/octet-stream"})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = s.Delete(ctx, key)
			b.StartTimer()
		}
		reportPeakRSS(b)
	})
}

// reportPeakRSS reports the process's peak resident set size so far.
func reportPeakRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB") // KiB on Linux
}

// benchTree writes benchFiles files of pseudo-random bytes into a temporary
// directory, streaming each from a seeded generator so that no file is held
// in memory.
func benchTree(b *testing.B) string {
	dir := b.TempDir()
	for i := range benchFiles {
		sub := filepath.Join(dir, fmt.Sprintf("ns-%d", i%8))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(sub, fmt.Sprintf("file-%02d.bin", i)))
		if err != nil {
			b.Fatal(err)
		}
		var seed [32]byte
		seed[0] = byte(i)
		_, err = io.CopyN(f, rand.NewChaCha8(seed), benchFileSize)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// treeReader reads the files of benchTree one after the other.
type treeReader struct {
	dir  string
	next int
	f    *os.File
}

func (t *treeReader) Read(p []byte) (int, error) {
	for {
		if t.f == nil {
			if t.next == benchFiles {
				return 0, io.EOF
			}
			f, err := os.Open(filepath.Join(t.dir, fmt.Sprintf("ns-%d", t.next%8), fmt.Sprintf("file-%02d.bin", t.next)))
			if err != nil {
				return 0, err
			}
			t.f, t.next = f, t.next+1
		}
		n, err := t.f.Read(p)
		if err == io.EOF {
			t.f.Close()
			t.f = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}
