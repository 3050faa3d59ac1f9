package process

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// newJob returns a job for g whose output goes to log and whose archive
// is discarded.
func newJob(stop context.Context, g mustgather.Gathering, log io.Writer) mustgather.Job {
	return mustgather.Job{Gathering: g, Stop: stop, Archive: archive.NewWriter(io.Discard), Log: log}
}

func TestAGatheringWithAnImageIsToldTheProcessGathererIgnoresIt(t *testing.T) {
	tests := []struct {
		name    string
		g       mustgather.Gathering
		wantErr string
		wantLog []string
	}{
		{
			name:    "an image without a command fails saying that the image is ignored",
			g:       mustgather.Gathering{ID: 1, Image: "quay.io/kubev2v/forklift-must-gather:latest"},
			wantErr: "the process gatherer runs `command` on this machine and ignores image \"quay.io/kubev2v/forklift-must-gather:latest\"; send a command, or configure a Kubernetes cluster (KUBECONFIG) to run images",
		},
		{
			name:    "an image stream without a command fails saying that the image stream is ignored",
			g:       mustgather.Gathering{ID: 2, ImageStream: "openshift/must-gather:latest"},
			wantErr: "the process gatherer runs `command` on this machine and ignores image-stream \"openshift/must-gather:latest\"; send a command, or configure a Kubernetes cluster (KUBECONFIG) to run images",
		},
		{
			name: "an image with a command runs the command and says in the output that the image is ignored",
			g:    mustgather.Gathering{ID: 3, Image: "quay.io/a/b:1", Command: "echo gathered"},
			wantLog: []string{
				"[must-gather-functions] the process gatherer ignores image \"quay.io/a/b:1\" and runs the command on this machine\n",
				"gathered\n",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var log bytes.Buffer
			err := (&Gatherer{TempDir: t.TempDir()}).Gather(ctx, newJob(ctx, tt.g, &log))
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Errorf("error:\n got %q\nwant %q", gotErr, tt.wantErr)
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(log.String(), want) {
					t.Errorf("output %q does not hold %q", log.String(), want)
				}
			}
		})
	}
}
