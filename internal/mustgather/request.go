package mustgather

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Request is what a caller sends to start a gathering, with the seed's
// field names.
type Request struct {
	CustomName  string `json:"custom-name"`
	Image       string `json:"image"`
	ImageStream string `json:"image-stream"`
	NodeName    string `json:"node-name"`
	Command     string `json:"command"`
	SourceDir   string `json:"source-dir"`
	// Timeout is a duration such as 10m, or a number of seconds such as
	// 600, as oc takes it; it is kept as sent.
	Timeout string `json:"timeout"`
	Server  string `json:"server"`

	// Fields beyond the seed. Since and SinceTime reach the image as
	// MUST_GATHER_SINCE and MUST_GATHER_SINCE_TIME, as with oc.
	Since     string `json:"since,omitempty"`
	SinceTime string `json:"since-time,omitempty"`
	// Plan, VM and Namespace build a Forklift targeted-gathering command
	// (PLAN=... VM=... NS=... /usr/bin/targeted) with every value
	// shell-quoted; they exclude Command.
	Plan      string `json:"plan,omitempty"`
	VM        string `json:"vm,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// NodeSelector is a label selector, as oc's --node-selector: one pod
	// per image runs on each Ready node it selects. Not with NodeName.
	NodeSelector string `json:"node-selector,omitempty"`
	// HostNetwork runs the pods in the host's network, with CAP_NET_RAW
	// in the gather container, as oc's --host-network.
	HostNetwork bool `json:"host-network,omitempty"`
	// Redact asks for secrets to be redacted from the archive as it
	// streams; nil takes the Policy's default (see Validate).
	Redact *bool `json:"redact,omitempty"`
}

// RequestFields lists the request's field names: the seed's, then ours.
var RequestFields = []string{"custom-name", "image", "image-stream", "node-name", "command", "source-dir", "timeout", "server",
	"since", "since-time", "plan", "vm", "namespace", "node-selector", "host-network", "redact"}

// BoolRequestFields are the request fields that JSON may also send as
// true or false; a form sends them as text.
var BoolRequestFields = []string{"host-network", "redact"}

// TargetedCommand is the targeted gathering of Forklift's must-gather image.
const TargetedCommand = "/usr/bin/targeted"

// Set sets the field with the given API name from its text. It returns a
// *FieldError for an unknown name and for a bool field that is not true
// or false.
func (r *Request) Set(field, value string) error {
	switch field {
	case "custom-name":
		r.CustomName = value
	case "image":
		r.Image = value
	case "image-stream":
		r.ImageStream = value
	case "node-name":
		r.NodeName = value
	case "command":
		r.Command = value
	case "source-dir":
		r.SourceDir = value
	case "timeout":
		r.Timeout = value
	case "server":
		r.Server = value
	case "since":
		r.Since = value
	case "since-time":
		r.SinceTime = value
	case "plan":
		r.Plan = value
	case "vm":
		r.VM = value
	case "namespace":
		r.Namespace = value
	case "node-selector":
		r.NodeSelector = value
	case "host-network":
		b, ok := parseBool(strings.TrimSpace(value))
		if !ok {
			return fieldErr(field, "must be true or false")
		}
		r.HostNetwork = b
	case "redact":
		b, ok := parseBool(strings.TrimSpace(value))
		if !ok {
			return fieldErr(field, "must be true or false")
		}
		r.Redact = &b
	default:
		return fieldErr(field, "unknown field; known fields: %s", strings.Join(RequestFields, ", "))
	}
	return nil
}

// DefaultTimeout is the timeout of a gathering that gives none, as in
// `oc adm must-gather`.
const DefaultTimeout = 10 * time.Minute

// DefaultPolicy returns the limits documented in the README.
func DefaultPolicy() Policy {
	return Policy{DefaultTimeout: DefaultTimeout, MaxTimeout: time.Hour}
}

// Policy holds the limits a Request is validated against.
type Policy struct {
	// DefaultTimeout is used when a request gives none.
	DefaultTimeout time.Duration
	// MaxTimeout is the largest timeout a request may ask for.
	MaxTimeout time.Duration
	// Servers are the names accepted in the server field. An empty server
	// always means the runner's default cluster.
	Servers []string
	// AllowedImages, when not empty, are the only images a gathering may
	// run, as path.Match patterns (see AllowsImage): a gathering runs its
	// image with cluster-admin rights. Empty allows every image.
	AllowedImages []string
	// DefaultImage is what a gathering that names neither image nor
	// image-stream runs; with AllowedImages it must match them too. Empty
	// means unknown here, and is not checked.
	DefaultImage string
	// Redact is whether a gathering whose request does not say is
	// redacted.
	Redact bool
}

// CheckImagePatterns reports the first of patterns that path.Match cannot
// use.
func CheckImagePatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("image pattern %q: %w", p, err)
		}
	}
	return nil
}

// AllowsImage reports whether ref, as written (no registry or tag is
// added), matches one of p's AllowedImages, or there are none. A pattern
// is a path.Match pattern: "*" matches any run of characters but "/", so
// quay.io/kubev2v/* allows every image directly under quay.io/kubev2v,
// with any tag or digest, but none further down. An image stream is
// matched as namespace/name:tag.
func (p Policy) AllowsImage(ref string) bool {
	if len(p.AllowedImages) == 0 {
		return true
	}
	for _, pat := range p.AllowedImages {
		if ok, _ := path.Match(pat, ref); ok {
			return true
		}
	}
	return false
}

// Length caps, in bytes, for each field.
const (
	MaxCustomNameLen = 253
	MaxImageLen      = 1024
	MaxCommandLen    = 4096
	MaxPathLen       = 4096
	MaxTimeoutLen    = 32
	MaxServerLen     = 253
	MaxSelectorLen   = 1024
	MaxImages        = 8
)

var (
	// The reference grammar of github.com/distribution/reference:
	// [domain[:port]/]path[:tag][@digest].
	imageRef = regexp.MustCompile(`^` +
		`(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*` +
		`(?::[\w][\w.-]{0,127})?` +
		`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)
	dns1123Label     = `[a-z0-9](?:[-a-z0-9]*[a-z0-9])?`
	dns1123Subdomain = regexp.MustCompile(`^` + dns1123Label + `(?:\.` + dns1123Label + `)*$`)
	dns1123LabelRE   = regexp.MustCompile(`^` + dns1123Label + `$`)
	imageTag         = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
)

