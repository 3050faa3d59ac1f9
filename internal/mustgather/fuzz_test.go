package mustgather_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// FuzzParseTimeout checks that a timeout is read as oc reads it, a Go
// duration or a bare number of seconds, and that nothing panics or
// overflows into a negative or wrapped duration.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"10m", "1h30m", "600", "0", "-1s", "9223372036854775807", "99999999999", "1.5h", "", "+5", "5 m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := mustgather.ParseTimeout(v)
		if err != nil {
			return
		}
		if v != "" && strings.Trim(v, "0123456789") == "" {
			n, perr := strconv.ParseUint(v, 10, 64)
			if perr != nil || n > math.MaxInt64/uint64(time.Second) || d != time.Duration(n)*time.Second {
				t.Fatalf("%q seconds read as %s", v, d)
			}
			return
		}
		if want, err := time.ParseDuration(v); err != nil || want != d {
			t.Fatalf("%q read as %s; time.ParseDuration says %s, %v", v, d, want, err)
		}
	})
}

// FuzzParseID checks that an id in a path or a subject is read only from
// plain decimal digits into a positive id that reads back from its own
// form; signs, blanks and zero are no id.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "0", "007", "+1", "-1", "18446744073709551615", "18446744073709551616", "1e3", " 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := mustgather.ParseID(s)
		if !ok {
			if id != 0 {
				t.Fatalf("%q refused but read as %d", s, id)
			}
			return
		}
		if id == 0 {
			t.Fatalf("%q read as id 0", s)
		}
		if n, err := strconv.ParseUint(s, 10, 64); err != nil || mustgather.ID(n) != id {
			t.Fatalf("%q read as %d; strconv says %d, %v", s, id, n, err)
		}
		if back, ok := mustgather.ParseID(id.String()); !ok || back != id {
			t.Fatalf("id %d does not read back from %q", id, id.String())
		}
	})
}

// FuzzArchiveName checks that any custom-name gives a file name that is
// safe on every OS and in a Content-Disposition header, bounded, unique to
// the gathering, and still names the gathering.
func FuzzArchiveName(f *testing.F) {
	for _, s := range []string{"plan:mig-plan-cold", "../../etc/passwd", "a/b\\c", "CON", ".hidden", "—", "x\x00y", strings.Repeat("a", 300), "\u202egnp.exe"} {
		f.Add(uint64(1), s)
	}
	f.Fuzz(func(t *testing.T, id uint64, name string) {
		if id == 0 {
			id = 1
		}
		got := mustgather.ArchiveName(mustgather.ID(id), name)
		prefix := "must-gather-" + strconv.FormatUint(id, 10)
		rest, ok := strings.CutPrefix(got, prefix)
		if !ok || !strings.HasSuffix(got, ".tar.gz") || (rest != ".tar.gz" && !strings.HasPrefix(rest, "-")) {
			t.Fatalf("archive name %q does not start with %q and end in .tar.gz", got, prefix)
		}
		if len(got) > len(prefix)+1+64+len(".tar.gz") {
			t.Fatalf("archive name %q is %d bytes long", got, len(got))
		}
		for _, c := range got {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("archive name %q holds %q", got, c)
			}
		}
		if strings.Contains(got, "..") && !strings.Contains(name, "..") {
			t.Fatalf("archive name %q made a .. the name %q did not have", got, name)
		}
	})
}

// FuzzIsCustomName checks that the lookup by name agrees with validation:
// a name IsCustomName accepts is one a request may carry, unchanged, and a
// name a valid request ends up with passes IsCustomName.
func FuzzIsCustomName(f *testing.F) {
	for _, s := range []string{"plan:x", " padded ", "", "a\u200bb", "line\nbreak", "é", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := mustgather.Request{CustomName: name}.Validate(policy)
		if mustgather.IsCustomName(name) {
			if err != nil || got.CustomName != name {
				t.Fatalf("IsCustomName(%q) but a request with it validates to %q, %v", name, got.CustomName, err)
			}
		}
		if err != nil {
			var fe *mustgather.FieldError
			if !errors.As(err, &fe) || fe.Field != "custom-name" {
				t.Fatalf("a request with only custom-name %q fails with %v", name, err)
			}
			return
		}
		if got.CustomName != "" && !mustgather.IsCustomName(got.CustomName) {
			t.Fatalf("valid custom-name %q (from %q) is no custom-name to a lookup", got.CustomName, name)
		}
		if !utf8.ValidString(got.CustomName) {
			t.Fatalf("valid custom-name %q is not UTF-8", got.CustomName)
		}
	})
}

// FuzzValidateTargeted checks the fields that build a command (plan, vm,
// namespace), since and since-time, node-selector and host-network: any
// values validate or fail naming one of the request's fields, and what
// validates does so again unchanged.
func FuzzValidateTargeted(f *testing.F) {
	f.Add("mig-plan", "vm-1", "openshift-mtv", "1h", "", "kubernetes.io/os=linux", "true")
	f.Add("a'b", "$(reboot)", "NS", "-1h", "2026-11-25T10:00:00Z", "a in (b,c),!d", "maybe")
	f.Add("", "", "", "", "yesterday", "=", "")
	f.Fuzz(func(t *testing.T, plan, vm, ns, since, sinceTime, selector, hostNetwork string) {
		r := mustgather.Request{Plan: plan, VM: vm, Namespace: ns, Since: since, SinceTime: sinceTime, NodeSelector: selector}
		if err := r.Set("host-network", hostNetwork); err != nil {
			if !errors.Is(err, mustgather.ErrInvalid) {
				t.Fatalf("host-network %q: %v is not ErrInvalid", hostNetwork, err)
			}
			return
		}
		got, err := r.Validate(policy)
		if err != nil {
			var fe *mustgather.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, mustgather.ErrInvalid) {
				t.Fatalf("error %T %v is no FieldError", err, err)
			}
			known := false
			for _, name := range mustgather.RequestFields {
				known = known || name == fe.Field
			}
			if !known {
				t.Fatalf("error names field %q, not a request field", fe.Field)
			}
			return
		}
		again, err := got.Validate(policy)
		if err != nil || again != got {
			t.Fatalf("normalized request %+v revalidates to %+v, %v", got, again, err)
		}
		if (plan != "" || vm != "" || ns != "") && !strings.HasSuffix(got.Command, mustgather.TargetedCommand) {
			t.Fatalf("targeted request gave command %q", got.Command)
		}
	})
}
