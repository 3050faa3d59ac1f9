package kubegather

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
)

// execServer is an API server that only serves exec in pod ns/p, over
// SPDY (v4) and WebSocket (v5) as current API servers do, or only over
// WebSocket, as one without SPDY or behind a proxy that refuses it would. It writes stdout and then a status with exitCode.
type execServer struct {
	t        *testing.T
	stdout   []byte
	exitCode int
	noSPDY   bool // refuse SPDY, so the client falls back to WebSocket

	mu     sync.Mutex
	served []string // protocol of each exec served
	query  string
}

func (s *execServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/api/v1/namespaces/ns/pods/p/exec" {
		http.NotFound(w, req)
		return
	}
	s.mu.Lock()
	s.query = req.URL.RawQuery
	s.mu.Unlock()
	if wsstream.IsWebSocketRequest(req) {
		s.serveWebSocket(w, req)
		return
	}
	if s.noSPDY {
		http.Error(w, "spdy not supported", http.StatusBadRequest)
		return
	}
	s.serveSPDY(w, req)
}

func (s *execServer) seen() (served []string, query string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.served...), s.query
}

func (s *execServer) status() []byte {
	st := metav1.Status{Status: metav1.StatusSuccess}
	if s.exitCode != 0 {
		st = metav1.Status{
			Status: metav1.StatusFailure, Reason: remotecommand.NonZeroExitCodeReason,
			Message: "command terminated with non-zero exit code",
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: remotecommand.ExitCodeCauseType, Message: "2"}}},
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		s.t.Error(err)
	}
	return b
}

func (s *execServer) record(protocol string) {
	s.mu.Lock()
	s.served = append(s.served, protocol)
	s.mu.Unlock()
}

func (s *execServer) serveWebSocket(w http.ResponseWriter, req *http.Request) {
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		remotecommand.StreamProtocolV5Name: {Binary: true, Channels: []wsstream.ChannelType{
			wsstream.IgnoreChannel, wsstream.WriteChannel, wsstream.WriteChannel, wsstream.WriteChannel, wsstream.IgnoreChannel,
		}},
	})
	protocol, channels, err := conn.Open(w, req)
	if err != nil {
		s.t.Errorf("websocket: %v", err)
		return
	}
	defer conn.Close()
	s.record(protocol)
	// Write in pieces, as a command does.
	for b := s.stdout; len(b) > 0; {
		n := min(len(b), 32<<10)
		if _, err := channels[remotecommand.StreamStdOut].Write(b[:n]); err != nil {
			s.t.Errorf("websocket stdout: %v", err)
			return
		}
		b = b[n:]
	}
	if _, err := channels[remotecommand.StreamErr].Write(s.status()); err != nil {
		s.t.Errorf("websocket status: %v", err)
	}
}

func (s *execServer) serveSPDY(w http.ResponseWriter, req *http.Request) {
	protocol, err := httpstream.Handshake(req, w, []string{remotecommand.StreamProtocolV4Name})
	if err != nil {
		s.t.Errorf("spdy handshake: %v", err)
		return
	}
	type newStream struct {
		s     httpstream.Stream
		reply <-chan struct{}
	}
	streams := make(chan newStream, 4)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(st httpstream.Stream, reply <-chan struct{}) error {
		streams <- newStream{st, reply}
		return nil
	})
	if conn == nil {
		s.t.Error("spdy upgrade failed")
		return
	}
	defer conn.Close()
	s.record(protocol)
	got := map[string]httpstream.Stream{}
	for len(got) < 3 { // error, stdout, stderr
		select {
		case ns := <-streams:
			<-ns.reply
			got[ns.s.Headers().Get(corev1.StreamType)] = ns.s
		case <-time.After(10 * time.Second):
			s.t.Errorf("spdy: only streams %v", got)
			return
		}
	}
	if _, err := got[corev1.StreamTypeStdout].Write(s.stdout); err != nil {
		s.t.Errorf("spdy stdout: %v", err)
	}
	got[corev1.StreamTypeStdout].Close()
	got[corev1.StreamTypeStderr].Close()
	if s.exitCode != 0 {
		if _, err := got[corev1.StreamTypeError].Write(s.status()); err != nil {
			s.t.Errorf("spdy status: %v", err)
		}
	}
	got[corev1.StreamTypeError].Close()
}

