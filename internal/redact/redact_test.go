package redact_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// corpus reads testdata/corpus/<dir>: file name to content.
func corpus(t *testing.T, dir string) map[string][]byte { return corpusFS(t, dir) }

func corpusFS(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join("testdata", "corpus", dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", "corpus", dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// secrets are the strings of the corpus that must not survive redaction.
func secrets(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "secrets.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// modes redact a file as a document, and masked in place (the bound
// below every file's size).
var modes = []struct {
	name string
	run  func(t *testing.T, r *redact.Redactor, name string, b []byte) ([]byte, redact.Summary)
}{
	{"as a document", func(t *testing.T, r *redact.Redactor, name string, b []byte) ([]byte, redact.Summary) {
		out, counts := r.Bytes(name, b)
		rep := redact.NewReport()
		rep.Add(name, counts)
		return out, rep.Summary()
	}},
	{"masked in place", func(t *testing.T, r *redact.Redactor, name string, b []byte) ([]byte, redact.Summary) {
		rep := redact.NewReport()
		out, err := io.ReadAll(io.LimitReader(r.Reader(name, int64(len(b)), bytes.NewReader(b), rep), int64(len(b))))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(b) {
			t.Fatalf("masked in place, %s is %d bytes, want %d", name, len(out), len(b))
		}
		return out, rep.Summary()
	}},
}

func TestNoSecretOfTheCorpusSurvivesAndHarmlessFilesStayByteForByte(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r, err := redact.New(redact.Config{BufferBytes: 4096})
			if err != nil {
				t.Fatal(err)
			}
			// With a bound of 64 bytes no Secret of the corpus is held
			// whole while its kind, which comes after its data, is unknown:
			// the data is then redacted whatever the kind.
			tiny, err := redact.New(redact.Config{BufferBytes: 64})
			if err != nil {
				t.Fatal(err)
			}
			for name, b := range corpus(t, "secret") {
				for _, r := range []*redact.Redactor{r, tiny} {
					out, sum := m.run(t, r, name, b)
					for _, s := range secrets(t) {
						if bytes.Contains(out, []byte(s)) {
							t.Errorf("%s (bound %d) still holds %q:\n%s", name, r.BufferBytes(), s, out)
						}
					}
					if sum.Matches == 0 || bytes.Equal(out, b) {
						t.Errorf("%s: nothing redacted", name)
					}
				}
			}
			for name, b := range corpus(t, "harmless") {
				out, sum := m.run(t, r, name, b)
				if diff := cmp.Diff(string(b), string(out)); diff != "" {
					t.Errorf("harmless %s changed (-was +now):\n%s", name, diff)
				}
				if sum.Matches != 0 {
					t.Errorf("harmless %s: %d matches", name, sum.Matches)
				}
			}
		})
	}
}

