// Package archivetest checks that an implementation of
// mustgather.ArchiveStore behaves as the domain expects. Each adapter's
// tests call Conformance against a real backend.
package archivetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// Size is the size of the archive that Conformance stores: larger than
// two multipart parts of the smallest part size S3 allows (5 MiB), so that a
// failure after the first part is exercised.
const Size = 12<<20 + 123

// Leftovers lists what an abandoned Put may have left behind for key, such
// as incomplete multipart uploads or temporary files. Conformance requires
// it to come back empty after every failed Put.
type Leftovers func(ctx context.Context, key string) ([]string, error)

// Data returns n pseudo-random bytes, the same for the same seed.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// Conformance runs the behaviours every mustgather.ArchiveStore must have
// against s, using keys made with mustgather.ArchiveKey. leftovers may be
// nil when the store has nothing of the kind.
func Conformance(t *testing.T, s mustgather.ArchiveStore, leftovers Leftovers) {
	ctx := context.Background()
	data := Data(1, Size)
	key := func(id mustgather.ID) string { return mustgather.ArchiveKey(id, "must-gather.tar.gz") }
	put := func(t *testing.T, k string, b []byte) {
		t.Helper()
		n, err := s.Put(ctx, k, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
		if n != int64(len(b)) {
			t.Fatalf("Put(%s) = %d bytes, want %d", k, n, len(b))
		}
	}
	open := func(t *testing.T, k string) mustgather.Archive {
		t.Helper()
		a, err := s.Open(ctx, k)
		if err != nil {
			t.Fatalf("Open(%s): %v", k, err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	noLeftovers := func(t *testing.T, k string) {
		t.Helper()
		if leftovers == nil {
			return
		}
		left, err := leftovers(ctx, k)
		if err != nil {
			t.Fatalf("leftovers(%s): %v", k, err)
		}
		if len(left) > 0 {
			t.Errorf("leftovers of %s = %q, want none", k, left)
		}
	}
	notFound := func(t *testing.T, k string) {
		t.Helper()
		a, err := s.Open(ctx, k)
		if err == nil {
			a.Close()
		}
		if !errors.Is(err, mustgather.ErrNotFound) {
			t.Errorf("Open(%s) error = %v, want ErrNotFound", k, err)
		}
	}

	t.Run("an archive reads back byte for byte with its size and time", func(t *testing.T) {
		before := time.Now().Add(-time.Minute)
		put(t, key(1), data)
		a := open(t, key(1))
		got, err := io.ReadAll(a)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("read %d bytes that differ from the %d put", len(got), len(data))
		}
		if a.Size() != int64(len(data)) {
			t.Errorf("Size() = %d, want %d", a.Size(), len(data))
		}
		if mt := a.ModTime(); mt.Before(before) || mt.After(time.Now().Add(time.Minute)) {
			t.Errorf("ModTime() = %v, want about now", mt)
		}
	})

	t.Run("an empty archive can be stored", func(t *testing.T) {
		put(t, key(2), nil)
		a := open(t, key(2))
		got, err := io.ReadAll(a)
		if err != nil || len(got) != 0 || a.Size() != 0 {
			t.Errorf("read %d bytes, size %d, error %v; want an empty archive", len(got), a.Size(), err)
		}
	})

	t.Run("Seek moves the read offset", func(t *testing.T) {
		put(t, key(3), data)
		a := open(t, key(3))
		tests := []struct {
			name   string
			offset int64
			whence int
			want   int64 // resulting position
		}{
			{"from the start", 7 << 20, io.SeekStart, 7 << 20},
			{"backwards from the current offset", -(3 << 20), io.SeekCurrent, 4<<20 + 100},
			{"from the end", -100, io.SeekEnd, Size - 100},
			{"back to the start", 0, io.SeekStart, 0},
		}
		for _, tt := range tests {
			pos, err := a.Seek(tt.offset, tt.whence)
			if err != nil {
				t.Fatalf("Seek %s: %v", tt.name, err)
			}
			if pos != tt.want {
				t.Fatalf("Seek %s = %d, want %d", tt.name, pos, tt.want)
			}
			got := make([]byte, 100)
			if _, err := io.ReadFull(a, got); err != nil {
				t.Fatalf("read after Seek %s: %v", tt.name, err)
			}
			if !bytes.Equal(got, data[pos:pos+100]) {
				t.Errorf("bytes after Seek %s differ from those put at %d", tt.name, pos)
			}
		}
	})

	t.Run("http.ServeContent serves a byte range of an archive", func(t *testing.T) {
		put(t, key(4), data)
		a := open(t, key(4))
		req := httptest.NewRequest(http.MethodGet, "/archive", nil)
		req.Header.Set("Range", "bytes=5242000-5242999")
		rec := httptest.NewRecorder()
		http.ServeContent(rec, req, "must-gather.tar.gz", a.ModTime(), a)
		type response struct {
			Status int
			Range  string
			Body   []byte
		}
		got := response{rec.Code, rec.Header().Get("Content-Range"), rec.Body.Bytes()}
		want := response{http.StatusPartialContent, "bytes 5242000-5242999/12583035", data[5242000:5243000]}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("response (-want +got):\n%s", diff)
		}
	})

	t.Run("Put replaces an existing archive", func(t *testing.T) {
		put(t, key(5), data[:1000])
		put(t, key(5), data[1000:3000])
		got, err := io.ReadAll(open(t, key(5)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[1000:3000]) {
			t.Errorf("read %d bytes, want the %d of the second Put", len(got), 2000)
		}
	})

	t.Run("a missing archive is ErrNotFound", func(t *testing.T) {
		notFound(t, key(6))
	})

	t.Run("Delete removes an archive and deleting it again is no error", func(t *testing.T) {
		put(t, key(7), data[:10])
		for i := range 2 {
			if err := s.Delete(ctx, key(7)); err != nil {
				t.Fatalf("Delete #%d: %v", i+1, err)
			}
		}
		notFound(t, key(7))
	})

	boom := errors.New("boom")
	failing := func(after int) io.Reader {
		return io.MultiReader(bytes.NewReader(data[:after]), iotest.ErrReader(boom))
	}
	tests := []struct {
		name  string
		after int // bytes the reader yields before it fails
	}{
		{"a reader that fails at once leaves no archive", 0},
		{"a reader that fails mid-stream leaves no archive", 7 << 20},
		{"a reader that fails after the last part leaves no archive", Size - 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(mustgather.ID(10 + i))
			if _, err := s.Put(ctx, k, failing(tt.after)); !errors.Is(err, boom) {
				t.Fatalf("Put error = %v, want the reader's", err)
			}
			notFound(t, k)
			noLeftovers(t, k)
		})
	}

	t.Run("a failed Put leaves the earlier archive in place", func(t *testing.T) {
		put(t, key(20), data[:1000])
		if _, err := s.Put(ctx, key(20), failing(6<<20)); !errors.Is(err, boom) {
			t.Fatalf("Put error = %v, want the reader's", err)
		}
		got, err := io.ReadAll(open(t, key(20)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[:1000]) {
			t.Errorf("read %d bytes, want the 1000 of the first Put", len(got))
		}
		noLeftovers(t, key(20))
	})

	t.Run("a context cancelled before Put leaves no archive", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Put(cctx, key(21), bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put error = %v, want context.Canceled", err)
		}
		notFound(t, key(21))
		noLeftovers(t, key(21))
	})

	t.Run("Delete removes an upload its writer abandoned", func(t *testing.T) {
		if leftovers == nil {
			t.Skip("the store leaves nothing behind an upload")
		}
		// A writer that died mid-upload: its reader never goes on.
		r := &stallAfter{n: 6 << 20, release: make(chan struct{})}
		put := make(chan error, 1)
		go func() {
			_, err := s.Put(ctx, key(23), r)
			put <- err
		}()
		var release sync.Once
		// Should the test fail first, the writer still ends with it.
		t.Cleanup(func() { release.Do(func() { close(r.release) }) })
		testenv.Eventually(t, 30*time.Second, "the upload to leave something to see", func() bool {
			left, err := leftovers(ctx, key(23))
			if err != nil {
				t.Fatal(err)
			}
			return len(left) > 0
		})
		if err := s.Delete(ctx, key(23)); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		noLeftovers(t, key(23))
		release.Do(func() { close(r.release) })
		if err := <-put; err == nil {
			t.Error("the abandoned Put succeeded after Delete removed its upload")
		}
		notFound(t, key(23))
		noLeftovers(t, key(23))
	})

	t.Run("a context cancelled during Put stops it and leaves no archive", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The reader never ends on its own: only the cancellation stops Put.
		r := &cancelAfter{n: 6 << 20, cancel: cancel}
		if _, err := s.Put(cctx, key(22), r); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put error = %v, want context.Canceled", err)
		}
		notFound(t, key(22))
		noLeftovers(t, key(22))
	})
}

