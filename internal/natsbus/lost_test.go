package natsbus_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// pullDropper stands between NATS clients and a server and, when armed,
// drops the next pull request a client sends, as a cluster loses one whose
// consumer leader goes away before it has handed the request on: the
// connection stays up, and neither an answer nor a heartbeat ever comes.
type pullDropper struct {
	ln      net.Listener
	server  string
	armed   atomic.Bool
	dropped chan struct{}
	wg      sync.WaitGroup
}

func startPullDropper(t *testing.T, server string) *pullDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &pullDropper{ln: ln, server: server, dropped: make(chan struct{}, 1)}
	d.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				c.Close()
				continue
			}
			d.wg.Go(func() {
				_, _ = io.Copy(c, s)
				c.Close()
			})
			d.wg.Go(func() {
				d.forward(c, s)
				s.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		d.wg.Wait()
	})
	return d
}

func (d *pullDropper) url() string { return "nats://" + d.ln.Addr().String() }

// forward copies the client's protocol to the server, operation by
// operation, leaving out a pull request when armed.
func (d *pullDropper) forward(client net.Conn, server net.Conn) {
	defer client.Close()
	r := bufio.NewReader(client)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		op := line
		var payload []byte
		// PUB <subject> [reply] <size> and HPUB <subject> [reply]
		// <header size> <size> are followed by <size> bytes and CRLF.
		if f := strings.Fields(line); len(f) >= 3 && (strings.EqualFold(f[0], "PUB") || strings.EqualFold(f[0], "HPUB")) {
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return
			}
			payload = make([]byte, n+2)
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			if strings.HasPrefix(f[1], "$JS.API.CONSUMER.MSG.NEXT.") && d.armed.CompareAndSwap(true, false) {
				d.dropped <- struct{}{}
				continue
			}
		}
		if _, err := server.Write(append([]byte(op), payload...)); err != nil {
			return
		}
	}
}

func TestAConsumerWhosePullRequestIsLostReceivesTheNextEvent(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	dropper := startPullDropper(t, strings.TrimPrefix(srv.ClientURL(), "nats://"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := natsbus.Config{Stream: "EVENTS", SubjectPrefix: "mg"}
	pubJS, err := jetstream.New(testenv.Conn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := natsbus.New(ctx, pubJS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(dropper.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := natsbus.New(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The consumer's first pull request is lost; it makes no other until
	// it learns that this one was.
	dropper.armed.Store(true)
	handled := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- bus.Consume(ctx, natsbus.ConsumerConfig{Durable: "runner", Filter: bus.RequestedSubject()},
			func(ctx context.Context, e cloudevents.Event) error {
				handled <- struct{}{}
				return nil
			})
	}()
	select {
	case <-dropper.dropped:
	case <-time.After(time.Minute):
		t.Fatal("the consumer made no pull request within a minute")
	}
	published := time.Now()
	if err := pub.Requested(ctx, gathering(7)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(2 * time.Minute):
		t.Fatal("the event was not received within 2 minutes")
	}
	t.Logf("the event was received %s after its publication", time.Since(published).Round(time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Consume: %v", err)
	}
}
