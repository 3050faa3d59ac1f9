// Package testenv starts the real servers that tests talk to: an embedded
// nats-server with JetStream on a random loopback port, and MinIO from the
// binary that `make tools` installs, on a random loopback port.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, natsserver.Options{Host: "127.0.0.1", Port: -1, StoreDir: dir})
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
func MinIOBinary() string {
	if p := os.Getenv("MINIO_BIN"); p != "" {
		return p
	}
	return filepath.Join(toolsDir(), "minio", MinIOVersion, "minio")
}

// toolsDir returns the cache folder that `make tools` installs into:
// $MGF_TOOLS_DIR, or must-gather-functions in the user's cache folder.
func toolsDir() string {
	if dir := os.Getenv("MGF_TOOLS_DIR"); dir != "" {
		return dir
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "must-gather-functions")
}

// S3 is a running MinIO server.
type S3 struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	cmd       *exec.Cmd
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
		s, err := tryMinIO(bin, dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func tryMinIO(bin, dir string) (*S3, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	console, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &S3{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "mgf-test-access",
		SecretKey: "mgf-test-secret-key",
		dir:       dir,
	}
	var out strings.Builder
	cmd := exec.Command(bin, "server", "--quiet", "--address", s.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", console), filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("minio exited: %v: %s", err, out.String())
		default:
		}
		// /minio/health/ready answers 200 a little before the S3 API is
		// initialized (503 XMinioServerNotInitialized); an anonymous S3
		// request answers 403 only once it is.
		resp, err := client.Get("http://" + s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden {
				go func() { <-exited }()
				return s, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil, fmt.Errorf("minio not ready on %s within 60s: %s", s.Endpoint, out.String())
}

func (s *S3) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	_ = os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
