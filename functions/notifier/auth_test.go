package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/auth"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

func TestOnlyClusterAdminsOfTheGatheringsClusterGetItsStream(t *testing.T) {
	k := kube.Start(t)
	reviewer, err := auth.New(map[string]*rest.Config{"": k.Admin, "prod": k.Admin, "down": kube.Unreachable(t, k.Admin)}, auth.Config{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{}, envOptions{auth: reviewer})
	// Finished gatherings, so that a granted stream ends by itself.
	finished := func(server string) mustgather.Gathering {
		g, err := e.store.Create(context.Background(), mustgather.NewGathering(mustgather.Request{Server: server, Timeout: "1m"}, time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		e.claim(t, g.ID)
		return e.apply(t, completed(g.ID, 1))
	}
	onLocal, onProd, onDown := finished(""), finished("prod"), finished("down")

	tokens := []struct {
		name, token string
		want        int // 0: as the endpoint answers an admin
	}{
		{"the cluster-admin", k.Admin.BearerToken, 0},
		{"a user without rights", k.NoRights.BearerToken, http.StatusForbidden},
		{"no token", "", http.StatusUnauthorized},
		{"a garbage token", "garbage-token", http.StatusUnauthorized},
		{"an expired service-account token", k.ServiceAccountToken(t, "default", "expired", time.Now().Add(-time.Minute)), http.StatusUnauthorized},
	}
	endpoints := []struct {
		path  string
		admin int
	}{
		{"/events", http.StatusOK},
		{fmt.Sprintf("/must-gather/%d/events", onLocal.ID), http.StatusOK},
		{fmt.Sprintf("/must-gather/%d/events", onProd.ID), http.StatusOK},
		// A cluster whose API server does not answer allows nothing.
		{fmt.Sprintf("/must-gather/%d/events", onDown.ID), http.StatusServiceUnavailable},
		{"/must-gather/999/events", http.StatusNotFound},
	}
	for _, tok := range tokens {
		for _, ep := range endpoints {
			want := ep.admin
			switch {
			case tok.token == "":
				want = http.StatusUnauthorized
			case ep.admin == http.StatusServiceUnavailable:
				// Without an answer from the cluster no token is known
				// good or bad.
			case tok.want != 0:
				want = tok.want
			}
			t.Run(fmt.Sprintf("%s gets %d from %s", tok.name, want, ep.path), func(t *testing.T) {
				var h []string
				if tok.token != "" {
					h = []string{"Authorization", "Bearer " + tok.token}
				}
				resp, cancel := e.get(t, ep.path, h...)
				defer cancel()
				if resp.StatusCode != want {
					t.Fatalf("status %d, want %d", resp.StatusCode, want)
				}
				if want == http.StatusOK {
					if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
						t.Errorf("Content-Type %q", ct)
					}
					return
				}
				var body struct{ Error string }
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
					t.Errorf("not a JSON error (%v)", err)
				}
				if got := resp.Header.Get("WWW-Authenticate"); (want == http.StatusUnauthorized) != (got == "Bearer") {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			})
		}
	}
}
