// Package archive builds a gathering's archive, a gzip-compressed tar, as a
// stream: entries go straight into an io.Writer (usually an io.Pipe that
// feeds the upload), so nothing is held whole in memory or written to a
// temporary file.
//
// # Entry names
//
// Every entry name is cleaned (path.Clean) and joined to its prefix. A name
// that is empty, absolute, contains a NUL byte, or still climbs out of the
// archive root after cleaning ("..", "../x", "a/../../x") is rejected with an
// error that wraps ErrUnsafeName; nothing is written for it. Names such as
// "a/./b" or "a/../b" are accepted and stored cleaned ("a/b", "b"). The same
// rule applies to the prefix arguments and to the names of hard links, which
// point at other entries. Symbolic link targets are stored as they are: they
// are data that the archive never resolves.
//
// # Errors
//
// A file whose reader ends or fails before the file's size (a copy stream
// that broke off) is filled up with zero bytes to its size, so that the tar
// stream stays well-formed, and the call returns a *CutError, which wraps
// mustgather.ErrEntryCut and the reader's error; the Writer stays usable
// and the entries written before and after it are intact. A failing
// underlying writer (the upload) leaves the stream corrupt: the Writer
// remembers that error and returns it from every later call, Close
// included, and Close then does not finish the gzip stream, so that a
// reader of the output sees a truncated archive rather than a well-formed
// one. Callers feeding an io.Pipe should pass such an error on with
// PipeWriter.CloseWithError so that the upload is abandoned. Rejected names
// and cancelled contexts are returned before anything is written and leave
// the Writer usable.
package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Filter sees every regular file before the Writer stores it, so that it
// can change the content or leave the file out: AddFile, AddBytes, the
// files of AddTree and those of AddTar, those of nested tarballs included
// (each file of an unpacked tarball, not the tarball). While a filter is
// set, which could not look into a tarball, the tarballs of AddTree and
// uncompressed tars inside AddTar's stream are unpacked too; a tarball
// of AddTree that cannot be unpacked whole keeps what was unpacked of it
// and then goes to the filter as it is.
type Filter interface {
	// File is called with the entry's name and size and a reader of
	// exactly its content, before the entry's header is written. It returns
	// the size and content to store instead, or keep false to leave the
	// file out. An error fails the call that added the file and leaves the
	// stream as it was.
	File(name string, size int64, r io.Reader) (newSize int64, content io.Reader, keep bool, err error)
}

// ErrUnsafeName is wrapped by the errors for entry names that are empty,
// absolute, or would escape the archive root.
var ErrUnsafeName = errors.New("unsafe archive entry name")

// CutError reports a regular file whose content ended or failed after
// Written of its Size bytes. The entry is in the archive, filled up with
// zero bytes.
type CutError struct {
	Name    string
	Written int64
	Size    int64
	Err     error // the reader's error, or io.ErrUnexpectedEOF
}

func (e *CutError) Error() string {
	return fmt.Sprintf("archive: add %s: content ended after %d of %d bytes, the rest filled with zero bytes: %v", e.Name, e.Written, e.Size, e.Err)
}

// Unwrap returns mustgather.ErrEntryCut and the reader's error.
func (e *CutError) Unwrap() []error { return []error{mustgather.ErrEntryCut, e.Err} }

// maxNesting bounds how deep AddTar unpacks tarballs found inside tarballs;
// deeper ones are stored as files.
const maxNesting = 4

// peekSize is how much of a file AddTar looks at to decide whether it is a
// gzip-compressed tar. 64 KiB of gzip data always inflates to more than the
// 512-byte tar header that is checked.
const peekSize = 64 << 10

// Writer writes a gzip-compressed tar stream. It is not safe for concurrent
// use. The zero value is not usable; call NewWriter.
type Writer struct {
	gz     *gzip.Writer
	q      *asyncWriter // between tw and gz
	tw     *tar.Writer
	buf    []byte
	peek   []*bufio.Reader // one per nesting level of AddTar
	err    error           // first error that left the stream corrupt
	closed bool
	filter Filter
	left   map[string]bool // the files the filter left out, for the hard links to them
}

