package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/internal/kubegather"
)

// config is every setting, read once from the environment. Each field
// names its variable; README.md has the same table.
type config struct {
	Functions []string // FUNCTIONS: api,runner,recorder or all

	Port        int    // PORT
	HTTPAddress string // HTTP_ADDRESS: host:port, overrides PORT
	LogFormat   string // LOG_FORMAT: text or json
	LogLevel    string // LOG_LEVEL: debug, info, warn, error

	DataDir string // DATA_DIR

	NATSURL          string // NATS_URL: empty = embedded server
	NATSCreds        string // NATS_CREDS
	NATSEmbeddedHost string // NATS_EMBEDDED_HOST
	NATSEmbeddedPort int    // NATS_EMBEDDED_PORT

	KVBucket     string        // KV_BUCKET
	LeaseBucket  string        // LEASE_BUCKET
	LeaseTTL     time.Duration // LEASE_TTL
	EventsStream string        // EVENTS_STREAM
	EventsPrefix string        // EVENTS_SUBJECT
	EventsMaxAge time.Duration // EVENTS_MAX_AGE

	ArchiveStore string // ARCHIVE_STORE: dir or s3
	ArchiveDir   string // ARCHIVE_DIR
	S3Endpoint   string // S3_ENDPOINT
	S3AccessKey  string // S3_ACCESS_KEY
	S3SecretKey  string // S3_SECRET_KEY
	S3Bucket     string // S3_BUCKET
	S3Region     string // S3_REGION
	S3UseTLS     bool   // S3_USE_TLS
	S3PartSize   uint64 // S3_PART_SIZE

	DefaultTimeout time.Duration // DEFAULT_TIMEOUT
	MaxTimeout     time.Duration // MAX_TIMEOUT
	TargetNS       string        // FORKLIFT_NAMESPACE

	RunnerConcurrency int           // RUNNER_CONCURRENCY
	FinishGrace       time.Duration // RUNNER_FINISH_GRACE
	CopyTimeout       time.Duration // RUNNER_COPY_TIMEOUT
	RequeueAfter      time.Duration // RUNNER_REQUEUE_AFTER
	PendingTimeout    time.Duration // RUNNER_PENDING_TIMEOUT
	ReapInterval      time.Duration // RUNNER_REAP_INTERVAL
	ProcessTempDir    string        // PROCESS_TEMP_DIR

	Gatherer          string            // GATHERER: auto, kube or process
	Kubeconfig        string            // KUBECONFIG
	KubeContexts      []string          // KUBE_CONTEXTS
	Servers           []string          // the server names of KUBE_CONTEXTS
	DefaultImage      string            // MUST_GATHER_IMAGE
	NamespacePrefix   string            // MUST_GATHER_NAMESPACE_PREFIX
	NodeSelector      map[string]string // MUST_GATHER_NODE_SELECTOR
	HostNetwork       bool              // MUST_GATHER_HOST_NETWORK
	MaxParallelImages int               // MUST_GATHER_MAX_PARALLEL
	ImagePullGrace    time.Duration     // MUST_GATHER_IMAGE_PULL_GRACE
	LeftoverGrace     time.Duration     // MUST_GATHER_LEFTOVER_GRACE
	SweepInterval     time.Duration     // MUST_GATHER_SWEEP_INTERVAL

	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT

	APIBodyTimeout time.Duration // API_BODY_TIMEOUT
}

var allFunctions = []string{"api", "runner", "recorder"}

// minReapInterval is the shortest RUNNER_REAP_INTERVAL: a pass reads every
// unfinished gathering, so a shorter one would only load NATS.
const minReapInterval = 100 * time.Millisecond

func (c config) has(fn string) bool { return slices.Contains(c.Functions, fn) }

// embedded reports whether this process runs its own NATS server.
func (c config) embedded() bool { return c.NATSURL == "" }

