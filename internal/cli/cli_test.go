package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/client"
)

func TestTheServiceProxyURLNamesTheAPIServerAndTheService(t *testing.T) {
	for _, tt := range []struct {
		name, host, ns, svc, want string
	}{
		{"a host with a scheme", "https://api.example.com:6443", "must-gather-functions", DefaultKubeService,
			"https://api.example.com:6443/api/v1/namespaces/must-gather-functions/services/http:must-gather-functions-api-cli:80/proxy"},
		{"a host without a scheme, as client-go reads it", "api.example.com:6443", "ns", "svc",
			"http://api.example.com:6443/api/v1/namespaces/ns/services/svc/proxy"},
		{"an API server under a path", "https://gw.example.com/k8s/", "ns", "https:svc:8443",
			"https://gw.example.com/k8s/api/v1/namespaces/ns/services/https:svc:8443/proxy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proxyURL(&rest.Config{Host: tt.host}, tt.ns, tt.svc)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := proxyURL(&rest.Config{Host: "https://h"}, "ns", "a/b"); err == nil {
		t.Error("a service with a slash was taken")
	}
}

func TestExitCodesTellWhatWentWrong(t *testing.T) {
	apiErr := func(status int) error { return fmt.Errorf("wrapped: %w", &client.APIError{StatusCode: status}) }
	for _, tt := range []struct {
		err  error
		want int
	}{
		{&gatheringError{&client.Gathering{ID: 1, Status: client.StatusError}}, ExitFailed},
		{&usageError{"bad"}, ExitUsage},
		{apiErr(400), ExitUsage},
		{apiErr(404), ExitNotFound},
		{apiErr(401), ExitDenied},
		{apiErr(403), ExitDenied},
		{apiErr(503), ExitUnavailable},
		{apiErr(429), ExitUnavailable},
		{apiErr(409), ExitNotReady},
		{apiErr(412), ExitNotReady},
		{fmt.Errorf("gathering 3 is new: %w", client.ErrNotEnded), ExitNotReady},
		{apiErr(500), ExitFailed},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, ExitUnavailable},
		{errors.New("disk full"), ExitFailed},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestProgressOffATerminalWritesALinePerPhase(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b)
	p.update("new", "gathering 1: new")
	p.update("inprogress", "gathering 1: inprogress 1")
	p.update("inprogress", "gathering 1: inprogress 2")
	p.update("", "gathering 1: downloading 10 B")
	p.update("saved", "gathering 1: saved")
	p.done()
	if got, want := b.String(), "gathering 1: new\ngathering 1: inprogress 1\ngathering 1: saved\n"; got != want || strings.Contains(got, "\r") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestProgressOnATerminalRewritesItsLine(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, terminal: true}
	p.update("new", "one")
	p.update("inprogress", "two")
	p.update("completed", strings.Repeat("x", 100))
	p.done()
	if got, want := b.String(), "\rone\x1b[K\rtwo\x1b[K\r"+strings.Repeat("x", 78)+"…\x1b[K\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSizesReadAsPeopleReadThem(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