// SetFilter makes f see every regular file added from now on; nil stops
// filtering. A hard link to a file that f left out is left out too.
func (w *Writer) SetFilter(f Filter) {
	w.filter = f
	if f != nil && w.left == nil {
		w.left = map[string]bool{}
	}
}

// NewWriter returns a Writer that writes a tar.gz stream to w. Close must be
// called to finish the stream; it does not close w.
func NewWriter(w io.Writer) *Writer {
	// klauspost/compress is an order of magnitude faster than compress/gzip
	// at the default level on data that does not compress well (binary
	// logs, already compressed files), and produces standard gzip.
	// The tar stream is compressed in a goroutine of its own, so that
	// reading and filtering the files and compressing them overlap.
	gz, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	q := newAsyncWriter(gz)
	return &Writer{gz: gz, q: q, tw: tar.NewWriter(q), buf: make([]byte, 64<<10)}
}

// AddFile adds a regular file named name with the permission bits of mode
// (masked with 0o7777), copying exactly size bytes from r. It fails if r
// ends before size bytes; bytes after the first size are not read.
func (w *Writer) AddFile(name string, mode int64, modTime time.Time, size int64, r io.Reader) error {
	n, err := entryName("", name)
	if err != nil {
		return err
	}
	if n == "." {
		return unsafeName(name)
	}
	return w.addFile(n, mode, modTime, size, r)
}

// AddBytes adds a regular file named name, mode 0644, holding b.
func (w *Writer) AddBytes(name string, b []byte, modTime time.Time) error {
	return w.AddFile(name, 0o644, modTime, int64(len(b)), bytes.NewReader(b))
}

// AddDir adds a directory named name, mode 0755. Directories need not be
// added before the entries in them.
func (w *Writer) AddDir(name string, modTime time.Time) error {
	n, err := entryName("", name)
	if err != nil {
		return err
	}
	if n == "." {
		return unsafeName(name)
	}
	return w.addDir(n, 0o755, modTime)
}

// AddTree adds the directories, regular files and symbolic links under the
// local directory root, with their names relative to root placed under
// prefix ("" is the archive root). Symbolic links are stored as links and
// never followed, and files are opened through an os.Root, so nothing
// outside root is read. Sockets, devices and named pipes are skipped. A file
// that shrinks while it is read fails the call; one that grows is cut at
// the size it had when opened. ctx is checked before each entry. While a
// filter is set, a file that is a tarball (tar.gz or uncompressed tar) is
// unpacked beside itself, as AddTar does, rather than stored.
func (w *Writer) AddTree(ctx context.Context, root, prefix string) error {
	pfx, err := entryName("", prefix)
	if err != nil {
		return fmt.Errorf("archive: prefix: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("archive: add tree: %w", err)
	}
	defer r.Close()
	err = fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Join(pfx, p)
		switch t := d.Type(); {
		case t.IsDir():
			if name == "." {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return w.addDir(name, int64(info.Mode().Perm()), info.ModTime())
		case t&fs.ModeSymlink != 0:
			info, err := d.Info()
			if err != nil {
				return err
			}
			target, err := r.Readlink(p)
			if err != nil {
				return err
			}
			return w.addSymlink(name, target, info.ModTime())
		case t.IsRegular():
			return w.addTreeFile(ctx, r, p, name)
		default:
			return nil
		}
	})
	if err != nil {
		return fmt.Errorf("archive: add tree %s: %w", root, err)
	}
	return nil
}

