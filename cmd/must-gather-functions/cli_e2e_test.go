package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/cli"
)

// cliRun runs the command line with args against s (through
// MUST_GATHER_URL) and returns its exit code, stdout and stderr.
func (s *system) cliRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	env := map[string]string{"MUST_GATHER_URL": s.base, "KUBECONFIG": filepath.Join(t.TempDir(), "none")}
	code := cli.Main(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestTheCLIGathersWaitsAndDownloads runs the command line in-process
// against the whole system: each command, and the exit code of each
// outcome.
func TestTheCLIGathersWaitsAndDownloads(t *testing.T) {
	s := start(t, t.TempDir(), nil)
	dir := t.TempDir()
	out := filepath.Join(dir, "archive.tar.gz")

	code, stdout, stderr := s.cliRun(t, "gather", "--command", gatherCommand, "--name", "cli", "--wait", "--download", "-o", out)
	if code != cli.ExitOK {
		t.Fatalf("gather --wait --download: exit %d\n%s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	if !strings.Contains(stderr, "gathering "+id+": completed") || !strings.Contains(stderr, "saved "+out) || strings.Contains(stderr, "\r") {
		t.Errorf("progress on stderr:\n%q", stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if files := archivetest.ReadTarGz(t, f); files["namespaces/openshift-mtv/crs/plan.yaml"] != "kind: Plan\n" {
		t.Errorf("the archive holds %v", files)
	}
	if want := fetchOK(t, s.base+"/must-gather/"+id+"/data"); !bytes.Equal(mustRead(t, out), want) {
		t.Errorf("the saved archive differs from /data")
	}

	if code, _, stderr := s.cliRun(t, "cancel", "cli"); code != cli.ExitNotReady {
		t.Errorf("cancel of a completed gathering: exit %d, want %d\n%s", code, cli.ExitNotReady, stderr)
	}
	if code, stdout, stderr := s.cliRun(t, "get", "cli"); code != cli.ExitOK || !strings.Contains(stdout, `"id": `+id) || !strings.Contains(stdout, `"status": "completed"`) {
		t.Errorf("get cli: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := s.cliRun(t, "list", "--status", "completed"); code != cli.ExitOK || !strings.Contains(stdout, "ID") || !strings.Contains(stdout, " cli\n") {
		t.Errorf("list: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := s.cliRun(t, "list", "--json", "--after", "0", "--limit", "1"); code != cli.ExitOK || !strings.Contains(stdout, `"id": `+id+",") {
		t.Errorf("list --after 0 --limit 1: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := s.cliRun(t, "list", "--json", "--after", id); code != cli.ExitOK || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("list --after %s: exit %d\n%s%s", id, code, stdout, stderr)
	}
	second := filepath.Join(dir, "second.tar.gz")
	if code, _, stderr := s.cliRun(t, "download", id, "-o", second); code != cli.ExitOK || !bytes.Equal(mustRead(t, second), mustRead(t, out)) {
		t.Errorf("download: exit %d\n%s", code, stderr)
	}
	// The default file is the archive's name, in the working directory.
	t.Chdir(dir)
	if code, _, stderr := s.cliRun(t, "download", "cli"); code != cli.ExitOK {
		t.Errorf("download to its name: exit %d\n%s", code, stderr)
	} else if _, err := os.Stat(filepath.Join(dir, "must-gather-"+id+"-cli.tar.gz")); err != nil {
		t.Error(err)
	}

	for _, tt := range []struct {
		name string
		args []string
		want int
		says string
	}{
		{"a gathering that ends in error", []string{"gather", "--command", "echo broken; exit 3", "--wait"}, cli.ExitFailed, "broken"},
		{"an unknown id", []string{"get", "987654"}, cli.ExitNotFound, "404"},
		{"a download of an unknown name", []string{"download", "no-such-name"}, cli.ExitNotFound, "404"},
		{"a download of a gathering still running", []string{"download", "running"}, cli.ExitNotReady, "409"},
		{"no command", nil, cli.ExitUsage, "usage"},
		{"an unknown flag", []string{"list", "--colour"}, cli.ExitUsage, "colour"},
		{"a missing id", []string{"get"}, cli.ExitUsage, "argument"},
		{"--output without --download", []string{"gather", "--command", "true", "-o", "x"}, cli.ExitUsage, "--download"},
		{"a request the API refuses", []string{"gather", "--command", "true", "--timeout", "forever"}, cli.ExitUsage, "timeout"},
		{"asking for help", []string{"gather", "-h"}, cli.ExitOK, "exit codes"},
	} {
		if tt.name == "a download of a gathering still running" {
			if code, _, stderr := s.cliRun(t, "gather", "--command", "sleep 600", "--name", "running"); code != cli.ExitOK {
				t.Fatalf("gather: exit %d\n%s", code, stderr)
			}
		}
		code, _, stderr := s.cliRun(t, tt.args...)
		if code != tt.want || !strings.Contains(stderr, tt.says) {
			t.Errorf("%s: exit %d, want %d; stderr:\n%s", tt.name, code, tt.want, stderr)
		}
	}
}

// TestTheCLITellsAnUnreachableService: exit 5, not a generic failure.
func TestTheCLITellsAnUnreachableService(t *testing.T) {
	s := &system{base: "http://127.0.0.1:1"}
	if code, _, stderr := s.cliRun(t, "list"); code != cli.ExitUnavailable {
		t.Errorf("exit %d, want %d\n%s", code, cli.ExitUnavailable, stderr)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTheCLIsOcFlagsReachTheGathering: each of oc adm must-gather's flags
// that the CLI takes is the request field of the same name, as the
// gathering the API stored shows it; a value the API refuses is a usage
// error naming the field.
func TestTheCLIsOcFlagsReachTheGathering(t *testing.T) {
	s := start(t, t.TempDir(), nil)
	for _, tt := range []struct {
		args  []string
		field string
		want  any
	}{
		{[]string{"--since", "2h"}, "since", "2h"},
		{[]string{"--since-time", "2026-11-30T10:00:00Z"}, "since-time", "2026-11-30T10:00:00Z"},
		{[]string{"--node-name", "worker-1"}, "node-name", "worker-1"},
		{[]string{"--node-selector", "node-role.kubernetes.io/worker="}, "node-selector", "node-role.kubernetes.io/worker="},
		{[]string{"--host-network"}, "host-network", true},
		{[]string{"--redact"}, "redact", true},
		{[]string{"--source-dir", "/must-gather/out/"}, "source-dir", "/must-gather/out/"},
		{[]string{"--image-stream", "openshift/must-gather:latest"}, "image-stream", "openshift/must-gather:latest"},
	} {
		t.Run(tt.field, func(t *testing.T) {
			args := append([]string{"gather", "--command", "true"}, tt.args...)
			code, stdout, stderr := s.cliRun(t, args...)
			if code != cli.ExitOK {
				t.Fatalf("gather %v: exit %d\n%s", tt.args, code, stderr)
			}
			code, stdout, stderr = s.cliRun(t, "get", strings.TrimSpace(stdout))
			if code != cli.ExitOK {
				t.Fatalf("get: exit %d\n%s", code, stderr)
			}
			var g map[string]any
			if err := json.Unmarshal([]byte(stdout), &g); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if g[tt.field] != tt.want {
				t.Errorf("%s = %v, want %v", tt.field, g[tt.field], tt.want)
			}
		})
	}
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"--since", "yesterday"}, "since"},
		{[]string{"--since-time", "10:00"}, "since-time"},
		{[]string{"--node-name", "worker-1", "--node-selector", "a=b"}, "node-selector"},
		{[]string{"--node-selector", "=="}, "node-selector"},
	} {
		args := append([]string{"gather", "--command", "true"}, tt.args...)
		if code, _, stderr := s.cliRun(t, args...); code != cli.ExitUsage || !strings.Contains(stderr, tt.says) {
			t.Errorf("gather %v: exit %d, want %d naming %s; stderr:\n%s", tt.args, code, cli.ExitUsage, tt.says, stderr)
		}
	}
}
