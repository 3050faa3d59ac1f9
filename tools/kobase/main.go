// Command kobase writes the base image of the must-gather-functions image
// into an OCI image layout, without any registry: an index for linux/amd64
// and linux/arm64 whose one layer holds the Mozilla root certificates
// (golang.org/x/crypto/x509roots/fallback, as PEM in
// /etc/ssl/certs/ca-certificates.crt), /etc/passwd and /etc/group with a
// nonroot user (65532), and /tmp. Every byte is fixed by the sources, so
// the digest is the same on every machine, and .ko.yaml names it.
//
// ko has no local base image source, but it keeps an image cache in the
// OCI layout $KOCACHE/img and looks a base named by digest up there before
// any registry. `make images` runs
//
//	go run ./tools/kobase -layout $KOCACHE/img
//
// which appends the index to that layout (once) and prints its reference.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Repository is the name the base goes by in .ko.yaml. No registry serves
// it: ko finds it by digest in its cache.
const Repository = "localhost/must-gather-functions-base"

// Platforms are the platforms of the base index, and so of the images.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

func main() {
	dir := flag.String("layout", "", "OCI image layout to add the base index to (created if missing), e.g. $KOCACHE/img")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "kobase:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	idx, err := Index()
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if dir != "" {
		if err := writeLayout(dir, idx); err != nil {
			return fmt.Errorf("layout %s: %w", dir, err)
		}
	}
	fmt.Printf("%s@%s\n", Repository, digest)
	return nil
}

// writeLayout adds the index and each of its images to the layout's own
// index, as ko's cache looks up every one of them by digest.
func writeLayout(dir string, idx v1.ImageIndex) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := p.ReplaceIndex(idx, match.Digests(digest)); err != nil {
		return err
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range manifest.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		if err := p.ReplaceImage(img, match.Digests(desc.Digest)); err != nil {
			return err
		}
	}
	return nil
}

// Index is the base image index: one image per platform of Platforms.
func Index() (v1.ImageIndex, error) {
	layer, err := filesLayer()
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range Platforms {
		img, err := image(layer, platform)
		if err != nil {
			return nil, err
		}
		desc, err := partial.Descriptor(img)
		if err != nil {
			return nil, err
		}
		desc.Platform = &platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: *desc})
	}
	return idx, nil
}

func image(layer v1.Layer, platform v1.Platform) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = platform.OS, platform.Architecture
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.User = "65532"
	cfg.Config.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
	}
	return mutate.ConfigFile(img, cfg)
}

// filesLayer is the one layer: a tar made with fixed times and owners,
// gzipped without a name or time in its header.
func filesLayer() (v1.Layer, error) {
	var certs bytes.Buffer
	for root := range bundle.Roots() {
		if err := pem.Encode(&certs, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, err
		}
	}
	entries := []struct {
		name string
		mode int64
		body []byte
		dir  bool
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: certs.Bytes()},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.dir {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if e.name == "home/nonroot/" {
			hdr.Uid, hdr.Gid = 65532, 65532
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarball.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return static.NewLayer(gz.Bytes(), types.OCILayer), nil
}