func (w *Writer) addTreeFile(ctx context.Context, r *os.Root, p, name string) error {
	f, err := r.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil // replaced since the directory was read
	}
	mode, size := int64(info.Mode().Perm()), info.Size()
	if w.filter == nil || size < 2 {
		return w.addFile(name, mode, info.ModTime(), size, f)
	}
	// A filter cannot look into a tarball: unpack it beside itself, as
	// AddTar does, so that the filter sees its files.
	br := w.peekReader(0, io.LimitReader(f, size))
	head, _ := br.Peek(int(min(size, peekSize)))
	kind := tarballKind(head, true)
	if kind == notTarball {
		return w.addFile(name, mode, info.ModTime(), size, br)
	}
	err = w.unpack(ctx, name, br, kind, 0, &mustgather.TarOptions{})
	switch {
	case err == nil:
		return nil
	case w.err != nil:
		return w.err
	case ctx.Err() != nil:
		return fmt.Errorf("unpack %s: %w", name, err)
	}
	// Damaged: what was unpacked stays, and the tarball goes to the
	// filter as it is, which sees no text in it.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return w.addFile(name, mode, info.ModTime(), size, f)
}

// peekReader returns the reader that looks at the start of a file at
// nesting level depth, reading from r.
func (w *Writer) peekReader(depth int, r io.Reader) *bufio.Reader {
	for len(w.peek) <= depth {
		w.peek = append(w.peek, bufio.NewReaderSize(nil, peekSize))
	}
	br := w.peek[depth]
	br.Reset(r)
	return br
}

// AddTar copies the entries of the uncompressed tar stream r under prefix
// ("" is the archive root). A regular file that is itself a gzip-compressed
// tar (gzip magic bytes followed by compressed data that starts with a valid
// tar header, whatever the file's name) is not stored as a file: its entries are unpacked into the stream as they
// are read, placed in the directory that held the tarball, as if it had
// been extracted there. Tarballs nested more than a few levels deep are
// stored as files. Directories, regular files, symbolic links and hard links
// are copied; other entry types are skipped. ctx is checked before each
// entry.
func (w *Writer) AddTar(ctx context.Context, prefix string, r io.Reader) error {
	return w.AddTarWith(ctx, prefix, r, mustgather.TarOptions{})
}

// AddTarWith is AddTar with options: entries to skip, a report of each
// entry added, and what to do with a tarball inside the stream that cannot
// be unpacked whole (see mustgather.TarOptions). Such a tarball's entries
// that were unpacked stay in the archive; the one being unpacked when it
// broke is filled up with zero bytes.
func (w *Writer) AddTarWith(ctx context.Context, prefix string, r io.Reader, opts mustgather.TarOptions) error {
	pfx, err := entryName("", prefix)
	if err != nil {
		return fmt.Errorf("archive: prefix: %w", err)
	}
	return w.addTar(ctx, pfx, tar.NewReader(r), 0, &opts)
}

func (w *Writer) addTar(ctx context.Context, pfx string, tr *tar.Reader, depth int, opts *mustgather.TarOptions) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: read tar: %w", err)
		}
		name, err := entryName(pfx, hdr.Name)
		if err != nil {
			return err
		}
		var size int64
		switch hdr.Typeflag {
		case tar.TypeDir:
			if name == "." {
				continue
			}
		case tar.TypeReg:
			if name == "." {
				return unsafeName(hdr.Name)
			}
			size = hdr.Size
		case tar.TypeSymlink, tar.TypeLink:
		default:
			continue
		}
		if opts.Skip != nil && opts.Skip(name, size) {
			continue
		}
		added := true
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = w.addDir(name, hdr.Mode, hdr.ModTime)
		case tar.TypeReg:
			added, err = w.addTarFile(ctx, hdr, name, tr, depth, opts)
		case tar.TypeSymlink:
			err = w.addSymlink(name, hdr.Linkname, hdr.ModTime)
		case tar.TypeLink:
			var target string
			if target, err = entryName(pfx, hdr.Linkname); err == nil && !w.left[target] {
				err = w.write(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: hdr.Mode & 0o7777, ModTime: hdr.ModTime}, nil)
			}
		}
		if err != nil {
			return err
		}
		if added && opts.Added != nil {
			opts.Added(name, size)
		}
	}
}