func TestRedactionKeepsKeysAndStructure(t *testing.T) {
	r, err := redact.New(redact.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, in, want string
		counts               map[string]int
	}{
		{"a Secret's data values in YAML, kind after data", "s.yaml",
			"apiVersion: v1\ndata:\n  password: c2VjcmV0\n  user: YWRtaW4=\nkind: Secret\n",
			"apiVersion: v1\ndata:\n  password: ***REDACTED***\n  user: ***REDACTED***\nkind: Secret\n",
			map[string]int{"kubernetes-secret-data": 2}},
		{"a ConfigMap's data stays", "c.yaml",
			"apiVersion: v1\ndata:\n  user: YWRtaW4=\nkind: ConfigMap\n",
			"apiVersion: v1\ndata:\n  user: YWRtaW4=\nkind: ConfigMap\n", map[string]int{}},
		{"a Secret's stringData in JSON", "s.json",
			`{"stringData": {"user": "admin", "key": "v"}, "kind": "Secret"}` + "\n",
			`{"stringData": {"user": "***REDACTED***", "key": "***REDACTED***"}, "kind": "Secret"}` + "\n",
			map[string]int{"kubernetes-secret-data": 2}},
		{"a password in a URL", "log", "dial mysql://root:hunter22@db:3306/x\n", "dial mysql://root:***REDACTED***@db:3306/x\n",
			map[string]int{"url-password": 1}},
		{"a key=value line, quoted", "env", `export OVIRT_PASSWORD="p w"` + "\n", `export OVIRT_PASSWORD="***REDACTED***"` + "\n",
			map[string]int{"credential-value": 1}},
		{"a YAML token with a comment", "c.yaml", "token: abc # set by the installer\n", "token: ***REDACTED*** # set by the installer\n",
			map[string]int{"credential-value": 1}},
		{"a PEM private key counts once", "k.pem", "-----BEGIN EC PRIVATE KEY-----\nAAAA\nBBBB\n-----END EC PRIVATE KEY-----\n",
			"-----BEGIN EC PRIVATE KEY-----\n***REDACTED***\n***REDACTED***\n-----END EC PRIVATE KEY-----\n",
			map[string]int{"pem-private-key": 1}},
		{"a file without a newline at its end", "log", "password=x", "password=***REDACTED***",
			map[string]int{"credential-value": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, counts := r.Bytes(tt.file, []byte(tt.in))
			if diff := cmp.Diff(tt.want, string(out)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.counts, counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfiguredRulesApplyToTheFilesTheirGlobSelects(t *testing.T) {
	rules, err := redact.ParseRules(`[{"name": "customer-id", "regex": "customer=(?P<mask>\\d+)", "files": "*.log"},
		{"name": "hostnames", "regex": "[a-z]+\\.corp\\.example"}]`)
	if err != nil {
		t.Fatal(err)
	}
	r, err := redact.New(redact.Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	in := "customer=12345 on db.corp.example\n"
	for file, want := range map[string]string{
		"ns/pods/app.log": "customer=***REDACTED*** on ***REDACTED***\n",
		"ns/app.yaml":     "customer=12345 on ***REDACTED***\n",
	} {
		if out, _ := r.Bytes(file, []byte(in)); string(out) != want {
			t.Errorf("%s: got %q, want %q", file, out, want)
		}
	}
}

func TestBadRulesAreRefusedWithTheReason(t *testing.T) {
	tests := []struct{ name, rules, want string }{
		{"not JSON", `[{"name": }]`, "a JSON array"},
		{"no name", `[{"regex": "x"}]`, "rule 1 has no name"},
		{"a bad regex", `[{"name": "a", "regex": "("}]`, `rule "a": regex`},
		{"a regex matching nothing at all", `[{"name": "a", "regex": "x*"}]`, "matches the empty string"},
		{"a built-in name", `[{"name": "jwt", "regex": "x"}]`, "used twice"},
		{"a bad glob", `[{"name": "a", "regex": "x", "files": "["}]`, "files"},
		{"an unknown field", `[{"name": "a", "regex": "x", "glob": "*"}]`, "unknown field"},
		{"a file that is not there", `/nonexistent/rules.json`, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redact.ParseRules(tt.rules)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseRules: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestTextIsToldFromBinary(t *testing.T) {
	for in, want := range map[string]bool{
		"plain\n": true, "ünïcödé 🚀": true, "": true, "\x1f\x8b\x08\x00\x00": false, "a\x00b": false,
		strings.Repeat("x", 100) + "\xe2\x82": true, // a rune cut at the end
		"\xff\xfe\xfd\xfc abc":                false,
	} {
		if got := redact.IsText([]byte(in)); got != want {
			t.Errorf("IsText(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestReportListsFileRuleAndCountNeverValues(t *testing.T) {
	rep := redact.NewReport()
	rep.Add("b.yaml", map[string]int{"jwt": 1, "credential-value": 2})
	rep.Add("a.log", map[string]int{"jwt": 3})
	rep.Withhold("bin/tool", "binary")
	want := `{
  "redactions": [
    {
      "file": "b.yaml",
      "rule": "credential-value",
      "count": 2
    },
    {
      "file": "b.yaml",
      "rule": "jwt",
      "count": 1
    },
    {
      "file": "a.log",
      "rule": "jwt",
      "count": 3
    }
  ],
  "withheld": [
    {
      "file": "bin/tool",
      "reason": "binary"
    }
  ]
}
`
	if diff := cmp.Diff(want, string(rep.JSON())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(redact.Summary{Files: 2, Matches: 6, Withheld: 1}, rep.Summary()); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}
