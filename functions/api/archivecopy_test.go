package api

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// An archive larger than the API's copy buffer comes out whole, from S3
// (copied through the buffer) and from the local folder (sent by the
// kernel), and so does a range that starts and ends inside a later buffer.
func TestDownloadOfAnArchiveLargerThanTheCopyBufferIsWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := testenv.MinIO(t)
	s3, err := s3store.New(ctx, s3store.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: testenv.Name("copy"), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	archive := make([]byte, 3*copyBufSize+12345)
	rng := rand.NewChaCha8([32]byte{16})
	rng.Read(archive)

	for _, tc := range []struct {
		name  string
		store func(*env) mustgather.ArchiveStore
	}{
		{"S3", func(*env) mustgather.ArchiveStore { return s3 }},
		{"the local folder", func(e *env) mustgather.ArchiveStore { return e.archives }},
	} {
		t.Run("from "+tc.name, func(t *testing.T) {
			t.Parallel()
			var store mustgather.ArchiveStore
			e := newEnv(t, func(e *env, d *Deps) { store = tc.store(e); d.Archives = store })
			g := e.create(`{}`)
			e.claim(g.ID)
			name := mustgather.ArchiveName(g.ID, g.CustomName)
			n, err := store.Put(ctx, mustgather.ArchiveKey(g.ID, name), bytes.NewReader(archive))
			if err != nil {
				t.Fatal(err)
			}
			u := mustgather.Update{ID: g.ID, Seq: 1, Status: mustgather.StatusCompleted, Time: testNow.Add(time.Minute), ArchiveName: name, ArchiveSize: n}
			if _, err := e.store.Apply(ctx, u); err != nil {
				t.Fatal(err)
			}
			path := fmt.Sprintf("/must-gather/%d/data", g.ID)

			resp := e.do(http.MethodGet, path, "", nil)
			if resp.status != http.StatusOK || !bytes.Equal(resp.body, archive) {
				t.Errorf("GET: status %d, %d bytes; want 200 and the %d bytes of the archive", resp.status, len(resp.body), len(archive))
			}
			from, to := copyBufSize+100, 2*copyBufSize+200
			resp = e.do(http.MethodGet, path, "", nil, "Range", fmt.Sprintf("bytes=%d-%d", from, to))
			if resp.status != http.StatusPartialContent || !bytes.Equal(resp.body, archive[from:to+1]) {
				t.Errorf("GET of bytes %d-%d: status %d, %d bytes; want 206 and those %d bytes", from, to, resp.status, len(resp.body), to+1-from)
			}
		})
	}
}
