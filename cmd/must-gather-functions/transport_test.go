package main

import (
	"strings"
	"testing"
)

func TestEventSettingsAreCheckedAtStart(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		env  map[string]string
		want string // in the error; empty: no error
	}{
		{"JetStream is the default transport", nil, ""},
		{"an unknown transport is refused", map[string]string{"EVENTS_TRANSPORT": "kafka"}, `EVENTS_TRANSPORT: "kafka" is neither nats nor http`},
		{"HTTP without K_SINK is refused for the api", map[string]string{"EVENTS_TRANSPORT": "http", "FUNCTIONS": "api"}, "K_SINK: required"},
		{"HTTP without K_SINK is refused for the runner", map[string]string{"EVENTS_TRANSPORT": "http", "FUNCTIONS": "runner"}, "K_SINK: required"},
		{"HTTP without K_SINK is fine for the recorder, which sends nothing", map[string]string{"EVENTS_TRANSPORT": "http", "FUNCTIONS": "recorder"}, ""},
		{"HTTP with K_SINK", map[string]string{"EVENTS_TRANSPORT": "http", "K_SINK": "http://broker-ingress.knative-eventing.svc/ns/default"}, ""},
		{"a short signing key is refused without being shown", map[string]string{"EVENTS_SIGNING_KEY": "s3cr3t-but-short"}, "EVENTS_SIGNING_KEY: shorter than 32 bytes"},
		{"a signing key of 32 bytes", map[string]string{"EVENTS_SIGNING_KEY": key}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig([]string{"x"}, func(k string) string { return tt.env[k] })
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "s3cr3t"):
				t.Errorf("the error shows the key: %v", err)
			}
			if tt.env["EVENTS_SIGNING_KEY"] == key {
				if string(c.Bus.SigningKey) != key || string(c.Sink.SigningKey) != key {
					t.Errorf("the key does not reach both transports: %q %q", c.Bus.SigningKey, c.Sink.SigningKey)
				}
			}
		})
	}
}
