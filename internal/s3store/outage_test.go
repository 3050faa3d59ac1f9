package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// outageFor is how long S3 is away in TestAnUploadRidesOutAnS3Outage…:
// 30 s in `make test`, the outage; MGF_S3_OUTAGE (`make soak`: 2m)
// sets it.
func outageFor(t *testing.T) time.Duration {
	if v := os.Getenv("MGF_S3_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MGF_S3_OUTAGE: %v", err)
		}
		return d
	}
	return 30 * time.Second
}

func TestAnUploadRidesOutAnS3OutageShorterThanItsBudgetAndFailsClearlyOnALongerOne(t *testing.T) {
	// Each case has a MinIO of its own, so the two outages overlap and the
	// test costs one outage of wall time, not two.
	t.Parallel()
	outage := outageFor(t)
	for _, tt := range []struct {
		name   string
		budget time.Duration
		fails  bool
	}{
		// The outage lasts as long as MinIO takes to start again too,
		// which on a loaded machine is seconds more.
		{"an outage shorter than the budget: the upload completes", outage + time.Minute, false},
		// Given up on at five sixths of the outage; the abort that follows
		// waits up to the budget again for S3 to come back, which leaves
		// two thirds of the outage for MinIO to start again.
		{"an outage longer than the budget: a clear error and no unfinished upload", outage * 5 / 6, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := testenv.OwnMinIO(t)
			cfg := Config{
				Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
				Bucket: testenv.Name("outage"), Region: "us-east-1", PartSize: minPartSize, RetryFor: tt.budget,
			}
			s := newStore(t, cfg)
			key := "gatherings/1/must-gather-1.tar.gz"
			data := make([]byte, 2*minPartSize+12345)
			_, _ = rand.Read(data)

			pr, pw := io.Pipe()
			type result struct {
				size int64
				err  error
			}
			done := make(chan result, 1)
			started := time.Now()
			go func() {
				n, err := s.Put(context.Background(), key, pr)
				done <- result{n, err}
			}()
			// The first part goes up while S3 is there.
			if _, err := pw.Write(data[:minPartSize+1]); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, time.Minute, "the multipart upload to begin", func() bool {
				ids, err := s.incompleteUploads(context.Background(), key)
				return err == nil && len(ids) == 1
			})
			m.Stop()
			stopped := time.Now()
			// The rest comes while S3 is away; the writer blocks until the
			// upload takes it.
			go func() {
				_, err := pw.Write(data[minPartSize+1:])
				pw.CloseWithError(err)
			}()
			if tt.fails {
				// Given up on once the budget is spent, while S3 is still
				// away; the abort waits for S3 to come back.
				select {
				case r := <-done:
					t.Fatalf("upload ended while S3 was away and the abort could not be made: %v", r.err)
				case <-time.After(outage):
				}
			} else {
				time.Sleep(outage) // the outage itself
			}
			m.Start()
			t.Logf("S3 away %s (budget %s)", time.Since(stopped).Round(100*time.Millisecond), tt.budget)
			var r result
			select {
			case r = <-done:
			case <-time.After(2 * time.Minute):
				t.Fatal("upload did not end within 2 minutes of S3's return")
			}
			t.Logf("upload ended %s after it began: %v", time.Since(started).Round(100*time.Millisecond), r.err)

			ids, err := s.incompleteUploads(context.Background(), key)
			if err != nil || len(ids) > 0 {
				t.Errorf("unfinished uploads left: %v, %v", ids, err)
			}
			if !tt.fails {
				if r.err != nil || r.size != int64(len(data)) {
					t.Fatalf("upload: %d bytes, %v; want %d", r.size, r.err, len(data))
				}
				got, err := s.client.GetObject(context.Background(), s.bucket, key, minio.GetObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(got)
				if err != nil || !bytes.Equal(b, data) {
					t.Errorf("object of %d bytes, %v; not what was uploaded", len(b), err)
				}
				return
			}
			oe, ok := errors.AsType[*OutageError](r.err)
			if !ok || oe.Budget != tt.budget || !strings.Contains(r.err.Error(), "did not answer for more than") {
				t.Fatalf("upload error %v; want an OutageError of budget %s", r.err, tt.budget)
			}
			if strings.Contains(r.err.Error(), "lifecycle") {
				t.Errorf("the abort was not made: %v", r.err)
			}
			if _, err := s.client.StatObject(context.Background(), s.bucket, key, minio.StatObjectOptions{}); err == nil {
				t.Error("an object was stored")
			}
		})
	}
}
