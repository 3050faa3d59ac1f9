package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/functions/recorder"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/internal/dirstore"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
)

// run wires the configured functions and serves until ctx ends, then shuts
// down in order: stop taking requests, stop the runner (its gatherings end
// in error and are archived and reported), let the recorder apply what is
// left, close NATS.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", "functions", cfg.Functions, "http", cfg.HTTPAddress, "nats", natsWhere(cfg), "archives", cfg.ArchiveStore)
	if cfg.has("api") {
		log.Warn("authorization is off: anyone who reaches the API can start gatherings and download archives")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Setup gets its own deadline so that a wrong address fails fast.
	setup, cancelSetup := context.WithTimeout(ctx, 60*time.Second)
	defer cancelSetup()

	nc, natsURL, stopNATS, err := connectNATS(setup, cfg, log)
	if err != nil {
		return err
	}
	defer stopNATS()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	store, err := jsstore.New(setup, js, jsstore.Config{Bucket: cfg.KVBucket, LeaseBucket: cfg.LeaseBucket, LeaseTTL: cfg.LeaseTTL})
	if err != nil {
		return err
	}
	bus, err := natsbus.New(setup, js, natsbus.Config{Stream: cfg.EventsStream, Subject: cfg.EventsPrefix, MaxAge: cfg.EventsMaxAge})
	if err != nil {
		return err
	}
	archives, pingArchives, err := openArchives(setup, cfg)
	if err != nil {
		return err
	}
	cancelSetup()

	var stopping atomic.Bool
	ready := func(ctx context.Context) error {
		if stopping.Load() {
			return errors.New("shutting down")
		}
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return errors.Join(store.Ping(ctx), pingArchives(ctx))
	}

	var handler http.Handler
	if cfg.has("api") {
		handler = api.NewServer(api.Deps{
			Logger: log.With("function", "api"), Store: store, Archives: archives, Events: bus,
			Policy: mustgather.Policy{
				DefaultTimeout: cfg.DefaultTimeout, MaxTimeout: cfg.MaxTimeout, TargetNamespace: cfg.TargetNS,
				Servers: cfg.Servers,
			},
			Ready: ready, Registry: reg,
			BodyTimeout: cfg.APIBodyTimeout,
		})
	} else {
		handler = opsHandler(ready, reg)
	}
	srv := &http.Server{
		Addr:              cfg.HTTPAddress,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// ReadTimeout counts from a request's first byte and bounds the
		// bodies no handler reads. The API replaces it for the body of a
		// POST with its own deadline (API_BODY_TIMEOUT) once the headers
		// are in; the sum keeps the two in step.
		ReadTimeout: 10*time.Second + cfg.APIBodyTimeout,
		// Archives stream for as long as they take; WriteTimeout would cut
		// large downloads, so idle and header limits bound clients instead.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddress, err)
	}
	if cfg.embedded() {
		fmt.Fprintf(stdout, "must-gather-functions: embedded NATS on %s\n", natsURL)
	}
	fmt.Fprintf(stdout, "must-gather-functions: listening on http://%s\n", ln.Addr())

	// Consumers run until workCtx ends; it ends after the HTTP server stops.
	runnerCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	recorderCtx, stopRecorder := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRunner()
	defer stopRecorder()
	var runners, recorders sync.WaitGroup
	errc := make(chan error, 4)

	if cfg.has("recorder") {
		rec := recorder.New(store, log.With("function", "recorder"), reg)
		recorders.Go(func() {
			errc <- bus.Consume(recorderCtx, natsbus.ConsumerConfig{
				Durable: "recorder", Filter: bus.StatusSubject(0), Concurrency: 64, Logger: log.With("function", "recorder"),
			}, rec.Handle)
		})
	}
	if cfg.has("runner") {
		rcfg := runner.DefaultConfig()
		rcfg.DefaultTimeout = cfg.DefaultTimeout
		rcfg.FinishGrace = cfg.FinishGrace
		rcfg.CopyTimeout = cfg.CopyTimeout
		rcfg.RequeueAfter = cfg.RequeueAfter
		rcfg.PendingTimeout = cfg.PendingTimeout
		rcfg.ReapInterval = cfg.ReapInterval
		rcfg.LeaseRenew = cfg.LeaseTTL / 3
		rlog := log.With("function", "runner")
		gatherer, sweep, err := newGatherer(cfg, cfg.useKube(getenv), rlog)
		if err != nil {
			return err
		}
		if sweep != nil {
			runners.Go(func() { runSweeper(runnerCtx, sweep, cfg.SweepInterval, rlog) })
		}
		run := runner.New(rcfg, runner.Deps{
			Logger: rlog, Store: store, Leases: store, Archives: archives,
			Events: bus, ReaperEvents: bus.WithSource(eventing.SourceReaper),
			Gatherer: gatherer, Registry: reg,
		})
		runners.Go(func() {
			errc <- bus.Consume(runnerCtx, natsbus.ConsumerConfig{
				Durable: "runner", Filter: bus.RequestedSubject(), Concurrency: cfg.RunnerConcurrency, AckWait: cfg.LeaseTTL, Logger: rlog,
			}, run.Handle)
		})
		runners.Go(func() { run.RunReaper(runnerCtx) })
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("stopping after failure", "err", runErr)
	}
	stopping.Store(true)
	deadline, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(deadline); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	stopRunner()
	waitOrDeadline(deadline, &runners, log, "runner")
	if cfg.has("recorder") {
		drain(deadline, js, cfg.EventsStream, "recorder", log)
	}
	stopRecorder()
	waitOrDeadline(deadline, &recorders, log, "recorder")
	log.Info("stopped")
	return runErr
}