// Validate checks r against p and returns it normalized: fields trimmed of
// surrounding white space and the default timeout filled in. The error is a
// *FieldError naming the first invalid field. A request that does not say
// whether to redact is redacted when p.Redact is set (Redact is then true);
// Redact nil means no.
func (r Request) Validate(p Policy) (Request, error) {
	if r.Redact == nil && p.Redact {
		r.Redact = &p.Redact
	}
	for _, f := range []*string{&r.CustomName, &r.Image, &r.ImageStream, &r.NodeName, &r.Command, &r.SourceDir,
		&r.Timeout, &r.Server, &r.Since, &r.SinceTime, &r.Plan, &r.VM, &r.Namespace, &r.NodeSelector} {
		*f = strings.TrimSpace(*f)
	}

	if err := checkName("custom-name", r.CustomName, MaxCustomNameLen); err != nil {
		return r, err
	}
	if err := validateImages(r.Image); err != nil {
		return r, err
	}
	if err := validateImageStream(r.ImageStream); err != nil {
		return r, err
	}
	if r.Image != "" && r.ImageStream != "" {
		return r, fieldErr("image-stream", "give image or image-stream, not both")
	}
	if err := r.allowedImages(p); err != nil {
		return r, err
	}
	if r.NodeName != "" {
		if len(r.NodeName) > 253 || !dns1123Subdomain.MatchString(r.NodeName) {
			return r, fieldErr("node-name", "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)")
		}
	}
	if err := checkNodeSelector(r.NodeSelector); err != nil {
		return r, err
	}
	if r.NodeName != "" && r.NodeSelector != "" {
		return r, fieldErr("node-selector", "give node-name or node-selector, not both")
	}
	if err := r.targeted(); err != nil {
		return r, err
	}
	if err := checkText("command", r.Command, MaxCommandLen, true); err != nil {
		return r, err
	}
	if r.SourceDir != "" {
		if err := checkText("source-dir", r.SourceDir, MaxPathLen, false); err != nil {
			return r, err
		}
		if !path.IsAbs(r.SourceDir) {
			return r, fieldErr("source-dir", "must be an absolute path")
		}
	}
	timeout, err := validateTimeout(r.Timeout, p)
	if err != nil {
		return r, err
	}
	r.Timeout = timeout
	if r.Server != "" {
		if err := checkText("server", r.Server, MaxServerLen, false); err != nil {
			return r, err
		}
		if !slices.Contains(p.Servers, r.Server) {
			return r, fieldErr("server", "unknown server %q; known servers: %s", r.Server, knownServers(p.Servers))
		}
	}
	if err := validateSince(r.Since, r.SinceTime); err != nil {
		return r, err
	}
	return r, nil
}