func loadConfig(args []string, getenv func(string) string) (config, error) {
	e := env{getenv: getenv}
	c := config{
		Port:             e.int("PORT", 8080),
		HTTPAddress:      e.str("HTTP_ADDRESS", ""),
		LogFormat:        e.str("LOG_FORMAT", ""),
		LogLevel:         e.str("LOG_LEVEL", "info"),
		DataDir:          e.str("DATA_DIR", "data"),
		NATSURL:          e.str("NATS_URL", ""),
		NATSCreds:        e.str("NATS_CREDS", ""),
		NATSEmbeddedHost: e.str("NATS_EMBEDDED_HOST", "127.0.0.1"),
		NATSEmbeddedPort: e.int("NATS_EMBEDDED_PORT", 4222),
		KVBucket:         e.str("KV_BUCKET", "must-gather"),
		LeaseBucket:      e.str("LEASE_BUCKET", "must-gather-leases"),
		LeaseTTL:         e.duration("LEASE_TTL", 30*time.Second),
		EventsStream:     e.str("EVENTS_STREAM", "MUST_GATHER"),
		EventsPrefix:     e.str("EVENTS_SUBJECT", "mustgather"),
		EventsMaxAge:     e.duration("EVENTS_MAX_AGE", 72*time.Hour),
		ArchiveStore:     e.str("ARCHIVE_STORE", ""),
		ArchiveDir:       e.str("ARCHIVE_DIR", ""),
		S3Endpoint:       e.str("S3_ENDPOINT", ""),
		S3AccessKey:      e.str("S3_ACCESS_KEY", ""),
		S3SecretKey:      e.str("S3_SECRET_KEY", ""),
		S3Bucket:         e.str("S3_BUCKET", "must-gather"),
		S3Region:         e.str("S3_REGION", ""),
		S3UseTLS:         e.bool("S3_USE_TLS", true),
		S3PartSize:       uint64(e.int("S3_PART_SIZE", 16<<20)),
		DefaultTimeout:   e.duration("DEFAULT_TIMEOUT", 10*time.Minute),
		MaxTimeout:       e.duration("MAX_TIMEOUT", time.Hour),
		TargetNS:         e.str("FORKLIFT_NAMESPACE", "openshift-mtv"),

		RunnerConcurrency: e.int("RUNNER_CONCURRENCY", 4),
		FinishGrace:       e.duration("RUNNER_FINISH_GRACE", 60*time.Second),
		CopyTimeout:       e.duration("RUNNER_COPY_TIMEOUT", 10*time.Minute),
		RequeueAfter:      e.duration("RUNNER_REQUEUE_AFTER", 30*time.Second),
		PendingTimeout:    e.duration("RUNNER_PENDING_TIMEOUT", 30*time.Minute),
		ReapInterval:      e.duration("RUNNER_REAP_INTERVAL", 15*time.Second),
		ProcessTempDir:    e.str("PROCESS_TEMP_DIR", ""),

		Gatherer:          e.str("GATHERER", "auto"),
		Kubeconfig:        e.str("KUBECONFIG", ""),
		KubeContexts:      e.list("KUBE_CONTEXTS"),
		DefaultImage:      e.str("MUST_GATHER_IMAGE", "quay.io/kubev2v/forklift-must-gather:latest"),
		NamespacePrefix:   e.str("MUST_GATHER_NAMESPACE_PREFIX", "openshift-must-gather-"),
		NodeSelector:      e.labels("MUST_GATHER_NODE_SELECTOR"),
		HostNetwork:       e.bool("MUST_GATHER_HOST_NETWORK", false),
		MaxParallelImages: e.int("MUST_GATHER_MAX_PARALLEL", 4),
		ImagePullGrace:    e.duration("MUST_GATHER_IMAGE_PULL_GRACE", 2*time.Minute),
		LeftoverGrace:     e.duration("MUST_GATHER_LEFTOVER_GRACE", 15*time.Minute),
		SweepInterval:     e.duration("MUST_GATHER_SWEEP_INTERVAL", 5*time.Minute),
		ShutdownTimeout:   e.duration("SHUTDOWN_TIMEOUT", 90*time.Second),

		APIBodyTimeout: e.duration("API_BODY_TIMEOUT", api.DefaultBodyTimeout),
	}
	fns := e.str("FUNCTIONS", "all")
	if len(args) > 1 {
		fns = args[1]
	}
	for _, f := range strings.Split(fns, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "all":
			c.Functions = append(c.Functions, allFunctions...)
		case slices.Contains(allFunctions, f):
			c.Functions = append(c.Functions, f)
		default:
			e.errs = append(e.errs, fmt.Errorf("FUNCTIONS: unknown function %q (want api, runner, recorder or all)", f))
		}
	}
	slices.Sort(c.Functions)
	c.Functions = slices.Compact(c.Functions)
	if c.ArchiveStore == "" {
		c.ArchiveStore = "dir"
		if c.S3Endpoint != "" {
			c.ArchiveStore = "s3"
		}
	}
	if c.ArchiveDir == "" {
		c.ArchiveDir = filepath.Join(c.DataDir, "archives")
	}
	if c.HTTPAddress == "" {
		host := ""
		if c.embedded() {
			host = "127.0.0.1"
		}
		c.HTTPAddress = fmt.Sprintf("%s:%d", host, c.Port)
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if getenv("KUBERNETES_SERVICE_HOST") != "" {
			c.LogFormat = "json"
		}
	}
	switch {
	case c.ArchiveStore != "dir" && c.ArchiveStore != "s3":
		e.errs = append(e.errs, fmt.Errorf("ARCHIVE_STORE: %q is neither dir nor s3", c.ArchiveStore))
	case c.ArchiveStore == "s3" && c.S3Endpoint == "":
		e.errs = append(e.errs, fmt.Errorf("S3_ENDPOINT: required with ARCHIVE_STORE=s3"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		e.errs = append(e.errs, fmt.Errorf("LOG_FORMAT: %q is neither text nor json", c.LogFormat))
	}
	if c.DefaultTimeout <= 0 || c.MaxTimeout <= 0 || c.DefaultTimeout > c.MaxTimeout {
		e.errs = append(e.errs, fmt.Errorf("DEFAULT_TIMEOUT (%s) must be > 0 and <= MAX_TIMEOUT (%s)", c.DefaultTimeout, c.MaxTimeout))
	}
	if c.RunnerConcurrency < 1 {
		e.errs = append(e.errs, fmt.Errorf("RUNNER_CONCURRENCY: must be at least 1"))
	}
	if entries, err := kubegather.ParseContexts(c.KubeContexts); err != nil {
		e.errs = append(e.errs, fmt.Errorf("KUBE_CONTEXTS: %w", err))
	} else {
		for _, en := range entries {
			c.Servers = append(c.Servers, en.Server)
		}
	}
	if c.Gatherer != "auto" && c.Gatherer != "kube" && c.Gatherer != "process" {
		e.errs = append(e.errs, fmt.Errorf("GATHERER: %q is not auto, kube or process", c.Gatherer))
	}
	if c.ReapInterval < minReapInterval {
		e.errs = append(e.errs, fmt.Errorf("RUNNER_REAP_INTERVAL: must be at least %s", minReapInterval))
	}
	if c.LeaseTTL < 3*time.Second {
		e.errs = append(e.errs, fmt.Errorf("LEASE_TTL: must be at least 3s"))
	}
	return c, joinErrs(e.errs)
}

type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) str(key, def string) string {
	if v := strings.TrimSpace(e.getenv(key)); v != "" {
		return v
	}
	return def
}

func (e *env) int(key string, def int) int {
	v := e.str(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a whole number", key, v))
		return def
	}
	return n
}

func (e *env) list(key string) []string {
	var out []string
	for _, v := range strings.Split(e.str(key, ""), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// labels reads key=value pairs separated by commas.
func (e *env) labels(key string) map[string]string {
	pairs := e.list(key)
	if len(pairs) == 0 {
		return nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			e.errs = append(e.errs, fmt.Errorf("%s: %q is not key=value", key, p))
			continue
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

func (e *env) bool(key string, def bool) bool {
	v := e.str(key, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not true or false", key, v))
		return def
	}
	return b
}

func (e *env) duration(key string, def time.Duration) time.Duration {
	v := e.str(key, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a positive duration such as 30s or 10m", key, v))
		return def
	}
	return d
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return fmt.Errorf("configuration: %s", strings.Join(msgs, "; "))
}
