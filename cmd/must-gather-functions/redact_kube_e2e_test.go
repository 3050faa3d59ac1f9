package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

func TestAGatheringFromTheClusterIsRedactedAsItIsCopied(t *testing.T) {
	corpus, secrets := redactionCorpus(t)
	k := kube.Start(t)
	e := startKube(t, k, t.TempDir(), nil)
	g := e.post(t, "application/json", strings.NewReader(`{"command": "/usr/bin/gather", "redact": true, "timeout": "120"}`))
	pod := e.pod(t, g.ID)

	// The pod's output: the corpus, and a tarball of Secrets nested in it,
	// which the copy unpacks and redacts file by file.
	files := map[string]string{}
	for _, dir := range []string{"secret", "harmless"} {
		entries, err := os.ReadDir(filepath.Join(corpus, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			c, err := os.ReadFile(filepath.Join(corpus, dir, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files["namespaces/openshift-mtv/"+dir+"/"+en.Name()] = string(c)
		}
	}
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	secretsYAML := files["namespaces/openshift-mtv/secret/secrets-list.yaml"]
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "nested/secrets.yaml", Mode: 0o644, Size: int64(len(secretsYAML))})
	tw.Write([]byte(secretsYAML))
	tw.Close()
	zw.Close()
	files["namespaces/openshift-mtv/nested.tar.gz"] = tgz.String()
	fill(t, k.PodDir(pod.Namespace, pod.Name), files)
	k.AppendLogs(t, pod.Namespace, pod.Name, "gather", "using token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmb3JrbGlmdCJ9.c2lnbmF0dXJlLXZhbHVl\n")
	k.FinishGather(t, pod.Namespace, pod.Name, 0)

	done := e.waitEnded(t, g.ID)
	if done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	if strings.Contains(done.ExecOutput, "eyJzdWIiOiJmb3JrbGlmdCJ9") || !strings.Contains(done.ExecOutput, "using token ***REDACTED***") {
		t.Errorf("exec-output: %q", done.ExecOutput)
	}
	raw := getJSON(t, fmt.Sprintf("%s/must-gather/%d", e.base, g.ID))
	if red, _ := raw["redaction"].(map[string]any); raw["redact"] != true || red["files"].(float64) < 11 || red["withheld"] != float64(0) {
		t.Errorf("gathering: redact %v, redaction %v", raw["redact"], raw["redaction"])
	}
	got := e.download(t, done)
	var nested, report string
	for name, content := range got {
		for _, s := range append(secrets, "eyJzdWIiOiJmb3JrbGlmdCJ9") {
			if strings.Contains(content, s) {
				t.Errorf("%s holds %q", name, s)
			}
		}
		switch {
		case strings.HasSuffix(name, "/namespaces/openshift-mtv/nested/secrets.yaml"):
			nested = content
		case name == "redactions.json":
			report = content
		}
		if i := strings.Index(name, "/namespaces/openshift-mtv/harmless/"); i >= 0 && content != files[name[i+1:]] {
			t.Errorf("harmless %s changed", name)
		}
	}
	if !strings.Contains(nested, "password: ***REDACTED***") {
		t.Errorf("the nested tarball's secrets.yaml was not unpacked and redacted: %q", nested)
	}
	if !strings.Contains(report, `"rule": "kubernetes-secret-data"`) || !strings.Contains(report, `"file": "must-gather.logs"`) {
		t.Errorf("redactions.json:\n%s", report)
	}
	e.waitGone(t, g.ID)
}
