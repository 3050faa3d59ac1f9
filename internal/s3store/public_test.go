package s3store

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// get downloads u with client (nil: http.DefaultClient) and returns the
// response, its body read and closed.
func get(t *testing.T, client *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestPresignGetSignsForThePublicEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := testenv.MinIO(t)
	_, port, err := net.SplitHostPort(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	data := archivetest.Data(3, 256<<10)
	for _, tt := range []struct {
		name, public, region string
	}{
		{"host:port takes the endpoint's scheme", "localhost:" + port, "us-east-1"},
		{"a URL gives its own scheme", "http://localhost:" + port, "us-east-1"},
		{"without a region the bucket's location is asked of the endpoint, not the public one", "localhost:" + port, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config(t)
			cfg.UseTLS = false
			cfg.Region = tt.region
			cfg.PublicEndpoint = tt.public
			s := newStore(t, cfg)
			if _, err := s.Put(ctx, "gatherings/1/a.tar.gz", bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			u, _, err := s.PresignGet(ctx, "gatherings/1/a.tar.gz", "", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if u.Host != "localhost:"+port || u.Scheme != "http" {
				t.Fatalf("URL %s, want one of http://localhost:%s", u.Redacted(), port)
			}
			if resp, body := get(t, nil, u.String()); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
				t.Fatalf("GET at the public host: %d, %d bytes; want 200 and the object's %d", resp.StatusCode, len(body), len(data))
			}
			// The host is part of the signature: the same URL at the
			// endpoint's own address does not verify.
			u.Host = m.Endpoint
			if resp, _ := get(t, nil, u.String()); resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET at %s: %d, want 403", m.Endpoint, resp.StatusCode)
			}
		})
	}
}

func TestPresignGetNeverConnectsToThePublicEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Nothing listens on a port that was free a moment ago, and .invalid
	// never resolves.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, public := range []string{"https://s3.example.invalid", "127.0.0.1:" + strconv.Itoa(port)} {
		for _, region := range []string{"", "eu-west-1"} {
			t.Run(public+" in region "+region, func(t *testing.T) {
				t.Parallel()
				cfg := config(t)
				cfg.UseTLS = false
				cfg.Region = region
				cfg.PublicEndpoint = public
				s := newStore(t, cfg)
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				u, _, err := s.PresignGet(ctx, "gatherings/1/a.tar.gz", "", time.Minute)
				if err != nil {
					t.Fatalf("PresignGet: %v", err)
				}
				if want := strings.TrimPrefix(strings.TrimPrefix(public, "https://"), "http://"); u.Host != want {
					t.Errorf("host %q, want %q", u.Host, want)
				}
				if region != "" && !strings.Contains(u.Query().Get("X-Amz-Credential"), "/"+region+"/s3/") {
					t.Errorf("credential %q is not for region %s", u.Query().Get("X-Amz-Credential"), region)
				}
			})
		}
	}
}

func TestABadPublicEndpointIsRefused(t *testing.T) {
	t.Parallel()
	for _, public := range []string{"ftp://s3.example.com", "https://s3.example.com/bucket", "https://user:pw@s3.example.com", "https://"} {
		cfg := config(t)
		cfg.UseTLS = false
		cfg.PublicEndpoint = public
		if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "public endpoint") {
			t.Errorf("New with public endpoint %q: %v, want an error naming the public endpoint", public, err)
		}
	}
}

func TestTheCAFileIsTrustedForTheEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := testenv.NewCA(t, "s3-ca")
	m := testenv.MinIOTLS(t, ca)
	cfg := Config{
		Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Bucket: testenv.Name("tls"), Region: "us-east-1", UseTLS: true, PartSize: minPartSize,
	}

	t.Run("without it the certificate does not verify, and the error says what to do", func(t *testing.T) {
		start := time.Now()
		_, err := New(ctx, cfg)
		if err == nil {
			t.Fatal("New: no error")
		}
		took := time.Since(start)
		t.Logf("after %s: %v", took.Round(time.Millisecond), err)
		// No retry can make the certificate verify: minio-go must not
		// retry (it did, for about 5 s).
		if took > 3*time.Second {
			t.Errorf("New took %s to fail; want no retries", took)
		}
		for _, want := range []string{"certificate signed by unknown authority", "not signed by a CA this process trusts"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})

	t.Run("a file without a certificate is refused", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.CAFile = bad
		if _, err := New(ctx, c); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("New: %v, want an error about the CA file", err)
		}
	})

	t.Run("with it the store works, and so does a presigned URL for a client that trusts the CA", func(t *testing.T) {
		c := cfg
		c.CAFile = ca.CertFile
		s := newStore(t, c)
		data := archivetest.Data(4, 64<<10)
		if _, err := s.Put(ctx, "gatherings/1/a.tar.gz", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		a, err := s.Open(ctx, "gatherings/1/a.tar.gz")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(a)
		a.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes (%v), want the %d put", len(got), err, len(data))
		}
		u, _, err := s.PresignGet(ctx, "gatherings/1/a.tar.gz", "", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}}
		if resp, body := get(t, client, u.String()); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
			t.Errorf("presigned GET: %d, %d bytes", resp.StatusCode, len(body))
		}
	})
}

// BenchmarkPresignGet measures signing a download for the endpoint itself
// and for a public endpoint that nothing listens on: neither sends a
// request once the bucket's location is known.
func BenchmarkPresignGet(b *testing.B) {
	for _, public := range []string{"", "https://s3.example.invalid"} {
		name := "endpoint"
		if public != "" {
			name = "public endpoint"
		}
		b.Run(name, func(b *testing.B) {
			cfg := config(b)
			cfg.UseTLS = false
			cfg.Region = ""
			cfg.PublicEndpoint = public
			s := newStore(b, cfg)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.PresignGet(context.Background(), "gatherings/1/a.tar.gz", "a.tar.gz", time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