// addTarFile adds a regular file read from a tar stream, unpacking it when
// it is a tar.gz. It reports whether it added the file as a file.
func (w *Writer) addTarFile(ctx context.Context, hdr *tar.Header, name string, tr *tar.Reader, depth int, opts *mustgather.TarOptions) (bool, error) {
	if depth >= maxNesting || hdr.Size < 2 || opts.NoUnpack {
		return true, w.addFile(name, hdr.Mode, hdr.ModTime, hdr.Size, tr)
	}
	// src tells a failure of the stream the tarball comes in from damage
	// of the tarball itself.
	src := &errReader{r: tr}
	br := w.peekReader(depth, src) // tr reads end at the entry's end, so br never takes bytes of the next entry
	head, _ := br.Peek(int(min(hdr.Size, peekSize)))
	// An uncompressed tar is unpacked only for a filter, which could not
	// look into it; without one it is stored as it is.
	kind := tarballKind(head, w.filter != nil)
	if kind == notTarball {
		return true, w.addFile(name, hdr.Mode, hdr.ModTime, hdr.Size, br)
	}
	err := w.unpack(ctx, name, br, kind, depth, opts)
	switch {
	case err == nil:
		return false, nil
	case w.err != nil:
		return false, w.err
	case ctx.Err() != nil, src.err != nil, opts.Damaged == nil:
		return false, fmt.Errorf("archive: unpack %s: %w", name, err)
	}
	opts.Damaged(name, err)
	return false, nil
}

// tarball is what tarballKind tells a file's start to be.
type tarball int

const (
	notTarball tarball = iota
	tarGz
	plainTar
)

// tarballKind tells from head, the start of a file, whether it is a
// tar.gz, or, when plain is set, an uncompressed tar.
func tarballKind(head []byte, plain bool) tarball {
	switch {
	case isTarGz(head):
		return tarGz
	case plain && len(head) >= 512 && isTarHeader(head[:512]):
		return plainTar
	}
	return notTarball
}

// unpack adds the entries of the tarball r, a file named name, beside it.
func (w *Writer) unpack(ctx context.Context, name string, r io.Reader, kind tarball, depth int, opts *mustgather.TarOptions) error {
	if kind == plainTar {
		return w.addTar(ctx, path.Dir(name), tar.NewReader(r), depth+1, opts)
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	if err := w.addTar(ctx, path.Dir(name), tar.NewReader(gz), depth+1, opts); err != nil {
		return err
	}
	// Read to the end so that the gzip checksum is verified.
	_, err = io.Copy(io.Discard, gz)
	return err
}

// errReader keeps the first error other than io.EOF that r returns.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// isTarGz reports whether head, the start of a file, is gzip data whose
// content starts with a tar header. The content decides, not the name: a
// .tgz that is not a tar is stored as it is, and so is a tarball that the
// first peekSize bytes are too few to recognise.
func isTarGz(head []byte) bool {
	if len(head) < 2 || head[0] != 0x1f || head[1] != 0x8b {
		return false
	}
	zr, err := gzip.NewReader(bytes.NewReader(head))
	if err != nil {
		return false
	}
	var block [512]byte
	if _, err := io.ReadFull(zr, block[:]); err != nil {
		return false
	}
	return isTarHeader(block[:])
}

// isTarHeader reports whether block holds a tar header with a valid
// checksum, which every tar format (V7, ustar, PAX, GNU) has.
func isTarHeader(block []byte) bool {
	field := strings.TrimRight(strings.TrimLeft(string(block[148:156]), " "), " \x00")
	want, err := strconv.ParseUint(field, 8, 32)
	if err != nil || field == "" {
		return false
	}
	var sum uint64
	for i, b := range block {
		if i >= 148 && i < 156 {
			b = ' ' // the checksum field counts as spaces
		}
		sum += uint64(b)
	}
	return sum == want
}

// Close finishes the tar and gzip streams, once everything written has
// gone to the writer passed to NewWriter; it does not close that writer.
// After an error that left the stream corrupt it returns that error and
// does not finish the streams. Every Writer must be closed: that also
// stops its compressing goroutine.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		_ = w.q.close()
		return w.err
	}
	if err := w.tw.Close(); err != nil {
		_ = w.q.close()
		w.err = fmt.Errorf("archive: close: %w", err)
		return w.err
	}
	if err := w.q.close(); err != nil {
		w.err = fmt.Errorf("archive: close: %w", err)
		return w.err
	}
	if err := w.gz.Close(); err != nil {
		w.err = fmt.Errorf("archive: close: %w", err)
		return w.err
	}
	return nil
}

