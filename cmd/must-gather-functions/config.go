package main

//go:generate go test -run ^TestREADMESettingsTableIsTheSettingsTable$ . -args -update

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/functions/notifier"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks"
	"github.com/kubev2v/must-gather-functions/functions/runner"
	"github.com/kubev2v/must-gather-functions/functions/trigger"
	"github.com/kubev2v/must-gather-functions/internal/auth"
	"github.com/kubev2v/must-gather-functions/internal/httpevents"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/presign"
	"github.com/kubev2v/must-gather-functions/internal/process"
	"github.com/kubev2v/must-gather-functions/internal/redact"
	"github.com/kubev2v/must-gather-functions/internal/s3store"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// config is every setting, read once from the environment by loadConfig
// through the table of settings. A package's settings are that package's
// own Config, starting from its DefaultConfig; the command's own settings
// start from defaultConfig.
type config struct {
	functions string   // FUNCTIONS as given
	Functions []string // what FUNCTIONS (or the first argument) names, sorted

	Port        int
	HTTPAddress string
	// MaxHeaderBytes bounds the request line and headers of one request.
	MaxHeaderBytes int
	// TLSCertFile and TLSKeyFile, when set, make the HTTP server serve
	// HTTPS with them (httptls.go).
	TLSCertFile string
	TLSKeyFile  string
	LogFormat   string
	LogLevel    string
	DataDir     string

	NATS natsConfig

	Store jsstore.Config
	Bus   natsbus.Config

	// Transport is how events travel: transportNATS or transportHTTP.
	Transport string
	// Sink configures sending events to K_SINK with transportHTTP.
	Sink httpevents.Config
	// SigningKey signs every event sent and is required of every status
	// event the recorder applies; empty: no signatures.
	SigningKey string

	ArchiveStore string
	ArchiveDir   string
	S3           s3store.Config
	// Presign is how download links are made (GET /must-gather/{id}/url).
	Presign presign.Config

	// API holds the API's settings (Policy, BodyTimeout); its dependencies
	// are added when it starts.
	API api.Deps
	// View is the API's view of the gatherings (its logger is added when
	// the API starts).
	View view.Config

	auth string // AUTH as given
	// redactRules is REDACT_RULES as given: rules added to the built-in
	// redaction rules (c.Runner.Redact.Rules).
	redactRules string
	// Auth says whether the API reviews bearer tokens: AUTH, or its
	// default rule.
	Auth bool
	// AuthReview is how tokens are reviewed; the clusters are added when
	// the API starts.
	AuthReview auth.Config

	Notifier notifier.Config

	Runner            runner.Config
	RunnerConcurrency int
	// Process holds the process gatherer's settings; its logger is added
	// when the runner starts.
	Process process.Gatherer

	Gatherer      string
	Kubeconfig    string
	KubeContexts  []string
	Kube          kubegather.Config
	SweepInterval time.Duration

	ShutdownTimeout time.Duration

	// Trigger starts gatherings on failed Forklift migrations when the
	// trigger function runs and TriggerOn is set; TriggerBucket is the KV
	// bucket of the migrations it has acted on.
	TriggerOn     bool
	Trigger       trigger.Config
	TriggerBucket string

	// Sinks is the delivery of final events to subscribers; its stream
	// and bucket names are derived from the events stream and the KV
	// bucket when it starts.
	Sinks sinks.Config
}

// natsConfig says which NATS to connect to, or how to run the embedded one.
type natsConfig struct {
	URL   string // empty: the embedded server; secret, as it may hold a password
	Creds string // credentials file
	// CAFile, CertFile and KeyFile are PEM files: the CA that signed the
	// server's certificate, and the client's certificate and key.
	CAFile       string
	CertFile     string
	KeyFile      string
	EmbeddedHost string
	EmbeddedPort int
}

// defaultConfig is the configuration without any variable set: each
// package's defaults, and the command's own.
func defaultConfig() config {
	c := config{
		functions: "all",
		Port:      8080,
		// A bearer token is at most 16 KiB (the API refuses longer ones);
		// this leaves room for it and every usual header.
		MaxHeaderBytes: 64 << 10,
		LogLevel:       "info",
		DataDir:        "data",
		NATS:           natsConfig{EmbeddedHost: "127.0.0.1", EmbeddedPort: 4222},
		Store:          jsstore.DefaultConfig(),
		Bus:            natsbus.DefaultConfig(),
		Transport:      transportNATS,
		Sink:           httpevents.DefaultConfig(),
		S3:             s3store.DefaultConfig(),
		Presign:        presign.DefaultConfig(),
		API: api.Deps{
			Policy:      mustgather.DefaultPolicy(),
			BodyTimeout: api.DefaultBodyTimeout,
			PostRate:    api.DefaultPostRate,
			PostBurst:   api.DefaultPostBurst,
		},
		View:              view.DefaultConfig(),
		AuthReview:        auth.DefaultConfig(),
		Notifier:          notifier.DefaultConfig(),
		Runner:            runner.DefaultConfig(),
		RunnerConcurrency: 4,
		Gatherer:          "auto",
		Kube:              kubegather.DefaultConfig(),
		SweepInterval:     5 * time.Minute,
		ShutdownTimeout:   90 * time.Second,
		Sinks:             sinks.DefaultConfig(),
		TriggerOn:         true,
		Trigger:           trigger.DefaultConfig(),
		TriggerBucket:     "must-gather-triggered",
	}
	// The API checks the image the Kubernetes gatherer runs by default
	// against the allow-list: one setting, MUST_GATHER_IMAGE.
	c.API.Policy.DefaultImage = c.Kube.DefaultImage
	return c
}

