package mustgather_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

var policy = mustgather.Policy{DefaultTimeout: 10 * time.Minute, MaxTimeout: time.Hour, Servers: []string{"prod"}}

func TestValidRequestsAreNormalized(t *testing.T) {
	tests := []struct {
		name string
		in   mustgather.Request
		want mustgather.Request
	}{
		{"an empty request gets the default timeout", mustgather.Request{}, mustgather.Request{Timeout: "10m"}},
		{"the seed's example passes as is",
			mustgather.Request{Image: "quay.io/maufart/forklift-must-gather", Timeout: "15m"},
			mustgather.Request{Image: "quay.io/maufart/forklift-must-gather", Timeout: "15m"}},
		{"surrounding blanks are trimmed",
			mustgather.Request{CustomName: "  plan:x ", Command: " PLAN=x /usr/bin/targeted\n"},
			mustgather.Request{CustomName: "plan:x", Command: "PLAN=x /usr/bin/targeted", Timeout: "10m"}},
		{"several images, a digest, a port and a known server",
			mustgather.Request{Image: "quay.io/a/b:1,localhost:5000/c@sha256:" + strings.Repeat("a", 64), Server: "prod", NodeName: "worker-0.example.com", SourceDir: "/must-gather/"},
			mustgather.Request{Image: "quay.io/a/b:1,localhost:5000/c@sha256:" + strings.Repeat("a", 64), Server: "prod", NodeName: "worker-0.example.com", SourceDir: "/must-gather/", Timeout: "10m"}},
		{"an image stream", mustgather.Request{ImageStream: "openshift/must-gather:latest"}, mustgather.Request{ImageStream: "openshift/must-gather:latest", Timeout: "10m"}},
		{"the maximum timeout", mustgather.Request{Timeout: "1h"}, mustgather.Request{Timeout: "1h"}},
		{"a timeout in bare seconds is kept as sent", mustgather.Request{Timeout: "600"}, mustgather.Request{Timeout: "600"}},
		{"the maximum timeout in seconds", mustgather.Request{Timeout: "3600"}, mustgather.Request{Timeout: "3600"}},
		{"a node selector as oc takes it, trimmed",
			mustgather.Request{NodeSelector: " node-role.kubernetes.io/worker, zone in (a, b),!gpu,tier!=db,rack=r-1 "},
			mustgather.Request{NodeSelector: "node-role.kubernetes.io/worker, zone in (a, b),!gpu,tier!=db,rack=r-1", Timeout: "10m"}},
		{"host network", mustgather.Request{HostNetwork: true}, mustgather.Request{HostNetwork: true, Timeout: "10m"}},
		{"a custom name in any script, with emoji",
			mustgather.Request{CustomName: "план-ü-計画 🚀"},
			mustgather.Request{CustomName: "план-ü-計画 🚀", Timeout: "10m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Validate(policy)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidRequestsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		in    mustgather.Request
		field string
		msg   string
	}{
		{"a timeout that is not a duration", mustgather.Request{Timeout: "soon"}, "timeout", `must be a duration such as 30s, 10m or 1h30m, or a number of seconds such as 600, got "soon"`},
		{"a timeout in seconds above the maximum", mustgather.Request{Timeout: "3601"}, "timeout", `must be at most 1h, got "3601"`},
		{"a zero timeout in seconds", mustgather.Request{Timeout: "0"}, "timeout", `must be greater than 0, got "0"`},
		{"a timeout of more seconds than a duration holds", mustgather.Request{Timeout: "99999999999999999999"}, "timeout", `must be a duration such as 30s, 10m or 1h30m, or a number of seconds such as 600, got "99999999999999999999"`},
		{"a fractional number of seconds", mustgather.Request{Timeout: "600.5"}, "timeout", `must be a duration such as 30s, 10m or 1h30m, or a number of seconds such as 600, got "600.5"`},
		{"a zero timeout", mustgather.Request{Timeout: "0s"}, "timeout", `must be greater than 0, got "0s"`},
		{"a negative timeout", mustgather.Request{Timeout: "-1m"}, "timeout", `must be greater than 0, got "-1m"`},
		{"a timeout above the maximum", mustgather.Request{Timeout: "2h"}, "timeout", `must be at most 1h, got "2h"`},
		{"an image with upper case in its path", mustgather.Request{Image: "quay.io/Bad/Image"}, "image", `"quay.io/Bad/Image" is not a valid image reference`},
		{"an empty image in a list", mustgather.Request{Image: "quay.io/a/b,"}, "image", `"" is not a valid image reference`},
		{"too many images", mustgather.Request{Image: strings.Repeat("a,", 8) + "a"}, "image", "at most 8 images, got 9"},
		{"an image and an image stream", mustgather.Request{Image: "a", ImageStream: "ns/n:t"}, "image-stream", "give image or image-stream, not both"},
		{"an image stream without tag", mustgather.Request{ImageStream: "ns/name"}, "image-stream", `must be namespace/name:tag, got "ns/name"`},
		{"a node name with upper case", mustgather.Request{NodeName: "Worker-0"}, "node-name", "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"},
		{"a relative source dir", mustgather.Request{SourceDir: "must-gather"}, "source-dir", "must be an absolute path"},
		{"a node name and a node selector", mustgather.Request{NodeName: "worker-0", NodeSelector: "zone=a"}, "node-selector", "give node-name or node-selector, not both"},
		{"a node selector with a bad key", mustgather.Request{NodeSelector: "zone=a,-bad=x"}, "node-selector", `"-bad=x": label key "-bad" is not a valid label name (letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters)`},
		{"a node selector with a bad value", mustgather.Request{NodeSelector: "zone=a b"}, "node-selector", `"zone=a b": label value "a b" is not valid (letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters)`},
		{"a node selector with a bad value in a set", mustgather.Request{NodeSelector: "zone in (a,b/c)"}, "node-selector", `"zone in (a,b/c)": label value "b/c" is not valid (letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters)`},
		{"a node selector with an empty requirement", mustgather.Request{NodeSelector: "zone=a,,rack=b"}, "node-selector", `"": empty requirement`},
		{"a node selector with a bad prefix", mustgather.Request{NodeSelector: "Example.com/zone=a"}, "node-selector", `"Example.com/zone=a": label key prefix "Example.com" must be a DNS-1123 subdomain`},
		{"a node selector comparing with a non-number", mustgather.Request{NodeSelector: "cpus>many"}, "node-selector", `"cpus>many": the value of > must be an integer`},
		{"an unknown server", mustgather.Request{Server: "https://evil.example.com"}, "server", `unknown server "https://evil.example.com"; known servers: prod`},
		{"a custom name too long", mustgather.Request{CustomName: strings.Repeat("x", 254)}, "custom-name", "must be at most 253 bytes, got 254"},
		{"a custom name with a newline", mustgather.Request{CustomName: "a\nb"}, "custom-name", "must not contain control characters"},
		{"a custom name that is not UTF-8", mustgather.Request{CustomName: "plan\xff1"}, "custom-name", "must be valid UTF-8"},
		{"a custom name with a right-to-left override", mustgather.Request{CustomName: "invoice\u202egpj.exe"}, "custom-name", invisible("U+202E")},
		{"a custom name with a left-to-right embedding", mustgather.Request{CustomName: "a\u202ab"}, "custom-name", invisible("U+202A")},
		{"a custom name with a first strong isolate", mustgather.Request{CustomName: "a\u2068b\u2069"}, "custom-name", invisible("U+2068")},
		{"a custom name with a right-to-left mark", mustgather.Request{CustomName: "a\u200fb"}, "custom-name", invisible("U+200F")},
		{"a custom name with an Arabic letter mark", mustgather.Request{CustomName: "a\u061cb"}, "custom-name", invisible("U+061C")},
		{"a custom name with a zero-width space", mustgather.Request{CustomName: "plan\u200b1"}, "custom-name", invisible("U+200B")},
		{"a custom name with a zero-width joiner", mustgather.Request{CustomName: "plan\u200d1"}, "custom-name", invisible("U+200D")},
		{"a custom name with a word joiner", mustgather.Request{CustomName: "plan\u20601"}, "custom-name", invisible("U+2060")},
		{"a custom name with a byte order mark inside", mustgather.Request{CustomName: "plan\ufeff1"}, "custom-name", invisible("U+FEFF")},
		{"a custom name led by a byte order mark", mustgather.Request{CustomName: "\ufeffplan1"}, "custom-name", invisible("U+FEFF")},
		{"a custom name with a soft hyphen", mustgather.Request{CustomName: "plan\u00ad1"}, "custom-name", invisible("U+00AD")},
		{"a custom name with a tag character", mustgather.Request{CustomName: "plan\U000e00411"}, "custom-name", invisible("U+E0041")},
		{"a custom name with a line separator", mustgather.Request{CustomName: "plan\u20281"}, "custom-name", invisible("U+2028")},
		{"a command that is not UTF-8", mustgather.Request{Command: "\xff"}, "command", "must be valid UTF-8"},
		{"a command with a NUL byte", mustgather.Request{Command: "a\x00b"}, "command", "must not contain control characters"},
		{"a command too long", mustgather.Request{Command: strings.Repeat("x", 4097)}, "command", "must be at most 4096 bytes, got 4097"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is rejected", func(t *testing.T) {
			_, err := tt.in.Validate(policy)
			var fe *mustgather.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, mustgather.ErrInvalid) {
				t.Fatalf("error %v, want a FieldError", err)
			}
			if diff := cmp.Diff(mustgather.FieldError{Field: tt.field, Message: tt.msg}, *fe); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// invisible is the message for a custom-name that would not display as
// what it holds.
func invisible(char string) string {
	return "must not contain invisible or bidirectional formatting characters; found " + char
}

func FuzzValidate(f *testing.F) {
	f.Add("plan:x", "quay.io/a/b:1", "ns/n:t", "node-1", "echo", "/d", "10m", "prod")
	f.Fuzz(func(t *testing.T, cn, img, is, node, cmd, dir, timeout, server string) {
		r := mustgather.Request{CustomName: cn, Image: img, ImageStream: is, NodeName: node, Command: cmd, SourceDir: dir, Timeout: timeout, Server: server}
		got, err := r.Validate(policy)
		if err != nil {
			if !errors.Is(err, mustgather.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		// A valid request stays valid and unchanged.
		again, err := got.Validate(policy)
		if err != nil || again != got {
			t.Fatalf("normalized request %+v revalidates to %+v, %v", got, again, err)
		}
		if d, err := mustgather.ParseTimeout(got.Timeout); err != nil || d <= 0 || d > policy.MaxTimeout {
			t.Fatalf("accepted timeout %q", got.Timeout)
		}
	})
}

func TestHostNetworkIsSetFromTrueOrFalse(t *testing.T) {
	tests := []struct {
		in   string
		want bool
		ok   bool
	}{
		{"true", true, true}, {"false", false, true}, {"on", true, true}, {"1", true, true},
		{"0", false, true}, {"", false, true}, {" TRUE ", true, true}, {"maybe", false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			var r mustgather.Request
			err := r.Set("host-network", tt.in)
			if (err == nil) != tt.ok || r.HostNetwork != tt.want {
				t.Errorf("Set(host-network, %q): HostNetwork %v, %v; want %v, ok %v", tt.in, r.HostNetwork, err, tt.want, tt.ok)
			}
			var fe *mustgather.FieldError
			if err != nil && (!errors.As(err, &fe) || fe.Field != "host-network") {
				t.Errorf("error %v does not name host-network", err)
			}
		})
	}
}

func TestParseTimeoutTakesDurationsAndBareSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"600": 10 * time.Minute, "1": time.Second, "0010": 10 * time.Second, "10m": 10 * time.Minute, "1h30m": 90 * time.Minute} {
		if got, err := mustgather.ParseTimeout(in); err != nil || got != want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "+600", "-600", "600s5", "1e3", "9223372037"} {
		if got, err := mustgather.ParseTimeout(in); err == nil {
			t.Errorf("ParseTimeout(%q) = %v, want an error", in, got)
		}
	}
	g := mustgather.Gathering{Timeout: "600"}
	if got := g.TimeoutDuration(time.Minute); got != 10*time.Minute {
		t.Errorf("TimeoutDuration of 600 = %v, want 10m", got)
	}
}

func TestTheStateMachine(t *testing.T) {
	s := []mustgather.Status{mustgather.StatusNew, mustgather.StatusInProgress, mustgather.StatusCompleted, mustgather.StatusError}
	allowed := map[[2]mustgather.Status]bool{
		{mustgather.StatusNew, mustgather.StatusInProgress}:        true,
		{mustgather.StatusNew, mustgather.StatusCompleted}:         true,
		{mustgather.StatusNew, mustgather.StatusError}:             true,
		{mustgather.StatusInProgress, mustgather.StatusInProgress}: true,
		{mustgather.StatusInProgress, mustgather.StatusCompleted}:  true,
		{mustgather.StatusInProgress, mustgather.StatusError}:      true,
	}
	for _, from := range s {
		for _, to := range s {
			if got := mustgather.CanTransition(from, to); got != allowed[[2]mustgather.Status{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	if mustgather.CanTransition("bogus", mustgather.StatusError) || mustgather.CanTransition(mustgather.StatusNew, "bogus") {
		t.Error("an unknown status may change")
	}
}

func TestUpdatesApplyInOrderAndNeverGoBack(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := mustgather.Gathering{ID: 1, Status: mustgather.StatusNew, CreatedAt: mustgather.Timestamp{Time: t0}, UpdatedAt: mustgather.Timestamp{Time: t0}}
	g, err := g.Claim(t0.Add(time.Second))
	if err != nil || g.Status != mustgather.StatusInProgress {
		t.Fatalf("claim: %v %s", err, g.Status)
	}
	if _, err := g.Claim(t0); !errors.Is(err, mustgather.ErrAlreadyClaimed) {
		t.Errorf("second claim: %v", err)
	}
	steps := []struct {
		name string
		u    mustgather.Update
		err  error
		want mustgather.Status
		out  string
	}{
		{"progress applies", mustgather.Update{ID: 1, Seq: 2, Status: mustgather.StatusInProgress, Time: t0.Add(2 * time.Second), ExecOutput: "b"}, nil, mustgather.StatusInProgress, "b"},
		{"an older update is stale", mustgather.Update{ID: 1, Seq: 1, Status: mustgather.StatusInProgress, ExecOutput: "a"}, mustgather.ErrStale, mustgather.StatusInProgress, "b"},
		{"the same update again is stale", mustgather.Update{ID: 1, Seq: 2, Status: mustgather.StatusInProgress, ExecOutput: "b"}, mustgather.ErrStale, mustgather.StatusInProgress, "b"},
		{"another gathering's update is refused", mustgather.Update{ID: 2, Seq: 9, Status: mustgather.StatusError}, mustgather.ErrTransition, mustgather.StatusInProgress, "b"},
		{"going back to new is refused", mustgather.Update{ID: 1, Seq: 3, Status: mustgather.StatusNew}, mustgather.ErrTransition, mustgather.StatusInProgress, "b"},
		{"completion applies", mustgather.Update{ID: 1, Seq: 4, Status: mustgather.StatusCompleted, Time: t0.Add(3 * time.Second), ExecOutput: "c", ArchiveName: "a.tar.gz", ArchiveSize: 10}, nil, mustgather.StatusCompleted, "c"},
		{"nothing changes a completed gathering", mustgather.Update{ID: 1, Seq: 5, Status: mustgather.StatusError, ExecOutput: "d"}, mustgather.ErrStale, mustgather.StatusCompleted, "c"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			next, err := g.Apply(st.u)
			if !errors.Is(err, st.err) {
				t.Fatalf("error %v, want %v", err, st.err)
			}
			if err == nil {
				g = next
			} else if diff := cmp.Diff(g, next); diff != "" {
				t.Errorf("a refused update changed the gathering:\n%s", diff)
			}
			if g.Status != st.want || g.ExecOutput != st.out {
				t.Errorf("status %s output %q, want %s %q", g.Status, g.ExecOutput, st.want, st.out)
			}
		})
	}
	if g.ArchiveName != "a.tar.gz" || g.ArchiveSize != 10 || !g.UpdatedAt.Equal(t0.Add(3*time.Second)) || g.Seq != 4 {
		t.Errorf("final gathering %+v", g)
	}
}

func TestArchiveNamesAreUniqueAndSafe(t *testing.T) {
	tests := []struct {
		id   mustgather.ID
		name string
		want string
	}{
		{15, "", "must-gather-15.tar.gz"},
		{15, "plan:mig-plan-cold:8a3d", "must-gather-15-plan-mig-plan-cold-8a3d.tar.gz"},
		{7, "../../etc/passwd", "must-gather-7-etc-passwd.tar.gz"},
		{7, `a<b>c:"d"/e\f|g?h*i`, "must-gather-7-a-b-c-d-e-f-g-h-i.tar.gz"},
		{8, "ünïcödé", "must-gather-8-n-c-d.tar.gz"},
		{9, "...", "must-gather-9.tar.gz"},
		{10, strings.Repeat("x", 300), "must-gather-10-" + strings.Repeat("x", 64) + ".tar.gz"},
	}
	for _, tt := range tests {
		if got := mustgather.ArchiveName(tt.id, tt.name); got != tt.want {
			t.Errorf("ArchiveName(%d, %q) = %q, want %q", tt.id, tt.name, got, tt.want)
		}
	}
}

func TestTimestampsHaveNanosecondsAndAnOffset(t *testing.T) {
	ts := mustgather.Timestamp{Time: time.Date(2021, 6, 30, 15, 19, 17, 514594000, time.FixedZone("", 2*3600))}
	b, err := json.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `"2021-06-30T15:19:17.514594000+02:00"`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	var back mustgather.Timestamp
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(ts.Time) {
		t.Errorf("round trip: %v %v", back, err)
	}
	utc, _ := json.Marshal(mustgather.Timestamp{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if got, want := string(utc), `"2026-01-01T00:00:00.000000000+00:00"`; got != want {
		t.Errorf("UTC: got %s, want %s", got, want)
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]mustgather.ID{"1": 1, "15": 15, "18446744073709551615": 18446744073709551615} {
		if got, ok := mustgather.ParseID(in); !ok || got != want {
			t.Errorf("ParseID(%q) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "0", "-1", "+1", "1.0", "plan:x", "18446744073709551616", " 1"} {
		if _, ok := mustgather.ParseID(in); ok {
			t.Errorf("ParseID(%q) accepted", in)
		}
	}
}

func TestTypedTargetedFieldsBuildAQuotedCommand(t *testing.T) {
	tests := []struct {
		name string
		in   mustgather.Request
		want string
	}{
		{"a plan alone leaves NS to the image", mustgather.Request{Plan: "mig-plan-cold"}, `PLAN='mig-plan-cold' /usr/bin/targeted`},
		{"a plan in a given namespace", mustgather.Request{Plan: "mig-plan-cold", Namespace: "konveyor-forklift"}, `PLAN='mig-plan-cold' NS='konveyor-forklift' /usr/bin/targeted`},
		{"a vm in a given namespace", mustgather.Request{VM: "vm-7595", Namespace: "mtv"}, `VM='vm-7595' NS='mtv' /usr/bin/targeted`},
		{"a plan and a vm", mustgather.Request{Plan: "p", VM: "v"}, `PLAN='p' VM='v' /usr/bin/targeted`},
		{"a namespace alone", mustgather.Request{Namespace: "mtv"}, `NS='mtv' /usr/bin/targeted`},
		{"a vm name that tries shell injection", mustgather.Request{VM: `x'; touch /tmp/pwned; echo '$(id)`}, `VM='x'\''; touch /tmp/pwned; echo '\''$(id)' /usr/bin/targeted`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Validate(policy)
			if err != nil {
				t.Fatal(err)
			}
			if got.Command != tt.want || got.Plan != "" || got.VM != "" || got.Namespace != "" {
				t.Errorf("got %+v, want command %s", got, tt.want)
			}
			// The shell must see the names exactly as sent.
			// An NS unset stays unset, so that the image finds the
			// Forklift namespace itself.
			script := strings.TrimSuffix(got.Command, mustgather.TargetedCommand) + `sh -c 'printf "%s|%s|%s" "$PLAN" "$VM" "${NS-unset}"'`
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			ns := tt.in.Namespace
			if ns == "" {
				ns = "unset"
			}
			if want := tt.in.Plan + "|" + tt.in.VM + "|" + ns; string(out) != want {
				t.Errorf("shell saw %q, want %q", out, want)
			}
		})
	}
}

func TestInvalidTargetedAndSinceFieldsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		p     mustgather.Policy
		in    mustgather.Request
		field string
	}{
		{"a command and a plan", policy, mustgather.Request{Command: "x", Plan: "p"}, "command"},
		{"a plan that is no object name", policy, mustgather.Request{Plan: "My Plan", Namespace: "ns"}, "plan"},
		{"a namespace that is no label", policy, mustgather.Request{VM: "v", Namespace: "a.b"}, "namespace"},
		{"a vm with a newline", policy, mustgather.Request{VM: "a\nb", Namespace: "ns"}, "vm"},
		{"a since that is no duration", policy, mustgather.Request{Since: "yesterday"}, "since"},
		{"a negative since", policy, mustgather.Request{Since: "-1h"}, "since"},
		{"a since-time that is no RFC 3339 time", policy, mustgather.Request{SinceTime: "2026-11-25"}, "since-time"},
		{"since and since-time", policy, mustgather.Request{Since: "1h", SinceTime: "2026-11-25T10:00:00Z"}, "since-time"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is rejected", func(t *testing.T) {
			_, err := tt.in.Validate(tt.p)
			var fe *mustgather.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
	ok, err := mustgather.Request{Since: "2h", SinceTime: ""}.Validate(policy)
	if err != nil || ok.Since != "2h" {
		t.Errorf("since 2h: %+v %v", ok, err)
	}
	g := mustgather.NewGathering(mustgather.Request{SinceTime: "2026-11-25T10:00:00Z"}, time.Now())
	if g.SinceTime != "2026-11-25T10:00:00Z" {
		t.Errorf("gathering lost since-time: %+v", g)
	}
}

func TestIsCustomNameTakesWhatValidateKeeps(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"a plain name", "plan:x", true},
		{"a name in any script, with emoji", "план-ü-計画 🚀", true},
		{"the longest name", strings.Repeat("x", 253), true},
		{"a name with surrounding blanks, which Validate trims", " plan:x ", false},
		{"a name too long", strings.Repeat("x", 254), false},
		{"a name with a newline", "a\nb", false},
		{"a name that is not UTF-8", "plan\xff1", false},
		{"a name with a right-to-left override", "invoice\u202egpj.exe", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustgather.IsCustomName(tt.in); got != tt.want {
				t.Errorf("IsCustomName(%q) = %v, want %v", tt.in, got, tt.want)
			}
			req, err := mustgather.Request{CustomName: tt.in}.Validate(policy)
			if kept := err == nil && req.CustomName == tt.in; kept != tt.want {
				t.Errorf("Validate keeps %q: %v, want %v", tt.in, kept, tt.want)
			}
		})
	}
}

func TestTheImageAllowListRejectsEveryOtherImage(t *testing.T) {
	p := policy
	p.AllowedImages = []string{"quay.io/kubev2v/*", "registry.redhat.io/openshift4/ose-must-gather@sha256:*", "openshift/must-gather:*"}
	p.DefaultImage = "quay.io/kubev2v/forklift-must-gather:latest"
	tests := []struct {
		name  string
		p     mustgather.Policy
		in    mustgather.Request
		field string // "": allowed
	}{
		{"an image under an allowed repository", p, mustgather.Request{Image: "quay.io/kubev2v/forklift-must-gather:2.9"}, ""},
		{"no image, with an allowed default", p, mustgather.Request{}, ""},
		{"every image of a list allowed", p, mustgather.Request{Image: "quay.io/kubev2v/a, registry.redhat.io/openshift4/ose-must-gather@sha256:" + strings.Repeat("a", 64)}, ""},
		{"an allowed image stream", p, mustgather.Request{ImageStream: "openshift/must-gather:latest"}, ""},
		{"an image elsewhere", p, mustgather.Request{Image: "quay.io/evil/must-gather:latest"}, "image"},
		{"an image further down the allowed repository", p, mustgather.Request{Image: "quay.io/kubev2v/x/y:1"}, "image"},
		{"one image of a list not allowed", p, mustgather.Request{Image: "quay.io/kubev2v/a,docker.io/library/busybox"}, "image"},
		{"a tag where only digests are allowed", p, mustgather.Request{Image: "registry.redhat.io/openshift4/ose-must-gather:latest"}, "image"},
		{"an image stream not allowed", p, mustgather.Request{ImageStream: "evil/must-gather:latest"}, "image-stream"},
		{"no image, with a default not allowed", func() mustgather.Policy {
			q := p
			q.DefaultImage = "docker.io/library/busybox"
			return q
		}(), mustgather.Request{}, "image"},
		{"any image without an allow-list", policy, mustgather.Request{Image: "quay.io/evil/must-gather:latest"}, ""},
	}
	for _, tt := range tests {
		verdict := "is allowed"
		if tt.field != "" {
			verdict = "is rejected naming " + tt.field
		}
		t.Run(tt.name+" "+verdict, func(t *testing.T) {
			_, err := tt.in.Validate(tt.p)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *mustgather.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Message, "allowed") {
				t.Errorf("error %v, want one naming %s that says what is allowed", err, tt.field)
			}
		})
	}
	if err := mustgather.CheckImagePatterns([]string{"quay.io/kubev2v/*", "quay.io/[a-"}); err == nil || !strings.Contains(err.Error(), `"quay.io/[a-"`) {
		t.Errorf("a malformed pattern: %v", err)
	}
}

func TestParseTargetedReadsTheVariablesOfATargetedCommand(t *testing.T) {
	tests := []struct {
		name    string
		command string
		want    mustgather.Targeted
		ok      bool
	}{
		{"as a request builds it", `PLAN='mig-plan-cold' VM='vm-7595' NS='konveyor-forklift' /usr/bin/targeted`,
			mustgather.Targeted{Plan: "mig-plan-cold", VM: "vm-7595", Namespace: "konveyor-forklift"}, true},
		{"a quote in a value", `VM='it'\''s' /usr/bin/targeted`, mustgather.Targeted{VM: "it's"}, true},
		{"as a user writes it", " PLAN=x /usr/bin/targeted\n", mustgather.Targeted{Plan: "x"}, true},
		{"double quotes", `PLAN="x y" /usr/bin/targeted`, mustgather.Targeted{Plan: "x y"}, true},
		{"another variable is kept out", `FOO=1 PLAN=x /usr/bin/targeted`, mustgather.Targeted{Plan: "x"}, true},
		{"the full gather is no targeted one", "/usr/bin/gather", mustgather.Targeted{}, false},
		{"a targeted command with arguments after it", "PLAN=x /usr/bin/targeted; rm -rf /", mustgather.Targeted{}, false},
		{"an expansion", "PLAN=$(id) /usr/bin/targeted", mustgather.Targeted{}, false},
		{"an unbalanced quote", "PLAN='x /usr/bin/targeted", mustgather.Targeted{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := mustgather.ParseTargeted(tt.command)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseTargeted(%q) = %+v, %v; want %+v, %v", tt.command, got, ok, tt.want, tt.ok)
			}
		})
	}
}
