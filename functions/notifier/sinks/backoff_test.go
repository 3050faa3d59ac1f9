package sinks

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterIsReadAsSecondsOrAnHTTPDate(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name, v string
		want    time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"an HTTP date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"a date in the past is now", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"negative seconds are now", "-3", 0},
		{"none", "", 0},
		{"nonsense", "soon", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.v, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.v, got, tt.want)
			}
		})
	}
}

func TestBackoffDoublesWithJitterUpToTheMaximumAndBoundsRetryAfter(t *testing.T) {
	n := &Notifier{cfg: Config{Backoff: time.Second, MaxBackoff: 10 * time.Second}}
	for _, tt := range []struct {
		attempt    int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{1, 0, 500 * time.Millisecond, time.Second},
		{2, 0, time.Second, 2 * time.Second},
		{3, 0, 2 * time.Second, 4 * time.Second},
		{4, 0, 4 * time.Second, 8 * time.Second},
		{5, 0, 5 * time.Second, 10 * time.Second},
		{60, 0, 5 * time.Second, 10 * time.Second},
		{1, 3 * time.Second, 3 * time.Second, 3 * time.Second},
		{1, time.Hour, 10 * time.Second, 10 * time.Second},
	} {
		for range 100 {
			if got := n.backoff(tt.attempt, tt.retryAfter); got < tt.lo || got > tt.hi {
				t.Fatalf("backoff(%d, %s) = %s, want within [%s, %s]", tt.attempt, tt.retryAfter, got, tt.lo, tt.hi)
			}
		}
	}
}
