package s3store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
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
		archivetest.ReportPeakRSS(b)
	})

	b.Run("raw", func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("raw/%d.bin", i)
			_, err := s.client.PutObject(ctx, s.bucket, key, archivetest.Files(treeFiles(dir)), -1,
				minio.PutObjectOptions{PartSize: s.partSize, ContentType: "application/octet-stream"})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = s.Delete(ctx, key)
			b.StartTimer()
		}
		archivetest.ReportPeakRSS(b)
	})
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

// treeFiles lists the files of benchTree in order.
func treeFiles(dir string) []string {
	paths := make([]string, benchFiles)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("ns-%d", i%8), fmt.Sprintf("file-%02d.bin", i))
	}
	return paths
}
