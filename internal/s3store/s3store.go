// Package s3store keeps archives in a bucket of S3-compatible object
// storage (MinIO, AWS S3, Ceph RGW, ...) with minio-go. It implements
// mustgather.ArchiveStore.
package s3store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kubev2v/must-gather-functions/internal/ctxio"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Defaults for the zero fields of Config.
const (
	DefaultPartSize              = 16 << 20
	DefaultDialTimeout           = 10 * time.Second
	DefaultResponseHeaderTimeout = 2 * time.Minute
)

// S3 limits on the size of a multipart part.
const (
	minPartSize = 5 << 20
	maxPartSize = 5 << 30
)

// Config says where the bucket is and how to reach it.
type Config struct {
	Endpoint  string // host:port, without scheme
	AccessKey string
	SecretKey string
	// Region of the bucket; empty asks the server.
	Region string
	Bucket string
	UseTLS bool
	// PartSize is the multipart part size of uploads, whose size is never
	// known in advance; DefaultPartSize if zero, at least 5 MiB. minio-go
	// holds one part in memory per upload, so this bounds the memory an
	// upload takes, and with S3's 10,000 parts it bounds the archive size
	// (16 MiB parts allow 156 GiB).
	PartSize uint64
	// DialTimeout bounds connecting to the endpoint; DefaultDialTimeout if
	// zero.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an answer once a request
	// has been sent; DefaultResponseHeaderTimeout if zero. Completing a
	// large multipart upload can take a while.
	ResponseHeaderTimeout time.Duration
	// CAFile is a PEM bundle of the CAs trusted for the endpoint's
	// certificate, such as a private CA, in addition to the system's
	// roots. It is read by New, and not used when Transport is set.
	CAFile string
	// Transport, if set, is used instead of one built from the timeouts
	// above and CAFile.
	Transport http.RoundTripper
	// RetryFor is how long an upload waits for S3 to answer again, retrying
	// with a back-off, before it is given up with an OutageError;
	// DefaultRetryFor if zero.
	RetryFor time.Duration
	// PublicEndpoint is the endpoint that holders of presigned URLs reach
	// the bucket at, as host:port (scheme as UseTLS) or
	// http(s)://host[:port]; empty means Endpoint. PresignGet signs for it
	// without ever connecting to it: the endpoint a browser reaches is
	// often not reachable from inside the cluster.
	PublicEndpoint string
}

// DefaultConfig returns the defaults documented in the README: HTTPS, the
// bucket "must-gather", and the timeouts and part size that stand in for
// zero fields. Endpoint and credentials have none.
func DefaultConfig() Config {
	return Config{
		Bucket:                "must-gather",
		UseTLS:                true,
		PartSize:              DefaultPartSize,
		DialTimeout:           DefaultDialTimeout,
		ResponseHeaderTimeout: DefaultResponseHeaderTimeout,
		RetryFor:              DefaultRetryFor,
	}
}

// Store is a mustgather.ArchiveStore on one bucket.
type Store struct {
	client *minio.Client
	// presigner signs URLs for the public endpoint; it is client when
	// that is the endpoint's.
	presigner *minio.Client
	bucket    string
	partSize  uint64
	// uploader makes uploads: client's, with retries bounded by retryFor
	// rather than by a count.
	uploader *minio.Client
	endpoint string
	retryFor time.Duration
}

var _ mustgather.ArchiveStore = (*Store)(nil)

