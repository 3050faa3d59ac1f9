package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// operatorNATS is a nats-server in operator mode: it trusts one operator,
// whose accounts it resolves from memory, and knows users only by the JWTs
// their accounts signed, as a NATS deployment managed with nsc does.
type operatorNATS struct {
	url   string
	creds string // a .creds file of a user of the account with JetStream
	// foreign is a .creds file of a user whose account the operator never
	// signed.
	foreign string
	seed    string // the user's NKey seed, a secret
}

func startOperatorNATS(t *testing.T) *operatorNATS {
	t.Helper()
	dir := t.TempDir()
	operator := must(t, nkeys.CreateOperator)
	opub := must(t, operator.PublicKey)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "mgf-test"
	if _, err := oc.Encode(operator); err != nil {
		t.Fatal(err)
	}
	system, sysJWT := account(t, operator, "SYS", false)
	app, appJWT := account(t, operator, "APP", true)
	resolver := &server.MemAccResolver{}
	for acc, token := range map[nkeys.KeyPair]string{system: sysJWT, app: appJWT} {
		if err := resolver.Store(must(t, acc.PublicKey), token); err != nil {
			t.Fatal(err)
		}
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: filepath.Join(dir, "js"),
		TrustedOperators: []*jwt.OperatorClaims{oc},
		SystemAccount:    must(t, system.PublicKey),
		AccountResolver:  resolver,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server in operator mode did not start")
	}
	n := &operatorNATS{url: s.ClientURL()}
	n.creds, n.seed = userCreds(t, app, filepath.Join(dir, "app.creds"))
	stranger := must(t, nkeys.CreateAccount)
	n.foreign, _ = userCreds(t, stranger, filepath.Join(dir, "foreign.creds"))
	return n
}

// account returns a new account signed by operator, with JetStream when js.
func account(t *testing.T, operator nkeys.KeyPair, name string, js bool) (nkeys.KeyPair, string) {
	t.Helper()
	kp := must(t, nkeys.CreateAccount)
	ac := jwt.NewAccountClaims(must(t, kp.PublicKey))
	ac.Name = name
	if js {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	token, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	return kp, token
}

// userCreds writes the .creds file of a new user of acc to path and
// returns it with the user's seed.
func userCreds(t *testing.T, acc nkeys.KeyPair, path string) (file, seed string) {
	t.Helper()
	user := must(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(must(t, user.PublicKey))
	token, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	s := must(t, user.Seed)
	creds, err := jwt.FormatUserConfig(token, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, string(s)
}

func must[T any](t *testing.T, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTheSystemWorksOnNATSInOperatorModeWithACredsFile(t *testing.T) {
	n := startOperatorNATS(t)
	s := start(t, t.TempDir(), map[string]string{
		"NATS_URL": n.url, "NATS_CREDS": n.creds, "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off", "LOG_LEVEL": "debug",
	})
	g := s.post(t, "application/json", strings.NewReader(`{"command": "echo with creds"}`))
	if done := s.waitEnded(t, g.ID); done.Status != "completed" || !strings.Contains(done.ExecOutput, "with creds") {
		t.Errorf("%s\n%s", done.Status, done.ExecOutput)
	}
	if strings.Contains(s.log.String(), n.seed) {
		t.Error("the log holds the user's NKey seed")
	}
}

func TestNATSInOperatorModeRefusesCredsItDidNotSignAtOnce(t *testing.T) {
	n := startOperatorNATS(t)
	for _, tt := range []struct {
		name  string
		creds string
		want  string
	}{
		{"a user of an account the operator did not sign", n.foreign, "Authorization Violation"},
		{"no credentials", "", "Authorization Violation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			err, log := runToFailure(t, map[string]string{"NATS_URL": n.url, "NATS_CREDS": tt.creds, "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off"}, 30*time.Second)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("failed after %s, not at once", d)
			}
			if strings.Contains(log+err.Error(), n.seed) {
				t.Error("the user's NKey seed was logged")
			}
		})
	}
}

func TestAMissingCredsFileFailsTheStartNamingIt(t *testing.T) {
	n := startOperatorNATS(t)
	missing := filepath.Join(t.TempDir(), "nowhere.creds")
	err, _ := runToFailure(t, map[string]string{"NATS_URL": n.url, "NATS_CREDS": missing, "HTTP_ADDRESS": "127.0.0.1:0", "AUTH": "off"}, 30*time.Second)
	if !strings.Contains(err.Error(), "nowhere.creds") {
		t.Errorf("error %q does not name the file", err)
	}
}
