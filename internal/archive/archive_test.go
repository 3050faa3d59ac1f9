package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/archive"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// entry is what the tests compare of a tar entry.
type entry struct {
	Name     string
	Type     byte
	Mode     int64
	ModTime  time.Time
	Linkname string
	Content  string
}

func file(name string, mode int64, content string) entry {
	return entry{Name: name, Type: tar.TypeReg, Mode: mode, ModTime: t0, Content: content}
}

func dir(name string, mode int64) entry {
	return entry{Name: name, Type: tar.TypeDir, Mode: mode, ModTime: t0}
}

func symlink(name, target string) entry {
	return entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, ModTime: t0, Linkname: target}
}

// readArchive reads a tar.gz back with the standard library.
func readArchive(t *testing.T, b []byte) []entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var got []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		got = append(got, entry{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, ModTime: h.ModTime.UTC(), Linkname: h.Linkname, Content: string(content)})
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("gzip trailer: %v", err)
	}
	return got
}

// build runs add on a new Writer, closes it and returns the entries.
func build(t *testing.T, add func(w *archive.Writer) error) []entry {
	t.Helper()
	var buf bytes.Buffer
	w := archive.NewWriter(&buf)
	if err := add(w); err != nil {
		t.Fatalf("add: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return readArchive(t, buf.Bytes())
}

// tarball is one entry of a tar built by makeTar.
type tarball struct {
	hdr     tar.Header
	content []byte
}

func makeTar(t testing.TB, entries ...tarball) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = t0
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write(e.content); err != nil {
			t.Fatalf("tar write %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tfile(name, content string) tarball {
	return tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, content: []byte(content)}
}

func tdir(name string) tarball {
	return tarball{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func TestWriterStoresWhatItIsGiven(t *testing.T) {
	tests := []struct {
		name string
		add  func(w *archive.Writer) error
		want []entry
	}{
		{
			name: "AddFile stores the content, mode and time it is given",
			add: func(w *archive.Writer) error {
				return w.AddFile("logs/kubelet.log", 0o600, t0, 5, strings.NewReader("hello"))
			},
			want: []entry{file("logs/kubelet.log", 0o600, "hello")},
		},
		{
			name: "AddFile reads only size bytes from a longer reader",
			add: func(w *archive.Writer) error {
				return w.AddFile("a", 0o644, t0, 3, strings.NewReader("abcdef"))
			},
			want: []entry{file("a", 0o644, "abc")},
		},
		{
			name: "AddFile keeps only permission bits of the mode",
			add: func(w *archive.Writer) error {
				return w.AddFile("a", int64(os.ModeDir|0o640), t0, 0, strings.NewReader(""))
			},
			want: []entry{file("a", 0o640, "")},
		},
		{
			name: "AddBytes stores a 0644 file",
			add: func(w *archive.Writer) error {
				return w.AddBytes("meta/request.json", []byte(`{"id":1}`), t0)
			},
			want: []entry{file("meta/request.json", 0o644, `{"id":1}`)},
		},
		{
			name: "AddDir stores a 0755 directory with a trailing slash",
			add: func(w *archive.Writer) error {
				return w.AddDir("must-gather", t0)
			},
			want: []entry{dir("must-gather/", 0o755)},
		},
		{
			name: "names are stored cleaned",
			add: func(w *archive.Writer) error {
				if err := w.AddDir("a/./b/", t0); err != nil {
					return err
				}
				return w.AddBytes("a//b/../c.txt", []byte("c"), t0)
			},
			want: []entry{dir("a/b/", 0o755), file("a/c.txt", 0o644, "c")},
		},
		{
			name: "times are stored to the second",
			add: func(w *archive.Writer) error {
				return w.AddBytes("a", nil, t0.Add(400*time.Millisecond))
			},
			want: []entry{file("a", 0o644, "")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := build(t, tt.add)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

// makeTree creates a directory tree with fixed times and returns its path.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "namespaces/default"), 0o750))
	must(os.WriteFile(filepath.Join(root, "version"), []byte("4.20"), 0o644))
	must(os.WriteFile(filepath.Join(root, "namespaces/default/pods.yaml"), []byte("kind: List\n"), 0o600))
	must(os.Symlink("namespaces/default/pods.yaml", filepath.Join(root, "pods")))
	must(os.Symlink("/etc/passwd", filepath.Join(root, "passwd")))
	must(os.Symlink("namespaces", filepath.Join(root, "ns")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	for _, p := range []string{"version", "namespaces/default/pods.yaml", "namespaces/default", "namespaces", "."} {
		must(os.Chtimes(filepath.Join(root, p), t0, t0))
	}
	return root
}

func TestWriterAddTree(t *testing.T) {
	root := makeTree(t)
	info, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	rootMode := int64(info.Mode().Perm())
	tests := []struct {
		name   string
		prefix string
		want   []entry
	}{
		{
			name:   "a tree under a prefix is stored with links as links and pipes left out",
			prefix: "must-gather",
			want: []entry{
				dir("must-gather/", rootMode),
				dir("must-gather/namespaces/", 0o750),
				dir("must-gather/namespaces/default/", 0o750),
				file("must-gather/namespaces/default/pods.yaml", 0o600, "kind: List\n"),
				symlink("must-gather/ns", "namespaces"),
				symlink("must-gather/passwd", "/etc/passwd"),
				symlink("must-gather/pods", "namespaces/default/pods.yaml"),
				file("must-gather/version", 0o644, "4.20"),
			},
		},
		{
			name:   "a tree with an empty prefix is stored at the archive root",
			prefix: "",
			want: []entry{
				dir("namespaces/", 0o750),
				dir("namespaces/default/", 0o750),
				file("namespaces/default/pods.yaml", 0o600, "kind: List\n"),
				symlink("ns", "namespaces"),
				symlink("passwd", "/etc/passwd"),
				symlink("pods", "namespaces/default/pods.yaml"),
				file("version", 0o644, "4.20"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := build(t, func(w *archive.Writer) error {
				return w.AddTree(context.Background(), root, tt.prefix)
			})
			for i := range got {
				if got[i].Type == tar.TypeSymlink {
					got[i].ModTime = t0 // a link's own time cannot be set portably
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriterAddTreeStopsWhenTheContextIsCancelled(t *testing.T) {
	root := makeTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	w := archive.NewWriter(&buf)
	if err := w.AddTree(ctx, root, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddTree error = %v, want context.Canceled", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after cancelled AddTree: %v", err)
	}
	if got := readArchive(t, buf.Bytes()); len(got) != 0 {
		t.Errorf("entries = %v, want none", got)
	}
}

func TestWriterAddTar(t *testing.T) {
	inner := makeTar(t,
		tdir("./"),
		tfile("./x.txt", "x"),
		tdir("./deep/"),
		tfile("./deep/y.txt", "y"),
		tarball{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "./latest", Linkname: "deep/y.txt"}},
	)
	innermost := makeTar(t, tfile("z.txt", "z"))
	doubly := makeTar(t, tfile("one.txt", "1"), tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "two/innermost.tgz", Mode: 0o644}, content: gz(t, innermost)})
	plainGz := gz(t, []byte("not a tar, just a compressed log line\n"))

	tests := []struct {
		name   string
		prefix string
		tar    []byte
		want   []entry
	}{
		{
			name:   "entries are copied under the prefix",
			prefix: "mg",
			tar: makeTar(t,
				tdir("./"),
				tfile("./a.txt", "a"),
				tarball{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "./hard", Linkname: "./a.txt", Mode: 0o644}},
				tarball{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "./fifo", Mode: 0o644}},
			),
			want: []entry{
				dir("mg/", 0o755),
				file("mg/a.txt", 0o644, "a"),
				{Name: "mg/hard", Type: tar.TypeLink, Mode: 0o644, ModTime: t0, Linkname: "mg/a.txt"},
			},
		},
		{
			name:   "a nested tar.gz is unpacked into the directory that held it",
			prefix: "mg",
			tar: makeTar(t,
				tdir("sub/"),
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sub/inner.tar.gz", Mode: 0o644}, content: gz(t, inner)},
				tfile("after.txt", "after"),
			),
			want: []entry{
				dir("mg/sub/", 0o755),
				dir("mg/sub/", 0o755),
				file("mg/sub/x.txt", 0o644, "x"),
				dir("mg/sub/deep/", 0o755),
				file("mg/sub/deep/y.txt", 0o644, "y"),
				symlink("mg/sub/latest", "deep/y.txt"),
				file("mg/after.txt", 0o644, "after"),
			},
		},
		{
			name:   "a tar.gz inside a tar.gz is unpacked too",
			prefix: "",
			tar: makeTar(t,
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "outer.bin", Mode: 0o644}, content: gz(t, doubly)},
			),
			want: []entry{
				file("one.txt", 0o644, "1"),
				file("two/z.txt", 0o644, "z"),
			},
		},
		{
			name:   "gzip files that hold no tar, and tgz names that are not gzip, are kept as files",
			prefix: "",
			tar: makeTar(t,
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "kubelet.log.gz", Mode: 0o644}, content: plainGz},
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "fake.tgz", Mode: 0o644}, content: []byte("plain text")},
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "raw.tar", Mode: 0o644}, content: innermost},
			),
			want: []entry{
				file("kubelet.log.gz", 0o644, string(plainGz)),
				file("fake.tgz", 0o644, "plain text"),
				file("raw.tar", 0o644, string(innermost)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := build(t, func(w *archive.Writer) error {
				return w.AddTar(context.Background(), tt.prefix, bytes.NewReader(tt.tar))
			})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriterRejectsNamesThatEscape(t *testing.T) {
	tests := []struct {
		name string
		add  func(w *archive.Writer) error
	}{
		{"AddFile rejects a parent reference", func(w *archive.Writer) error { return w.AddBytes("../x", nil, t0) }},
		{"AddFile rejects a parent reference left after cleaning", func(w *archive.Writer) error { return w.AddBytes("a/../../x", nil, t0) }},
		{"AddFile rejects an absolute path", func(w *archive.Writer) error { return w.AddBytes("/etc/passwd", nil, t0) }},
		{"AddFile rejects an empty name", func(w *archive.Writer) error { return w.AddBytes("", nil, t0) }},
		{"AddFile rejects the root itself", func(w *archive.Writer) error { return w.AddBytes("a/..", nil, t0) }},
		{"AddFile rejects a NUL byte", func(w *archive.Writer) error { return w.AddBytes("a\x00b", nil, t0) }},
		{"AddDir rejects a parent reference", func(w *archive.Writer) error { return w.AddDir("..", t0) }},
		{"AddTree rejects an escaping prefix", func(w *archive.Writer) error {
			return w.AddTree(context.Background(), t.TempDir(), "../up")
		}},
		{"AddTar rejects an absolute prefix", func(w *archive.Writer) error {
			return w.AddTar(context.Background(), "/abs", bytes.NewReader(makeTar(t)))
		}},
		{"AddTar rejects an entry that climbs out of the prefix", func(w *archive.Writer) error {
			return w.AddTar(context.Background(), "mg", bytes.NewReader(makeTar(t, tfile("../../evil", "x"))))
		}},
		{"AddTar rejects an absolute entry", func(w *archive.Writer) error {
			return w.AddTar(context.Background(), "mg", bytes.NewReader(makeTar(t, tfile("/etc/cron.d/evil", "x"))))
		}},
		{"AddTar rejects a hard link to outside the archive", func(w *archive.Writer) error {
			return w.AddTar(context.Background(), "", bytes.NewReader(makeTar(t,
				tarball{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "../etc/shadow"}})))
		}},
		{"AddTar rejects an escaping entry inside a nested tar.gz", func(w *archive.Writer) error {
			evil := gz(t, makeTar(t, tfile("../../evil", "x")))
			return w.AddTar(context.Background(), "", bytes.NewReader(makeTar(t,
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sub/in.tgz"}, content: evil})))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := archive.NewWriter(&buf)
			if err := tt.add(w); !errors.Is(err, archive.ErrUnsafeName) {
				t.Fatalf("error = %v, want ErrUnsafeName", err)
			}
			// A rejected name writes nothing, so the archive stays usable.
			if err := w.AddBytes("ok", []byte("ok"), t0); err != nil {
				t.Fatalf("AddBytes after rejection: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			for _, e := range readArchive(t, buf.Bytes()) {
				if !local(e.Name) {
					t.Errorf("archive holds escaping entry %q", e.Name)
				}
			}
		})
	}
}

func local(name string) bool {
	c := path.Clean(name)
	return !path.IsAbs(name) && c != ".." && !strings.HasPrefix(c, "../") && c != "."
}

func FuzzAddTar(f *testing.F) {
	f.Add(makeTar(f, tfile("a", "a"), tdir("b/")), "mg")
	f.Add(makeTar(f, tfile("../a", "a")), "")
	f.Add(makeTar(f, tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "n.tgz"}, content: gz(f, makeTar(f, tfile("x", "x")))}), "p")
	f.Fuzz(func(t *testing.T, in []byte, prefix string) {
		var buf bytes.Buffer
		w := archive.NewWriter(&buf)
		if err := w.AddTar(context.Background(), prefix, bytes.NewReader(in)); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		for _, e := range readArchive(t, buf.Bytes()) {
			if !local(e.Name) {
				t.Fatalf("archive holds escaping entry %q", e.Name)
			}
			if e.Type == tar.TypeLink && !local(e.Linkname) {
				t.Fatalf("archive holds escaping hard link %q -> %q", e.Name, e.Linkname)
			}
		}
	})
}

func FuzzAddFileName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "/a", "a/../..", ".", "", "a/./b//c/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		var buf bytes.Buffer
		w := archive.NewWriter(&buf)
		err := w.AddBytes(name, nil, t0)
		if err != nil {
			if !errors.Is(err, archive.ErrUnsafeName) {
				t.Fatalf("AddBytes(%q) = %v, want nil or ErrUnsafeName", name, err)
			}
			return
		}
		if err := w.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		got := readArchive(t, buf.Bytes())
		if len(got) != 1 || !local(got[0].Name) || got[0].Name != path.Clean(got[0].Name) {
			t.Fatalf("AddBytes(%q) stored %v", name, got)
		}
	})
}