// allowedImages checks the images r runs against p's allow-list: each of
// its images, its image stream, or else the default image.
func (r Request) allowedImages(p Policy) error {
	if len(p.AllowedImages) == 0 {
		return nil
	}
	allowed := strings.Join(p.AllowedImages, ", ")
	switch {
	case r.ImageStream != "":
		if !p.AllowsImage(r.ImageStream) {
			return fieldErr("image-stream", "%q is not an allowed image; allowed: %s", r.ImageStream, allowed)
		}
	case r.Image != "":
		for img := range strings.SplitSeq(r.Image, ",") {
			if img = strings.TrimSpace(img); !p.AllowsImage(img) {
				return fieldErr("image", "%q is not an allowed image; allowed: %s", img, allowed)
			}
		}
	case p.DefaultImage != "" && !p.AllowsImage(p.DefaultImage):
		return fieldErr("image", "no image given, and the default image %q is not an allowed image; name one that is: %s", p.DefaultImage, allowed)
	}
	return nil
}

// targeted checks plan, vm and namespace and, when any is given, builds
// the targeted command from them into Command and clears them. NS is set
// only when the request names a namespace: without it the image's
// targeted script looks the plan and VM up in the namespace Forklift is
// installed in, which it finds itself.
func (r *Request) targeted() error {
	if r.Plan == "" && r.VM == "" && r.Namespace == "" {
		return nil
	}
	if r.Command != "" {
		return fieldErr("command", "give command, or plan/vm/namespace to build it, not both")
	}
	if err := checkText("vm", r.VM, 253, false); err != nil {
		return err
	}
	if r.Plan != "" && (len(r.Plan) > 253 || !dns1123Subdomain.MatchString(r.Plan)) {
		return fieldErr("plan", "must be a Kubernetes object name (DNS-1123 subdomain)")
	}
	if r.Namespace != "" && (len(r.Namespace) > 63 || !dns1123LabelRE.MatchString(r.Namespace)) {
		return fieldErr("namespace", "must be a namespace name (DNS-1123 label)")
	}
	var b strings.Builder
	if r.Plan != "" {
		b.WriteString("PLAN=" + shellQuote(r.Plan) + " ")
	}
	if r.VM != "" {
		b.WriteString("VM=" + shellQuote(r.VM) + " ")
	}
	if r.Namespace != "" {
		b.WriteString("NS=" + shellQuote(r.Namespace) + " ")
	}
	r.Command = b.String() + TargetedCommand
	r.Plan, r.VM, r.Namespace = "", "", ""
	return nil
}

// shellQuote quotes s for a POSIX shell: inside single quotes nothing is
// special but the single quote itself.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func validateSince(since, sinceTime string) error {
	if since != "" && sinceTime != "" {
		return fieldErr("since-time", "give since or since-time, not both")
	}
	if since != "" {
		if len(since) > MaxTimeoutLen {
			return fieldErr("since", "must be at most %d bytes", MaxTimeoutLen)
		}
		if d, err := time.ParseDuration(since); err != nil || d <= 0 {
			return fieldErr("since", "must be a positive duration such as 1h or 30m, got %q", since)
		}
	}
	if sinceTime != "" {
		if len(sinceTime) > 64 {
			return fieldErr("since-time", "must be at most 64 bytes")
		}
		if _, err := time.Parse(time.RFC3339, sinceTime); err != nil {
			return fieldErr("since-time", "must be an RFC 3339 time such as 2026-11-25T10:00:00Z, got %q", sinceTime)
		}
	}
	return nil
}

