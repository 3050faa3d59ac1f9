package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
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
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "testenv-kube-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p := &kubePKI{
		caPEM:             pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pool:              x509.NewCertPool(),
		caCert:            filepath.Join(dir, "ca.crt"),
		apiserverCert:     filepath.Join(dir, "apiserver.crt"),
		apiserverKey:      filepath.Join(dir, "apiserver.key"),
		kwokCert:          filepath.Join(dir, "kwok.crt"),
		kwokKey:           filepath.Join(dir, "kwok.key"),
		serviceAccountKey: filepath.Join(dir, "service-account.key"),
	}
	p.pool.AddCert(ca)
	if err := os.WriteFile(p.caCert, p.caPEM, 0o600); err != nil {
		return nil, err
	}
	serial := int64(2)
	for _, c := range []struct {
		cert, key string
		dns       []string
	}{
		{p.apiserverCert, p.apiserverKey, []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}},
		{p.kwokCert, p.kwokKey, []string{"localhost"}},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: c.dns[0]},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames:     c.dns,
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		}
		serial++
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(c.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		if err := writeECKey(c.key, key); err != nil {
			return nil, err
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// One PEM serves as both --service-account-key-file (kube-apiserver
	// takes the public key from it) and --service-account-signing-key-file.
	if err := writeECKey(p.serviceAccountKey, saKey); err != nil {
		return nil, err
	}
	p.saKey = saKey
	return p, nil
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
