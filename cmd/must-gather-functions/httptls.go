package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// certRecheck is how often, at most, the certificate files are looked at
// again for a renewed certificate.
const certRecheck = time.Second

// tlsListener serves HTTPS on ln with the certificate and key of the PEM
// files certFile and keyFile, such as the tls.crt and tls.key of a Secret
// that OpenShift's service CA fills. The files are read again when either
// changes (the service CA renews certificates in place, and a mounted
// Secret follows), so a renewal needs no restart; a pair that does not
// load, such as one half-written, leaves the last good certificate in use.
func tlsListener(ln net.Listener, certFile, keyFile string) (net.Listener, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile}
	if err := c.load(time.Now()); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}), nil
}

// certFiles is a certificate kept in step with its files.
type certFiles struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamps  [2]fileStamp // of the files the certificate was read from
	checked time.Time
}

// fileStamp tells whether a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// load reads the pair if either file changed since the last good read.
func (c *certFiles) load(now time.Time) error {
	c.checked = now
	var stamps [2]fileStamp
	var errs []error
	for i, path := range []string{c.certFile, c.keyFile} {
		s, err := stamp(path)
		errs = append(errs, err)
		stamps[i] = s
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("HTTP_TLS_CERT_FILE, HTTP_TLS_KEY_FILE: %w", err)
	}
	if c.cert != nil && stamps == c.stamps {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("HTTP_TLS_CERT_FILE, HTTP_TLS_KEY_FILE: %w", err)
	}
	c.cert, c.stamps = &cert, stamps
	return nil
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= certRecheck {
		// On an error the last good certificate serves until the files
		// are whole again.
		_ = c.load(now)
	}
	return c.cert, nil
}
