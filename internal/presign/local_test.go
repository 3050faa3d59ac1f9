package presign

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

var (
	t0        = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	completed = mustgather.Gathering{ID: 7, Status: mustgather.StatusCompleted, ArchiveName: "must-gather-7-plan.tar.gz"}
)

const secret = "0123456789abcdef0123456789abcdef"

// clock is a settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newLocal(t *testing.T, c Config, clk *clock) *Local {
	t.Helper()
	l, err := NewLocal(c, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// params returns the expires and signature of a local link.
func params(t *testing.T, link string) (expires, signature string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(ParamExpires), u.Query().Get(ParamSignature)
}

func TestALocalLinkVerifiesOnlyForItsGatheringUntilItExpires(t *testing.T) {
	clk := &clock{t0}
	l := newLocal(t, Config{TTL: time.Minute, PublicURL: "https://mg.example.com/api/", Secret: secret}, clk)
	link, expires, err := l.Link(context.Background(), completed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "https://mg.example.com/api/must-gather/7/data?expires=") {
		t.Errorf("link %s does not start with the public URL and the download path", link)
	}
	if !expires.Equal(t0.Add(time.Minute)) {
		t.Errorf("expires %v, want %v", expires, t0.Add(time.Minute))
	}
	exp, sig := params(t, link)
	other := completed
	other.ID = 8
	renamed := completed
	renamed.ArchiveName = "must-gather-7-other.tar.gz"
	flipped := []byte(sig)
	flipped[0] ^= 1
	later := strconv.FormatInt(expires.Unix()+3600, 10)
	otherKey := newLocal(t, Config{TTL: time.Minute, PublicURL: "https://mg.example.com", Secret: strings.Repeat("x", 32)}, clk)
	_, otherSig := params(t, must(otherKey.Link(context.Background(), completed)))

	for _, tt := range []struct {
		name     string
		l        *Local
		g        mustgather.Gathering
		exp, sig string
		at       time.Time
		want     error
	}{
		{"the link as made verifies", l, completed, exp, sig, t0, nil},
		{"and still does a second before it expires", l, completed, exp, sig, expires.Add(-time.Second), nil},
		{"another gathering's id does not", l, other, exp, sig, t0, ErrBadSignature},
		{"another archive name does not", l, renamed, exp, sig, t0, ErrBadSignature},
		{"a later expiry does not", l, completed, later, sig, t0, ErrBadSignature},
		{"a changed signature does not", l, completed, exp, string(flipped), t0, ErrBadSignature},
		{"a truncated signature does not", l, completed, exp, sig[:32], t0, ErrBadSignature},
		{"a signature that is not hex does not", l, completed, exp, "zz" + sig[2:], t0, ErrBadSignature},
		{"an expiry that is not a number does not", l, completed, "soon", sig, t0, ErrBadSignature},
		{"no parameters do not", l, completed, "", "", t0, ErrBadSignature},
		{"another key's signature does not", l, completed, exp, otherSig, t0, ErrBadSignature},
		{"the link expires at its time", l, completed, exp, sig, expires, &ExpiredError{}},
		{"and stays expired", l, completed, exp, sig, expires.Add(time.Hour), &ExpiredError{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk.t = tt.at
			defer func() { clk.t = t0 }()
			err := tt.l.Verify(tt.g, tt.exp, tt.sig)
			switch want := tt.want.(type) {
			case nil:
				if err != nil {
					t.Errorf("Verify: %v", err)
				}
			case *ExpiredError:
				if _, ok := errors.AsType[*ExpiredError](err); !ok || !strings.Contains(err.Error(), "expired at 2026-11-30T12:01:00Z") {
					t.Errorf("Verify: %v, want that it expired at 12:01", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("Verify: %v, want %v", err, want)
				}
			}
			if err != nil && !errors.Is(err, mustgather.ErrForbidden) {
				t.Errorf("Verify: %v does not wrap ErrForbidden", err)
			}
		})
	}
}

func must(link string, _ time.Time, err error) string {
	if err != nil {
		panic(err)
	}
	return link
}

func TestALocalLinkStartsWithThePublicURLElseTheRequestsBase(t *testing.T) {
	clk := &clock{t0}
	ctx := WithBase(context.Background(), "http://127.0.0.1:8080")
	for _, tt := range []struct {
		name, public string
		ctx          context.Context
		want         string
		err          error
	}{
		{"the public URL wins", "https://mg.example.com", ctx, "https://mg.example.com/must-gather/7/data?", nil},
		{"without it the request's base", "", ctx, "http://127.0.0.1:8080/must-gather/7/data?", nil},
		{"with neither there is no link", "", context.Background(), "", ErrNoBase},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLocal(t, Config{TTL: time.Minute, PublicURL: tt.public}, clk)
			link, _, err := l.Link(tt.ctx, completed)
			if !errors.Is(err, tt.err) || !strings.HasPrefix(link, tt.want) {
				t.Errorf("Link: %q, %v; want %q…, %v", link, err, tt.want, tt.err)
			}
		})
	}
}