// settings is the table of every variable: the field it sets, and the
// README's text. The default is the field's value in defaultConfig, or,
// where the zero value stands for a rule applied after reading, Default
// describes that rule. README.md's settings table is generated from this
// one (go generate).
func (c *config) settings() []setting {
	return []setting{
		{Var: "FUNCTIONS", Field: &c.functions, Help: "which functions this process runs: comma-separated `api`, `runner`, `recorder`, `notifier`, `trigger`, or `all`; the first command-line argument overrides it"},
		{Var: "PORT", Field: &c.Port, Help: "HTTP port (Knative's convention)"},
		{Var: "HTTP_ADDRESS", Field: &c.HTTPAddress, Default: "`127.0.0.1:$PORT` with embedded NATS, else `:$PORT`", Help: "full listen address; overrides `PORT`"},
		{Var: "HTTP_MAX_HEADER_BYTES", Field: &c.MaxHeaderBytes, Help: "the most bytes a request's line and headers may take (at least 16384, as a bearer token may be 16 KiB); more is answered `431 Request Header Fields Too Large` before any handler runs"},
		{Var: "HTTP_TLS_CERT_FILE", Field: &c.TLSCertFile, Default: "empty: plain HTTP", Help: "PEM certificate (chain) to serve HTTPS with, such as the `tls.crt` of a Secret that OpenShift's service CA fills; needs `HTTP_TLS_KEY_FILE`. Read again when it changes, so a renewed certificate needs no restart"},
		{Var: "HTTP_TLS_KEY_FILE", Field: &c.TLSKeyFile, Help: "PEM key of `HTTP_TLS_CERT_FILE`"},
		{Var: "LOG_FORMAT", Field: &c.LogFormat, Default: "`json` in a cluster (`KUBERNETES_SERVICE_HOST` set), else `text`", Help: "`text` or `json` (log/slog)"},
		{Var: "LOG_LEVEL", Field: &c.LogLevel, Help: "`debug`, `info`, `warn` or `error`"},
		{Var: "DATA_DIR", Field: &c.DataDir, Help: "where the embedded NATS store (`nats/`) and local archives (`archives/`) live"},
		{Var: "NATS_URL", Field: &c.NATS.URL, Default: "empty: embedded server", Secret: true, Help: "NATS server URL(s) with JetStream, e.g. `nats://nats:4222`, `tls://user:password@nats:4222` (logs and errors show it with the password redacted)"},
		{Var: "NATS_CREDS", Field: &c.NATS.Creds, Help: "NATS credentials file (`.creds`: user JWT and NKey seed)"},
		{Var: "NATS_CA_FILE", Field: &c.NATS.CAFile, Default: "system roots", Help: "PEM file of the CA that signed NATS's certificate; turns on TLS"},
		{Var: "NATS_CERT_FILE", Field: &c.NATS.CertFile, Help: "PEM client certificate for NATS (TLS client authentication); needs `NATS_KEY_FILE`"},
		{Var: "NATS_KEY_FILE", Field: &c.NATS.KeyFile, Help: "PEM key of `NATS_CERT_FILE`"},
		{Var: "NATS_EMBEDDED_HOST", Field: &c.NATS.EmbeddedHost, Help: "listen host of the embedded NATS"},
		{Var: "NATS_EMBEDDED_PORT", Field: &c.NATS.EmbeddedPort, Help: "listen port of the embedded NATS for NATS tools; `-1` picks a free one"},
		{Var: "NATS_REPLICAS", Field: &c.Store.Replicas, Also: []any{&c.Bus.Replicas, &c.Sinks.Replicas}, Help: "copies of the events stream and of every KV bucket and stream the functions make (records, leases, ids, the trigger's marks, the subscribers' deliveries and dead letters), from `1` to `5`: on a JetStream cluster of three nodes, `3` keeps every gathering, event and status through the loss of any one node (see [On a NATS cluster](#on-a-nats-cluster)). `1` with the embedded server"},
		{Var: "KV_BUCKET", Field: &c.Store.Bucket, Help: "KV bucket of gathering records"},
		{Var: "LEASE_BUCKET", Field: &c.Store.LeaseBucket, Help: "KV bucket of runner leases"},
		{Var: "SLOT_BUCKET", Field: &c.Store.SlotBucket, Help: "KV bucket of the run slots of `RUNNER_MAX_RUNNING` and the gatherings waiting for one"},
		{Var: "LEASE_TTL", Field: &c.Store.LeaseTTL, Help: "a runner's lease lapses this long after its last renewal (renewed every third of it); at least `3s`"},
		{Var: "EVENTS_STREAM", Field: &c.Bus.Stream, Help: "JetStream stream of the events"},
		{Var: "EVENTS_SUBJECT", Field: &c.Bus.SubjectPrefix, Help: "subject prefix of the events"},
		{Var: "EVENTS_MAX_AGE", Field: &c.Bus.MaxAge, Help: "how long events are kept in the stream"},
		{Var: "EVENTS_TRANSPORT", Field: &c.Transport, Help: "how events travel: `nats` (the JetStream stream and its durable consumers) or `http` (CloudEvents over HTTP as Knative delivers them: the runner and recorder take them on `POST /`, and the api and runner send theirs to `K_SINK`); see [Events](#events)"},
		{Var: "K_SINK", Field: &c.Sink.Sink, Help: "with `EVENTS_TRANSPORT=http`, where the api and the runner send events (a SinkBinding sets it to the Broker's address); required there"},
		{Var: "K_CE_OVERRIDES", Field: &c.Sink.Overrides, Help: "JSON `{\"extensions\": {…}}` added to every event sent to `K_SINK` (a SinkBinding sets it)"},
		{Var: "K_CA_CERTS", Field: &c.Sink.CACerts, Default: "empty: system roots", Help: "PEM certificates that `K_SINK`'s certificate may chain to, besides the system's (a SinkBinding sets it)"},
		{Var: "EVENTS_SINK_RETRY_FOR", Field: &c.Sink.RetryFor, Help: "how long an event that `K_SINK` does not take is retried, with exponential back-off, before it is kept as a dead-letter record in the events stream (subject `<EVENTS_SUBJECT>.deadletter`)"},
		{Var: "EVENTS_SIGNING_KEY", Field: &c.SigningKey, Secret: true, Default: "empty: events are not signed", Help: "at least 32 bytes (`openssl rand -hex 32`) shared by every function: each event sent carries its HMAC-SHA256 in the `mgfsignature` extension, and the recorder applies only status events signed with it"},
		{Var: "ARCHIVE_STORE", Field: &c.ArchiveStore, Default: "`s3` if `S3_ENDPOINT` is set, else `dir`", Help: "where archives go"},
		{Var: "ARCHIVE_DIR", Field: &c.ArchiveDir, Default: "`$DATA_DIR/archives`", Help: "folder of the `dir` store"},
		{Var: "S3_ENDPOINT", Field: &c.S3.Endpoint, Help: "S3 endpoint `host:port`"},
		{Var: "S3_ACCESS_KEY", Field: &c.S3.AccessKey, Secret: true, Help: "S3 access key"},
		{Var: "S3_SECRET_KEY", Field: &c.S3.SecretKey, Secret: true, Help: "S3 secret key"},
		{Var: "S3_BUCKET", Field: &c.S3.Bucket, Help: "bucket; created if missing"},
		{Var: "S3_REGION", Field: &c.S3.Region, Help: "region, if the server needs one"},
		{Var: "S3_USE_TLS", Field: &c.S3.UseTLS, Help: "HTTPS to S3"},
		{Var: "S3_PART_SIZE", Field: &c.S3.PartSize, Help: "multipart part size in bytes: the upload buffers one part, so it bounds memory per upload"},
		{Var: "S3_RETRY_FOR", Field: &c.S3.RetryFor, Help: "how long an upload waits for S3 to answer again (down, restarting, unreachable), retrying each request with a back-off of 200 ms doubling to 1 s; longer, and the gathering ends in `error` saying that S3 did not answer for more than this, its unfinished upload aborted once S3 is back (within as long again; past that, the bucket's lifecycle rule aborts it after a day)"},
		{Var: "S3_CA_FILE", Field: &c.S3.CAFile, Default: "system roots", Help: "PEM file of the CA(s) that signed the S3 endpoint's certificate (a private CA), trusted besides the system's roots"},
		{Var: "S3_PUBLIC_ENDPOINT", Field: &c.S3.PublicEndpoint, Default: "`S3_ENDPOINT`", Help: "the S3 endpoint browsers reach, `host:port` (scheme as `S3_USE_TLS`) or `https://host[:port]`: download links are signed for it, without connecting to it (see [Downloads](#downloads))"},
		{Var: "DOWNLOAD_URL_TTL", Field: &c.Presign.TTL, Help: "how long a download link from `GET /must-gather/{id}/url` works: whole seconds, from `1s` to `168h` (S3's limits)"},
		{Var: "DOWNLOAD_URL_SECRET", Field: &c.Presign.Secret, Default: "empty: a random key per process", Secret: true, Help: "key (at least 32 bytes) that signs the download links of the local archive store; set the same one on every API replica, or a link works only on the replica that made it, and only until it restarts"},
		{Var: "API_PUBLIC_URL", Field: &c.Presign.PublicURL, Default: "empty: the request's scheme and host", Help: "the API's URL as clients reach it, e.g. `https://must-gather.example.com` or a proxy's path to it: the local archive store's download links start with it"},
		{Var: "API_TRUST_FORWARDED", Field: &c.API.TrustForwarded, Help: "without `API_PUBLIC_URL`, take the scheme and host of download links from `X-Forwarded-Proto` and `X-Forwarded-Host`; only behind a proxy that sets them"},
		{Var: "DEFAULT_TIMEOUT", Field: &c.API.Policy.DefaultTimeout, Also: []any{&c.Runner.DefaultTimeout, &c.Kube.DefaultTimeout}, Help: "timeout of a gathering that gives none (as `oc adm must-gather`)"},
		{Var: "MAX_TIMEOUT", Field: &c.API.Policy.MaxTimeout, Help: "the largest timeout a request may ask for"},
		{Var: "RUNNER_CONCURRENCY", Field: &c.RunnerConcurrency, Help: "gatherings one runner process runs at once"},
		{Var: "RUNNER_MAX_RUNNING", Field: &c.Runner.MaxRunning, Help: "gatherings that run at once in the whole deployment, however many runner processes there are (slots in JetStream KV, freed by `LEASE_TTL` when a runner dies); the others wait as `new`, in id order, saying so in `exec-output`. `0`: no cap"},
		{Var: "RUNNER_FINISH_GRACE", Field: &c.Runner.FinishGrace, Help: "on shutdown, how long archiving and reporting what was gathered may take"},
		{Var: "RUNNER_COPY_TIMEOUT", Field: &c.Runner.CopyTimeout, Help: "beyond a gathering's timeout, how long copying, archiving and cleanup may take: the hard end of a gathering"},
		{Var: "RUNNER_REQUEUE_AFTER", Field: &c.Runner.RequeueAfter, Help: "a gathering still `new` this long gets its requested event again"},
		{Var: "RUNNER_PENDING_TIMEOUT", Field: &c.Runner.PendingTimeout, Help: "a gathering still `new` this long fails"},
		{Var: "RUNNER_MAX_ARCHIVE_BYTES", Field: &c.Runner.MaxArchiveBytes, Help: "largest archive, compressed, in bytes; a gathering whose archive grows past it stops and ends in `error`, and its partial upload is aborted (nothing kept). `0`: no cap"},
		{Var: "RETENTION", Field: &c.Runner.Retention, Help: "how long an ended gathering and its archive are kept after its last update; `0`: for ever. With S3, the bucket also gets a lifecycle rule expiring `gatherings/` after this many days rounded up, plus one"},
		{Var: "RETENTION_INTERVAL", Field: &c.Runner.RetentionInterval, Help: "how often each runner deletes the gatherings older than `RETENTION`"},
		{Var: "REDACT_DEFAULT", Field: &c.API.Policy.Redact, Help: "whether a gathering whose request does not say (`redact`) has secrets redacted from its archive (see [Redaction](#redaction))"},
		{Var: "REDACT_RULES", Field: &c.redactRules, Default: "empty: the built-in rules only", Help: "redaction rules added to the built-in ones: a JSON array of `{\"name\", \"regex\", \"files\"}` objects, or the name of a file holding one; `regex` is Go syntax matched against each line (its group `mask`, if it has one, is what is redacted), `files` a `path.Match` glob of the archive paths it applies to (without `/`, of base names too)"},
		{Var: "REDACT_BUFFER_BYTES", Field: &c.Runner.Redact.BufferBytes, Help: "a file of at most this many bytes is redacted whole in memory (values replaced by `***REDACTED***`); a larger one is masked in place, line by line, keeping its size, with at most this much held"},
		{Var: "RUNNER_REAP_INTERVAL", Field: &c.Runner.ReapInterval, Help: "how often the reaper looks at unfinished gatherings; at least `100ms`. A gathering whose runner died is taken over (Kubernetes: re-attached to its pods) or fails at most `LEASE_TTL` plus this long after"},
		{Var: "PROCESS_TEMP_DIR", Field: &c.Process.TempDir, Default: "system temp dir", Help: "where the process gatherer makes each gathering's output folder"},
		{Var: "GATHERER", Field: &c.Gatherer, Help: "`kube`, `process`, or `auto`: kube when in a pod or `KUBECONFIG`/`KUBE_CONTEXTS` is set"},
		{Var: "KUBECONFIG", Field: &c.Kubeconfig, Help: "kubeconfig file; its current context is the default cluster (in a pod: the in-cluster config)"},
		{Var: "KUBE_CONTEXTS", Field: &c.KubeContexts, Help: "comma-separated `name=context` or `context` entries: the clusters a request's `server` may name"},
		{Var: "MUST_GATHER_IMAGE", Field: &c.Kube.DefaultImage, Also: []any{&c.API.Policy.DefaultImage}, Help: "image of a gathering that names neither `image` nor `image-stream`, when the cluster records no must-gather image of an installed Forklift (ForkliftController, its operator's ClusterServiceVersion or Deployment: see \"The image that matches the installed Forklift\")"},
		{Var: "MUST_GATHER_ALLOWED_IMAGES", Field: &c.API.Policy.AllowedImages, Also: []any{&c.Kube.AllowedImages}, Default: "empty: any image", Help: "comma-separated patterns (Go's `path.Match`: `*` matches anything but `/`), e.g. `quay.io/kubev2v/*`: when set, a request whose `image` (each of the list), `image-stream` (as `namespace/name:tag`) or, naming neither, `MUST_GATHER_IMAGE` matches none is answered 400; the image an `image-stream` resolves to, and the installed Forklift's must-gather image found at run time, must match one too, or the gathering ends in `error` saying so"},
		{Var: "MUST_GATHER_NAMESPACE_PREFIX", Field: &c.Kube.NamespacePrefix, Help: "prefix of the temporary namespaces"},
		{Var: "MUST_GATHER_NODE_SELECTOR", Field: &c.Kube.NodeSelector, Help: "`key=value,…` node selector added to the gather pods the scheduler places (a request's `node-name` or `node-selector` pins them instead)"},
		{Var: "MUST_GATHER_MAX_PARALLEL", Field: &c.Kube.MaxParallel, Help: "pods of one gathering that run at once"},
		{Var: "MUST_GATHER_COPY_ATTEMPTS", Field: &c.Kube.CopyAttempts, Help: "how many times in all an image's copy stream (`tar` over exec) is opened when it breaks off; a new one reads on where the last broke (see [The archive](#the-archive))"},
		{Var: "MUST_GATHER_IMAGE_PULL_GRACE", Field: &c.Kube.ImagePullGrace, Help: "how long an image may fail to pull before its pod fails"},
		{Var: "MUST_GATHER_ADMISSION_RETRY", Field: &c.Kube.AdmissionRetry, Help: "how long a gather pod that admission refuses (webhook, ValidatingAdmissionPolicy, forbidden while the namespace's cluster-admin binding propagates) or admits under a restricted SCC is created again, with backoff; then it fails, or runs under that SCC, and `exec-output` says so"},
		{Var: "MUST_GATHER_LEFTOVER_GRACE", Field: &c.Kube.LeftoverGrace, Help: "added to a gathering's timeout: after that its namespace is a leftover for the sweeper"},
		{Var: "MUST_GATHER_SWEEP_INTERVAL", Field: &c.SweepInterval, Help: "how often the runner deletes leftovers of crashed runners (namespaces; with the process gatherer, processes and folders)"},
		{Var: "SHUTDOWN_TIMEOUT", Field: &c.ShutdownTimeout, Help: "how long a graceful shutdown (SIGTERM) may take"},
		{Var: "API_BODY_TIMEOUT", Field: &c.API.BodyTimeout, Help: "how long the body of a `POST /must-gather` may take to arrive in full; a slower one is answered 408"},
		{Var: "API_POST_RATE", Field: &c.API.PostRate, Help: "gatherings one user (the token's username; with `AUTH=off`, the client address) may start a minute once the burst is spent; more are answered 429 with `Retry-After`. `0`: no limit. Counted in each API replica on its own"},
		{Var: "API_POST_BURST", Field: &c.API.PostBurst, Help: "gatherings one user may start at once before `API_POST_RATE` applies"},
		{Var: "API_VIEW_OUTPUT_BYTES", Field: &c.View.OutputBytes, Help: "the longest `exec-output` a gathering is kept with in the API's memory (its view of the gatherings, see [Architecture](#architecture)); a gathering with a longer one is kept without its body, which each answer reads from the store"},
		{Var: "API_VIEW_SYNC_WAIT", Field: &c.View.Wait, Help: "how long a read waits for the API's view to hold every write acknowledged before the read began; then it reads the store"},
		{Var: "CORS_ORIGINS", Field: &c.API.CORSOrigins, Default: "empty: no CORS headers", Help: "comma-separated origins (`https://console.example.com`) whose pages may call the API from a browser, such as the Forklift console's; others get no CORS headers"},
		{Var: "AUTH", Field: &c.auth, Default: "`on`; `off` with embedded NATS on loopback and `HTTP_ADDRESS` on loopback", Help: "`on` or `off`: the API admits only bearer tokens of a cluster-admin (TokenReview and SubjectAccessReview against the gathering's cluster), and `/metrics` only those allowed to get it. `off` is refused unless `HTTP_ADDRESS` is on loopback"},
		{Var: "AUTH_CACHE_TTL", Field: &c.AuthReview.CacheTTL, Help: "how long a token's review is reused (kept under a SHA-256 of the token, never the token)"},
		{Var: "NOTIFIER_HEARTBEAT", Field: &c.Notifier.Heartbeat, Help: "how often an idle event stream gets a `: heartbeat` comment, so that proxies keep it open"},
		{Var: "NOTIFIER_CLIENT_BUFFER", Field: &c.Notifier.ClientBuffer, Help: "events an event stream may fall behind before it is ended (its client reconnects with `Last-Event-ID` and misses nothing)"},
		{Var: "NOTIFIER_MAX_CLIENTS", Field: &c.Notifier.MaxClients, Help: "event streams one process serves at once; more are answered 503 with `Retry-After`"},
		{Var: "AUTH_FORWARDED_TOKEN", Field: &c.API.ForwardedToken, Help: "take the token from `X-Forwarded-Access-Token`, as an OAuth proxy in front of the API sends it, when a request has that header"},
		{Var: "NOTIFIER_SINKS", Field: &c.Sinks.Sinks, Help: "comma-separated http(s) URLs that get each `gathering.completed` and `gathering.failed` CloudEvent (binary mode) from the processes that run the notifier; see [Subscribers](#subscribers)"},
		{Var: "NOTIFIER_SINK_SECRET", Field: &c.Sinks.Secret, Default: "empty: unsigned", Secret: true, Help: "key of the HMAC-SHA256 signature in `X-Must-Gather-Signature` of every delivery"},
		{Var: "NOTIFIER_SINK_PRESIGNED", Field: &c.Sinks.Presigned, Help: "add `download-url` and `download-url-expires-at`, a download that needs no token, to the events of completed gatherings: only for trusted sinks"},
		{Var: "NOTIFIER_SINK_RETRIES", Field: &c.Sinks.Retries, Help: "retries of a failed delivery to a sink before its dead letter"},
		{Var: "NOTIFIER_SINK_BACKOFF", Field: &c.Sinks.Backoff, Help: "delay before the first retry; doubled for each next one, with jitter"},
		{Var: "NOTIFIER_SINK_BACKOFF_MAX", Field: &c.Sinks.MaxBackoff, Help: "the longest delay between retries, also the longest `Retry-After` of a sink that is honoured"},
		{Var: "NOTIFIER_SINK_TIMEOUT", Field: &c.Sinks.Timeout, Help: "how long one delivery attempt may take"},
		{Var: "NOTIFIER_SINK_CA_FILE", Field: &c.Sinks.CAFile, Default: "system roots", Help: "PEM file of CAs that sign `https` sinks' certificates, trusted besides the system's roots"},
		{Var: "TRIGGER", Field: &c.TriggerOn, Help: "`false` switches the trigger off: no gathering starts by itself when a Forklift migration fails (see [Automatic gathering on a failed migration](#automatic-gathering-on-a-failed-migration))"},
		{Var: "TRIGGER_NAMESPACES", Field: &c.Trigger.Namespaces, Default: "empty: every namespace", Help: "comma-separated namespaces whose migrations the trigger acts on"},
		{Var: "TRIGGER_LOOKBACK", Field: &c.Trigger.Lookback, Help: "a migration that failed longer ago than this starts no gathering, also when the trigger starts and catches up on failures it missed"},
		{Var: "TRIGGER_REQUESTED_BY", Field: &c.Trigger.RequestedBy, Default: "in a pod, its ServiceAccount (`system:serviceaccount:<namespace>:<name>`); else `" + trigger.DefaultRequestedBy + "`", Help: "the `requested-by` of the gatherings the trigger starts"},
		{Var: "TRIGGER_BUCKET", Field: &c.TriggerBucket, Help: "KV bucket of the migrations the trigger has started a gathering for (one key per migration uid)"},
	}
}

