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

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/functions/notifier"
	"github.com/kubev2v/must-gather-functions/functions/recorder"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/functions/web"
	"github.com/kubev2v/must-gather-functions/internal/auth"
	"github.com/kubev2v/must-gather-functions/internal/dirstore"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/presign"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/view"
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
	log.Info("starting", "functions", cfg.Functions, "http", cfg.HTTPAddress, "events", cfg.Transport, "nats", natsWhere(cfg), "archives", cfg.ArchiveStore)
	if (cfg.has("api") || cfg.has("notifier")) && !cfg.Auth {
		log.Warn("authorization is off: anyone who reaches the API can start gatherings and download archives")
	}

	d, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.stopNATS()

	srv, ln, err := startHTTP(cfg, d, stdout)
	if err != nil {
		return err
	}
	errc := make(chan error, 4)
	runners, recorders := newGroup(ctx), newGroup(ctx)
	defer runners.cancel()
	defer recorders.cancel()
	if cfg.has("recorder") {
		startRecorder(cfg, d, recorders, errc)
	}
	if cfg.has("notifier") {
		// Delivery to subscribers follows the status events as the
		// recorder does, and stops with it, after the runner's last ones.
		if err := startSinks(ctx, cfg, d, recorders, errc); err != nil {
			_ = ln.Close()
			return err
		}
	}
	if cfg.has("runner") {
		if err := startRunner(cfg, d, runners, errc, getenv); err != nil {
			_ = ln.Close()
			return err
		}
	}
	if cfg.has("trigger") {
		// The trigger stops with the runner, before the recorder.
		if err := startTrigger(cfg, d, runners, errc, getenv); err != nil {
			_ = ln.Close()
			return err
		}
	}
	if d.notifier != nil {
		startNotifier(d, srv, errc)
	}
	if d.view != nil {
		startView(d, srv)
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
	shutDown(cfg, d, srv, runners, recorders)
	return runErr
}

// deps are what the functions of one process share.
type deps struct {
	log      *slog.Logger
	reg      *prometheus.Registry
	nc       *nats.Conn
	natsURL  string // where NATS is, without its password
	stopNATS func()
	js       jetstream.JetStream
	store    *jsstore.Store
	bus      *natsbus.Bus
	// With EVENTS_TRANSPORT=http, sink sends events (nil in a process
	// that sends none) and receiver takes them on POST /.
	sink     *httpevents.Sink
	receiver *httpevents.Receiver
	archives mustgather.ArchiveStore
	// pingArchives reports whether the archive store answers.
	pingArchives func(context.Context) error
	// links makes download links of archives; its Link method is the
	// function others (the API, subscriber delivery) are given.
	links presign.Linker
	// notifier serves the event streams, when this process runs it.
	notifier *notifier.Notifier
	// view holds the gatherings in memory for the API, when this process
	// runs it.
	view *view.View
	// stopping is set when shutdown begins, so that the process reports
	// itself not ready.
	stopping atomic.Bool
}

// connect connects to NATS (or starts the embedded server), and opens the
// store, the bus and the archive store.
func connect(ctx context.Context, cfg config, log *slog.Logger) (*deps, error) {
	// Setup gets its own deadline so that a wrong address fails fast.
	setup, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	d := &deps{log: log, reg: prometheus.NewRegistry()}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	d.nc, d.natsURL, d.stopNATS, err = connectNATS(setup, cfg, log)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*deps, error) {
		d.stopNATS()
		return nil, err
	}
	if d.js, err = jetstream.New(d.nc); err != nil {
		return fail(fmt.Errorf("jetstream: %w", err))
	}
	if d.store, err = jsstore.New(setup, d.js, cfg.Store); err != nil {
		return fail(err)
	}
	if d.bus, err = natsbus.New(setup, d.js, cfg.Bus); err != nil {
		return fail(err)
	}
	if err = d.openTransport(cfg); err != nil {
		return fail(err)
	}
	if d.archives, d.pingArchives, err = openArchives(setup, cfg); err != nil {
		return fail(explainS3TLS(err))
	}
	if d.links, err = newLinks(cfg, d); err != nil {
		return fail(err)
	}
	return d, nil
}

// ready reports whether NATS, the store and the archive store answer.
func (d *deps) ready(ctx context.Context) error {
	if d.stopping.Load() {
		return errors.New("shutting down")
	}
	if !d.nc.IsConnected() {
		return fmt.Errorf("nats: %s", d.nc.Status())
	}
	errs := []error{d.store.Ping(ctx), d.pingArchives(ctx)}
	if d.notifier != nil {
		errs = append(errs, d.notifier.Ready(ctx))
	}
	if d.view != nil {
		errs = append(errs, d.view.Ready(ctx))
	}
	return errors.Join(errs...)
}

