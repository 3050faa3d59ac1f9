package runner_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// oneImageBrokenGatherer stands for the Kubernetes gatherer with two
// images: the first one's output is copied whole, the second one's copy
// stream breaks off in the middle of a file for good.
type oneImageBrokenGatherer struct{}

func (oneImageBrokenGatherer) Gather(ctx context.Context, job mustgather.Job) error {
	tarOf := func(name string, content []byte) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))})
		_, _ = tw.Write(content)
		_ = tw.Close()
		return buf.Bytes()
	}
	if err := job.Archive.AddTar(ctx, "one", bytes.NewReader(tarOf("plan.yaml", []byte("kind: Plan\n")))); err != nil {
		return err
	}
	cut := tarOf("big.log", bytes.Repeat([]byte("log line\n"), 10000))[:30000]
	err := job.Archive.AddTar(ctx, "two", io.MultiReader(bytes.NewReader(cut), iotest.ErrReader(errors.New("connection reset by peer"))))
	fmt.Fprintf(job.Log, "[two] gather output not copied: %v\n", err)
	if err := job.Archive.AddBytes("two/gather.logs", []byte("gathering\n"), time.Now()); err != nil {
		return err
	}
	return fmt.Errorf("pod two: copy output: %w", err)
}

func TestAnImageWhoseCopyFailedEndsInErrorWithTheOtherImagesOutputArchived(t *testing.T) {
	e := newEnv(t, nil)
	r := runner.New(e.cfg, runner.Deps{
		Store: e.store, Leases: e.store, Archives: e.archives, Events: e.bus, Gatherer: oneImageBrokenGatherer{},
	})
	g, ev := e.create(t, mustgather.Request{Command: "x"})
	if err := r.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := e.waitEnded(t, g.ID)
	if got.Status != mustgather.StatusError || !strings.Contains(got.Reason, "pod two: copy output") {
		t.Fatalf("status %s, reason %q; want error naming the pod whose copy failed", got.Status, got.Reason)
	}
	if got.ArchiveName == "" {
		t.Fatalf("the archive was not kept:\n%s", got.ExecOutput)
	}
	files := e.readArchive(t, got)
	if files["one/plan.yaml"] != "kind: Plan\n" || files["two/gather.logs"] != "gathering\n" {
		t.Errorf("the archive lacks the other image's output or the failed one's log: %v", keys(files))
	}
	if _, ok := files["timestamp"]; !ok {
		t.Error("timestamp is not in the archive")
	}
	if log := files["must-gather.logs"]; !strings.Contains(log, "two/big.log: content ended after") {
		t.Errorf("must-gather.logs does not say what was lost:\n%s", log)
	}
}
