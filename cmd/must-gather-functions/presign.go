package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/kubev2v/must-gather-functions/internal/presign"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
)

// checkDownloads checks the settings of download links and of the S3
// endpoints they point at.
func (c config) checkDownloads() []error {
	var errs []error
	if err := presign.CheckTTL(c.Presign.TTL); err != nil {
		errs = append(errs, fmt.Errorf("DOWNLOAD_URL_TTL: %w", err))
	}
	if err := presign.CheckPublicURL(c.Presign.PublicURL); err != nil {
		errs = append(errs, fmt.Errorf("API_PUBLIC_URL: %w", err))
	}
	if err := presign.CheckSecret(c.Presign.Secret); err != nil {
		errs = append(errs, fmt.Errorf("DOWNLOAD_URL_SECRET: %w", err))
	}
	if c.Sinks.Presigned && c.ArchiveStore == "dir" && c.Presign.PublicURL == "" {
		// Outside a request there is no request to take the base from.
		errs = append(errs, errors.New("NOTIFIER_SINK_PRESIGNED: with the local archive store, download links for subscribers need API_PUBLIC_URL"))
	}
	if c.S3.PublicEndpoint != "" {
		if _, _, err := s3store.ParseEndpoint(c.S3.PublicEndpoint, c.S3.UseTLS); err != nil {
			errs = append(errs, fmt.Errorf("S3_PUBLIC_ENDPOINT: %w", err))
		}
	}
	return errs
}

// newLinks returns what makes download links for the archive store in
// use: presigned GETs of S3, or the API's own download path signed with
// DOWNLOAD_URL_SECRET. Its Link method is what the API and subscriber
// delivery are given.
func newLinks(cfg config, d *deps) (presign.Linker, error) {
	if s, ok := d.archives.(*s3store.Store); ok {
		return presign.NewS3(s, cfg.Presign.TTL)
	}
	l, err := presign.NewLocal(cfg.Presign, nil)
	if err != nil {
		return nil, err
	}
	if l.RandomKey() && cfg.has("api") {
		msg := "download links are signed with a random key of this process: they work only on this process, until it restarts; set DOWNLOAD_URL_SECRET when several API replicas serve one archive folder"
		if cfg.embedded() {
			d.log.Info(msg)
		} else {
			d.log.Warn(msg)
		}
	}
	return l, nil
}

// explainS3TLS names the setting that makes a private CA's certificate
// trusted, when the S3 endpoint's did not verify.
func explainS3TLS(err error) error {
	if errors.As(err, new(*tls.CertificateVerificationError)) || errors.As(err, new(x509.UnknownAuthorityError)) {
		return fmt.Errorf("%w; if S3 has a certificate of a private CA, set S3_CA_FILE to that CA's PEM file", err)
	}
	return err
}
