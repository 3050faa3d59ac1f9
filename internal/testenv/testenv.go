// Package testenv starts the real servers that tests talk to: an embedded
// nats-server with JetStream on a random loopback port, and MinIO from the
// binary that `make tools` installs, on a random loopback port. It also
// holds what every such test needs: Eventually to wait for a condition,
// StartProcess to run a program, FreePort. It does not link client-go:
// the Kubernetes control plane is in the package testenv/kube.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kubev2v/must-gather-functions/internal/natsserver"
)

// NATS starts an embedded nats-server with JetStream on a random loopback
// port, with its store in a temporary directory. It is stopped when the test
// ends.
func NATS(t testing.TB) *natsserver.Server {
	t.Helper()
	return NATSIn(t, t.TempDir())
}

// NATSIn is NATS with the JetStream store in dir, so that a test can stop a
// server and start another on the same data.
func NATSIn(t testing.TB, dir string) *natsserver.Server {
	t.Helper()
	return NATSWith(t, natsserver.Options{StoreDir: dir})
}

// NATSWith is NATS with the options o, for a server with TLS or a
// password; a zero Port or StoreDir is a random port and a temporary
// directory.
func NATSWith(t testing.TB, o natsserver.Options) *natsserver.Server {
	t.Helper()
	if o.Port == 0 {
		o.Port = -1
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, o)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Conn connects to s over loopback TCP, closed when the test ends.
func Conn(t testing.TB, s *natsserver.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to nats-server: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Name returns a name unique to this test run with the given prefix, made of
// lowercase letters, digits and '-', usable as a bucket, stream or consumer
// name.
func Name(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// MinIOVersion is the MinIO release that `make tools` installs; keep it in
// step with MINIO_VERSION in the Makefile.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOBinary returns where the MinIO binary is: $MINIO_BIN, or the cache
// folder that `make tools` installs into.
func MinIOBinary() string { return ToolPath("MINIO_BIN", "minio", MinIOVersion, "minio") }

// ToolPath returns where a tool that `make tools` installs is: the path in
// the environment variable env if it is set, or else elem under the cache
// folder that `make tools` installs into ($MGF_TOOLS_DIR, or
// must-gather-functions in the user's cache folder).
func ToolPath(env string, elem ...string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	dir := os.Getenv("MGF_TOOLS_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir = filepath.Join(cache, "must-gather-functions")
	}
	return filepath.Join(append([]string{dir}, elem...)...)
}

// S3 is a running MinIO server.
type S3 struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	proc      *Process
	dir       string
}

var (
	minioOnce sync.Once
	minioSrv  *S3
	minioErr  error
)

// MinIO returns the MinIO server shared by the tests of this package,
// starting it on first use. Each test should use its own bucket (see Name).
// Packages that use it call Main from TestMain so that the server is
// stopped when the tests end.
func MinIO(t testing.TB) *S3 {
	t.Helper()
	minioOnce.Do(func() { minioSrv, minioErr = startMinIO() })
	if minioErr != nil {
		t.Fatalf("MinIO: %v", minioErr)
	}
	return minioSrv
}

// Main runs the tests of a package and stops the shared MinIO afterwards.
// Use it as: func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if minioSrv != nil {
		minioSrv.stop()
	}
	os.Exit(code)
}

func startMinIO() (*S3, error) {
	bin := MinIOBinary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("binary not found at %s (run `make tools`, or set MINIO_BIN): %w", bin, err)
	}
	dir, err := os.MkdirTemp("", "mgf-minio-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		s, err := tryMinIO(bin, dir, nil)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// tryMinIO starts MinIO on a free port with its data in dir, serving HTTPS
// with the certificate in dir/certs when ca, which signed it, is given.
func tryMinIO(bin, dir string, ca *CA) (*S3, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return tryMinIOOn(bin, dir, ca, port)
}

// tryMinIOOn is tryMinIO on port.
func tryMinIOOn(bin, dir string, ca *CA, port int) (*S3, error) {
	console, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &S3{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "mgf-test-access",
		SecretKey: "mgf-test-secret-key",
		dir:       dir,
	}
	env := append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	args := []string{bin, "server", "--quiet", "--address", s.Endpoint, "--console-address", fmt.Sprintf("127.0.0.1:%d", console)}
	scheme, client := "http", &http.Client{Timeout: time.Second}
	if ca != nil {
		args = append(args, "--certs-dir", filepath.Join(dir, "certs"))
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}
	}
	p, err := StartProcess(dir, "minio", env, append(args, filepath.Join(dir, "data")))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = p.WaitReady(ctx, func() error {
		// /minio/health/ready answers 200 a little before the S3 API is
		// initialized (503 XMinioServerNotInitialized); an anonymous S3
		// request answers 403 only once it is.
		resp, err := client.Get(scheme + "://" + s.Endpoint + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			return fmt.Errorf("GET /: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("minio on %s: %w: %s", s.Endpoint, err, p.Tail(30))
	}
	s.proc = p
	return s, nil
}

// Pid is the process id of the MinIO server, for benchmarks that sample
// its memory.
func (s *S3) Pid() int { return s.proc.Pid() }

func (s *S3) stop() {
	if s.proc != nil {
		s.proc.Stop()
	}
	_ = os.RemoveAll(s.dir)
}
