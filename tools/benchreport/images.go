package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// imageTarballs is where `make images` writes its image tarballs, one per
// platform, named must-gather-functions-<os>-<arch>.tar.
const imageTarballs = "bin/images"

// images measures the image's size on each platform: the size of the
// tarball `make images` writes (the compressed layers, what a pull
// fetches, with the manifest and config). With build it runs `make
// images` into out/images, with ko's cache in out/ko-cache (the base image
// is made there locally, nothing is pulled); without, it reads the
// tarballs the last `make images` left in bin/images, if any. It writes
// the sizes as out/images.txt in the benchmarks' format:
//
//	BenchmarkImage/platform=linux-amd64 1 31.0 image-MiB 1 built
//
// where built is 1 for an image built in this run and 0 for one read from
// bin/images.
func images(ctx context.Context, build bool, out string, stdout io.Writer) error {
	dir, built := imageTarballs, 0
	if build {
		dir, built = filepath.Join(out, "images"), 1
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "== images: make images into %s\n", dir)
		cmd := exec.CommandContext(ctx, "make", "images", "IMAGES_DIR="+dir, "KOCACHE="+filepath.Join(out, "ko-cache"))
		cmd.Env = withoutEnv(os.Environ(), "KO_DOCKER_REPO") // tarballs, never a push
		cmd.Stdout, cmd.Stderr = stdout, stdout
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("make images: %w", err)
		}
	}
	tars, _ := filepath.Glob(filepath.Join(dir, "must-gather-functions-*.tar"))
	if len(tars) == 0 {
		fmt.Fprintf(stdout, "== images: none in %s (make images), no image sizes\n", dir)
		if err := os.Remove(filepath.Join(out, "images.txt")); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	var b strings.Builder
	for _, p := range tars {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		platform := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "must-gather-functions-"), ".tar")
		fmt.Fprintf(&b, "BenchmarkImage/platform=%s \t 1\t %.1f image-MiB\t %d built\t %d made-unix\n",
			platform, float64(fi.Size())/(1<<20), built, fi.ModTime().Truncate(time.Second).Unix())
	}
	fmt.Fprint(stdout, b.String())
	return os.WriteFile(filepath.Join(out, "images.txt"), []byte(b.String()), 0o644)
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			kept = append(kept, kv)
		}
	}
	return kept
}