func (w *Writer) addFile(name string, mode int64, modTime time.Time, size int64, r io.Reader) error {
	if size < 0 {
		return fmt.Errorf("archive: add %s: negative size %d", name, size)
	}
	if w.filter != nil && w.err == nil && !w.closed {
		n, c, keep, err := w.filter.File(name, size, io.LimitReader(r, size))
		if err != nil {
			return fmt.Errorf("archive: add %s: %w", name, err)
		}
		if !keep {
			w.left[name] = true
			return nil
		}
		size, r = n, c
	}
	return w.write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode & 0o7777, ModTime: modTime, Size: size}, r)
}

func (w *Writer) addDir(name string, mode int64, modTime time.Time) error {
	return w.write(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode & 0o7777, ModTime: modTime}, nil)
}

func (w *Writer) addSymlink(name, target string, modTime time.Time) error {
	return w.write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: modTime}, nil)
}

// write writes hdr and, for a regular file, hdr.Size bytes of r. Content
// that r does not give is filled with zero bytes; the error is then a
// *CutError.
func (w *Writer) write(hdr *tar.Header, r io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("archive: write after close")
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		w.err = fmt.Errorf("archive: add %s: %w", hdr.Name, err)
		return w.err
	}
	if hdr.Size == 0 {
		return nil
	}
	n, rerr, werr := w.copyContent(r, hdr.Size)
	if werr == nil && n < hdr.Size {
		werr = w.fillZero(hdr.Size - n)
	}
	if werr != nil {
		w.err = fmt.Errorf("archive: add %s: %w", hdr.Name, werr)
		return w.err
	}
	if n < hdr.Size {
		if rerr == nil {
			rerr = io.ErrUnexpectedEOF
		}
		return &CutError{Name: hdr.Name, Written: n, Size: hdr.Size, Err: rerr}
	}
	return nil
}

// copyContent copies up to size bytes of r into the tar stream. It returns
// how many it copied, and the reader's error (nil for an early end) apart
// from the writer's.
func (w *Writer) copyContent(r io.Reader, size int64) (n int64, rerr, werr error) {
	for n < size {
		m, err := r.Read(w.buf[:min(int64(len(w.buf)), size-n)])
		if m > 0 {
			if _, werr := w.tw.Write(w.buf[:m]); werr != nil {
				return n, nil, werr
			}
			n += int64(m)
		}
		switch {
		case err == io.EOF:
			return n, nil, nil
		case err != nil:
			return n, err, nil
		}
	}
	return n, nil, nil
}

func (w *Writer) fillZero(n int64) error {
	clear(w.buf)
	for n > 0 {
		m := min(int64(len(w.buf)), n)
		if _, err := w.tw.Write(w.buf[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// entryName cleans name and joins it to the clean prefix pfx ("" or "."
// for the root). The result is "." for the root itself.
func entryName(pfx, name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 || path.IsAbs(name) {
		return "", unsafeName(name)
	}
	if name == "" {
		if pfx == "" {
			return ".", nil // an empty prefix is the root
		}
		return "", unsafeName(name)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", unsafeName(name)
	}
	return path.Join(pfx, c), nil
}

func unsafeName(name string) error {
	return fmt.Errorf("archive: entry name %q: %w (empty, absolute, or outside the archive root)", name, ErrUnsafeName)
}
