package dirstore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tempFiles lists the temporary files of Put under dir.
func tempFiles(dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			found = append(found, p)
		}
		return err
	})
	return found, err
}

func TestStoreConformance(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	archivetest.Conformance(t, s, func(context.Context, string) ([]string, error) {
		return tempFiles(dir)
	})
}

func TestStorePing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "archives")
	s := newStore(t, dir)
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping on a new store: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Error("Ping after the directory was removed: no error")
	}
}

func TestStoreRejectsKeysOutsideTheDirectory(t *testing.T) {
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	for _, key := range []string{"", ".", "..", "../x", "/etc/passwd", "a/../../x", "a/../b", "a//b", "a/", "a/.put-123"} {
		t.Run("the key "+strconv.Quote(key)+" is rejected", func(t *testing.T) {
			_, putErr := s.Put(ctx, key, strings.NewReader("x"))
			_, openErr := s.Open(ctx, key)
			delErr := s.Delete(ctx, key)
			for op, err := range map[string]error{"Put": putErr, "Open": openErr, "Delete": delErr} {
				if !errors.Is(err, mustgather.ErrInvalid) {
					t.Errorf("%s error = %v, want ErrInvalid", op, err)
				}
			}
		})
	}
}

func TestStoreDoesNotFollowSymlinksOutOfTheDirectory(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "gatherings")); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dir)
	ctx := context.Background()
	if _, err := s.Put(ctx, "gatherings/1/must-gather.tar.gz", strings.NewReader("x")); err == nil {
		t.Error("Put through a symlink out of the directory: no error")
	}
	if a, err := s.Open(ctx, "gatherings/secret"); err == nil {
		a.Close()
		t.Error("Open through a symlink out of the directory: no error")
	}
	var got []string
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff([]string{"secret"}, got); diff != "" {
		t.Errorf("files outside the store (-want +got):\n%s", diff)
	}
}

func TestNewRemovesUploadsLeftByACrash(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "gatherings/1"), 0o750))
	stale := filepath.Join(dir, "gatherings/1", tempPrefix+"stale")
	live := filepath.Join(dir, "gatherings/1", tempPrefix+"live")
	kept := filepath.Join(dir, "gatherings/1/must-gather.tar.gz")
	for _, p := range []string{stale, live, kept} {
		must(os.WriteFile(p, []byte("x"), 0o640))
	}
	old := time.Now().Add(-2 * staleTemp)
	must(os.Chtimes(stale, old, old))
	must(os.Chtimes(kept, old, old))
	newStore(t, dir)

	tests := []struct {
		name string
		path string
		want bool
	}{
		{"a temporary file untouched for long is removed", stale, false},
		{"a temporary file being written is kept", live, true},
		{"an old archive is kept", kept, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := os.Stat(tt.path)
			if got := err == nil; got != tt.want {
				t.Errorf("%s exists = %v, want %v (stat error %v)", tt.path, got, tt.want, err)
			}
		})
	}
}

func TestDeleteRemovesEmptiedDirectories(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	ctx := context.Background()
	for _, k := range []string{"gatherings/1/a.tar.gz", "gatherings/2/b.tar.gz"} {
		if _, err := s.Put(ctx, k, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "gatherings/1/a.tar.gz"); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		got = append(got, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".", "gatherings", "gatherings/2", "gatherings/2/b.tar.gz"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("directory after Delete (-want +got):\n%s", diff)
	}
}