// stallAfter yields n zero bytes, then waits for release and fails.
type stallAfter struct {
	n       int
	release chan struct{}
}

func (r *stallAfter) Read(p []byte) (int, error) {
	if r.n <= 0 {
		<-r.release
		return 0, errors.New("the writer is gone")
	}
	p = p[:min(len(p), r.n)]
	clear(p)
	r.n -= len(p)
	return len(p), nil
}

// cancelAfter yields zero bytes and calls cancel once it has yielded n of
// them. It fails a Put that keeps reading long after that, rather than let
// the test hang.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n < -(64 << 20) {
		return 0, errors.New("Put kept reading long after its context was cancelled")
	}
	clear(p)
	if c.n -= len(p); c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}

// ReportPeakRSS reports the peak resident set size of the whole test
// process so far (getrusage ru_maxrss) as peak-RSS-MiB. It only grows, so
// run each benchmark to be measured in its own process.
func ReportPeakRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB") // KiB on Linux
}

// Files returns a reader of the files at paths, one after the other, each
// opened only when its turn comes.
func Files(paths []string) io.Reader { return &files{paths: paths} }

type files struct {
	paths []string
	f     *os.File
}

func (r *files) Read(p []byte) (int, error) {
	for {
		if r.f == nil {
			if len(r.paths) == 0 {
				return 0, io.EOF
			}
			f, err := os.Open(r.paths[0])
			if err != nil {
				return 0, err
			}
			r.f, r.paths = f, r.paths[1:]
		}
		n, err := r.f.Read(p)
		if err == io.EOF {
			r.f.Close()
			r.f = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// ReadTarGz reads a gzip-compressed tar from r and returns its regular
// files by name with their contents; of a name that is there twice, the
// later, as tar extracts it. It fails the test on a broken stream.
func ReadTarGz(t testing.TB, r io.Reader) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, e := range ReadTarGzEntries(t, r) {
		files[e.Name] = e.Content
	}
	return files
}

// Entry is a regular file of an archive.
type Entry struct {
	Name    string
	Content string
}

// ReadTarGzEntries reads a gzip-compressed tar from r and returns its
// regular files in their order, a name that is there twice twice. It fails
// the test on a broken stream, the gzip trailer included.
func ReadTarGzEntries(t testing.TB, r io.Reader) []Entry {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var entries []Entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			c, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, Entry{Name: hdr.Name, Content: string(c)})
		}
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("gzip trailer: %v", err)
	}
	return entries
}
