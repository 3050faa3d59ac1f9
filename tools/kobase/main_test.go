package main

import (
	"archive/tar"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"sigs.k8s.io/yaml"
)

// TestKoYAMLNamesTheBaseTheToolMakes: ko finds the base by the digest in
// .ko.yaml, so that digest must be the one the tool makes, on any machine.
func TestKoYAMLNamesTheBaseTheToolMakes(t *testing.T) {
	b, err := os.ReadFile("../../.ko.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ko struct {
		DefaultBaseImage string `json:"defaultBaseImage"`
	}
	if err := yaml.Unmarshal(b, &ko); err != nil {
		t.Fatal(err)
	}
	idx, err := Index()
	if err != nil {
		t.Fatal(err)
	}
	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if want := Repository + "@" + digest.String(); ko.DefaultBaseImage != want {
		t.Errorf(".ko.yaml defaultBaseImage is %s; the tool makes %s (update .ko.yaml)", ko.DefaultBaseImage, want)
	}
}

// TestTheBaseHoldsCACertificatesForEveryPlatform reads the base back from
// the layout the tool writes, as ko's cache does.
func TestTheBaseHoldsCACertificatesForEveryPlatform(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	for range 2 { // a second run changes nothing
		if err := writeLayoutOf(dir); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	// The index and one image per platform, each once.
	if len(m.Manifests) != 1+len(Platforms) {
		t.Fatalf("layout index has %d manifests, want %d", len(m.Manifests), 1+len(Platforms))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(Platforms) {
		t.Fatalf("base index has %d images, want %d", len(im.Manifests), len(Platforms))
	}
	for i, desc := range im.Manifests {
		if desc.Platform == nil || !desc.Platform.Equals(Platforms[i]) {
			t.Errorf("image %d: platform %v, want %v", i, desc.Platform, Platforms[i])
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != Platforms[i].Architecture || cfg.Config.User != "65532" {
			t.Errorf("image %d: architecture %s, user %q", i, cfg.Architecture, cfg.Config.User)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("image %d: %d layers, %v", i, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		certs := 0
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Name != "etc/ssl/certs/ca-certificates.crt" {
				continue
			}
			rest, _ := io.ReadAll(tr)
			for {
				var block *pem.Block
				if block, rest = pem.Decode(rest); block == nil {
					break
				}
				if _, err := x509.ParseCertificate(block.Bytes); err != nil {
					t.Fatal(err)
				}
				certs++
			}
		}
		rc.Close()
		if certs < 100 {
			t.Errorf("image %d: %d CA certificates in /etc/ssl/certs/ca-certificates.crt", i, certs)
		}
	}
}

func writeLayoutOf(dir string) error {
	idx, err := Index()
	if err != nil {
		return err
	}
	return writeLayout(dir, idx)
}
