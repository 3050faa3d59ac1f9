package kubegather

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// namedGatherer records that it ran.
type namedGatherer struct {
	name string
	ran  *[]string
}

func (g namedGatherer) Gather(_ context.Context, job mustgather.Job) error {
	*g.ran = append(*g.ran, g.name)
	return nil
}

func TestTheRouterPicksTheClusterOfTheServer(t *testing.T) {
	tests := []struct {
		name      string
		clusters  []string
		server    string
		wantRan   []string
		wantErrIs []error
	}{
		{"no server runs on the default cluster", []string{"", "prod"}, "", []string{"default"}, nil},
		{"a named server runs on its cluster", []string{"", "prod"}, "prod", []string{"prod"}, nil},
		{"an unknown server is an error", []string{"", "prod"}, "https://evil.example.com", nil, []error{ErrUnknownServer, mustgather.ErrInvalid}},
		{"no server without a default cluster is an error", []string{"prod"}, "", nil, []error{ErrUnknownServer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran []string
			gs := map[string]mustgather.Gatherer{}
			for _, c := range tt.clusters {
				name := c
				if name == "" {
					name = "default"
				}
				gs[c] = namedGatherer{name: name, ran: &ran}
			}
			r := NewRouter(gs)
			err := r.Gather(context.Background(), mustgather.Job{Gathering: mustgather.Gathering{Server: tt.server}})
			for _, want := range tt.wantErrIs {
				if !errors.Is(err, want) {
					t.Errorf("error %v is not %v", err, want)
				}
			}
			if tt.wantErrIs == nil && err != nil {
				t.Errorf("Gather: %v", err)
			}
			if diff := cmp.Diff(tt.wantRan, ran); diff != "" {
				t.Errorf("ran (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"prod"}, r.Servers()); diff != "" {
				t.Errorf("Servers (-want +got):\n%s", diff)
			}
		})
	}
}

const testKubeconfig = `apiVersion: v1
kind: Config
current-context: a
clusters:
- name: ca
  cluster: {server: "https://a.example:6443"}
- name: cb
  cluster: {server: "https://b.example:6443"}
users:
- name: u
  user: {token: secret}
contexts:
- name: a
  context: {cluster: ca, user: u}
- name: b
  context: {cluster: cb, user: u}
`

func TestClustersComeFromKubeconfigContexts(t *testing.T) {
	// Not in a pod, whatever machine runs the test.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		path      string
		contexts  []string
		want      map[string]string // server name -> host
		wantErr   string
		wantErrIs error
	}{
		{"the current context is the default", path, nil, map[string]string{"": "https://a.example:6443"}, "", nil},
		{"contexts are servers by their own name or by server=context", path, []string{"b", "prod=a"},
			map[string]string{"": "https://a.example:6443", "b": "https://b.example:6443", "prod": "https://a.example:6443"}, "", nil},
		{"an unknown context is an error", path, []string{"c"}, nil, `kubeconfig has no context "c"`, nil},
		{"a server named twice is an error", path, []string{"b", "b=a"}, nil, `cluster "b" named twice`, nil},
		{"no cluster at all is an error", empty, nil, nil, "no cluster configured", ErrNoCluster},
		{"a missing kubeconfig is an error", filepath.Join(dir, "missing"), nil, nil, "load kubeconfig", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadClusters(tt.path, tt.contexts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one that says %q", err, tt.wantErr)
				}
				if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
					t.Errorf("error %v is not %v", err, tt.wantErrIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hosts := map[string]string{}
			for name, cfg := range got {
				hosts[name] = cfg.Host
				if cfg.BearerToken != "secret" {
					t.Errorf("cluster %q lost its credentials", name)
				}
			}
			if diff := cmp.Diff(tt.want, hosts); diff != "" {
				t.Errorf("clusters (-want +got):\n%s", diff)
			}
			// Every cluster gets a Gatherer.
			r, err := NewRouterForClusters(got, Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.gatherers) != len(got) {
				t.Errorf("%d gatherers for %d clusters", len(r.gatherers), len(got))
			}
		})
	}
}