func knownServers(s []string) string {
	if len(s) == 0 {
		return "none (leave server empty for the default cluster)"
	}
	return strings.Join(s, ", ")
}

// checkLen rejects a value longer than max bytes.
func checkLen(field, v string, max int) error {
	if len(v) > max {
		return fieldErr(field, "must be at most %d bytes, got %d", max, len(v))
	}
	return nil
}

// checkText rejects values that are too long, not UTF-8, or carry control
// characters (newlines and tabs too, unless multiline).
func checkText(field, v string, max int, multiline bool) error {
	if err := checkLen(field, v, max); err != nil {
		return err
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, "must be valid UTF-8")
	}
	for _, c := range v {
		if multiline && (c == '\n' || c == '\t') {
			continue
		}
		if unicode.IsControl(c) {
			return fieldErr(field, "must not contain control characters")
		}
	}
	return nil
}

// IsCustomName reports whether name can be a gathering's custom-name: one
// that Request.Validate accepts and keeps as it is. Lookups by name use it
// to skip what no gathering can be called.
func IsCustomName(name string) bool {
	return name == strings.TrimSpace(name) && checkName("custom-name", name, MaxCustomNameLen) == nil
}

// checkName is checkText for a name that people read and pick from a
// list. It also rejects what would make the name display as something else:
// format characters (Unicode category Cf: bidirectional overrides, embeddings,
// isolates and marks, zero-width spaces and joiners, the byte order mark,
// soft hyphens, tags) and line and paragraph separators.
func checkName(field, v string, max int) error {
	if err := checkText(field, v, max, false); err != nil {
		return err
	}
	for _, c := range v {
		if unicode.In(c, unicode.Cf, unicode.Zl, unicode.Zp) {
			return fieldErr(field, "must not contain invisible or bidirectional formatting characters; found %U", c)
		}
	}
	return nil
}

func validateImages(v string) error {
	if err := checkLen("image", v, MaxImageLen); v == "" || err != nil {
		return err
	}
	images := strings.Split(v, ",")
	if len(images) > MaxImages {
		return fieldErr("image", "at most %d images, got %d", MaxImages, len(images))
	}
	for _, img := range images {
		img = strings.TrimSpace(img)
		if !imageRef.MatchString(img) {
			return fieldErr("image", "%q is not a valid image reference", img)
		}
	}
	return nil
}

func validateImageStream(v string) error {
	if err := checkLen("image-stream", v, MaxImageLen); v == "" || err != nil {
		return err
	}
	ns, rest, ok := strings.Cut(v, "/")
	name, tag, okTag := strings.Cut(rest, ":")
	if !ok || !okTag || len(ns) > 63 || !dns1123LabelRE.MatchString(ns) ||
		len(name) > 253 || !dns1123Subdomain.MatchString(name) || !imageTag.MatchString(tag) {
		return fieldErr("image-stream", "must be namespace/name:tag, got %q", v)
	}
	return nil
}

func validateTimeout(v string, p Policy) (string, error) {
	if v == "" {
		return formatDuration(p.DefaultTimeout), nil
	}
	if len(v) > MaxTimeoutLen {
		return "", fieldErr("timeout", "must be at most %d bytes", MaxTimeoutLen)
	}
	d, err := ParseTimeout(v)
	if err != nil {
		return "", fieldErr("timeout", "must be a duration such as 30s, 10m or 1h30m, or a number of seconds such as 600, got %q", v)
	}
	if d <= 0 {
		return "", fieldErr("timeout", "must be greater than 0, got %q", v)
	}
	if p.MaxTimeout > 0 && d > p.MaxTimeout {
		return "", fieldErr("timeout", "must be at most %s, got %q", formatDuration(p.MaxTimeout), v)
	}
	return v, nil
}

// ParseTimeout reads a timeout as `oc adm must-gather --timeout` does: a
// Go duration such as 10m or 1h30m, or a bare number of seconds such as
// 600.
func ParseTimeout(v string) (time.Duration, error) {
	if v != "" && strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return 0, fmt.Errorf("timeout %q: too many seconds", v)
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// formatDuration writes d without zero units: 10m rather than 10m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// String is for logs.
func (r Request) String() string {
	return fmt.Sprintf("custom-name=%q image=%q command=%q timeout=%q", r.CustomName, r.Image, r.Command, r.Timeout)
}