func TestOnlyACompletedGatheringWithAnArchiveGetsALink(t *testing.T) {
	l := newLocal(t, Config{TTL: time.Minute, PublicURL: "http://x"}, &clock{t0})
	for _, g := range []mustgather.Gathering{
		{ID: 1, Status: mustgather.StatusNew},
		{ID: 2, Status: mustgather.StatusInProgress},
		{ID: 3, Status: mustgather.StatusError, ArchiveName: "partial.tar.gz"},
		{ID: 4, Status: mustgather.StatusCompleted},
	} {
		if _, _, err := l.Link(context.Background(), g); !errors.Is(err, mustgather.ErrNotCompleted) {
			t.Errorf("gathering %d (%s): %v, want ErrNotCompleted", g.ID, g.Status, err)
		}
	}
}

func TestWithoutASecretTheKeyIsRandomAndLinksDoNotCrossProcesses(t *testing.T) {
	clk := &clock{t0}
	a, b := newLocal(t, Config{TTL: time.Minute, PublicURL: "http://x"}, clk), newLocal(t, Config{TTL: time.Minute, PublicURL: "http://x"}, clk)
	if !a.RandomKey() || newLocal(t, Config{TTL: time.Minute, Secret: secret}, clk).RandomKey() {
		t.Error("RandomKey does not say whether a secret was given")
	}
	exp, sig := params(t, must(a.Link(context.Background(), completed)))
	if err := a.Verify(completed, exp, sig); err != nil {
		t.Errorf("its own link: %v", err)
	}
	if err := b.Verify(completed, exp, sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another process's link: %v, want ErrBadSignature", err)
	}
}

func TestConfigCheckNamesWhatIsWrong(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    Config
		want []string
	}{
		{"the defaults are fine", DefaultConfig(), nil},
		{"seven days is the longest", Config{TTL: MaxTTL}, nil},
		{"a path prefix is fine", Config{TTL: time.Minute, PublicURL: "https://console.example.com/api/proxy/plugin/mg/"}, nil},
		{"too short", Config{TTL: 500 * time.Millisecond}, []string{"TTL: must be from 1s to 168h0m0s"}},
		{"too long", Config{TTL: MaxTTL + time.Second}, []string{"TTL: must be from"}},
		{"fractions of a second", Config{TTL: 1500 * time.Millisecond}, []string{"TTL: must be whole seconds"}},
		{"not http", Config{TTL: time.Minute, PublicURL: "ftp://x"}, []string{"PublicURL: \"ftp://x\": scheme must be http or https"}},
		{"no host", Config{TTL: time.Minute, PublicURL: "https:///api"}, []string{"PublicURL: \"https:///api\" has no host"}},
		{"a query", Config{TTL: time.Minute, PublicURL: "https://x/?a=b"}, []string{"PublicURL:"}},
		{"a short secret, not quoted", Config{TTL: time.Minute, Secret: "hunter2"}, []string{"Secret: must be at least 32 bytes, got 7"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.c.Check()
			if len(errs) != len(tt.want) {
				t.Fatalf("Check: %v, want %d errors", errs, len(tt.want))
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tt.want[i]) || strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q, want %q and no secret", err, tt.want[i])
				}
			}
		})
	}
}

func TestRequestBaseTrustsForwardedHeadersOnlyWhenTold(t *testing.T) {
	for _, tt := range []struct {
		name    string
		tls     bool
		host    string
		headers map[string]string
		trust   bool
		want    string
	}{
		{"a plain request", false, "127.0.0.1:8080", nil, false, "http://127.0.0.1:8080"},
		{"over TLS", true, "mg.example.com", nil, false, "https://mg.example.com"},
		{"forwarded headers are ignored by default", false, "10.0.0.5:8080",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.com"}, false, "http://10.0.0.5:8080"},
		{"and followed when trusted", false, "10.0.0.5:8080",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mg.example.com"}, true, "https://mg.example.com"},
		{"the first of a list counts", false, "10.0.0.5:8080",
			map[string]string{"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "mg.example.com, proxy.local"}, true, "https://mg.example.com"},
		{"an unknown scheme is ignored", false, "10.0.0.5:8080", map[string]string{"X-Forwarded-Proto": "javascript"}, true, "http://10.0.0.5:8080"},
		{"a host with a path is no host", false, "10.0.0.5:8080", map[string]string{"X-Forwarded-Host": "x.example.com/evil"}, true, ""},
		{"a host with user info is no host", false, "10.0.0.5:8080", map[string]string{"X-Forwarded-Host": "a@x.example.com"}, true, ""},
		{"no host at all", false, "", nil, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/must-gather/1/url", nil)
			r.Host = tt.host
			if !tt.tls {
				r.TLS = nil
			} else {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := RequestBase(r, tt.trust); got != tt.want {
				t.Errorf("RequestBase = %q, want %q", got, tt.want)
			}
		})
	}
}
