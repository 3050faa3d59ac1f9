package api

import (
	"encoding/json"
	"net/http"
	"testing"
)

// The targeted fields reach the runner as the command Forklift's image
// expects, with NS only when the request names a namespace; a timeout in
// bare seconds is taken as oc takes it and kept as sent.
func TestCreateBuildsTheTargetedCommandAndTakesSecondsAsTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		wantCommand string
		wantTimeout string
	}{
		{"a plan alone leaves NS to the image", `{"plan": "mig-plan-cold"}`, `PLAN='mig-plan-cold' /usr/bin/targeted`, "30m"},
		{"a plan and a vm without a namespace", `{"plan": "p", "vm": "vm-7595"}`, `PLAN='p' VM='vm-7595' /usr/bin/targeted`, "30m"},
		{"a plan in a named namespace", `{"plan": "p", "namespace": "konveyor-forklift"}`, `PLAN='p' NS='konveyor-forklift' /usr/bin/targeted`, "30m"},
		{"a timeout in bare seconds", `{"timeout": "600"}`, "", "600"},
		{"the largest timeout in seconds", `{"timeout": "7200"}`, "", "7200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			g := e.create(tt.body)
			if g.Command != tt.wantCommand || g.Timeout != tt.wantTimeout {
				t.Errorf("command %q timeout %q, want %q and %q", g.Command, g.Timeout, tt.wantCommand, tt.wantTimeout)
			}
		})
	}
	t.Run("a timeout in seconds above the maximum is refused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		resp := e.do(http.MethodPost, "/must-gather", "application/json", []byte(`{"timeout": "7201"}`))
		var body struct{ Error, Field string }
		if err := json.Unmarshal(resp.body, &body); err != nil || resp.status != http.StatusBadRequest || body.Field != "timeout" {
			t.Errorf("%d %s, want 400 naming timeout", resp.status, resp.body)
		}
	})
}
