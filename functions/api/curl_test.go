package api

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// TestSeedCurlExamplesWorkVerbatim runs the curl commands of the
// must-gather-from-ui enhancement, with only the server address changed.
func TestSeedCurlExamplesWorkVerbatim(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	e := newEnv(t)
	dir := t.TempDir()
	run := func(cmdline string) []byte {
		t.Helper()
		cmdline = strings.ReplaceAll(cmdline, "http://localhost:8080", e.srv.URL)
		cmd := exec.Command("sh", "-c", strings.Replace(cmdline, "curl", curl+" -sS --fail-with-body", 1))
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmdline, err, out)
		}
		return out
	}

	out := run(`curl -X POST -H "Content-Type: application/json" -d '{"image": "quay.io/maufart/forklift-must-gather", "timeout": "15m"}' http://localhost:8080/must-gather`)
	var g mustgather.Gathering
	if err := json.Unmarshal(out, &g); err != nil || g.ID != 1 || g.Image != "quay.io/maufart/forklift-must-gather" || g.Timeout != "15m" {
		t.Fatalf("POST answered %s (%v)", out, err)
	}
	archive := e.finish(g.ID, mustgather.StatusCompleted, map[string]string{"must-gather/version": "4.18"})

	out = run(`curl  http://localhost:8080/must-gather/1`)
	if err := json.Unmarshal(out, &g); err != nil || g.Status != mustgather.StatusCompleted {
		t.Fatalf("GET answered %s (%v)", out, err)
	}
	run(`curl -OJ http://localhost:8080/must-gather/1/data`)
	saved, err := os.ReadFile(filepath.Join(dir, g.ArchiveName))
	if err != nil {
		t.Fatalf("curl -OJ did not save the archive as %s: %v", g.ArchiveName, err)
	}
	if !bytes.Equal(saved, archive) {
		t.Errorf("saved archive differs from the stored one")
	}
	out = run(`curl  http://localhost:8080/must-gather`)
	var list []mustgather.Gathering
	if err := json.Unmarshal(out, &list); err != nil || len(list) != 1 {
		t.Fatalf("list answered %s (%v)", out, err)
	}
	// A form, as curl -d sends it without a Content-Type option.
	out = run(`curl -d custom-name=plan1 -d image=quay.io/konveyor/forklift-must-gather http://localhost:8080/must-gather`)
	if err := json.Unmarshal(out, &g); err != nil || g.CustomName != "plan1" {
		t.Fatalf("form POST answered %s (%v)", out, err)
	}
	out = run(`curl -F custom-name=plan2 -F 'command=PLAN=plan2 /usr/bin/targeted' http://localhost:8080/must-gather`)
	if err := json.Unmarshal(out, &g); err != nil || g.Command != "PLAN=plan2 /usr/bin/targeted" {
		t.Fatalf("multipart POST answered %s (%v)", out, err)
	}
	out = run(`curl -X POST http://localhost:8080/must-gather`)
	if err := json.Unmarshal(out, &g); err != nil || g.Timeout != "30m" {
		t.Fatalf("empty POST answered %s (%v)", out, err)
	}
}
