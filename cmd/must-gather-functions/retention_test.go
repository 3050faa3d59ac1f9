package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestTheLifecycleRuleOutlivesTheRetentionByADay(t *testing.T) {
	tests := []struct {
		retention time.Duration
		days      int
	}{
		{0, 0},
		{time.Hour, 2},
		{24 * time.Hour, 2},
		{25 * time.Hour, 3},
		{168 * time.Hour, 8},
	}
	for _, tt := range tests {
		if got := lifecycleDays(tt.retention); got != tt.days {
			t.Errorf("lifecycleDays(%s) = %d, want %d", tt.retention, got, tt.days)
		}
	}
}

func TestTheRunnerSetsTheLifecycleRuleAndDeletesOldGatherings(t *testing.T) {
	t.Parallel()
	m := testenv.MinIO(t)
	bucket := testenv.Name("retention")
	s := start(t, t.TempDir(), map[string]string{
		"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": bucket, "S3_USE_TLS": "false",
		"RETENTION": "3s", "RETENTION_INTERVAL": "200ms",
	})
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the lifecycle rule", func() bool {
		cfg, err := c.GetBucketLifecycle(context.Background(), bucket)
		if err != nil {
			return false
		}
		for _, r := range cfg.Rules {
			if r.ID == s3store.LifecycleRuleID && r.RuleFilter.Prefix == "gatherings/" && r.Expiration.Days == 2 {
				return true
			}
		}
		return false
	})
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo one", "custom-name": "old"}`))
	if done := s.waitEnded(t, g.ID); done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	testenv.Eventually(t, 20*time.Second, "the gathering to be deleted", func() bool {
		_, code := s.get(t, fmt.Sprint(g.ID))
		return code == http.StatusNotFound
	})
	if _, code := s.get(t, "old"); code != http.StatusNotFound {
		t.Errorf("its custom-name: %d, want 404", code)
	}
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("left in the bucket: %s %v", o.Key, o.Err)
	}
}
