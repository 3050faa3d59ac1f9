// Package ctxio makes readers honour a context.
package ctxio

import (
	"context"
	"io"
)

// Reader returns a reader that reads from r until ctx ends, then fails
// with ctx's error. Uploads use it so that a source that never ends on its
// own can still be stopped: minio-go, for one, fills a whole part before it
// next looks at its context.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
