package main

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// servedSerial connects anew to base, verifying its certificate against
// ca, and returns the serial number of the certificate it serves.
func servedSerial(t *testing.T, ca *testenv.CA, base string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	resp, err := c.Get(base + "/healthz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz over HTTPS: %s", resp.Status)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

// TestTheAPIServesHTTPSAndTakesARenewedCertificateWithoutARestart: the
// console's proxy reaches the API only over HTTPS with a certificate of
// OpenShift's service CA, which renews it in the mounted Secret.
func TestTheAPIServesHTTPSAndTakesARenewedCertificateWithoutARestart(t *testing.T) {
	ca := testenv.NewCA(t, "service-ca")
	certFile, keyFile := ca.Issue(t, "api")
	s := start(t, t.TempDir(), map[string]string{"HTTP_TLS_CERT_FILE": certFile, "HTTP_TLS_KEY_FILE": keyFile})
	if !strings.HasPrefix(s.base, "https://") {
		t.Fatalf("listening on %s, want https", s.base)
	}
	first, err := servedSerial(t, ca, s.base)
	if err != nil {
		t.Fatal(err)
	}
	// Plain HTTP gets no answer from the API.
	if resp, err := http.Get("http://" + strings.TrimPrefix(s.base, "https://") + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the HTTPS port")
		}
	}

	ca.Issue(t, "api") // the same files, a new certificate
	var now string
	testenv.Eventually(t, 10*time.Second, "the renewed certificate to be served", func() bool {
		now, err = servedSerial(t, ca, s.base)
		return err == nil && now != first
	})
}

func TestATLSCertificateThatDoesNotLoadStopsTheStart(t *testing.T) {
	ca := testenv.NewCA(t, "service-ca")
	certFile, _ := ca.Issue(t, "api")
	env := map[string]string{
		"NATS_EMBEDDED_PORT": "-1",
		"HTTP_TLS_CERT_FILE": certFile, "HTTP_TLS_KEY_FILE": certFile, // a certificate is no key
	}
	err, _ := runToFailure(t, env, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "HTTP_TLS_KEY_FILE") {
		t.Errorf("run: %v, want an error naming HTTP_TLS_KEY_FILE", err)
	}
}
