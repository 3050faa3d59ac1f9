// Package client is a Go client of the must-gather-functions API: it starts
// gatherings, finds them by id or custom-name, waits until they end (on the
// server's event stream where it has one, by polling otherwise), and
// downloads their archives. It uses only the standard library, so a
// controller can import it without taking the service's dependencies.
//
// Errors that the API answers are *APIError values, which errors.Is matches
// against ErrNotFound, ErrConflict, ErrUnauthorized, ErrForbidden,
// ErrInvalid, ErrRateLimited, ErrChanged and ErrUnavailable, and Delete
// returns ErrNotEnded for a gathering that has not ended.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Status is the state of a gathering.
type Status string

// The states of a gathering; Completed and Error are final.
const (
	StatusNew        Status = "new"
	StatusInProgress Status = "inprogress"
	StatusCompleted  Status = "completed"
	StatusError      Status = "error"
)

// Final tells whether a gathering in status s has ended and will not change.
func (s Status) Final() bool { return s == StatusCompleted || s == StatusError }

// Gathering is a must-gather run as the API shows it.
type Gathering struct {
	ID          int64     `json:"id"`
	CreatedAt   time.Time `json:"created-at"`
	UpdatedAt   time.Time `json:"updated-at"`
	CustomName  string    `json:"custom-name"`
	Status      Status    `json:"status"`
	Image       string    `json:"image"`
	ImageStream string    `json:"image-stream"`
	NodeName    string    `json:"node-name"`
	Command     string    `json:"command"`
	SourceDir   string    `json:"source-dir"`
	Timeout     string    `json:"timeout"`
	Server      string    `json:"server"`
	ArchiveSize int64     `json:"archive-size"`
	// ArchiveName is the archive's file name; empty until there is one.
	ArchiveName string `json:"archive-name"`
	// ExecOutput is the last part of the gathering's output so far.
	ExecOutput string `json:"exec-output"`
	Since      string `json:"since,omitempty"`
	SinceTime  string `json:"since-time,omitempty"`
	// NodeSelector and HostNetwork are as requested.
	NodeSelector string `json:"node-selector,omitempty"`
	HostNetwork  bool   `json:"host-network,omitempty"`
	// Redact says that secrets are redacted from the archive; Redaction,
	// once the archive is stored, says how much was.
	Redact      bool       `json:"redact,omitempty"`
	Redaction   *Redaction `json:"redaction,omitempty"`
	RequestedBy string     `json:"requested-by,omitempty"`
	// Cause says why a gathering started when no user asked for it, such
	// as "migration ns/name failed".
	Cause string `json:"cause,omitempty"`
	// Reason says why a gathering in StatusError failed: ReasonCanceled
	// for one that was canceled.
	Reason string `json:"reason,omitempty"`
}

// ReasonCanceled is the Reason of a gathering that was canceled.
const ReasonCanceled = "canceled"

// Request asks for a gathering. Every field is optional; the API document
// (GET /openapi.yaml) tells the rules of each.
type Request struct {
	CustomName  string `json:"custom-name,omitempty"`
	Image       string `json:"image,omitempty"`
	ImageStream string `json:"image-stream,omitempty"`
	NodeName    string `json:"node-name,omitempty"`
	Command     string `json:"command,omitempty"`
	SourceDir   string `json:"source-dir,omitempty"`
	Timeout     string `json:"timeout,omitempty"`
	Server      string `json:"server,omitempty"`
	Since       string `json:"since,omitempty"`
	SinceTime   string `json:"since-time,omitempty"`
	// Plan, VM and Namespace ask for Forklift's targeted gathering; not
	// with Command.
	Plan      string `json:"plan,omitempty"`
	VM        string `json:"vm,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// NodeSelector runs one pod per image on each Ready node it selects,
	// as oc's --node-selector; not with NodeName.
	NodeSelector string `json:"node-selector,omitempty"`
	// HostNetwork runs the pods in the host's network, as oc's
	// --host-network.
	HostNetwork bool `json:"host-network,omitempty"`
	// Redact asks for secrets to be redacted from the archive; nil leaves
	// it to the server's default.
	Redact *bool `json:"redact,omitempty"`
}

// Redaction says how much the redaction of a gathering's archive changed:
// files with values redacted, values redacted, and files withheld because
// they are not text. redactions.json in the archive has the details.
type Redaction struct {
	Files    int `json:"files"`
	Matches  int `json:"matches"`
	Withheld int `json:"withheld"`
}

// ListOptions filters List; the zero value lists every gathering.
type ListOptions struct {
	CustomName string
	Status     Status
	// Limit, when above zero, keeps only the newest Limit gatherings, or
	// in a page (see After) the Limit lowest.
	Limit int
	// After makes the list a page: only gatherings with an id above
	// After, and with Limit the Limit lowest of them. Paged with After 0
	// starts at the first gathering; After above 0 implies Paged. Pages
	// walks every page.
	After int64
	Paged bool
}

// Link is a download link of an archive, good without credentials until
// ExpiresAt.
type Link struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires-at"`
}

