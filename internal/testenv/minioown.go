package testenv

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// RestartableMinIO is a MinIO of one test's own, which the test stops and
// starts again on the same port and data, as an S3 store that goes away
// for a while and comes back.
type RestartableMinIO struct {
	*S3
	t    testing.TB
	bin  string
	port int
}

// OwnMinIO starts a MinIO of t's own, stopped when the test ends. Use the
// shared MinIO for everything that does not stop it: each server takes
// seconds to start.
func OwnMinIO(t testing.TB) *RestartableMinIO {
	t.Helper()
	bin := MinIOBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("MinIO binary not found at %s (run `make tools`, or set MINIO_BIN): %v", bin, err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m := &RestartableMinIO{S3: &S3{dir: t.TempDir()}, t: t, bin: bin, port: port}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start starts the server, again after Stop, on the same port and data,
// and waits until it serves S3.
func (m *RestartableMinIO) Start() {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := Poll(ctx, 200*time.Millisecond, func() error {
		s, err := tryMinIOOn(m.bin, m.dir, nil, m.port)
		if err == nil {
			m.S3 = s
		}
		return err
	})
	if err != nil {
		m.t.Fatalf("start MinIO on %s: %v", net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)), err)
	}
}

// Stop stops the server at once, as a crash or a lost node does.
func (m *RestartableMinIO) Stop() {
	if m.proc != nil {
		m.proc.Stop()
		m.proc = nil
	}
}
