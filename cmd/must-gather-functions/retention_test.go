package main

import (
	"testing"
	"time"
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
