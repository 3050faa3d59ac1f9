package main

import (
	"strings"
	"testing"
)

func TestNATSReplicasSetTheCopiesOfEveryStreamAndBucket(t *testing.T) {
	for _, tt := range []struct {
		name, url, replicas string
		want                int
		err                 string
	}{
		{name: "the default is one copy", want: 1},
		{name: "three on a cluster", url: "nats://a:4222,nats://b:4222,nats://c:4222", replicas: "3", want: 3},
		{name: "five at most", url: "nats://a:4222", replicas: "6", err: "NATS_REPLICAS: must be from 1 to 5"},
		{name: "at least one", url: "nats://a:4222", replicas: "0", err: "NATS_REPLICAS: must be from 1 to 5"},
		{name: "the embedded server is one node", replicas: "3", err: "NATS_REPLICAS: 3 needs NATS_URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"NATS_URL": tt.url, "NATS_REPLICAS": tt.replicas, "AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0"}
			cfg, err := loadConfig([]string{"x"}, func(k string) string { return env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Store.Replicas != tt.want || cfg.Bus.Replicas != tt.want || cfg.Sinks.Replicas != tt.want {
				t.Errorf("replicas: store %d, events %d, subscribers %d; want %d", cfg.Store.Replicas, cfg.Bus.Replicas, cfg.Sinks.Replicas, tt.want)
			}
		})
	}
}
