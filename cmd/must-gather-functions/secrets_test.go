package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks/sinkstest"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// writeSecret writes value to a file as a mounted Kubernetes Secret would
// hold it, and returns the file's path.
func writeSecret(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestASecretComesFromItsVariableOrFromTheFileItsFILEVariableNames(t *testing.T) {
	type got struct{ AccessKey, SecretKey, NATSURL string }
	for _, tt := range []struct {
		name    string
		env     func(t *testing.T) map[string]string
		want    got
		wantErr string
	}{
		{"the variables give the values", func(*testing.T) map[string]string {
			return map[string]string{"S3_ACCESS_KEY": "access", "S3_SECRET_KEY": "se cret", "NATS_URL": "nats://u:p@nats:4222"}
		}, got{"access", "se cret", "nats://u:p@nats:4222"}, ""},
		{"the files give the values without their trailing newline", func(t *testing.T) map[string]string {
			return map[string]string{
				"S3_ACCESS_KEY_FILE": writeSecret(t, "access", "access\n"),
				"S3_SECRET_KEY_FILE": writeSecret(t, "secret", " se cret \r\n"),
				"NATS_URL_FILE":      writeSecret(t, "url", "tls://u:p@nats:4222"),
			}
		}, got{"access", " se cret ", "tls://u:p@nats:4222"}, ""},
		{"a variable and its file both set is refused", func(t *testing.T) map[string]string {
			return map[string]string{"S3_SECRET_KEY": "x", "S3_SECRET_KEY_FILE": writeSecret(t, "secret", "y")}
		}, got{}, "S3_SECRET_KEY and S3_SECRET_KEY_FILE are both set; set one"},
		{"a missing file is named", func(t *testing.T) map[string]string {
			return map[string]string{"S3_ACCESS_KEY_FILE": "/nonexistent/access"}
		}, got{}, "S3_ACCESS_KEY_FILE: open /nonexistent/access: no such file or directory"},
		{"an empty file is refused", func(t *testing.T) map[string]string {
			return map[string]string{"NATS_URL_FILE": writeSecret(t, "url", "\n")}
		}, got{}, "/url is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env(t)
			c, ok := loadOrWantErr(t, env, tt.wantErr)
			if !ok {
				return
			}
			if diff := cmp.Diff(tt.want, got{c.S3.AccessKey, c.S3.SecretKey, c.NATS.URL}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNATSTLSSettingsThatCannotWorkAreRefused(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"a client certificate without its key", map[string]string{"NATS_URL": "tls://nats:4222", "NATS_CERT_FILE": "c.crt"},
			"NATS_CERT_FILE and NATS_KEY_FILE: set both or neither"},
		{"TLS files with the embedded server", map[string]string{"NATS_CA_FILE": "ca.crt"},
			"NATS_CA_FILE, NATS_CERT_FILE, NATS_KEY_FILE: need NATS_URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig([]string{"x"}, func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRedactedURLsKeepEverythingButThePassword(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nats://nats:4222", "nats://nats:4222"},
		{"tls://mgf:s3cret@nats:4222", "tls://mgf:redacted@nats:4222"},
		{"nats://tok3n@nats:4222", "nats://redacted@nats:4222"},
		{"nats://a:p1@n1:4222, nats://a:p2@n2:4222", "nats://a:redacted@n1:4222,nats://a:redacted@n2:4222"},
		{"nats://a:p1@n1:bad port", "redacted"},
	} {
		if got := redactURLs(tt.in); got != tt.want {
			t.Errorf("redactURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// tlsNATS is a nats-server that takes only TLS clients with a certificate
// of its CA, and a password.
type tlsNATS struct {
	ca                *testenv.CA
	addr              string // host:port
	user, password    string
	certFile, keyFile string // a client's
	otherCA           string // the file of a CA that did not sign the server's certificate
	server            *natsserver.Server
}

func startTLSNATS(t *testing.T) *tlsNATS {
	t.Helper()
	ca := testenv.NewCA(t, "nats-test-ca")
	n := &tlsNATS{ca: ca, user: "mgf", password: testenv.Name("nats-password")}
	n.server = testenv.NATSWith(t, natsserver.Options{TLS: ca.ServerTLS(t, "nats"), Username: n.user, Password: n.password})
	n.addr = n.server.Addr().String()
	n.certFile, n.keyFile = ca.Issue(t, "must-gather-functions")
	n.otherCA = testenv.NewCA(t, "other-ca").CertFile
	return n
}

// env is the settings that reach the server.
func (n *tlsNATS) env() map[string]string {
	return map[string]string{
		"NATS_URL":       fmt.Sprintf("tls://%s:%s@%s", n.user, n.password, n.addr),
		"NATS_CA_FILE":   n.ca.CertFile,
		"NATS_CERT_FILE": n.certFile,
		"NATS_KEY_FILE":  n.keyFile,
		"HTTP_ADDRESS":   "127.0.0.1:0",
		"AUTH":           "off",
	}
}

// with returns env with more on top.
func with(env map[string]string, more map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// runToFailure runs the system with env, which must not start, and
// returns its error and what it logged.
func runToFailure(t *testing.T, env map[string]string, within time.Duration) (error, string) {
	t.Helper()
	env = with(map[string]string{"PORT": "0", "DATA_DIR": t.TempDir(), "LOG_LEVEL": "debug", "PROCESS_TEMP_DIR": t.TempDir()}, env)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var log logBuffer
	err := run(ctx, []string{"x"}, func(k string) string { return env[k] }, io.Discard, &log)
	if err == nil {
		t.Fatal("the system started")
	}
	t.Logf("error: %v\nlog:\n%s", err, log.String())
	return err, log.String()
}

func TestTheSystemWorksOnNATSOverTLSWithAClientCertificate(t *testing.T) {
	n := startTLSNATS(t)
	s := start(t, t.TempDir(), n.env())
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo over tls"}`))
	if done := s.waitEnded(t, g.ID); done.Status != "completed" || !strings.Contains(done.ExecOutput, "over tls") {
		t.Errorf("%s\n%s", done.Status, done.ExecOutput)
	}
}

func TestNATSThatCannotBeTrustedOrRefusesUsFailsTheStartAtOnce(t *testing.T) {
	n := startTLSNATS(t)
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"a CA that did not sign the server's certificate", map[string]string{"NATS_CA_FILE": n.otherCA}, "certificate signed by unknown authority"},
		{"no client certificate", map[string]string{"NATS_CERT_FILE": "", "NATS_KEY_FILE": ""}, "connect to tls://mgf:redacted@" + n.addr},
		{"a wrong password", map[string]string{"NATS_URL": fmt.Sprintf("tls://mgf:wrong@%s", n.addr)}, "Authorization Violation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			// Within the 60 s that a server that does not answer is waited
			// for: an answer that refuses must not wait.
			err, _ := runToFailure(t, with(n.env(), tt.env), 30*time.Second)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("failed after %s, not at once", d)
			}
		})
	}
}

func TestSecretsNeverAppearInLogsOrErrors(t *testing.T) {
	n := startTLSNATS(t)
	m := testenv.MinIO(t)
	s3 := map[string]string{"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_BUCKET": testenv.Name("secrets"), "S3_USE_TLS": "false"}
	// The keys that sign events, download links and deliveries to a
	// subscriber, which the system uses when it runs a gathering.
	receiver := sinkstest.New(t, nil)
	keys := map[string]string{
		"EVENTS_SIGNING_KEY":   testenv.Name("events-signing-key-0123456789abcdef"),
		"DOWNLOAD_URL_SECRET":  testenv.Name("download-url-secret-0123456789abcdef"),
		"NOTIFIER_SINK_SECRET": testenv.Name("notifier-sink-secret-0123456789abcdef"),
	}
	signing := map[string]string{"NOTIFIER_SINKS": receiver.URL}
	fromEnv := with(with(with(n.env(), s3), signing), map[string]string{"S3_ACCESS_KEY": m.AccessKey, "S3_SECRET_KEY": m.SecretKey})
	fromEnv = with(fromEnv, keys)
	fromFiles := func(t *testing.T) map[string]string {
		env := with(with(n.env(), s3), signing)
		delete(env, "NATS_URL")
		env["NATS_URL_FILE"] = writeSecret(t, "url", fmt.Sprintf("tls://%s:%s@%s\n", n.user, n.password, n.addr))
		env["S3_ACCESS_KEY_FILE"] = writeSecret(t, "access", m.AccessKey+"\n")
		env["S3_SECRET_KEY_FILE"] = writeSecret(t, "secret", m.SecretKey+"\n")
		for k, v := range keys {
			env[k+"_FILE"] = writeSecret(t, strings.ToLower(k), v+"\n")
		}
		return env
	}
	secrets := []string{n.password, m.AccessKey, m.SecretKey}
	for _, k := range keys {
		secrets = append(secrets, k)
	}
	wrongSecret := testenv.Name("wrong-s3-secret")
	wrongPassword := testenv.Name("wrong-nats-password")
	scan := func(t *testing.T, what, text string, secrets ...string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Errorf("%s holds the secret %q:\n%s", what, sec, text)
			}
		}
	}

	for name, env := range map[string]func(t *testing.T) map[string]string{
		"from the environment": func(*testing.T) map[string]string { return fromEnv },
		"from files":           fromFiles,
	} {
		t.Run("a system with the secrets "+name+" logs none of them", func(t *testing.T) {
			s := start(t, t.TempDir(), with(env(t), map[string]string{"LOG_LEVEL": "debug"}))
			g := s.post(t, "application/json", strings.NewReader(`{"command": "echo hi"}`))
			if done := s.waitEnded(t, g.ID); done.Status != "completed" {
				t.Errorf("%s\n%s", done.Status, done.ExecOutput)
			}
			// The signed download link and the signed delivery are made.
			s.link(t, g.ID)
			testenv.Eventually(t, 30*time.Second, "the subscriber gets the completion", func() bool { return len(receiver.Deliveries()) > 0 })
			s.stop()
			log := s.log.String()
			if !strings.Contains(log, "tls://mgf:redacted@"+n.addr) {
				t.Errorf("the log does not say where NATS is:\n%s", log)
			}
			scan(t, "the log", log, secrets...)
		})
	}

	for _, tt := range []struct {
		name    string
		env     map[string]string
		secrets []string
	}{
		{"S3 refuses a wrong secret key", map[string]string{"S3_SECRET_KEY": wrongSecret}, []string{m.AccessKey, wrongSecret, n.password}},
		{"S3 refuses an unknown access key", map[string]string{"S3_ACCESS_KEY": wrongSecret, "S3_SECRET_KEY": wrongPassword}, []string{wrongSecret, wrongPassword, n.password}},
		{"NATS refuses a wrong password", map[string]string{"NATS_URL": fmt.Sprintf("tls://mgf:%s@%s", wrongPassword, n.addr)}, []string{wrongPassword, m.AccessKey, m.SecretKey}},
		{"NATS_URL is not a URL", map[string]string{"NATS_URL": fmt.Sprintf("tls://mgf:%s@%s:bad port", n.password, n.addr)}, secrets},
		{"NATS does not answer", map[string]string{"NATS_URL": fmt.Sprintf("tls://mgf:%s@127.0.0.1:1", n.password)}, secrets},
	} {
		t.Run("a start that fails because "+tt.name+" shows no secret", func(t *testing.T) {
			t.Parallel()
			err, log := runToFailure(t, with(fromEnv, tt.env), 2*time.Second)
			scan(t, "the error", err.Error(), tt.secrets...)
			scan(t, "the log", log, tt.secrets...)
		})
	}
}

func TestABadSecretValueIsReportedWithoutTheValue(t *testing.T) {
	var n int
	s := setting{Var: "SOME_PIN", Field: &n, Secret: true}
	err := s.read(func(k string) string { return map[string]string{"SOME_PIN": "hunter2"}[k] })
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "SOME_PIN") {
		t.Errorf("err = %v: want the variable named and the value not shown", err)
	}
	if errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("the parser's error, which quotes the value, is reachable: %v", err)
	}
}

func TestHeadersOverTheLimitAreRefusedBeforeAnyHandler(t *testing.T) {
	s := start(t, t.TempDir(), map[string]string{"HTTP_MAX_HEADER_BYTES": "16384"})
	for _, tt := range []struct {
		name   string
		header int // bytes of one extra header's value
		want   int
	}{
		{"headers within the limit", 12 << 10, http.StatusOK},
		// net/http allows 4 KiB more than the limit for the request line.
		{"headers over the limit", 32 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.base+"/must-gather", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Padding", strings.Repeat("p", tt.header))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}
