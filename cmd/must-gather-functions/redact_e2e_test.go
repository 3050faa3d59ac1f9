package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// redactCorpus is the redaction package's corpus: Secret manifests,
// provider secrets, logs with tokens, keys, and harmless look-alikes.
const redactCorpus = "../../internal/redact/testdata"

// redactionCorpus returns the corpus folder and the secret strings in it,
// none of which may be left in a redacted archive.
func redactionCorpus(t *testing.T) (string, []string) {
	t.Helper()
	corpus, err := filepath.Abs(filepath.Join(redactCorpus, "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(redactCorpus, "secrets.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return corpus, strings.Fields(string(b))
}

func TestARedactedGatheringStoresNoSecretInMinIOAndSaysHowMuchWasRedacted(t *testing.T) {
	corpus, secrets := redactionCorpus(t)
	m := testenv.MinIO(t)
	s := start(t, t.TempDir(), map[string]string{
		"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": testenv.Name("redact"), "S3_USE_TLS": "false",
		"REDACT_DEFAULT": "true", "REDACT_BUFFER_BYTES": "4096",
		"REDACT_RULES": `[{"name": "ticket-numbers", "regex": "ticket-(?P<mask>[0-9]+)", "files": "*.txt"}]`,
	})
	// The command copies the corpus, writes a file larger than the
	// bound (masked in place), a binary file, a note for the configured
	// rule, and prints a token, which goes to exec-output and
	// must-gather.logs.
	command := fmt.Sprintf(`cp -r %s/secret %s/harmless . &&
		{ for i in $(seq 200); do echo "line $i of the controller log"; done; cat secret/controller.log; } > big.log &&
		printf '\177ELF\000\000\001' > tool &&
		echo "see ticket-4242" > note.txt &&
		echo "Authorization: Bearer sha256~Xk3vT0kEnValue0123456789abcdefABCDEF"`, corpus, corpus)

	for _, tt := range []struct {
		name, redact string
		redacted     bool
	}{
		{"a request that does not say takes REDACT_DEFAULT", "", true},
		{"a request can turn redaction off", `"redact": false, `, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := s.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{%s"command": %q}`, tt.redact, command)))
			done := s.waitEnded(t, g.ID)
			if done.Status != "completed" {
				t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
			}
			raw := getJSON(t, fmt.Sprintf("%s/must-gather/%d", s.base, g.ID))
			files := s.download(t, done)
			if !tt.redacted {
				if _, ok := raw["redact"]; ok || raw["redaction"] != nil {
					t.Errorf("gathering shows redaction: %v", raw)
				}
				if !strings.Contains(files["secret/app.ini"], "ini-s3cret-value") || files["tool"] == "" {
					t.Errorf("a gathering without redaction changed its files: %v", files["secret/app.ini"])
				}
				return
			}
			if raw["redact"] != true {
				t.Errorf("redact: %v", raw["redact"])
			}
			red, _ := raw["redaction"].(map[string]any)
			// Every secret file, big.log, note.txt and must-gather.logs.
			if red["files"] != float64(13) || red["matches"].(float64) < 30 || red["withheld"] != float64(1) {
				t.Errorf("redaction: %v", raw["redaction"])
			}
			for name, content := range files {
				for _, s := range secrets {
					if strings.Contains(content, s) {
						t.Errorf("%s holds %q", name, s)
					}
				}
			}
			if files["note.txt"] != "see ticket-****\n" && files["note.txt"] != "see ticket-***REDACTED***\n" {
				t.Errorf("the configured rule left note.txt %q", files["note.txt"])
			}
			if strings.Contains(done.ExecOutput, "Xk3vT0kEn") || !strings.Contains(done.ExecOutput, "Bearer ***REDACTED***") {
				t.Errorf("exec-output: %q", done.ExecOutput)
			}
			for _, name := range []string{"harmless/provider.yaml", "harmless/deployment.yaml", "harmless/migration.log"} {
				want, _ := os.ReadFile(filepath.Join(corpus, name))
				if files[name] != string(want) {
					t.Errorf("harmless %s changed:\n%s", name, files[name])
				}
			}
			if _, ok := files["tool"]; ok {
				t.Error("the binary file is in the archive")
			}
			// big.log, larger than REDACT_BUFFER_BYTES, is masked in place.
			big, _ := os.ReadFile(filepath.Join(corpus, "secret", "controller.log"))
			size := len(big)
			for i := 1; i <= 200; i++ {
				size += len(fmt.Sprintf("line %d of the controller log\n", i))
			}
			if len(files["big.log"]) != size || strings.Contains(files["big.log"], "REDACTED") || !strings.Contains(files["big.log"], "Bearer ****") {
				t.Errorf("big.log: %d bytes, want %d, masked in place:\n%s", len(files["big.log"]), size, files["big.log"])
			}
			var report struct {
				Redactions []struct {
					File, Rule string
					Count      int
				}
				Withheld []struct{ File, Reason string }
			}
			if err := json.Unmarshal([]byte(files["redactions.json"]), &report); err != nil {
				t.Fatalf("redactions.json: %v\n%s", err, files["redactions.json"])
			}
			rules := map[string]string{}
			for _, r := range report.Redactions {
				rules[r.File+" "+r.Rule] = fmt.Sprint(r.Count)
			}
			for _, want := range []string{"note.txt ticket-numbers", "must-gather.logs bearer-token", "big.log url-password", "secret/vsphere-provider-secret.yaml kubernetes-secret-data"} {
				if rules[want] == "" {
					t.Errorf("redactions.json has no %q: %v", want, rules)
				}
			}
			if len(report.Withheld) != 1 || report.Withheld[0].File != "tool" {
				t.Errorf("withheld: %+v", report.Withheld)
			}
		})
	}
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}
