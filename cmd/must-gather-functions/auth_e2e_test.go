package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// send sends a request to the system with a bearer token (none when empty)
// and a JSON body (none when empty), and returns the answer's status and body.
func (s *system) send(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestWithAuthOnOnlyTheClusterAdminGathers runs the whole system with
// AUTH=on against a real kube-apiserver: the tokens are reviewed by the
// cluster of KUBECONFIG.
func TestWithAuthOnOnlyTheClusterAdminGathers(t *testing.T) {
	k := kube.Start(t)
	s := start(t, t.TempDir(), map[string]string{"AUTH": "on", "KUBECONFIG": k.Kubeconfig, "GATHERER": "process"})
	if status, body := s.send(t, http.MethodPost, "/must-gather", "", `{"command": "true"}`); status != http.StatusUnauthorized {
		t.Errorf("without a token: %d %s, want 401", status, body)
	}
	if status, body := s.send(t, http.MethodPost, "/must-gather", k.NoRights.BearerToken, `{"command": "true"}`); status != http.StatusForbidden {
		t.Errorf("without rights: %d %s, want 403", status, body)
	}
	status, body := s.send(t, http.MethodPost, "/must-gather", k.Admin.BearerToken, `{"command": "true"}`)
	if status != http.StatusCreated {
		t.Fatalf("as cluster-admin: %d %s, want 201", status, body)
	}
	var g struct {
		RequestedBy string `json:"requested-by"`
	}
	if err := json.Unmarshal(body, &g); err != nil {
		t.Fatal(err)
	}
	if g.RequestedBy != kube.AdminUser {
		t.Errorf("requested-by = %q, want %q", g.RequestedBy, kube.AdminUser)
	}
	if status, _ := s.send(t, http.MethodGet, "/healthz", "", ""); status != http.StatusOK {
		t.Errorf("healthz: %d", status)
	}
}

// TestWithAuthOnAProcessWithoutTheAPIServesMetricsOnlyToThoseAllowed runs
// a runner and recorder process, as in a cluster, with AUTH=on: its
// /metrics follows the API's rule.
func TestWithAuthOnAProcessWithoutTheAPIServesMetricsOnlyToThoseAllowed(t *testing.T) {
	k := kube.Start(t)
	nats := testenv.NATS(t)
	s := start(t, t.TempDir(), map[string]string{
		"FUNCTIONS": "runner,recorder", "NATS_URL": nats.ClientURL(), "HTTP_ADDRESS": "127.0.0.1:0",
		"AUTH": "on", "KUBECONFIG": k.Kubeconfig, "GATHERER": "process",
	})
	for _, tt := range []struct {
		name, path, token string
		want              int
	}{
		{"no token is refused /metrics", "/metrics", "", http.StatusUnauthorized},
		{"a user without rights is forbidden /metrics", "/metrics", k.NoRights.BearerToken, http.StatusForbidden},
		{"the cluster-admin gets /metrics", "/metrics", k.Admin.BearerToken, http.StatusOK},
		{"readiness needs no token", "/readyz", "", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
