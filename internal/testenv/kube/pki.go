package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// kubePKI is the files of a Cluster's certificates and keys: one CA that
// signs the serving certificates of kube-apiserver and of kwok (so that
// kube-apiserver verifies the kubelet it dials), and the service account
// signing key.
type kubePKI struct {
	caPEM             []byte
	pool              *x509.CertPool
	caCert            string
	apiserverCert     string
	apiserverKey      string
	kwokCert          string
	kwokKey           string
	serviceAccountKey string
	saKey             *ecdsa.PrivateKey
}

func newKubePKI(dir string) (*kubePKI, error) {
	dir = filepath.Join(dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := testenv.NewCAIn(dir, "testenv-kube-ca")
	if err != nil {
		return nil, err
	}
	p := &kubePKI{caPEM: ca.CertPEM, pool: ca.Pool, caCert: ca.CertFile}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)}
	if p.apiserverCert, p.apiserverKey, err = ca.IssueFor("apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}, ips); err != nil {
		return nil, err
	}
	if p.kwokCert, p.kwokKey, err = ca.IssueFor("kwok", []string{"localhost"}, ips); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// One PEM serves as both --service-account-key-file (kube-apiserver
	// takes the public key from it) and --service-account-signing-key-file.
	p.serviceAccountKey = filepath.Join(dir, "service-account.key")
	if err := testenv.WriteECKey(p.serviceAccountKey, saKey); err != nil {
		return nil, err
	}
	p.saKey = saKey
	return p, nil
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
