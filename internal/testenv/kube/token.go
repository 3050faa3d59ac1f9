package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// serviceAccountIssuer is kube-apiserver's --service-account-issuer, which
// is also its default audience.
const serviceAccountIssuer = "https://kubernetes.default.svc"

// ServiceAccountToken returns a token of the service account namespace/name,
// creating the account if it is missing, signed with the cluster's
// service-account key as kube-apiserver signs one, valid from an hour
// before until expires. With expires in the past the token is well-formed
// and correctly signed but expired.
func (k *Cluster) ServiceAccountToken(t testing.TB, namespace, name string, expires time.Time) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := k.client.CoreV1().ServiceAccounts(namespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		sa, err = k.client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatalf("kube: service account %s/%s: %v", namespace, name, err)
	}
	issued := time.Now().Add(-time.Hour)
	if expires.Before(issued) {
		issued = expires.Add(-time.Hour)
	}
	claims := map[string]any{
		"iss": serviceAccountIssuer,
		"aud": []string{serviceAccountIssuer},
		"sub": "system:serviceaccount:" + namespace + ":" + name,
		"iat": issued.Unix(),
		"nbf": issued.Unix(),
		"exp": expires.Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": name, "uid": string(sa.UID)},
		},
	}
	tok, err := signES256(k.saKey, claims)
	if err != nil {
		t.Fatalf("kube: sign token: %v", err)
	}
	return tok
}

// signES256 makes a compact JWS of claims with ES256 (RFC 7518 3.4): the
// signature is r and s, each as 32 big-endian bytes.
func signES256(key *ecdsa.PrivateKey, claims any) (string, error) {
	enc := base64.RawURLEncoding
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig), nil
}

// CountRequests returns a copy of rc whose requests are counted in n, so
// that a test can tell whether a client asked the API server at all.
func CountRequests(rc *rest.Config, n *atomic.Int64) *rest.Config {
	rc = rest.CopyConfig(rc)
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{n: n, rt: rt} })
	return rc
}

type countingTransport struct {
	n  *atomic.Int64
	rt http.RoundTripper
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// Unreachable returns a copy of rc pointed at a loopback port where no API
// server listens, as a cluster that is down.
func Unreachable(t testing.TB, rc *rest.Config) *rest.Config {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rc = rest.CopyConfig(rc)
	rc.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
	return rc
}
