package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/archive"
)

// upperFilter stores text files in upper case and leaves out the others
// (a NUL byte, or gzip's magic), as a redacting filter would.
type upperFilter struct{ seen, left []string }

func (f *upperFilter) File(name string, size int64, r io.Reader) (int64, io.Reader, bool, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, nil, false, err
	}
	if bytes.IndexByte(b, 0) >= 0 || bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		f.left = append(f.left, name)
		return 0, nil, false, nil
	}
	f.seen = append(f.seen, name)
	return size, strings.NewReader(strings.ToUpper(string(b))), true, nil
}

// letters are random letters, which compress little, so that a tarball
// of them breaks where it is cut.
func letters(n int) string {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rng.IntN(26))
	}
	return string(b)
}

func TestWithAFilterTheTarballsOfATreeAreUnpackedBesideThemselvesAndADamagedOneIsLeftToTheFilter(t *testing.T) {
	first := letters(10000)
	nested := makeTar(t, tfile("deep/y.txt", "y"))
	tgz := gz(t, makeTar(t, tfile("inner/x.txt", "x"), tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "inner/nested.tar", Mode: 0o644}, content: nested}))
	broken := brokenGz(t, makeTar(t, tfile("b/first.txt", first), tfile("b/second.txt", letters(200000))), 60000, false)
	files := map[string][]byte{
		"a.txt":             []byte("a"),
		"sub/logs.tar.gz":   tgz,
		"sub/plain.tar":     makeTar(t, tfile("z.txt", "z")),
		"sub/broken.tar.gz": broken,
		"sub/not-a-tar.gz":  gz(t, []byte("just gzip")),
		"sub/tar-named.txt": []byte(strings.Repeat("not a tar header ", 40)),
	}
	root := t.TempDir()
	for name, b := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("with a filter", func(t *testing.T) {
		f := &upperFilter{}
		got := build(t, func(w *archive.Writer) error {
			w.SetFilter(f)
			return w.AddTree(context.Background(), root, "mg")
		})
		contents := map[string]string{}
		for _, e := range got {
			if e.Type == tar.TypeReg {
				contents[e.Name] = e.Content
			}
		}
		want := map[string]string{
			"mg/a.txt":                "A",
			"mg/sub/inner/x.txt":      "X",
			"mg/sub/inner/deep/y.txt": "Y",
			"mg/sub/z.txt":            "Z",
			"mg/sub/b/first.txt":      strings.ToUpper(first),
			"mg/sub/tar-named.txt":    strings.ToUpper(string(files["sub/tar-named.txt"])),
		}
		if diff := cmp.Diff(want, contents); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"mg/sub/broken.tar.gz", "mg/sub/not-a-tar.gz"}, f.left); diff != "" {
			t.Errorf("left to the filter as they are (-want +got):\n%s", diff)
		}
	})

	t.Run("without a filter tarballs are stored as they are", func(t *testing.T) {
		got := build(t, func(w *archive.Writer) error { return w.AddTree(context.Background(), root, "") })
		contents := map[string]string{}
		for _, e := range got {
			if e.Type == tar.TypeReg {
				contents[e.Name] = e.Content
			}
		}
		if len(contents) != len(files) {
			t.Errorf("files: %v, want the %d of the tree", keys(contents), len(files))
		}
		for name, b := range files {
			if contents[name] != string(b) {
				t.Errorf("%s is not stored as it is", name)
			}
		}
	})
}

func TestWithAFilterAnUncompressedTarInATarStreamIsUnpacked(t *testing.T) {
	stream := makeTar(t,
		tfile("a.txt", "a"),
		tarball{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/inner.tar", Mode: 0o644}, content: makeTar(t, tfile("z.txt", "z"))},
	)
	for _, tt := range []struct {
		name   string
		filter bool
		want   []string
	}{
		{"with a filter it is unpacked", true, []string{"a.txt", "d/z.txt"}},
		{"without one it is stored as it is", false, []string{"a.txt", "d/inner.tar"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := build(t, func(w *archive.Writer) error {
				if tt.filter {
					w.SetFilter(&upperFilter{})
				}
				return w.AddTar(context.Background(), "", bytes.NewReader(stream))
			})
			var names []string
			for _, e := range got {
				names = append(names, e.Name)
			}
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}
