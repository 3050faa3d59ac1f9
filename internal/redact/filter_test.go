package redact_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// tarGz returns a gzip-compressed tar of files.
func tarGz(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[name])
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

func TestAnArchiveWrittenThroughTheFilterHoldsNoSecretAndTheSameFiles(t *testing.T) {
	secretFiles, harmless := corpus(t, "secret"), corpus(t, "harmless")
	for _, bound := range []int{8 << 20, 200} {
		t.Run(map[int]string{8 << 20: "files redacted as documents", 200: "files masked in place"}[bound], func(t *testing.T) {
			// A tree with the corpus, a binary file, a tarball of Secrets
			// that unpacks, and a gzip file that is no tarball.
			dir := t.TempDir()
			write := func(name string, b []byte) {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for name, b := range secretFiles {
				write("secret/"+name, b)
			}
			for name, b := range harmless {
				write("harmless/"+name, b)
			}
			write("bin/tool", append([]byte("\x7fELF\x02\x01\x01\x00"), bytes.Repeat([]byte{0}, 100)...))
			write("nested/logs.tar.gz", tarGz(t, map[string][]byte{"pods/controller.log": secretFiles["controller.log"]}))
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write([]byte("password=inside-a-gzip\n"))
			zw.Close()
			write("journal.gz", gz.Bytes())

			r, err := redact.New(redact.Config{BufferBytes: bound})
			if err != nil {
				t.Fatal(err)
			}
			rep := redact.NewReport()
			var out bytes.Buffer
			aw := archive.NewWriter(&out)
			aw.SetFilter(r.Filter(rep))
			var tree bytes.Buffer
			tw := tar.NewWriter(&tree)
			// The tree once as a directory and once as a tar stream, as
			// the process and Kubernetes gatherers add theirs.
			if err := aw.AddTree(context.Background(), dir, "tree"); err != nil {
				t.Fatal(err)
			}
			if err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, _ := os.ReadFile(p)
				rel, _ := filepath.Rel(dir, p)
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: int64(len(b))})
				_, err = tw.Write(b)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "bin/tool-link", Linkname: "bin/tool"})
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "harmless/ca-link", Linkname: "harmless/ca.crt"})
			tw.Close()
			if err := aw.AddTar(context.Background(), "pod", &tree); err != nil {
				t.Fatal(err)
			}
			aw.SetFilter(nil)
			if err := aw.AddBytes("redactions.json", rep.JSON(), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := aw.Close(); err != nil {
				t.Fatal(err)
			}

			got := archivetest.ReadTarGz(t, bytes.NewReader(out.Bytes()))
			for name, content := range got {
				for _, s := range append(secrets(t), "inside-a-gzip") {
					if strings.Contains(content, s) {
						t.Errorf("%s holds %q", name, s)
					}
				}
			}
			var want []string
			for _, prefix := range []string{"tree/", "pod/"} {
				for name := range secretFiles {
					want = append(want, prefix+"secret/"+name)
				}
				for name := range harmless {
					want = append(want, prefix+"harmless/"+name)
					if got[prefix+"harmless/"+name] != string(harmless[name]) {
						t.Errorf("%sharmless/%s changed", prefix, name)
					}
				}
			}
			// In a tar stream and in a directory alike the tarball is
			// unpacked and its files redacted; the binary and the plain
			// gzip file are no text, and withheld.
			want = append(want, "tree/nested/pods/controller.log", "pod/nested/pods/controller.log", "redactions.json")
			if diff := cmp.Diff(slices.Sorted(slices.Values(want)), slices.Sorted(maps.Keys(got))); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			for _, f := range []string{"tree/bin/tool", "tree/journal.gz", "pod/bin/tool", "pod/journal.gz"} {
				if !strings.Contains(got["redactions.json"], `"file": "`+f+`",
      "reason": "not text`) {
					t.Errorf("redactions.json does not list %s as withheld:\n%s", f, got["redactions.json"])
				}
			}
			if got["pod/harmless/ca-link"] != "" || got["pod/bin/tool-link"] != "" {
				t.Error("hard links stored as files")
			}
		})
	}
}