// startHTTP listens on HTTP_ADDRESS with the API, or, in a process without
// it, with only the health, readiness and metrics endpoints the API also
// serves, /metrics under the same authorization; with the notifier's event
// streams beside them when it runs. It does not serve yet.
func startHTTP(cfg config, d *deps, stdout io.Writer) (*http.Server, net.Listener, error) {
	a := cfg.API
	a.Logger = d.log
	a.Ready, a.Registry = d.ready, d.reg
	if cfg.Auth {
		clusters, err := kubegather.LoadClusters(cfg.Kubeconfig, cfg.KubeContexts)
		if err != nil {
			return nil, nil, fmt.Errorf("authorization needs the clusters to review tokens against: %w", err)
		}
		if a.Auth, err = auth.New(clusters, cfg.AuthReview); err != nil {
			return nil, nil, err
		}
	}
	if cfg.has("notifier") {
		d.notifier = newNotifier(cfg, d, a.Guard())
		a.Routes = append(a.Routes, d.notifier.Routes()...)
	}
	var handler http.Handler
	if cfg.has("api") {
		a.Logger = d.log.With("function", "api")
		a.Store, a.Archives, a.Events = d.store, d.archives, d.events(eventing.SourceAPI)
		page, err := web.New(web.Config{Redact: cfg.API.Policy.Redact})
		if err != nil {
			return nil, nil, err
		}
		a.Web = page
		a.Links = d.links
		a.View = newView(d, cfg.View)
		handler = api.NewServer(a)
	} else {
		handler = api.NewOpsHandler(a)
	}
	handler = d.withReceiver(cfg, handler)
	srv := &http.Server{
		Addr:              cfg.HTTPAddress,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// ReadTimeout counts from a request's first byte and bounds the
		// bodies no handler reads. The API replaces it for the body of a
		// POST with its own deadline (API_BODY_TIMEOUT) once the headers
		// are in; the sum keeps the two in step.
		ReadTimeout: 10*time.Second + cfg.API.BodyTimeout,
		// Archives stream for as long as they take; WriteTimeout would cut
		// large downloads, so idle and header limits bound clients instead.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddress, err)
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		if ln, err = tlsListener(ln, cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, nil, err
		}
		scheme = "https"
	}
	if cfg.embedded() {
		fmt.Fprintf(stdout, "must-gather-functions: embedded NATS on %s\n", d.natsURL)
	}
	fmt.Fprintf(stdout, "must-gather-functions: listening on %s://%s\n", scheme, ln.Addr())
	return srv, ln, nil
}

// group is the goroutines of one function. They run until the group is
// cancelled, not until run's ctx ends, so that shutdown can stop the
// functions one after the other.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newGroup(ctx context.Context) *group {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &group{ctx: ctx, cancel: cancel}
}

// stop cancels the group and waits for its goroutines until deadline.
func (g *group) stop(deadline context.Context, log *slog.Logger, what string) {
	g.cancel()
	waitOrDeadline(deadline, &g.wg, log, what)
}

// startRecorder applies status events to the store, requiring their
// signature when a key is set.
func startRecorder(cfg config, d *deps, g *group, errc chan<- error) {
	log := d.log.With("function", "recorder")
	rec := recorder.New(d.store, log, d.reg, recorder.WithSigningKey([]byte(cfg.SigningKey)))
	receiveStatus(d, g, errc, rec, log)
}

// startRunner takes requested events with the configured gatherer, and
// runs the reaper and the sweeper of leftovers.
func startRunner(cfg config, d *deps, g *group, errc chan<- error, getenv func(string) string) error {
	log := d.log.With("function", "runner")
	gatherer, sweep, err := newGatherer(cfg, cfg.useKube(getenv), log)
	if err != nil {
		return err
	}
	if sweep != nil {
		g.wg.Go(func() { runSweeper(g.ctx, sweep, cfg.SweepInterval, log) })
	}
	rcfg := cfg.Runner
	rcfg.LeaseRenew = cfg.Store.LeaseTTL / 3
	slots, err := openSlots(g.ctx, cfg, d)
	if err != nil {
		return err
	}
	r := runner.New(rcfg, runner.Deps{
		Logger: log, Store: d.store, Leases: d.store, Slots: slots, Archives: d.archives,
		Events: d.events(eventing.SourceRunner), ReaperEvents: d.events(eventing.SourceReaper),
		Gatherer: gatherer, Registry: d.reg,
	})
	receiveRequested(cfg, d, g, errc, r, log)
	g.wg.Go(func() { r.RunReaper(g.ctx) })
	startRetention(cfg, d, g, r, log)
	return nil
}

