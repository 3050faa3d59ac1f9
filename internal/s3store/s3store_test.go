package s3store

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// config returns a Config for the test MinIO and a bucket of its own, with
// the smallest part size S3 allows so that tests cross part boundaries.
func config(t testing.TB) Config {
	srv := testenv.MinIO(t)
	return Config{
		Endpoint:  srv.Endpoint,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		Bucket:    testenv.Name("bkt"),
		Region:    "us-east-1",
		PartSize:  minPartSize,
	}
}

func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// incompleteUploads lists the multipart uploads under key that were neither
// completed nor aborted.
func (s *Store) incompleteUploads(ctx context.Context, key string) ([]string, error) {
	var ids []string
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, key, false) {
		if u.Err != nil {
			return nil, u.Err
		}
		ids = append(ids, u.Key+" "+u.UploadID)
	}
	return ids, nil
}

func TestStoreConformance(t *testing.T) {
	t.Parallel()
	s := newStore(t, config(t))
	archivetest.Conformance(t, s, s.incompleteUploads)
}

func TestNewCreatesTheBucketOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		replicas int
	}{
		{"a missing bucket is created", 1},
		{"replicas starting together all get the bucket", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t)
			errs := make([]error, tt.replicas)
			var wg sync.WaitGroup
			for i := range tt.replicas {
				wg.Go(func() { _, errs[i] = New(ctx, cfg) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("New #%d: %v", i, err)
				}
			}
			// And a later start finds the bucket there.
			if err := newStore(t, cfg).Ping(ctx); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"a config without endpoint is rejected", func(c *Config) { c.Endpoint = "" }},
		{"a config without bucket is rejected", func(c *Config) { c.Bucket = "" }},
		{"a part size below 5 MiB is rejected", func(c *Config) { c.PartSize = 1 << 20 }},
		{"a part size above 5 GiB is rejected", func(c *Config) { c.PartSize = 6 << 30 }},
		{"wrong credentials are rejected", func(c *Config) { c.SecretKey = "wrong-secret-key" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t)
			tt.edit(&cfg)
			if _, err := New(context.Background(), cfg); err == nil {
				t.Error("New: no error")
			}
		})
	}
}

func TestPingFailsWhenStorageIsGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := config(t)
	s := newStore(t, cfg)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping on a new store: %v", err)
	}

	t.Run("Ping fails when the bucket was removed", func(t *testing.T) {
		if err := s.client.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(ctx); err == nil {
			t.Error("Ping: no error")
		}
	})

	t.Run("Ping fails when nothing listens at the endpoint", func(t *testing.T) {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		gone := &Store{client: mustClient(t, addr), bucket: cfg.Bucket, partSize: DefaultPartSize}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := gone.Ping(ctx); err == nil {
			t.Error("Ping: no error")
		}
	})
}

func mustClient(t *testing.T, endpoint string) *minio.Client {
	t.Helper()
	c, err := minio.New(endpoint, &minio.Options{MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPresignGetDownloadsAnAttachment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, config(t))
	data := archivetest.Data(2, 1<<20)
	if _, err := s.Put(ctx, "gatherings/7/must-gather.tar.gz", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		filename string
		want     string
	}{
		{"the key's name is used when no filename is given", "", `attachment; filename="must-gather.tar.gz"`},
		{"a plain filename is quoted", "mg-7 (prod).tar.gz", `attachment; filename="mg-7 (prod).tar.gz"`},
		{"quotes and backslashes cannot break out of the quoted filename", `a"b\c.tar.gz`,
			`attachment; filename="a_b_c.tar.gz"; filename*=UTF-8''a%22b%5Cc.tar.gz`},
		{"a non-ASCII filename is given exactly in filename*", "müll;x.tar.gz",
			`attachment; filename="m_ll;x.tar.gz"; filename*=UTF-8''m%C3%BCll%3Bx.tar.gz`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			u, expires, err := s.PresignGet(ctx, "gatherings/7/must-gather.tar.gz", tt.filename, time.Minute)
			if err != nil {
				t.Fatalf("PresignGet: %v", err)
			}
			if after := time.Now(); expires.Before(before.Add(time.Minute)) || expires.After(after.Add(time.Minute)) {
				t.Errorf("expires %v, want a minute after the signature (between %v and %v)", expires, before, after)
			}
			resp, body := get(t, nil, u.String())
			type response struct {
				Status      int
				Disposition string
				Type        string
				Equal       bool
			}
			got := response{resp.StatusCode, resp.Header.Get("Content-Disposition"), resp.Header.Get("Content-Type"), bytes.Equal(body, data)}
			want := response{http.StatusOK, tt.want, "application/gzip", true}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("download (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPresignGetRejectsABadLifetime(t *testing.T) {
	t.Parallel()
	s := newStore(t, config(t))
	for _, ttl := range []time.Duration{0, 8 * 24 * time.Hour} {
		if _, _, err := s.PresignGet(context.Background(), "k", "", ttl); err == nil {
			t.Errorf("PresignGet with ttl %v: no error", ttl)
		}
	}
}

// stream builds an archive into an io.Pipe and uploads it, the way the
// runner does.
func stream(ctx context.Context, s *Store, key string, build func(w *archive.Writer) error) (int64, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := archive.NewWriter(pw)
		err := build(w)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err) // nil closes with io.EOF
	}()
	n, err := s.Put(ctx, key, pr)
	pr.CloseWithError(errors.New("upload ended")) // unblocks the writer if Put gave up
	<-done
	return n, err
}

func TestAStreamedArchiveReadsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, config(t))
	big := archivetest.Data(3, 7<<20)
	boom := errors.New("gatherer failed")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("an archive streamed through a pipe reads back entry for entry", func(t *testing.T) {
		_, err := stream(ctx, s, "ok.tar.gz", func(w *archive.Writer) error {
			if err := w.AddBytes("mg/version", []byte("4.20"), t0); err != nil {
				return err
			}
			return w.AddFile("mg/big.bin", 0o600, t0, int64(len(big)), bytes.NewReader(big))
		})
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		a, err := s.Open(ctx, "ok.tar.gz")
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		zr, err := gzip.NewReader(a)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		got := map[string]bool{}
		want := map[string]bool{"mg/version": true, "mg/big.bin": true}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			got[h.Name] = bytes.Equal(b, map[string][]byte{"mg/version": []byte("4.20"), "mg/big.bin": big}[h.Name])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries read back intact (-want +got):\n%s", diff)
		}
	})

	t.Run("an archive whose gathering fails mid-stream leaves nothing", func(t *testing.T) {
		_, err := stream(ctx, s, "failed.tar.gz", func(w *archive.Writer) error {
			if err := w.AddFile("mg/big.bin", 0o600, t0, int64(len(big)), bytes.NewReader(big)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("stream error = %v, want the gatherer's", err)
		}
		if a, err := s.Open(ctx, "failed.tar.gz"); err == nil {
			a.Close()
			t.Error("Open of the failed archive: no error")
		}
		if left, err := s.incompleteUploads(ctx, "failed.tar.gz"); err != nil || len(left) > 0 {
			t.Errorf("incomplete uploads = %q, %v; want none", left, err)
		}
	})
}