var allFunctions = []string{"api", "runner", "recorder", "notifier", "trigger"}

// minReapInterval is the shortest RUNNER_REAP_INTERVAL: a pass reads every
// unfinished gathering, so a shorter one would only load NATS.
const minReapInterval = 100 * time.Millisecond

// maxReplicas is the most copies JetStream keeps of a stream.
const maxReplicas = 5

// minLeaseTTL is the shortest LEASE_TTL: a lease is renewed every third of
// it, and a renewal must fit in between.
const minLeaseTTL = 3 * time.Second

// isLoopback reports whether the listen address addr (host:port) takes
// connections only from this machine: an empty host, which listens on every
// interface, does not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c config) has(fn string) bool { return slices.Contains(c.Functions, fn) }

// embedded reports whether this process runs its own NATS server.
func (c config) embedded() bool { return c.NATS.URL == "" }

// loadConfig reads every setting of the table from getenv, applies the
// rules of the settings whose default depends on others, and checks what
// spans settings. The error joins every problem found, each naming its
// variable.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	c := defaultConfig()
	var errs []error
	for _, s := range c.settings() {
		if err := s.read(getenv); err != nil {
			errs = append(errs, err)
		}
	}
	fns := c.functions
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
			errs = append(errs, fmt.Errorf("FUNCTIONS: unknown function %q (want api, runner, recorder, notifier, trigger or all)", f))
		}
	}
	slices.Sort(c.Functions)
	c.Functions = slices.Compact(c.Functions)
	if c.ArchiveStore == "" {
		c.ArchiveStore = "dir"
		if c.S3.Endpoint != "" {
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
	loopback := isLoopback(c.HTTPAddress)
	switch strings.ToLower(c.auth) {
	case "":
		c.Auth = !(c.embedded() && isLoopback(net.JoinHostPort(c.NATS.EmbeddedHost, "0")) && loopback)
	case "on", "true":
		c.Auth = true
	case "off", "false":
		c.Auth = false
	default:
		errs = append(errs, fmt.Errorf("AUTH: %q is neither on nor off", c.auth))
	}
	if !c.Auth && !loopback && (c.has("api") || c.has("notifier")) {
		errs = append(errs, fmt.Errorf("AUTH: authorization may be off only while HTTP_ADDRESS is on loopback, not %q", c.HTTPAddress))
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if getenv("KUBERNETES_SERVICE_HOST") != "" {
			c.LogFormat = "json"
		}
	}
	switch {
	case c.ArchiveStore != "dir" && c.ArchiveStore != "s3":
		errs = append(errs, fmt.Errorf("ARCHIVE_STORE: %q is neither dir nor s3", c.ArchiveStore))
	case c.ArchiveStore == "s3" && c.S3.Endpoint == "":
		errs = append(errs, fmt.Errorf("S3_ENDPOINT: required with ARCHIVE_STORE=s3"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("HTTP_TLS_CERT_FILE and HTTP_TLS_KEY_FILE: set both or neither"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("LOG_FORMAT: %q is neither text nor json", c.LogFormat))
	}
	if p := c.API.Policy; p.DefaultTimeout <= 0 || p.MaxTimeout <= 0 || p.DefaultTimeout > p.MaxTimeout {
		errs = append(errs, fmt.Errorf("DEFAULT_TIMEOUT (%s) must be > 0 and <= MAX_TIMEOUT (%s)", p.DefaultTimeout, p.MaxTimeout))
	}
	if c.API.PostRate < 0 || c.API.PostBurst < 1 {
		errs = append(errs, fmt.Errorf("API_POST_RATE (%d) must be at least 0 and API_POST_BURST (%d) at least 1", c.API.PostRate, c.API.PostBurst))
	}
	if c.View.OutputBytes < 1 || c.View.Wait <= 0 {
		errs = append(errs, fmt.Errorf("API_VIEW_OUTPUT_BYTES (%d) must be at least 1 and API_VIEW_SYNC_WAIT (%s) above 0", c.View.OutputBytes, c.View.Wait))
	}
	if err := api.CheckOrigins(c.API.CORSOrigins); err != nil {
		errs = append(errs, fmt.Errorf("CORS_ORIGINS: %w", err))
	}
	if err := mustgather.CheckImagePatterns(c.API.Policy.AllowedImages); err != nil {
		errs = append(errs, fmt.Errorf("MUST_GATHER_ALLOWED_IMAGES: %w", err))
	}
	if c.MaxHeaderBytes < 16<<10 {
		errs = append(errs, fmt.Errorf("HTTP_MAX_HEADER_BYTES: %d is less than 16384, the size of the longest bearer token the API takes", c.MaxHeaderBytes))
	}
	if c.Notifier.ClientBuffer < 1 {
		errs = append(errs, fmt.Errorf("NOTIFIER_CLIENT_BUFFER: must be at least 1"))
	}
	if c.Notifier.MaxClients < 1 {
		errs = append(errs, fmt.Errorf("NOTIFIER_MAX_CLIENTS: must be at least 1"))
	}
	if c.RunnerConcurrency < 1 {
		errs = append(errs, fmt.Errorf("RUNNER_CONCURRENCY: must be at least 1"))
	}
	if c.Runner.MaxRunning < 0 {
		errs = append(errs, fmt.Errorf("RUNNER_MAX_RUNNING: must not be negative"))
	}
	if entries, err := kubegather.ParseContexts(c.KubeContexts); err != nil {
		errs = append(errs, fmt.Errorf("KUBE_CONTEXTS: %w", err))
	} else {
		for _, en := range entries {
			c.API.Policy.Servers = append(c.API.Policy.Servers, en.Server)
		}
	}
	if c.Gatherer != "auto" && c.Gatherer != "kube" && c.Gatherer != "process" {
		errs = append(errs, fmt.Errorf("GATHERER: %q is not auto, kube or process", c.Gatherer))
	}
	if c.Runner.ReapInterval < minReapInterval {
		errs = append(errs, fmt.Errorf("RUNNER_REAP_INTERVAL: must be at least %s", minReapInterval))
	}
	if c.Runner.Retention < 0 {
		errs = append(errs, fmt.Errorf("RETENTION: must not be negative"))
	}
	if c.Runner.RetentionInterval < minReapInterval {
		errs = append(errs, fmt.Errorf("RETENTION_INTERVAL: must be at least %s", minReapInterval))
	}
	switch r := c.Store.Replicas; {
	case r < 1 || r > maxReplicas:
		errs = append(errs, fmt.Errorf("NATS_REPLICAS: must be from 1 to %d (JetStream's most), not %d", maxReplicas, r))
	case r > 1 && c.embedded():
		errs = append(errs, fmt.Errorf("NATS_REPLICAS: %d needs NATS_URL naming a JetStream cluster; the embedded server is one node", r))
	}
	if c.Store.LeaseTTL < minLeaseTTL {
		errs = append(errs, fmt.Errorf("LEASE_TTL: must be at least %s", minLeaseTTL))
	}
	if rules, err := redact.ParseRules(c.redactRules); err != nil {
		errs = append(errs, fmt.Errorf("REDACT_RULES: %w", err))
	} else {
		c.Runner.Redact.Rules = rules
	}
	if c.Runner.Redact.BufferBytes < 4096 {
		errs = append(errs, fmt.Errorf("REDACT_BUFFER_BYTES: must be at least 4096"))
	}
	if err := sinks.CheckSinks(c.Sinks.Sinks); err != nil {
		errs = append(errs, fmt.Errorf("NOTIFIER_SINKS: %w", err))
	}
	if s := c.Sinks; s.Retries < 0 || s.MaxBackoff < s.Backoff {
		errs = append(errs, fmt.Errorf("NOTIFIER_SINK_RETRIES (%d) must be at least 0 and NOTIFIER_SINK_BACKOFF_MAX (%s) at least NOTIFIER_SINK_BACKOFF (%s)", s.Retries, s.MaxBackoff, s.Backoff))
	}
	errs = append(errs, c.checkEvents()...)
	errs = append(errs, c.NATS.check()...)
	errs = append(errs, c.checkDownloads()...)
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// check reports what is wrong with the NATS settings, never quoting
// NATS_URL, which may hold a password.
func (n natsConfig) check() []error {
	var errs []error
	if (n.CertFile == "") != (n.KeyFile == "") {
		errs = append(errs, errors.New("NATS_CERT_FILE and NATS_KEY_FILE: set both or neither"))
	}
	if n.URL == "" {
		if n.CAFile != "" || n.CertFile != "" || n.KeyFile != "" {
			errs = append(errs, errors.New("NATS_CA_FILE, NATS_CERT_FILE, NATS_KEY_FILE: need NATS_URL; the embedded server is reached in process, without TLS"))
		}
		return errs
	}
	for i, u := range strings.Split(n.URL, ",") {
		if _, err := url.Parse(strings.TrimSpace(u)); err != nil {
			// url's error quotes the URL, password and all.
			errs = append(errs, fmt.Errorf("NATS_URL: entry %d is not a URL", i+1))
		}
	}
	return errs
}

// redactURLs returns the comma-separated URLs of urls with their
// passwords, or a user that stands alone (a token), replaced; an entry
// that is not a URL is replaced whole.
func redactURLs(urls string) string {
	var out []string
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		switch {
		case err != nil:
			out = append(out, "redacted")
			continue
		case u.User == nil:
		case hasPassword(u.User):
			u.User = url.UserPassword(u.User.Username(), "redacted")
		default:
			u.User = url.User("redacted")
		}
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}

func hasPassword(u *url.Userinfo) bool { _, ok := u.Password(); return ok }
