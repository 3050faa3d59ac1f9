package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
)

// DownloadOptions tunes Download; the zero value downloads the archive of
// a completed gathering.
type DownloadOptions struct {
	// Partial downloads what a gathering that ended in error gathered.
	Partial bool
	// Progress, when set, is called as bytes arrive with the number written
	// so far and the archive's size (-1 when the server did not tell).
	Progress func(written, total int64)
}

// Download streams the archive of the gathering ref names to w and returns
// the number of bytes written. A gathering that has not completed yet is
// ErrConflict; one whose archive is gone, ErrNotFound.
func (c *Client) Download(ctx context.Context, ref string, w io.Writer, o DownloadOptions) (int64, error) {
	var q url.Values
	if o.Partial {
		q = url.Values{"partial": {"true"}}
	}
	req, err := c.newRequest(ctx, http.MethodGet, refPath(ref)+"/data", q, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "*/*")
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if o.Progress != nil {
		w = &progressWriter{w: w, total: resp.ContentLength, fn: o.Progress}
		o.Progress(0, resp.ContentLength)
	}
	return io.Copy(w, resp.Body)
}

// progressWriter reports each write to fn.
type progressWriter struct {
	w       io.Writer
	written int64
	total   int64
	fn      func(written, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.written += int64(n)
	p.fn(p.written, p.total)
	return n, err
}