// Client talks to one must-gather-functions API. Its methods are safe for
// concurrent use.
type Client struct {
	base  *url.URL
	token string
	// forwarded sends token as X-Forwarded-Access-Token.
	forwarded bool
	http      *http.Client
	pollMin   time.Duration
	pollMax   time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as a bearer token with every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithForwardedToken sends token in X-Forwarded-Access-Token instead of
// Authorization, for a path on which something in front of the API takes
// the Authorization header for itself (the Kubernetes API server's service
// proxy does). The API reads that header only with AUTH_FORWARDED_TOKEN=true.
func WithForwardedToken(token string) Option {
	return func(c *Client) { c.token, c.forwarded = token, true }
}

// WithHTTPClient makes the client send its requests with hc, for TLS
// settings or a transport that authenticates by itself. The client must
// not time out whole requests: downloads and event streams last.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithPollInterval sets how often Wait asks for a gathering's state when it
// polls: first after min, then less and less often, up to max (defaults 1 s
// and 10 s).
func WithPollInterval(min, max time.Duration) Option {
	return func(c *Client) { c.pollMin, c.pollMax = min, max }
}

// New returns a client of the API at baseURL (such as
// "https://must-gather.example.com" or a proxy path under which the API is
// served).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want http:// or https:// and a host", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &Client{base: u, pollMin: time.Second, pollMax: 10 * time.Second}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{Transport: defaultTransport()}
	}
	if c.pollMin <= 0 {
		c.pollMin = time.Second
	}
	c.pollMax = max(c.pollMax, c.pollMin)
	return c, nil
}

// defaultTransport bounds every step up to the answer's headers; the body
// of a download or a stream may then take as long as it takes.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = time.Minute
	return t
}

