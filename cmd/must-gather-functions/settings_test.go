package main

import (
	"errors"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubev2v/must-gather-functions/internal/process"
)

var update = flag.Bool("update", false, "rewrite the settings table in README.md")

const (
	readme         = "../../README.md"
	settingsBegin  = "<!-- settings: generated from the table in cmd/must-gather-functions/config.go by `go generate ./cmd/must-gather-functions`; edit it there -->\n"
	settingsFinish = "<!-- end of settings -->\n"
)

func TestREADMESettingsTableIsTheSettingsTable(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	before, rest, ok := strings.Cut(doc, settingsBegin)
	if !ok {
		t.Fatalf("README.md lacks the line %q", settingsBegin)
	}
	got, after, ok := strings.Cut(rest, settingsFinish)
	if !ok {
		t.Fatalf("README.md lacks the line %q after the settings table", settingsFinish)
	}
	c := defaultConfig()
	want := settingsMarkdown(c.settings())
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(readme, []byte(before+settingsBegin+want+settingsFinish+after), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's settings table is not the code's; run go generate ./cmd/must-gather-functions (-README +code):\n%s", cmp.Diff(got, want))
}

func TestEveryVariableHasOneRowAndOneField(t *testing.T) {
	c := defaultConfig()
	vars := map[string]bool{}
	fields := map[any]string{}
	for _, s := range c.settings() {
		if vars[s.Var] {
			t.Errorf("%s has two rows", s.Var)
		}
		vars[s.Var] = true
		for _, f := range append([]any{s.Field}, s.Also...) {
			if other, ok := fields[f]; ok {
				t.Errorf("%s and %s set the same field", other, s.Var)
			}
			fields[f] = s.Var
		}
		if s.Help == "" {
			t.Errorf("%s has no help", s.Var)
		}
	}
}

func TestNoVariableSetMeansThePackagesDefaults(t *testing.T) {
	got, err := loadConfig([]string{"x"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	// The settings whose default is a rule applied after reading.
	want.Functions = []string{"api", "notifier", "recorder", "runner", "trigger"}
	want.HTTPAddress = "127.0.0.1:8080"
	want.LogFormat = "text"
	want.ArchiveStore = "dir"
	want.ArchiveDir = "data/archives"
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(config{}), cmpopts.IgnoreUnexported(process.Gatherer{})); diff != "" {
		t.Errorf("config without variables (-want +got):\n%s", diff)
	}
}

func TestAVariableReachesThePackageThatUsesIt(t *testing.T) {
	env := map[string]string{
		"DEFAULT_TIMEOUT":            " 20m ",
		"MUST_GATHER_IMAGE":          "quay.io/example/gather:v1",
		"MUST_GATHER_NODE_SELECTOR":  "node-role.kubernetes.io/worker=, zone = a",
		"S3_PART_SIZE":               "8388608",
		"S3_USE_TLS":                 "false",
		"LEASE_TTL":                  "9s",
		"EVENTS_SUBJECT":             "mg",
		"KUBE_CONTEXTS":              "prod=admin@prod,staging",
		"PROCESS_TEMP_DIR":           "/var/tmp/gather",
		"API_BODY_TIMEOUT":           "5s",
		"RUNNER_REAP_INTERVAL":       "100ms",
		"API_POST_RATE":              "3",
		"API_POST_BURST":             "4",
		"CORS_ORIGINS":               "https://console.example.com",
		"MUST_GATHER_ALLOWED_IMAGES": "quay.io/example/*, quay.io/kubev2v/*",
		"NOTIFIER_HEARTBEAT":         "5s",
		"NOTIFIER_CLIENT_BUFFER":     "16",
		"NOTIFIER_MAX_CLIENTS":       "20",
	}
	c, err := loadConfig([]string{"x"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"the policy's default timeout", c.API.Policy.DefaultTimeout, 20 * time.Minute},
		{"the runner's default timeout", c.Runner.DefaultTimeout, 20 * time.Minute},
		{"the kubernetes gatherer's default timeout", c.Kube.DefaultTimeout, 20 * time.Minute},
		{"the image", c.Kube.DefaultImage, "quay.io/example/gather:v1"},
		{"the image the API checks against the allow-list", c.API.Policy.DefaultImage, "quay.io/example/gather:v1"},
		{"the allow-list", c.API.Policy.AllowedImages, []string{"quay.io/example/*", "quay.io/kubev2v/*"}},
		{"the allow-list the kubernetes gatherer checks resolved image streams against", c.Kube.AllowedImages, []string{"quay.io/example/*", "quay.io/kubev2v/*"}},
		{"the POST rate and burst", []int{c.API.PostRate, c.API.PostBurst}, []int{3, 4}},
		{"the CORS origins", c.API.CORSOrigins, []string{"https://console.example.com"}},
		{"the node selector", c.Kube.NodeSelector, map[string]string{"node-role.kubernetes.io/worker": "", "zone": "a"}},
		{"the part size", c.S3.PartSize, uint64(8 << 20)},
		{"TLS to S3", c.S3.UseTLS, false},
		{"the lease TTL", c.Store.LeaseTTL, 9 * time.Second},
		{"the subject prefix", c.Bus.SubjectPrefix, "mg"},
		{"the contexts", c.KubeContexts, []string{"prod=admin@prod", "staging"}},
		{"the server names", c.API.Policy.Servers, []string{"prod", "staging"}},
		{"the process gatherer's folder", c.Process.TempDir, "/var/tmp/gather"},
		{"the body timeout", c.API.BodyTimeout, 5 * time.Second},
		{"the reap interval", c.Runner.ReapInterval, 100 * time.Millisecond},
		{"the notifier's heartbeat, queue and streams", []any{c.Notifier.Heartbeat, c.Notifier.ClientBuffer, c.Notifier.MaxClients}, []any{5 * time.Second, 16, 20}},
	} {
		if diff := cmp.Diff(tt.want, tt.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestEveryBadSettingIsReportedAndCanBeTested(t *testing.T) {
	env := map[string]string{
		"PORT":                      "eighty",
		"S3_USE_TLS":                "maybe",
		"LEASE_TTL":                 "-5s",
		"MUST_GATHER_NODE_SELECTOR": "zone",
		"RUNNER_CONCURRENCY":        "0",
		"NOTIFIER_CLIENT_BUFFER":    "0",
	}
	_, err := loadConfig([]string{"x"}, func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`PORT: "eighty" is not a whole number`,
		`S3_USE_TLS: "maybe" is not true or false`,
		`LEASE_TTL: "-5s" is not a positive duration such as 30s or 10m`,
		`MUST_GATHER_NODE_SELECTOR: "zone" is not key=value`,
		`RUNNER_CONCURRENCY: must be at least 1`,
		`NOTIFIER_CLIENT_BUFFER: must be at least 1`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var vars []string
	for _, e := range err.(interface{ Unwrap() error }).Unwrap().(interface{ Unwrap() []error }).Unwrap() {
		if se, ok := errors.AsType[*settingError](e); ok {
			vars = append(vars, se.Var)
		}
	}
	if diff := cmp.Diff([]string{"PORT", "LEASE_TTL", "S3_USE_TLS", "MUST_GATHER_NODE_SELECTOR"}, vars); diff != "" {
		t.Errorf("variables found with errors.As (-want +got):\n%s", diff)
	}
	if !errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("errors.Is(err, strconv.ErrSyntax) is false for %v", err)
	}
}

func TestDurationsReadAsPeopleWriteThem(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{72 * time.Hour, "72h"},
		{10 * time.Minute, "10m"},
		{90 * time.Second, "90s"},
		{100 * time.Millisecond, "100ms"},
		{1500 * time.Microsecond, "1.5ms"},
	} {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAuthorizationIsOffOnlyOnLoopback(t *testing.T) {
	for _, tt := range []struct {
		name     string
		env      map[string]string
		wantAuth bool
		wantErr  string
	}{
		{"embedded NATS on loopback turns it off by default", nil, false, ""},
		{"external NATS turns it on by default", map[string]string{"NATS_URL": "nats://nats:4222"}, true, ""},
		{"embedded NATS on every interface turns it on by default", map[string]string{"HTTP_ADDRESS": ":8080"}, true, ""},
		{"AUTH=on turns it on on loopback", map[string]string{"AUTH": "on"}, true, ""},
		{"AUTH=off on loopback is allowed", map[string]string{"NATS_URL": "nats://nats:4222", "HTTP_ADDRESS": "localhost:8080", "AUTH": "off"}, false, ""},
		{"AUTH=off on every interface is refused", map[string]string{"HTTP_ADDRESS": ":8080", "AUTH": "off"}, false,
			`AUTH: authorization may be off only while HTTP_ADDRESS is on loopback, not ":8080"`},
		{"AUTH=off on an outside address is refused", map[string]string{"NATS_URL": "nats://nats:4222", "HTTP_ADDRESS": "10.0.0.1:8080", "AUTH": "off"}, false,
			`AUTH: authorization may be off only while HTTP_ADDRESS is on loopback, not "10.0.0.1:8080"`},
		{"a process without the API may listen anywhere", map[string]string{"FUNCTIONS": "runner", "NATS_URL": "nats://nats:4222", "AUTH": "off"}, false, ""},
		{"a notifier streams gatherings, so it is held to the API's rule", map[string]string{"FUNCTIONS": "notifier", "NATS_URL": "nats://nats:4222", "AUTH": "off"}, false,
			`AUTH: authorization may be off only while HTTP_ADDRESS is on loopback, not ":8080"`},
		{"AUTH must be on or off", map[string]string{"AUTH": "maybe"}, false, `AUTH: "maybe" is neither on nor off`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := loadOrWantErr(t, tt.env, tt.wantErr)
			if !ok {
				return
			}
			if c.Auth != tt.wantAuth {
				t.Errorf("Auth = %v, want %v", c.Auth, tt.wantAuth)
			}
		})
	}
}

func TestInputSettingsAreCheckedAtStart(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"origins and image patterns", map[string]string{"CORS_ORIGINS": "https://console.example.com, http://localhost:9000", "MUST_GATHER_ALLOWED_IMAGES": "quay.io/kubev2v/*"}, ""},
		{"no limit on POSTs", map[string]string{"API_POST_RATE": "0"}, ""},
		{"a wildcard origin is refused", map[string]string{"CORS_ORIGINS": "*"}, `CORS_ORIGINS: "*" is not an origin`},
		{"an origin with a path is refused", map[string]string{"CORS_ORIGINS": "https://console.example.com/ui"}, `CORS_ORIGINS: "https://console.example.com/ui" is not an origin`},
		{"a malformed image pattern is refused", map[string]string{"MUST_GATHER_ALLOWED_IMAGES": "quay.io/[a-"}, `MUST_GATHER_ALLOWED_IMAGES: image pattern "quay.io/[a-"`},
		{"a negative rate is refused", map[string]string{"API_POST_RATE": "-1"}, "API_POST_RATE (-1) must be at least 0"},
		{"a burst of none is refused", map[string]string{"API_POST_BURST": "0"}, "API_POST_BURST (0) at least 1"},
		{"a header limit that a bearer token does not fit in is refused", map[string]string{"HTTP_MAX_HEADER_BYTES": "8192"}, "HTTP_MAX_HEADER_BYTES: 8192 is less than 16384"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := loadOrWantErr(t, tt.env, tt.wantErr)
			if !ok {
				return
			}
			if c.API.Policy.DefaultImage != c.Kube.DefaultImage || c.API.Policy.DefaultImage == "" {
				t.Errorf("the API checks the default image %q, the runner runs %q", c.API.Policy.DefaultImage, c.Kube.DefaultImage)
			}
		})
	}
}

// loadOrWantErr loads the configuration of env. With wantErr set, it checks
// that loading fails with an error that says wantErr and returns false;
// otherwise loading must succeed.
func loadOrWantErr(t *testing.T, env map[string]string, wantErr string) (config, bool) {
	t.Helper()
	c, err := loadConfig([]string{"x"}, func(k string) string { return env[k] })
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		return c, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return c, true
}
