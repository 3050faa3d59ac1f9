package runner_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/dirstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/process"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// endlessGatherer streams incompressible data into the archive until it is
// stopped or the archive refuses more, as a copy from a cluster does.
type endlessGatherer struct{}

func (endlessGatherer) Gather(ctx context.Context, job mustgather.Job) error {
	fmt.Fprintln(job.Log, "copying")
	chunk := make([]byte, 1<<20)
	for i := 0; ; i++ {
		if err := context.Cause(job.Stop); err != nil {
			return err
		}
		_, _ = rand.Read(chunk)
		if err := job.Archive.AddBytes(fmt.Sprintf("part-%d", i), chunk, time.Now()); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
	}
}

// minioBucket returns an S3 archive store on a bucket of its own in the
// test MinIO, and a client of that MinIO.
func minioBucket(t *testing.T) (*s3store.Store, *minio.Client, string) {
	t.Helper()
	m := testenv.MinIO(t)
	bucket := testenv.Name("cap")
	s, err := s3store.New(context.Background(), s3store.Config{
		Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Bucket: bucket, Region: "us-east-1", PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, bucket
}

func TestAnArchiveOverTheCapStopsTheGatheringAndKeepsNothing(t *testing.T) {
	const limit = 6 << 20 // more than one 5 MiB part, so that an S3 multipart upload is under way
	gatherers := []struct {
		name     string
		gatherer func(t *testing.T) mustgather.Gatherer
		command  string
	}{
		{"a command whose output is over the cap", func(t *testing.T) mustgather.Gatherer {
			return &process.Gatherer{TempDir: t.TempDir(), KillGrace: 200 * time.Millisecond}
		}, "head -c 12582912 /dev/urandom > big.bin; echo wrote"},
		{"a copy that would go on for ever", func(*testing.T) mustgather.Gatherer { return endlessGatherer{} }, "x"},
	}
	stores := []struct {
		name string
		// open returns the store and a func listing what it left of key
		// besides a complete archive: temporary files or incomplete uploads.
		open func(t *testing.T) (mustgather.ArchiveStore, func(key string) []string)
	}{
		{"in a directory", func(t *testing.T) (mustgather.ArchiveStore, func(string) []string) {
			dir := t.TempDir()
			s, err := dirstore.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s, func(string) []string {
				var left []string
				_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						left = append(left, p)
					}
					return nil
				})
				return left
			}
		}},
		{"in S3", func(t *testing.T) (mustgather.ArchiveStore, func(string) []string) {
			s, c, bucket := minioBucket(t)
			return s, func(key string) []string {
				var left []string
				for u := range c.ListIncompleteUploads(context.Background(), bucket, "gatherings/", true) {
					if u.Err != nil {
						t.Fatal(u.Err)
					}
					left = append(left, "upload "+u.Key)
				}
				for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
					if o.Err != nil {
						t.Fatal(o.Err)
					}
					left = append(left, "object "+o.Key)
				}
				return left
			}
		}},
	}
	for _, gt := range gatherers {
		for _, st := range stores {
			t.Run(gt.name+" stored "+st.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, nil)
				archives, leftOf := st.open(t)
				cfg := e.cfg
				cfg.MaxArchiveBytes = limit
				r := runner.New(cfg, runner.Deps{Store: e.store, Leases: e.store, Archives: archives, Events: e.bus, Gatherer: gt.gatherer(t)})
				g, ev := e.create(t, mustgather.Request{Command: gt.command, Timeout: "1m"})
				start := time.Now()
				if err := r.Handle(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took > 30*time.Second {
					t.Errorf("gathering took %s to stop", took)
				}
				got := e.waitEnded(t, g.ID)
				want := fmt.Sprintf("archive too large: over the maximum of %d bytes (RUNNER_MAX_ARCHIVE_BYTES); gathering stopped, upload aborted, nothing kept", limit)
				if got.Status != mustgather.StatusError || !strings.Contains(got.Reason, want) || !strings.Contains(got.ExecOutput, "error: store archive: "+want) {
					t.Errorf("status %s, reason %q, exec-output:\n%s", got.Status, got.Reason, got.ExecOutput)
				}
				if got.ArchiveName != "" || got.ArchiveSize != 0 {
					t.Errorf("record names archive %q of %d bytes", got.ArchiveName, got.ArchiveSize)
				}
				if left := leftOf(mustgather.ArchiveKey(g.ID, mustgather.ArchiveName(g.ID, g.CustomName))); len(left) > 0 {
					t.Errorf("left behind: %v", left)
				}
			})
		}
	}
}

func TestAnArchiveUnderTheCapIsKept(t *testing.T) {
	e := newEnv(t, func(c *runner.Config) { c.MaxArchiveBytes = 1 << 20 })
	g, ev := e.create(t, mustgather.Request{Command: "head -c 100000 /dev/urandom > small.bin"})
	if err := e.runner.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusCompleted {
		t.Fatalf("status %s: %s", got.Status, got.ExecOutput)
	}
	if files := e.readArchive(t, got); len(files["small.bin"]) != 100000 {
		t.Errorf("small.bin has %d bytes", len(files["small.bin"]))
	}
}