// shutDown stops taking requests, stops the runner, lets the recorder
// apply what the runner last reported, and stops the recorder, all within
// SHUTDOWN_TIMEOUT. NATS is closed by run.
func shutDown(cfg config, d *deps, srv *http.Server, runners, recorders *group) {
	d.stopping.Store(true)
	deadline, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(deadline); err != nil {
		d.log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	runners.stop(deadline, d.log, "runner")
	if cfg.has("recorder") && d.receiver == nil {
		drain(deadline, d.js, cfg.Bus.Stream, "recorder", d.log)
	}
	recorders.stop(deadline, d.log, "recorder")
	d.log.Info("stopped")
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
		return fmt.Sprintf("embedded on %s:%d, data in %s", cfg.NATS.EmbeddedHost, cfg.NATS.EmbeddedPort, filepath.Join(cfg.DataDir, "nats"))
	}
	return redactURLs(cfg.NATS.URL)
}

// unanswered reports whether a failed connection attempt may succeed
// later: no server answered, or the network failed. A server's refusal,
// including a TLS alert such as "certificate required", will not change.
func unanswered(err error) bool {
	if errors.Is(err, nats.ErrTLS) {
		return false
	}
	if op, ok := errors.AsType[*net.OpError](err); ok {
		return op.Op != "remote error" // crypto/tls's Op for an alert from the peer
	}
	return errors.Is(err, nats.ErrNoServers)
}

// connectExternal connects to NATS_URL. A server that does not answer yet
// is waited for until ctx ends, as NATS may start after this process; one
// that answers and refuses (a certificate that does not verify, wrong
// credentials) fails at once, since waiting would not change its mind.
// Errors name the URL with its password redacted.
func connectExternal(ctx context.Context, n natsConfig, opts []nats.Option) (*nats.Conn, error) {
	where := redactURLs(n.URL)
	if n.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.CAFile))
	}
	if n.CertFile != "" {
		opts = append(opts, nats.ClientCert(n.CertFile, n.KeyFile))
	}
	nc, err := nats.Connect(n.URL, opts...)
	if err == nil {
		return nc, nil
	}
	if !unanswered(err) {
		return nil, fmt.Errorf("connect to %s: %w", where, err)
	}
	var last atomic.Pointer[error] // the error of the latest attempt
	opts = append(opts, nats.RetryOnFailedConnect(true), nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { last.Store(&err) }))
	nc, err = nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", where, err)
	}
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			if err := last.Load(); err != nil {
				return nil, fmt.Errorf("connect to %s: %w; last attempt: %w", where, ctx.Err(), *err)
			}
			return nil, fmt.Errorf("connect to %s: %w", where, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nc, nil
}

// connectNATS connects to NATS_URL, or starts the embedded server first.
func connectNATS(ctx context.Context, cfg config, log *slog.Logger) (nc *nats.Conn, url string, stop func(), err error) {
	closed := make(chan struct{})
	// Once: a first connection that fails may be closed before the one
	// that succeeds.
	closeOnce := sync.OnceFunc(func() { close(closed) })
	opts := []nats.Option{
		nats.ClosedHandler(func(*nats.Conn) { closeOnce() }),
		nats.Name("must-gather-functions"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is the connection closing on shutdown.
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		// ConnectedUrlRedacted would keep a token, which stands where a user does.
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", redactURLs(c.ConnectedUrl())) }),
	}
	if cfg.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATS.Creds))
	}
	if !cfg.embedded() {
		nc, err := connectExternal(ctx, cfg.NATS, opts)
		if err != nil {
			return nil, "", nil, err
		}
		return nc, redactURLs(cfg.NATS.URL), func() { _ = nc.Drain() }, nil
	}
	s, err := natsserver.Start(ctx, natsserver.Options{
		Host: cfg.NATS.EmbeddedHost, Port: cfg.NATS.EmbeddedPort,
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
	stop = func() {
		// Drain returns at once and closes the connection when it is done;
		// stop the server after that, but let no stuck drain hold up the
		// shutdown for more than a moment.
		_ = nc.Drain()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
		}
		s.Stop()
	}
	return nc, s.ClientURL(), stop, nil
}

func openArchives(ctx context.Context, cfg config) (mustgather.ArchiveStore, func(context.Context) error, error) {
	if cfg.ArchiveStore == "s3" {
		s, err := s3store.New(ctx, cfg.S3)
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
