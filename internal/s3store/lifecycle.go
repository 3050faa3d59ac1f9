package s3store

import (
	"context"
	"fmt"
	"slices"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/lifecycle"
)

// LifecycleRuleID names the bucket lifecycle rule that Expire sets; the
// bucket's other rules are left as they are.
const LifecycleRuleID = "must-gather-retention"

// Expire sets the bucket lifecycle rule LifecycleRuleID, which has the
// storage remove the objects under prefix days days after they were
// written, and abort multipart uploads to them left unfinished for a day.
// It is a backstop for the runner's retention, which deletes records and
// archives together. With days 0 it removes the rule.
func (s *Store) Expire(ctx context.Context, prefix string, days int) error {
	cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code != "NoSuchLifecycleConfiguration" {
			return fmt.Errorf("s3store: lifecycle of bucket %s: %w", s.bucket, err)
		}
		cfg = lifecycle.NewConfiguration()
	}
	cfg.Rules = slices.DeleteFunc(cfg.Rules, func(r lifecycle.Rule) bool { return r.ID == LifecycleRuleID })
	if days > 0 {
		cfg.Rules = append(cfg.Rules, lifecycle.Rule{
			ID:         LifecycleRuleID,
			Status:     "Enabled",
			RuleFilter: lifecycle.Filter{Prefix: prefix},
			Expiration: lifecycle.Expiration{Days: lifecycle.ExpirationDays(days)},
			AbortIncompleteMultipartUpload: lifecycle.AbortIncompleteMultipartUpload{
				DaysAfterInitiation: 1,
			},
		})
	}
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, cfg); err != nil {
		return fmt.Errorf("s3store: set lifecycle of bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Expiration returns the days after which the rule LifecycleRuleID removes
// objects, and the prefix it applies to; 0 days when the bucket has no such
// rule.
func (s *Store) Expiration(ctx context.Context) (days int, prefix string, err error) {
	cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchLifecycleConfiguration" {
			return 0, "", nil
		}
		return 0, "", fmt.Errorf("s3store: lifecycle of bucket %s: %w", s.bucket, err)
	}
	for _, r := range cfg.Rules {
		if r.ID == LifecycleRuleID && r.Status == "Enabled" {
			return int(r.Expiration.Days), r.RuleFilter.Prefix, nil
		}
	}
	return 0, "", nil
}
