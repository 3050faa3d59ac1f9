package api

import (
	"io"
	"sync"
	"syscall"
)

// copyBufSize is the buffer an archive is streamed through when it is not
// a file the kernel can send by itself. net/http copies 32 KiB at a time;
// a gathering's archive is hundreds of MiB, and each chunk costs a read
// from object storage and a write to the client, system calls that were
// most of the API's CPU time while serving one.
const copyBufSize = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// ReadFrom is how http.ServeContent sends the archive (io.CopyN finds it).
// A file of the local archive folder goes to the ResponseWriter's own
// ReadFrom, which hands it to sendfile; anything else, an object being
// read from S3, is copied through a pooled buffer of copyBufSize. Without
// this method ServeContent's copy would use neither.
func (c *contentErrors) ReadFrom(src io.Reader) (int64, error) {
	if c.status == 0 {
		if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok && sendable(src) {
			return rf.ReadFrom(src)
		}
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(writerOnly{c}, src, *buf)
}

// sendable reports whether src is a file, or a limit on one, that the
// kernel can copy to a socket without passing it through the process.
func sendable(src io.Reader) bool {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	_, ok := src.(syscall.Conn)
	return ok
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given instead of calling ReadFrom again.
type writerOnly struct{ io.Writer }
