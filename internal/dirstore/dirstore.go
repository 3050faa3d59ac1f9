// Package dirstore keeps archives as files in a local directory, for the
// embedded mode that runs without object storage. It implements
// mustgather.ArchiveStore.
package dirstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/ctxio"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// tempPrefix starts the names of the files that Put writes before it
// renames them to their key.
const tempPrefix = ".put-"

// staleTemp is how old a temporary file must be for New to remove it as
// left over from a crash; a live Put writes its file continuously.
const staleTemp = time.Hour

// Store is a mustgather.ArchiveStore on a local directory. A key is a
// slash-separated path relative to the directory. All access goes through
// an os.Root, so no key, and no symbolic link in the directory, reaches a
// file outside it.
type Store struct {
	root *os.Root
}

var _ mustgather.ArchiveStore = (*Store)(nil)

// New returns a Store on dir, creating it if needed, and removes the
// temporary files of uploads that a crash interrupted.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("dirstore: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("dirstore: %w", err)
	}
	s := &Store{root: root}
	if err := s.removeStale(time.Now().Add(-staleTemp)); err != nil {
		root.Close()
		return nil, fmt.Errorf("dirstore: remove stale uploads: %w", err)
	}
	return s, nil
}

// Close releases the directory.
func (s *Store) Close() error { return s.root.Close() }

// Ping reports whether the directory is still there: an open directory
// that was removed or replaced would keep working, unseen by anybody else.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	open, err := s.root.Stat(".")
	if err != nil {
		return fmt.Errorf("dirstore: %w", err)
	}
	named, err := os.Stat(s.root.Name())
	if err != nil {
		return fmt.Errorf("dirstore: %w", err)
	}
	if !os.SameFile(open, named) {
		return fmt.Errorf("dirstore: %s was replaced since the store was opened", s.root.Name())
	}
	return nil
}

// Put writes r to a temporary file next to key and renames it to key once r
// has ended, so an incomplete archive never appears under key. On any error,
// ctx's included, the temporary file is removed and an earlier archive under
// key stays as it was.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("dirstore: put %s: %w", key, err)
	}
	f, tmp, err := s.createTemp(key)
	if err != nil {
		return 0, fmt.Errorf("dirstore: put %s: %w", key, err)
	}
	n, err := io.Copy(f, ctxio.Reader(ctx, r))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, key)
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		return 0, fmt.Errorf("dirstore: put %s: %w", key, err)
	}
	s.syncDir(path.Dir(key))
	return n, nil
}

// createTemp creates a new temporary file for key next to it, creating its
// directory if needed. Its name ends in the key's name, so that Delete can
// find the uploads to the key. It retries when Delete removes an emptied
// directory between the two steps.
func (s *Store) createTemp(key string) (*os.File, string, error) {
	dir := path.Dir(key)
	var err error
	for range 3 {
		if err = s.root.MkdirAll(dir, 0o750); err != nil {
			return nil, "", err
		}
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		name := path.Join(dir, tempPrefix+hex.EncodeToString(b)+"."+path.Base(key))
		var f *os.File
		f, err = s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err == nil {
			return f, name, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	return nil, "", err
}

// syncDir makes a rename in dir durable. It is best effort: the archive is
// in place either way.
func (s *Store) syncDir(dir string) {
	if d, err := s.root.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Open returns the archive under key, or an error wrapping
// mustgather.ErrNotFound.
func (s *Store) Open(ctx context.Context, key string) (mustgather.Archive, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dirstore: open %s: %w", key, err)
	}
	f, err := s.root.Open(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("dirstore: open %s: %w", key, mustgather.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dirstore: open %s: %w", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dirstore: open %s: %w", key, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("dirstore: open %s: %w", key, mustgather.ErrNotFound)
	}
	return &archive{File: f, size: info.Size(), modTime: info.ModTime()}, nil
}

// Delete removes the archive under key, the temporary files of uploads to
// it, and its directory once empty. A missing archive is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dirstore: delete %s: %w", key, err)
	}
	if err := s.removeUploads(key); err != nil {
		return fmt.Errorf("dirstore: delete %s: %w", key, err)
	}
	info, err := s.root.Lstat(key)
	if errors.Is(err, fs.ErrNotExist) {
		s.removeEmptied(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("dirstore: delete %s: %w", key, err)
	}
	if info.IsDir() {
		return nil // a directory is no archive
	}
	if err := s.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dirstore: delete %s: %w", key, err)
	}
	s.removeEmptied(key)
	return nil
}

// removeUploads removes the temporary files of uploads to key. A Put still
// writing one then fails to rename it.
func (s *Store) removeUploads(key string) error {
	entries, err := fs.ReadDir(s.root.FS(), path.Dir(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, tempPrefix) || !strings.HasSuffix(name, "."+path.Base(key)) {
			continue
		}
		if err := s.root.Remove(path.Join(path.Dir(key), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// removeEmptied removes the directories of key that are now empty.
func (s *Store) removeEmptied(key string) {
	// Remove the emptied directories up to the root, so that deleted
	// gatherings leave nothing behind. Remove fails on a directory that is
	// not empty, which ends the climb.
	for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
		if s.root.Remove(dir) != nil {
			break
		}
	}
}

// removeStale removes temporary files last written before cutoff.
func (s *Store) removeStale(cutoff time.Time) error {
	return fs.WalkDir(s.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if info.ModTime().Before(cutoff) {
			if err := s.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// checkKey rejects keys that are not clean, relative paths inside the
// directory. os.Root would refuse to leave the directory anyway; checking
// first gives a clearer error and keeps "a/../b" from aliasing "b".
func checkKey(key string) error {
	if key == "" || key == "." || path.Clean(key) != key || !filepath.IsLocal(filepath.FromSlash(key)) ||
		strings.HasPrefix(path.Base(key), tempPrefix) {
		return fmt.Errorf("dirstore: key %q: %w: not a clean relative path", key, mustgather.ErrInvalid)
	}
	return nil
}

// archive is an open archive file.
type archive struct {
	*os.File
	size    int64
	modTime time.Time
}

func (a *archive) Size() int64        { return a.size }
func (a *archive) ModTime() time.Time { return a.modTime }
