package s3store

import (
	"context"
	"testing"

	"github.com/minio/minio-go/v7/pkg/lifecycle"
)

func TestExpireSetsReplacesAndRemovesTheRetentionRuleAndKeepsOthers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, config(t))
	other := lifecycle.NewConfiguration()
	other.Rules = []lifecycle.Rule{{ID: "someone-elses", Status: "Enabled", RuleFilter: lifecycle.Filter{Prefix: "other/"},
		Expiration: lifecycle.Expiration{Days: 30}}}
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, other); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		days, want int
		prefix     string
	}{
		{8, 8, "gatherings/"},
		{3, 3, "gatherings/"},
		{0, 0, ""},
	}
	for _, st := range steps {
		if err := s.Expire(ctx, "gatherings/", st.days); err != nil {
			t.Fatalf("Expire(%d): %v", st.days, err)
		}
		days, prefix, err := s.Expiration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if days != st.want || prefix != st.prefix {
			t.Errorf("after Expire(%d): rule of %d days on %q, want %d on %q", st.days, days, prefix, st.want, st.prefix)
		}
		cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
		if err != nil {
			t.Fatal(err)
		}
		kept := false
		for _, r := range cfg.Rules {
			kept = kept || r.ID == "someone-elses" && r.Expiration.Days == 30
		}
		if !kept {
			t.Errorf("after Expire(%d): the bucket's other rule is gone: %+v", st.days, cfg.Rules)
		}
	}
}

func TestExpireOnABucketWithoutRulesAndBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, config(t))
	if err := s.Expire(ctx, "gatherings/", 0); err != nil {
		t.Fatalf("removing a rule that is not there: %v", err)
	}
	if err := s.Expire(ctx, "gatherings/", 8); err != nil {
		t.Fatal(err)
	}
	if err := s.Expire(ctx, "gatherings/", 0); err != nil {
		t.Fatal(err)
	}
	if days, _, err := s.Expiration(ctx); err != nil || days != 0 {
		t.Errorf("rule of %d days left (%v)", days, err)
	}
}