// drain waits, within the deadline, until the recorder has applied every
// status event in the stream, so that the final statuses the runner just
// published are recorded before the process ends.
func drain(ctx context.Context, js jetstream.JetStream, stream, durable string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		c, err := js.Consumer(ctx, stream, durable)
		if err == nil {
			info, err := c.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			log.Warn("recorder not drained before shutdown; the rest is applied at the next start")
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitOrDeadline(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("gave up waiting", "for", what)
	}
}

func natsWhere(cfg config) string {
	if cfg.embedded() {
		return fmt.Sprintf("embedded on %s:%d, data in %s", cfg.NATSEmbeddedHost, cfg.NATSEmbeddedPort, filepath.Join(cfg.DataDir, "nats"))
	}
	return cfg.NATSURL
}

// connectNATS connects to NATS_URL, or starts the embedded server first.
func connectNATS(ctx context.Context, cfg config, log *slog.Logger) (nc *nats.Conn, url string, stop func(), err error) {
	opts := []nats.Option{
		nats.Name("must-gather-functions"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is the connection closing on shutdown.
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if !cfg.embedded() {
		nc, err = nats.Connect(cfg.NATSURL, append(opts, nats.RetryOnFailedConnect(true))...)
		if err != nil {
			return nil, "", nil, fmt.Errorf("connect to %s: %w", cfg.NATSURL, err)
		}
		for !nc.IsConnected() {
			select {
			case <-ctx.Done():
				nc.Close()
				return nil, "", nil, fmt.Errorf("connect to %s: %w", cfg.NATSURL, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nc, cfg.NATSURL, func() { _ = nc.Drain() }, nil
	}
	s, err := natsserver.Start(ctx, natsserver.Options{
		Host: cfg.NATSEmbeddedHost, Port: cfg.NATSEmbeddedPort,
		StoreDir: filepath.Join(cfg.DataDir, "nats"), Logger: natsLogger{log.With("component", "nats-server")},
	})
	if err != nil {
		return nil, "", nil, err
	}
	nc, err = s.Connect(opts...)
	if err != nil {
		s.Stop()
		return nil, "", nil, fmt.Errorf("connect to embedded nats-server: %w", err)
	}
	log.Info("embedded nats-server ready", "url", s.ClientURL(), "store", filepath.Join(cfg.DataDir, "nats"))
	return nc, s.ClientURL(), func() { _ = nc.Drain(); waitClosed(nc); s.Stop() }, nil
}

func waitClosed(nc *nats.Conn) {
	for i := 0; i < 100 && !nc.IsClosed(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

func openArchives(ctx context.Context, cfg config) (mustgather.ArchiveStore, func(context.Context) error, error) {
	if cfg.ArchiveStore == "s3" {
		s, err := s3store.New(ctx, s3store.Config{
			Endpoint: cfg.S3Endpoint, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
			Region: cfg.S3Region, Bucket: cfg.S3Bucket, UseTLS: cfg.S3UseTLS, PartSize: cfg.S3PartSize,
		})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Ping, nil
	}
	if err := os.MkdirAll(cfg.ArchiveDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("archive directory: %w", err)
	}
	s, err := dirstore.New(cfg.ArchiveDir)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Ping, nil
}

// opsHandler serves health and metrics for processes without the API.
func opsHandler(ready func(context.Context) error, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// natsLogger routes the embedded server's log into slog.
type natsLogger struct{ l *slog.Logger }

var _ server.Logger = natsLogger{}

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