// New connects to the bucket, creating it if it does not exist.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3store: endpoint and bucket are required")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize || cfg.PartSize > maxPartSize {
		return nil, fmt.Errorf("s3store: part size %d is outside S3's limits of 5 MiB to 5 GiB", cfg.PartSize)
	}
	tr := cfg.Transport
	if tr == nil {
		t, err := transport(cfg)
		if err != nil {
			return nil, err
		}
		tr = untrustedFailsFast{t}
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    cfg.UseTLS,
		Region:    cfg.Region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	uploader, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      creds,
		Secure:     cfg.UseTLS,
		Region:     cfg.Region,
		Transport:  outageTransport{tr},
		MaxRetries: uploadRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	s := &Store{client: client, presigner: client, bucket: cfg.Bucket, partSize: cfg.PartSize,
		uploader: uploader, endpoint: cfg.Endpoint, retryFor: cfg.RetryFor}
	if err := s.ensureBucket(ctx, cfg.Region); err != nil {
		return nil, explainTLS(err)
	}
	if cfg.PublicEndpoint != "" {
		if s.presigner, err = s.publicClient(ctx, cfg, creds); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// transport is the HTTP transport to the endpoint: minio-go's, with the
// configured timeouts and, from CAFile, the CAs trusted besides the
// system's.
func transport(cfg Config) (*http.Transport, error) {
	t, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	t.DialContext = (&net.Dialer{Timeout: or(cfg.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = or(cfg.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	if cfg.CAFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("s3store: CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s3store: CA file %s holds no PEM certificate", cfg.CAFile)
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = pool
	return t, nil
}

// untrustedFailsFast hands minio-go a certificate from an unknown
// authority as the x509.UnknownAuthorityError that minio-go knows not to
// retry: since Go 1.20 crypto/tls wraps it in a CertificateVerificationError,
// which minio-go retries for seconds, although no retry can succeed.
type untrustedFailsFast struct{ http.RoundTripper }

func (u untrustedFailsFast) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := u.RoundTripper.RoundTrip(r)
	if cve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		if unknown, ok := errors.AsType[x509.UnknownAuthorityError](cve.Err); ok {
			return resp, unknown
		}
	}
	return resp, err
}

// explainTLS adds to an error from a certificate that did not verify what
// to do about it.
func explainTLS(err error) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) || errors.As(err, new(*tls.CertificateVerificationError)) {
		return fmt.Errorf("%w (the endpoint's certificate is not signed by a CA this process trusts)", err)
	}
	return err
}

// publicClient is a client that signs for cfg.PublicEndpoint and never
// sends a request: its region is fixed (cfg.Region, else the bucket's
// location as the endpoint reports it), so minio-go does not ask the public
// endpoint for the bucket's location, and its transport refuses every
// request.
func (s *Store) publicClient(ctx context.Context, cfg Config, creds *credentials.Credentials) (*minio.Client, error) {
	host, secure, err := ParseEndpoint(cfg.PublicEndpoint, cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("s3store: public endpoint: %w", err)
	}
	region := cfg.Region
	if region == "" {
		if region, err = s.client.GetBucketLocation(ctx, s.bucket); err != nil {
			return nil, fmt.Errorf("s3store: location of bucket %s: %w", s.bucket, err)
		}
	}
	c, err := minio.New(host, &minio.Options{
		Creds:     creds,
		Secure:    secure,
		Region:    region,
		Transport: signOnly{},
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: public endpoint: %w", err)
	}
	return c, nil
}

// ParseEndpoint reads an endpoint given as host:port, whose scheme is
// https when secure is set, or as http(s)://host[:port]. It returns the
// host with its port, if any, and whether it is https.
func ParseEndpoint(endpoint string, secure bool) (host string, https bool, err error) {
	if !strings.Contains(endpoint, "://") {
		scheme := "http://"
		if secure {
			scheme = "https://"
		}
		endpoint = scheme + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", false, fmt.Errorf("%q: scheme must be http or https", endpoint)
	case u.Host == "" || u.Hostname() == "":
		return "", false, fmt.Errorf("%q has no host", endpoint)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", false, fmt.Errorf("%q: want only a scheme, a host and a port", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

// signOnly is the transport of the client that signs for the public
// endpoint: that client has no reason to send a request, and must not.
type signOnly struct{}

func (signOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("s3store: %s %s: the public endpoint is only signed for, never called", r.Method, r.URL.Redacted())
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (s *Store) ensureBucket(ctx context.Context, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3store: bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err == nil {
		return nil
	}
	// Another replica may have created it since BucketExists.
	switch minio.ToErrorResponse(err).Code {
	case "BucketAlreadyOwnedByYou":
		return nil
	case "BucketAlreadyExists":
		if ok, _ := s.client.BucketExists(ctx, s.bucket); ok {
			return nil
		}
	}
	return fmt.Errorf("s3store: create bucket %s: %w", s.bucket, err)
}

// Ping reports whether the bucket can be reached.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3store: ping: %w", err)
	}
	if !ok {
		return fmt.Errorf("s3store: ping: bucket %s does not exist", s.bucket)
	}
	return nil
}

// Put streams r into the object key as a multipart upload of PartSize
// parts, holding one part in memory at a time. The object appears only when
// r has ended and the upload is complete. While S3 does not answer (down,
// restarting, unreachable), each request is retried with a back-off for up
// to RetryFor since S3 last answered; longer, and the upload fails with an
// OutageError. When r, ctx or the server fails, the multipart upload is
// aborted, so neither an object nor stored parts are left behind; after an
// outage the abort itself waits up to RetryFor more for S3 to come back
// (past that, the bucket's lifecycle rule aborts it after a day).
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("s3store: put %s: %w", key, err)
	}
	uctx, cancel := withOutage(ctx, s.endpoint, s.retryFor)
	defer cancel(nil)
	info, err := s.uploader.PutObject(uctx, s.bucket, key, ctxio.Reader(uctx, r), -1, minio.PutObjectOptions{
		PartSize:    s.partSize,
		ContentType: "application/gzip",
	})
	if err == nil {
		return info.Size, nil
	}
	if oe, ok := errors.AsType[*OutageError](context.Cause(uctx)); ok {
		err = oe
		// minio-go's abort met the same outage: abort again once S3 is
		// back, within the budget.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.retryFor)
		defer cancel()
		if rerr := s.uploader.RemoveIncompleteUpload(actx, s.bucket, key); rerr != nil {
			err = fmt.Errorf("%w; the unfinished upload is left to the bucket's lifecycle rule: %v", err, rerr)
		}
	}
	return 0, fmt.Errorf("s3store: put %s: %w", key, err)
}

// Open returns the object key, or an error wrapping mustgather.ErrNotFound.
// Reads are made with ctx, so it must live as long as the Archive is read.
// Each Seek to a new offset costs a ranged GET on the next Read.
func (s *Store) Open(ctx context.Context, key string) (mustgather.Archive, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3store: open %s: %w", key, err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("s3store: open %s: %w", key, mustgather.ErrNotFound)
		}
		return nil, fmt.Errorf("s3store: open %s: %w", key, err)
	}
	return &object{Object: obj, size: info.Size, modTime: info.LastModified}, nil
}

