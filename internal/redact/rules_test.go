package redact_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// A rule's expression runs from the word of its needle, not from the
// start of the line, and case-sensitive needles are found in their case
// only: the matches are those of the whole line, word boundaries
// included.
func TestLineRulesFindWhatTheyFindInTheWholeLine(t *testing.T) {
	tests := []struct {
		name, in, want string
		counts         map[string]int
	}{
		{"a bearer token in a header", `GET /x headers="Authorization: Bearer sha256~abcdefghijklmnopqrstuv"`,
			`GET /x headers="Authorization: Bearer ***REDACTED***"`, map[string]int{redact.RuleBearerToken: 1}},
		{"bearer inside a word is no bearer", "xbearer abcdefghijklmnopqrstuvwxyz", "xbearer abcdefghijklmnopqrstuvwxyz", nil},
		{"bearer after an underscore is inside a word", "_bearer abcdefghijklmnopqrstuvwxyz", "_bearer abcdefghijklmnopqrstuvwxyz", nil},
		{"bearer after a dash starts a word", "-bearer abcdefghijklmnopqrstuvwxyz", "-bearer ***REDACTED***", map[string]int{redact.RuleBearerToken: 1}},
		{"basic credentials after a short bearer", "bearer short, then Authorization: Basic YWRtaW46c2VjcmV0c2VjcmV0",
			"bearer short, then Authorization: Basic ***REDACTED***", map[string]int{redact.RuleBearerToken: 1}},
		{"a password in a URL", "connecting to postgres://forklift:s3cr3tpw@db:5432/inventory",
			"connecting to postgres://forklift:***REDACTED***@db:5432/inventory", map[string]int{redact.RuleURLPassword: 1}},
		{"a scheme inside a word is no scheme", "x_postgres://forklift:s3cr3tpw@db:5432/inventory", "x_postgres://forklift:s3cr3tpw@db:5432/inventory", nil},
		{"a scheme with dots, plus and dash", "a.b+c-d://forklift:s3cr3tpw@db/x", "a.b+c-d://forklift:***REDACTED***@db/x", map[string]int{redact.RuleURLPassword: 1}},
		{"the second URL of a line", "see http://example.com/ and then ftp://u:p4ss@host/",
			"see http://example.com/ and then ftp://u:***REDACTED***@host/", map[string]int{redact.RuleURLPassword: 1}},
		{"a JWT inside a word is no JWT", "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", nil},
		{"an access key, and one inside a word", "key AKIAIOSFODNN7EXAMPLE and xAKIAIOSFODNN7EXAMPLE",
			"key ***REDACTED*** and xAKIAIOSFODNN7EXAMPLE", map[string]int{redact.RuleCloudAccessKey: 1}},
		{"a Google API key", "google AIzaSyA1234567890abcdefghijklmnopqrstuv", "google ***REDACTED***", map[string]int{redact.RuleCloudAccessKey: 1}},
		{"a base64 private key", "k: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUNkUUlCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND",
			"k: ***REDACTED***", map[string]int{redact.RulePrivateKey: 1}},
		{"a PEM header in lower case is no PEM", "-----begin private key----- lower case is no PEM", "-----begin private key----- lower case is no PEM", nil},
		{"a comment after a plain value stays", "value: abc #not-a-comment#", "value: abc #not-a-comment#", nil},
	}
	r, err := redact.New(redact.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, counts := r.Bytes("f.log", []byte(tt.in+"\n"))
			if got := string(out); got != tt.want+"\n" {
				t.Errorf("redacted:\n got %q\nwant %q", got, tt.want+"\n")
			}
			if len(tt.counts) == 0 && len(counts) == 0 {
				return
			}
			if diff := cmp.Diff(tt.counts, counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})
	}
}
