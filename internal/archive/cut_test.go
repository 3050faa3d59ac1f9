package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

func TestAFileCutShortIsFilledWithZerosAndTheArchiveGoesOn(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"a reader that ends early is cut with ErrUnexpectedEOF", strings.NewReader("12345"), io.ErrUnexpectedEOF},
		{"a reader that fails passes its error on", io.MultiReader(strings.NewReader("12345"), iotest.ErrReader(boom)), boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cut *archive.CutError
			got := build(t, func(w *archive.Writer) error {
				err := w.AddFile("f", 0o644, t0, 10, tt.r)
				if !errors.Is(err, tt.want) || !errors.Is(err, mustgather.ErrEntryCut) || !errors.As(err, &cut) {
					t.Fatalf("AddFile error = %v, want %v and ErrEntryCut", err, tt.want)
				}
				return w.AddBytes("next", []byte("next"), t0)
			})
			if cut.Name != "f" || cut.Written != 5 || cut.Size != 10 {
				t.Errorf("CutError = %+v, want f, 5 of 10 bytes", cut)
			}
			want := []entry{file("f", 0o644, "12345\x00\x00\x00\x00\x00"), file("next", 0o644, "next")}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

// failAfter is a writer that fails once n bytes have been written to it.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

func TestAFailingUploadLeavesTheArchiveUnfinished(t *testing.T) {
	full := errors.New("no space left")
	w := archive.NewWriter(&failAfter{n: 100, err: full})
	big := bytes.Repeat([]byte{0xa5, 0x5a, 0x17}, 1<<20) // does not compress to 100 bytes
	// The archive is compressed and written by a goroutine of its own, so
	// the failure reaches the call under way when it happens, or the next
	// one, and at the latest Close; every call after it gets it too.
	errs := []error{w.AddBytes("big", big, t0), w.AddBytes("next", nil, t0), w.Close()}
	failed := false
	for i, err := range errs {
		switch {
		case errors.Is(err, full):
			failed = true
		case err != nil:
			t.Errorf("call %d = %v, want nil or %v", i+1, err, full)
		case failed || i == len(errs)-1:
			t.Errorf("call %d = nil after the write failed, want %v", i+1, full)
		}
	}
}

// brokenGz returns a tar.gz whose gzip data is cut, or garbled, after its
// first keep bytes.
func brokenGz(t *testing.T, tarball []byte, keep int, garbage bool) []byte {
	t.Helper()
	b := gz(t, tarball)
	if keep >= len(b) {
		t.Fatalf("tar.gz of %d bytes is too small to break after %d", len(b), keep)
	}
	if !garbage {
		return b[:keep]
	}
	b = bytes.Clone(b)
	for i := keep; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func TestADamagedTarballIsReportedAndTheCopyGoesOn(t *testing.T) {
	// Content that does not compress, so that the tarball breaks in the
	// middle of the second file.
	noise := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*2654435761>>13) ^ byte(i)
		}
		return string(b)
	}
	first, second := noise(10000), noise(200000)
	inner := makeTar(t, tfile("must-gather/first.log", first), tfile("must-gather/second.log", second))
	escaping := makeTar(t, tfile("ok.txt", "ok"), tfile("../../evil", "x"))
	tests := []struct {
		name    string
		content []byte
		// wantFirst: the first file was unpacked whole; the second is cut.
		wantFirst bool
	}{
		{"a truncated tarball", brokenGz(t, inner, 60000, false), true},
		{"a tarball that turns into garbage", brokenGz(t, inner, 60000, true), true},
		{"a tarball with an entry outside the archive", gz(t, escaping), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := makeTar(t,
				tfile("before.txt", "before"),
				tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "must-gather.tar.gz", Mode: 0o644}, content: tt.content},
				tfile("after.txt", "after"),
			)
			var damaged []string
			var added []string
			got := build(t, func(w *archive.Writer) error {
				return w.AddTarWith(context.Background(), "img", bytes.NewReader(stream), mustgather.TarOptions{
					Damaged: func(name string, err error) { damaged = append(damaged, name) },
					Added:   func(name string, size int64) { added = append(added, name) },
				})
			})
			if diff := cmp.Diff([]string{"img/must-gather.tar.gz"}, damaged); diff != "" {
				t.Errorf("damaged (-want +got):\n%s", diff)
			}
			names := map[string]string{}
			for _, e := range got {
				names[e.Name] = e.Content
			}
			if names["img/before.txt"] != "before" || names["img/after.txt"] != "after" {
				t.Errorf("the entries around the damaged tarball are not all there: %v", keys(names))
			}
			if tt.wantFirst {
				if names["img/must-gather/first.log"] != first {
					t.Error("the file unpacked before the damage is not whole")
				}
				if s, ok := names["img/must-gather/second.log"]; ok && (len(s) != len(second) || s == second) {
					t.Errorf("the file the damage cut is %d bytes, want %d with a zero-filled tail", len(s), len(second))
				}
			} else if names["img/ok.txt"] != "ok" {
				t.Error("the file unpacked before the escaping entry is not there")
			}
			for _, name := range added {
				if name == "img/must-gather/second.log" {
					t.Error("the cut file was reported added whole")
				}
			}
		})
	}

	t.Run("without Damaged a damaged tarball fails the copy", func(t *testing.T) {
		var buf bytes.Buffer
		w := archive.NewWriter(&buf)
		stream := makeTar(t, tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "mg.tgz", Mode: 0o644}, content: brokenGz(t, inner, 60000, false)})
		if err := w.AddTar(context.Background(), "", bytes.NewReader(stream)); err == nil {
			t.Error("AddTar of a truncated inner tarball succeeded")
		}
		if err := w.Close(); err != nil {
			t.Errorf("the archive cannot be closed after a damaged tarball: %v", err)
		}
	})

	t.Run("a stream that breaks inside a tarball is not the tarball's damage", func(t *testing.T) {
		stream := makeTar(t, tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "mg.tgz", Mode: 0o644}, content: gz(t, inner)})
		broke := errors.New("connection reset")
		r := io.MultiReader(bytes.NewReader(stream[:40000]), iotest.ErrReader(broke))
		var damaged []string
		var buf bytes.Buffer
		w := archive.NewWriter(&buf)
		err := w.AddTarWith(context.Background(), "", r, mustgather.TarOptions{Damaged: func(name string, err error) { damaged = append(damaged, name) }})
		if !errors.Is(err, broke) {
			t.Errorf("AddTarWith = %v, want %v", err, broke)
		}
		if len(damaged) != 0 {
			t.Errorf("the tarball was reported damaged: %v", damaged)
		}
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		readArchive(t, buf.Bytes())
	})
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestACopyDoneAgainSkipsWhatIsThereAndStoresTarballsRawOnRequest(t *testing.T) {
	inner := gz(t, makeTar(t, tfile("in.txt", "in")))
	stream := makeTar(t,
		tdir("d/"),
		tfile("d/a.txt", "a"),
		tfile("d/b.txt", "bb"),
		tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/mg.tar.gz", Mode: 0o644}, content: inner},
	)
	t.Run("entries Skip names are left out, and Added names the others", func(t *testing.T) {
		var added []string
		got := build(t, func(w *archive.Writer) error {
			return w.AddTarWith(context.Background(), "p", bytes.NewReader(stream), mustgather.TarOptions{
				Skip: func(name string, size int64) bool {
					return name == "p/d" || name == "p/d/a.txt" && size == 1 || name == "p/d/in.txt"
				},
				Added: func(name string, size int64) { added = append(added, name) },
			})
		})
		want := []entry{file("p/d/b.txt", 0o644, "bb")}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"p/d/b.txt"}, added); diff != "" {
			t.Errorf("added (-want +got):\n%s", diff)
		}
	})
	t.Run("NoUnpack stores a tarball as a file", func(t *testing.T) {
		got := build(t, func(w *archive.Writer) error {
			return w.AddTarWith(context.Background(), "", bytes.NewReader(stream), mustgather.TarOptions{NoUnpack: true})
		})
		want := []entry{dir("d/", 0o755), file("d/a.txt", 0o644, "a"), file("d/b.txt", 0o644, "bb"), file("d/mg.tar.gz", 0o644, string(inner))}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
	})
}
