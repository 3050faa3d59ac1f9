package testenv

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// MinIOTLS starts a MinIO of t's own that serves HTTPS with a certificate
// of ca for localhost and 127.0.0.1, as an S3 endpoint with a private CA
// does. It is stopped when the test ends. Use the shared MinIO for
// everything else: each server takes a few seconds to start.
func MinIOTLS(t testing.TB, ca *CA) *S3 {
	t.Helper()
	bin := MinIOBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("MinIO binary not found at %s (run `make tools`, or set MINIO_BIN): %v", bin, err)
	}
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	// MinIO reads its certificate and key from the certs folder under
	// these names.
	certFile, keyFile, err := ca.IssueFor("minio", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{certFile: "public.crt", keyFile: "private.key"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var s *S3
	for range 5 {
		if s, err = tryMinIO(bin, dir, ca); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("MinIO with TLS: %v", err)
	}
	t.Cleanup(func() { s.proc.Stop() })
	return s
}
