package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestARedactedGatheringUnpacksTheTarballsOfTheProcessGatherersOutput
// runs the process gatherer with redaction on, its output holding
// tarballs: a tar.gz, an uncompressed tar, a tar.gz holding a tar, and a
// truncated tar.gz. Each is unpacked beside itself and its files are
// redacted; the truncated one keeps what could be unpacked and is
// withheld, listed so in redactions.json.
func TestARedactedGatheringUnpacksTheTarballsOfTheProcessGatherersOutput(t *testing.T) {
	t.Parallel()
	corpus, err := filepath.Abs(filepath.Join(redactCorpus, "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := readSecrets(t)
	s := start(t, t.TempDir(), map[string]string{"GATHERER": "process", "REDACT_DEFAULT": "true"})
	command := fmt.Sprintf(`cp -r %s/secret secret &&
		tar czf secrets.tar.gz secret &&
		tar cf plain.tar -C secret kubeconfig pod.yaml &&
		mkdir nest broken && tar czf nest/outer.tar.gz plain.tar &&
		head -c $(( $(wc -c < secrets.tar.gz) / 2 )) secrets.tar.gz > broken/damaged.tar.gz &&
		rm -r secret`, corpus)
	g := s.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"command": %q}`, command)))
	done := s.waitEnded(t, g.ID)
	if done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	files := s.download(t, done)
	for name, content := range files {
		for _, secret := range secrets {
			if strings.Contains(content, secret) {
				t.Errorf("%s holds %q", name, secret)
			}
		}
	}
	for _, name := range []string{"secret/vsphere-provider-secret.yaml", "kubeconfig", "pod.yaml", "nest/kubeconfig", "nest/pod.yaml"} {
		if files[name] == "" {
			t.Errorf("%s, unpacked from a tarball, is not in the archive", name)
		}
	}
	for _, name := range []string{"secrets.tar.gz", "plain.tar", "nest/outer.tar.gz", "nest/plain.tar", "broken/damaged.tar.gz"} {
		if _, ok := files[name]; ok {
			t.Errorf("the tarball %s is in the archive", name)
		}
	}
	var report struct {
		Redactions []struct{ File, Rule string }
		Withheld   []struct{ File, Reason string }
	}
	if err := json.Unmarshal([]byte(files["redactions.json"]), &report); err != nil {
		t.Fatalf("redactions.json: %v\n%s", err, files["redactions.json"])
	}
	if len(report.Withheld) != 1 || report.Withheld[0].File != "broken/damaged.tar.gz" {
		t.Errorf("withheld: %+v, want the truncated tarball only", report.Withheld)
	}
	var redacted []string
	for _, r := range report.Redactions {
		redacted = append(redacted, r.File)
	}
	for _, want := range []string{"secret/vsphere-provider-secret.yaml", "kubeconfig", "nest/kubeconfig"} {
		if !slices.Contains(redacted, want) {
			t.Errorf("redactions.json has no %q: %v", want, redacted)
		}
	}
	unpacked := 0
	for name := range files {
		if strings.HasPrefix(name, "broken/secret/") {
			unpacked++
		}
	}
	if unpacked == 0 {
		t.Errorf("nothing of the truncated tarball was unpacked: %v", slices.Sorted(maps.Keys(files)))
	}
}

func readSecrets(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(redactCorpus, "secrets.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}