// Delete aborts the unfinished uploads to key and removes the object; a
// missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveIncompleteUpload(ctx, s.bucket, key); err != nil {
		return fmt.Errorf("s3store: abort uploads to %s: %w", key, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil
		}
		return fmt.Errorf("s3store: delete %s: %w", key, err)
	}
	return nil
}

// PresignGet returns a URL of the public endpoint that lets its holder
// download the object key without credentials until expires, ttl (1 s to 7
// days, in whole seconds) from now, as an attachment named filename, or
// the key's last element if filename is empty.
func (s *Store) PresignGet(ctx context.Context, key, filename string, ttl time.Duration) (u *url.URL, expires time.Time, err error) {
	if filename == "" {
		filename = path.Base(key)
	}
	params := url.Values{"response-content-disposition": {contentDisposition(filename)}}
	u, err = s.presigner.PresignedGetObject(ctx, s.bucket, key, ttl, params)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("s3store: presign %s: %w", key, err)
	}
	// The signature counts from X-Amz-Date, in whole seconds, for
	// X-Amz-Expires seconds.
	q := u.Query()
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("s3store: presign %s: X-Amz-Date: %w", key, err)
	}
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("s3store: presign %s: X-Amz-Expires: %w", key, err)
	}
	return u, signed.Add(time.Duration(secs) * time.Second), nil
}

// contentDisposition returns an attachment disposition for filename. The
// quoted filename holds only printable ASCII, with '"', '\' and anything else
// replaced by '_'; a name that needed replacing is also given exactly in an
// RFC 5987 filename* parameter, which browsers prefer.
func contentDisposition(filename string) string {
	var plain strings.Builder
	exact := true
	for _, r := range filename {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			plain.WriteByte('_')
			exact = false
			continue
		}
		plain.WriteRune(r)
	}
	cd := `attachment; filename="` + plain.String() + `"`
	if !exact {
		cd += "; filename*=UTF-8''" + rfc5987(filename)
	}
	return cd
}

// rfc5987 percent-encodes every byte of s but RFC 5987's attr-char.
func rfc5987(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// object is an open archive object. *minio.Object fetches data lazily and turns
// Seek into ranged GETs, which is what http.ServeContent needs.
type object struct {
	*minio.Object
	size    int64
	modTime time.Time
}

func (a *object) Size() int64        { return a.size }
func (a *object) ModTime() time.Time { return a.modTime }