// Create starts a gathering and returns it as stored (status new).
func (c *Client) Create(ctx context.Context, r Request) (*Gathering, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var g Gathering
	if err := c.do(ctx, http.MethodPost, "/must-gather", nil, bytes.NewReader(body), http.StatusCreated, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Get returns the gathering ref names: an id, or else a custom-name (the
// newest gathering with that name).
func (c *Client) Get(ctx context.Context, ref string) (*Gathering, error) {
	var g Gathering
	if err := c.do(ctx, http.MethodGet, refPath(ref), nil, nil, http.StatusOK, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// List returns the gatherings that match o, ordered by id.
func (c *Client) List(ctx context.Context, o ListOptions) ([]Gathering, error) {
	q := url.Values{}
	if o.CustomName != "" {
		q.Set("custom-name", o.CustomName)
	}
	if o.Status != "" {
		q.Set("status", string(o.Status))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Paged || o.After > 0 {
		q.Set("after", strconv.FormatInt(max(o.After, 0), 10))
	}
	gs := []Gathering{}
	if err := c.do(ctx, http.MethodGet, "/must-gather", q, nil, http.StatusOK, &gs); err != nil {
		return nil, err
	}
	return gs, nil
}

// Pages lists the gatherings that match o's filters a page of up to size
// (at least 1) at a time, in order of id, from the first (or from
// o.After) to the last, so that a client walks any number of gatherings
// holding one page. It stops at the first error, which it yields.
func (c *Client) Pages(ctx context.Context, o ListOptions, size int) iter.Seq2[[]Gathering, error] {
	return func(yield func([]Gathering, error) bool) {
		o.Paged, o.Limit = true, max(size, 1)
		for {
			gs, err := c.List(ctx, o)
			if err != nil {
				yield(nil, err)
				return
			}
			if len(gs) == 0 || !yield(gs, nil) || len(gs) < o.Limit {
				return
			}
			o.After = gs[len(gs)-1].ID
		}
	}
}

// URL returns a link that downloads the archive of a completed gathering
// without credentials until it expires. Whoever holds it can download the
// archive: do not log it.
func (c *Client) URL(ctx context.Context, ref string) (*Link, error) {
	var l Link
	if err := c.do(ctx, http.MethodGet, refPath(ref)+"/url", nil, nil, http.StatusOK, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Cancel cancels a gathering that has not ended. One that is new ends at
// once (the answer is final, Reason ReasonCanceled); one in progress is
// stopped by its runner, which archives what it gathered and ends it so
// (the answer is still in progress: Wait for the end). A gathering that
// has ended, as one that completed before the cancel reached it, is left
// as it is: the error matches ErrConflict, and its Status tells how it
// ended.
func (c *Client) Cancel(ctx context.Context, ref string) (*Gathering, error) {
	req, err := c.newRequest(ctx, http.MethodDelete, refPath(ref), nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted:
	case http.StatusNoContent:
		// Only a request that asked for a deletion is answered so.
		return nil, fmt.Errorf("DELETE %s: 204: the gathering was deleted", req.URL.Path)
	default:
		return nil, readError(req, resp)
	}
	var g Gathering
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&g); err != nil {
		return nil, fmt.Errorf("DELETE %s: decode answer: %w", req.URL.Path, err)
	}
	return &g, nil
}

// Delete deletes a gathering that has ended, and its archive. It reads the
// gathering first and deletes it only as it read it (If-Match its ETag),
// so it never cancels anything: for a gathering that has not ended it
// returns ErrNotEnded, and for one that changed in between an error that
// matches ErrChanged.
func (c *Client) Delete(ctx context.Context, ref string) error {
	req, err := c.newRequest(ctx, http.MethodGet, refPath(ref), nil, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return err
	}
	var g Gathering
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&g)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", req.URL.Path, err)
	}
	if !g.Status.Final() {
		return fmt.Errorf("gathering %d is %s: %w", g.ID, g.Status, ErrNotEnded)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		return fmt.Errorf("GET %s: the answer has no ETag to delete by", req.URL.Path)
	}
	// By id: the name may stand for a newer gathering by now.
	del, err := c.newRequest(ctx, http.MethodDelete, refPath(strconv.FormatInt(g.ID, 10)), nil, nil)
	if err != nil {
		return err
	}
	del.Header.Set("If-Match", etag)
	resp, err = c.send(del, http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func refPath(ref string) string { return "/must-gather/" + url.PathEscape(ref) }

// newRequest makes a request of the API at path (under the base URL).
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	// path holds an escaped ref ("a%2Fb"): keep it as escaped.
	u.RawPath = c.base.EscapedPath() + path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, err
	}
	u.Path = p
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	switch {
	case c.token != "" && c.forwarded:
		req.Header.Set("X-Forwarded-Access-Token", c.token)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// send sends req and returns its response if its status is want, or else
// the API's error.
func (c *Client) send(req *http.Request, want int) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		return nil, readError(req, resp)
	}
	return resp, nil
}

// do sends a request and decodes its JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, want int, out any) error {
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.send(req, want)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, req.URL.Path, err)
	}
	return nil
}
