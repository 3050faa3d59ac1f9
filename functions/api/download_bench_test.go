package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// BenchmarkDownload compares GET /must-gather/{id}/data over HTTP on
// loopback, the API streaming the archive from MinIO, with raw minio-go
// GetObject of the same object: the archive of a generated output tree
// (text that compresses as must-gather output does, and random bytes) for
// each size of MGF_BENCH_ARCHIVE_MIB (256 MiB unless set). Throughput is
// of the archive's bytes. Run each sub-benchmark in its own process for
// clean peak-RSS figures (make bench does). peak-RSS-MiB is the peak of
// this process's samples while it downloads: making and uploading the
// archive first, in the same process, takes more.
func BenchmarkDownload(b *testing.B) {
	if testing.Short() {
		b.Skip("uploads and downloads hundreds of MiB")
	}
	ctx := context.Background()
	m := testenv.MinIO(b)
	bucket := testenv.Name("bench")
	s3, err := s3store.New(ctx, s3store.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: bucket, Region: "us-east-1"})
	if err != nil {
		b.Fatal(err)
	}
	raw, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, func(_ *env, d *Deps) { d.Logger, d.Archives = nil, s3 })
	minioPid := map[string]int{"minio": m.Pid()}
	client := &http.Client{Timeout: 10 * time.Minute}
	for _, content := range []archivetest.Content{archivetest.Text, archivetest.Random} {
		for _, mib := range archivetest.BenchSizes(b) {
			b.Run(fmt.Sprintf("content=%s/size=%dMiB", content, mib), func(b *testing.B) {
				g := e.create(`{}`)
				key, size := uploadTree(b, e, s3, g, archivetest.TreeRoot(archivetest.Tree(b, content, mib<<20)))
				download := func(b *testing.B, get func() (io.ReadCloser, error)) {
					rss := archivetest.RecordRSSAfterSetup(b, minioPid)
					b.SetBytes(size)
					for b.Loop() {
						body, err := get()
						if err != nil {
							b.Fatal(err)
						}
						n, err := io.Copy(io.Discard, body)
						body.Close()
						if err != nil || n != size {
							b.Fatalf("read %d of %d bytes: %v", n, size, err)
						}
					}
					rss.Stop()
				}
				b.Run("data", func(b *testing.B) {
					download(b, func() (io.ReadCloser, error) {
						resp, err := client.Get(fmt.Sprintf("%s/must-gather/%d/data", e.srv.URL, g.ID))
						if err != nil {
							return nil, err
						}
						if resp.StatusCode != http.StatusOK {
							resp.Body.Close()
							return nil, fmt.Errorf("GET data: %s", resp.Status)
						}
						return resp.Body, nil
					})
				})
				b.Run("raw-getobject", func(b *testing.B) {
					download(b, func() (io.ReadCloser, error) {
						return raw.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
					})
				})
			})
		}
	}
}

// uploadTree stores the archive of the tree at root as g's, as the runner
// does, completes g, and returns the archive's key and size.
func uploadTree(b *testing.B, e *env, s3 *s3store.Store, g mustgather.Gathering, root string) (string, int64) {
	ctx := context.Background()
	e.claim(g.ID)
	name := mustgather.ArchiveName(g.ID, g.CustomName)
	key := mustgather.ArchiveKey(g.ID, name)
	pr, pw := io.Pipe()
	go func() {
		w := archive.NewWriter(pw)
		err := w.AddTree(ctx, root, "must-gather")
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	n, err := s3.Put(ctx, key, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		b.Fatal(err)
	}
	u := mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusCompleted, Time: testNow.Add(time.Minute), ArchiveName: name, ArchiveSize: n}
	if _, err := e.store.Apply(ctx, u); err != nil {
		b.Fatal(err)
	}
	return key, n
}