func TestTheRealExecutorStreamsATarIntoTheArchive(t *testing.T) {
	// A real tar of a tree with a file large enough for many frames.
	dir := t.TempDir()
	big := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(big)
	if err := writeTree(dir, map[string]string{"namespaces/a/crs/plan/p.yaml": "kind: Plan\n", "big.bin": string(big)}); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	if err := tarDir(tw, dir); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		noSPDY       bool
		wantProtocol string
	}{
		{"over SPDY", false, remotecommand.StreamProtocolV4Name},
		{"over WebSocket when SPDY is refused", true, remotecommand.StreamProtocolV5Name},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &execServer{t: t, stdout: tarball.Bytes(), noSPDY: tt.noSPDY}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			ex, err := NewExecutor(&rest.Config{Host: hs.URL})
			if err != nil {
				t.Fatal(err)
			}

			var out bytes.Buffer
			aw := archive.NewWriter(&out)
			pr, pw := io.Pipe()
			execErr := make(chan error, 1)
			go func() {
				err := ex.Exec(context.Background(), "ns", "p", "copy", copyCommand("/must-gather/"), pw, io.Discard)
				pw.CloseWithError(err)
				execErr <- err
			}()
			if err := aw.AddTar(context.Background(), "img", pr); err != nil {
				t.Fatalf("AddTar: %v", err)
			}
			_, _ = io.Copy(io.Discard, pr)
			if err := <-execErr; err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if err := aw.Close(); err != nil {
				t.Fatal(err)
			}

			files := readTarGz(t, out.Bytes())
			if got, want := len(files["img/big.bin"]), len(big); got != want || files["img/big.bin"] != string(big) {
				t.Errorf("big.bin is %d bytes or differs, want %d", got, want)
			}
			if got := files["img/namespaces/a/crs/plan/p.yaml"]; got != "kind: Plan\n" {
				t.Errorf("p.yaml = %q", got)
			}
			served, query := srv.seen()
			if diff := cmp.Diff([]string{tt.wantProtocol}, served); diff != "" {
				t.Errorf("protocols (-want +got):\n%s", diff)
			}
			for _, want := range []string{"container=copy", "command=tar", "command=cf", "command=%2Fmust-gather", "stdout=true", "stderr=true"} {
				if !strings.Contains(query, want) {
					t.Errorf("query %q lacks %s", query, want)
				}
			}
		})
	}
}

func TestTheRealExecutorReportsTheExitCodeAndRunsTheCommandOnce(t *testing.T) {
	tests := []struct {
		name         string
		stdout       string
		noSPDY       bool
		wantProtocol string
	}{
		{"over SPDY", "partial", false, remotecommand.StreamProtocolV4Name},
		{"over SPDY, without output", "", false, remotecommand.StreamProtocolV4Name},
		{"over WebSocket when SPDY is refused", "partial", true, remotecommand.StreamProtocolV5Name},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &execServer{t: t, stdout: []byte(tt.stdout), exitCode: 2, noSPDY: tt.noSPDY}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			ex, err := NewExecutor(&rest.Config{Host: hs.URL})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = ex.Exec(context.Background(), "ns", "p", "copy", []string{"false"}, &out, io.Discard)
			if code, ok := exitCode(err); !ok || code != 2 {
				t.Errorf("exit code %d, %v from %v; want 2", code, ok, err)
			}
			if out.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", out.String(), tt.stdout)
			}
			// An exit status is an answer: the command is not run again.
			if served, _ := srv.seen(); !slices.Equal(served, []string{tt.wantProtocol}) {
				t.Errorf("served %q, want one exec over %s", served, tt.wantProtocol)
			}
		})
	}
}

func TestTheRealLogFollowerFollowsUntilCancelled(t *testing.T) {
	queries := make(chan string, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/api/v1/namespaces/ns/pods/p/log" {
			http.NotFound(w, req)
			return
		}
		queries <- req.URL.RawQuery
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "2026-01-02T03:04:06Z first\n")
		w.(http.Flusher).Flush()
		// Following: nothing more until the client goes.
		<-req.Context().Done()
	}))
	defer hs.Close()
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := NewLogFollower(kube).Follow(ctx, "ns", "p", "gather")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	line, err := br.ReadString('\n')
	if err != nil || line != "2026-01-02T03:04:06Z first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	query := <-queries
	for _, want := range []string{"container=gather", "follow=true", "timestamps=true"} {
		if !strings.Contains(query, want) {
			t.Errorf("query %q lacks %s", query, want)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := br.ReadString('\n')
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read after cancel succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end when its context was cancelled")
	}
}

func TestTheRealLogFollowerReportsAMissingPod(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound,
			Message: `pods "p" not found`,
		})
	}))
	defer hs.Close()
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewLogFollower(kube).Follow(context.Background(), "ns", "p", "gather")
	if err == nil || !strings.Contains(err.Error(), `pods "p" not found`) {
		t.Errorf("error %v, want not found", err)
	}
}

func readTarGz(t *testing.T, b []byte) map[string]string {
	t.Helper()
	return archivetest.ReadTarGz(t, bytes.NewReader(b))
}
