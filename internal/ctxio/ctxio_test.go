package ctxio_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/kubev2v/must-gather-functions/internal/ctxio"
)

func TestAReaderStopsWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ctxio.Reader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil || string(buf) != "abc" {
		t.Fatalf("read %d %q %v", n, buf[:n], err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %d %v", n, err)
	}
	if b, err := io.ReadAll(ctxio.Reader(context.Background(), strings.NewReader("xyz"))); string(b) != "xyz" || err != nil {
		t.Errorf("ReadAll %q %v", b, err)
	}
}
