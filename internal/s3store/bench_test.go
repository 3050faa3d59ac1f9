package s3store

import (
	"context"
	"fmt"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// BenchmarkArchiveStream compares uploading a generated output tree as a
// streamed tar.gz (archive.Writer -> io.Pipe -> Store.Put) with uploading
// the same bytes as they are (minio-go PutObject, unknown size, same part
// size): on text that compresses as real must-gather output does, and on
// random bytes, for each size of MGF_BENCH_ARCHIVE_MIB (256 MiB unless
// set). stored/input is the compression ratio.
//
// peak-RSS-MiB is the peak resident set of the whole test process
// (getrusage ru_maxrss), which only grows: run each sub-benchmark in its own
// process for clean figures (make bench does), e.g.
//
//	go test -run '^$' -bench 'ArchiveStream/content=text/size=256MiB/raw' -benchtime 1x ./internal/s3store
func BenchmarkArchiveStream(b *testing.B) {
	if testing.Short() {
		b.Skip("writes and uploads hundreds of MiB")
	}
	ctx := context.Background()
	cfg := config(b)
	cfg.PartSize = DefaultPartSize
	s := newStore(b, cfg)
	minioPid := map[string]int{"minio": testenv.MinIO(b).Pid()}
	for _, content := range []archivetest.Content{archivetest.Text, archivetest.Random} {
		for _, mib := range archivetest.BenchSizes(b) {
			b.Run(fmt.Sprintf("content=%s/size=%dMiB", content, mib), func(b *testing.B) {
				paths := archivetest.Tree(b, content, mib<<20)
				root := archivetest.TreeRoot(paths)
				total := archivetest.Bytes(b, paths)

				b.Run("pipeline", func(b *testing.B) {
					rss := archivetest.RecordRSS(b, minioPid)
					b.SetBytes(total)
					var size int64
					for i := 0; b.Loop(); i++ {
						key := fmt.Sprintf("pipeline/%d.tar.gz", i)
						n, err := stream(ctx, s, key, func(w *archive.Writer) error {
							return w.AddTree(ctx, root, "must-gather")
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
					rss.Stop()
				})

				b.Run("raw", func(b *testing.B) {
					rss := archivetest.RecordRSS(b, minioPid)
					b.SetBytes(total)
					for i := 0; b.Loop(); i++ {
						key := fmt.Sprintf("raw/%d.bin", i)
						_, err := s.client.PutObject(ctx, s.bucket, key, archivetest.Files(paths), -1,
							minio.PutObjectOptions{PartSize: s.partSize, ContentType: "application/octet-stream"})
						if err != nil {
							b.Fatal(err)
						}
						b.StopTimer()
						_ = s.Delete(ctx, key)
						b.StartTimer()
					}
					rss.Stop()
				})
			})
		}
	}
}
