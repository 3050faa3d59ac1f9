package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks/sinkstest"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// downloadLink is the answer of GET /must-gather/{id}/url.
type downloadLink struct {
	URL       string `json:"url"`
	ExpiresAt string `json:"expires-at"`
}

// link asks for a download link of a completed gathering.
func (s *system) link(t *testing.T, id uint64) (downloadLink, time.Time) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/must-gather/%d/url", s.base, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET url: %d %s", resp.StatusCode, b)
	}
	var l downloadLink
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339, l.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	return l, at
}

// fetch GETs u with client, as a browser follows a link: no credentials.
func fetch(t *testing.T, client *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// gatherAndWait starts a gathering of gatherCommand and waits for it to
// complete.
func gatherAndWait(t *testing.T, s *system, name string) gathering {
	t.Helper()
	g := s.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"custom-name": %q, "command": %q}`, name, gatherCommand)))
	done := s.waitEnded(t, g.ID)
	if done.Status != "completed" {
		t.Fatalf("%s\n%s", done.Status, done.ExecOutput)
	}
	return done
}

// s3Env is the environment of a system on the test MinIO m.
func s3Env(m *testenv.S3) map[string]string {
	return map[string]string{
		"ARCHIVE_STORE": "s3", "S3_ENDPOINT": m.Endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": testenv.Name("links"), "S3_USE_TLS": "false",
	}
}

func TestAnS3DownloadLinkServesTheArchiveAtThePublicEndpointUntilItExpires(t *testing.T) {
	m := testenv.MinIO(t)
	_, port, err := net.SplitHostPort(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The system reaches MinIO at 127.0.0.1; a browser, here, at
	// localhost: another host name for the same server.
	public := "localhost:" + port
	s := start(t, t.TempDir(), with(s3Env(m), map[string]string{"S3_PUBLIC_ENDPOINT": public, "DOWNLOAD_URL_TTL": "2s"}))
	g := gatherAndWait(t, s, "plan:s3")

	dataResp, data := fetch(t, http.DefaultClient, fmt.Sprintf("%s/must-gather/%d/data", s.base, g.ID))
	if dataResp.StatusCode != http.StatusOK {
		t.Fatalf("GET data: %d %s", dataResp.StatusCode, data)
	}
	asked := time.Now()
	l, expires := s.link(t, g.ID)
	u, err := url.Parse(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != public {
		t.Errorf("link to %s, want the public endpoint %s", u.Host, public)
	}
	if d := expires.Sub(asked); d < time.Second || d > 3*time.Second {
		t.Errorf("expires-at %s is %s after the request, want about 2s", l.ExpiresAt, d)
	}

	resp, body := fetch(t, http.DefaultClient, l.URL)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET link: %d, %d bytes; want 200 and the %d bytes of /data", resp.StatusCode, len(body), len(data))
	}
	if got, want := resp.Header.Get("Content-Disposition"), fmt.Sprintf("attachment; filename=%q", g.ArchiveName); got != want {
		t.Errorf("Content-Disposition %q, want %q", got, want)
	}
	if resp.Header.Get("Authorization") != "" || u.User != nil {
		t.Errorf("the link carries credentials")
	}

	// S3 stops honouring the link once its time is up (its clock is this
	// machine's); poll rather than guess when.
	var failed time.Time
	testenv.Eventually(t, 20*time.Second, "the link to stop working", func() bool {
		resp, body := fetch(t, http.DefaultClient, l.URL)
		if resp.StatusCode == http.StatusOK {
			return false
		}
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "expired") {
			t.Fatalf("after expiry: %d %s, want 403 saying it expired", resp.StatusCode, body)
		}
		failed = time.Now()
		return true
	})
	if failed.Before(expires.Add(-time.Second)) {
		t.Errorf("the link stopped working at %s, before its expires-at %s", failed.Format(time.RFC3339Nano), l.ExpiresAt)
	}
	t.Logf("link expires-at %s, stopped working at %s", l.ExpiresAt, failed.UTC().Format(time.RFC3339Nano))
}

func TestALocalDownloadLinkWorksInTheEmbeddedMode(t *testing.T) {
	s := start(t, t.TempDir(), map[string]string{"LOG_LEVEL": "info"})
	g := gatherAndWait(t, s, "plan:local")
	_, data := fetch(t, http.DefaultClient, fmt.Sprintf("%s/must-gather/%d/data", s.base, g.ID))
	l, _ := s.link(t, g.ID)
	if !strings.HasPrefix(l.URL, fmt.Sprintf("%s/must-gather/%d/data?expires=", s.base, g.ID)) {
		t.Errorf("link %s is not the API's download path", l.URL)
	}
	resp, body := fetch(t, http.DefaultClient, l.URL)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET link: %d, %d bytes; want 200 and the %d bytes of /data", resp.StatusCode, len(body), len(data))
	}
	if !strings.Contains(s.log.String(), "download links are signed with a random key of this process") {
		t.Errorf("the random key is not logged as such")
	}
}

func TestS3WithAPrivateCAWorksWithS3_CA_FILEAndFailsClearlyWithout(t *testing.T) {
	ca := testenv.NewCA(t, "s3-ca")
	m := testenv.MinIOTLS(t, ca)
	env := with(s3Env(m), map[string]string{"S3_USE_TLS": "true"})

	t.Run("without S3_CA_FILE the start fails naming the certificate and the setting", func(t *testing.T) {
		err, _ := runToFailure(t, env, 60*time.Second)
		for _, want := range []string{"certificate signed by unknown authority", "S3_CA_FILE"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})

	t.Run("with it gatherings are archived, downloaded and linked to", func(t *testing.T) {
		s := start(t, t.TempDir(), with(env, map[string]string{"S3_CA_FILE": ca.CertFile}))
		g := gatherAndWait(t, s, "plan:tls")
		if files := s.download(t, g); files["namespaces/openshift-mtv/crs/plan.yaml"] != "kind: Plan\n" {
			t.Errorf("archive holds %v", files)
		}
		l, _ := s.link(t, g.ID)
		if !strings.HasPrefix(l.URL, "https://"+m.Endpoint+"/") {
			t.Errorf("link %s, want one of https://%s", l.URL, m.Endpoint)
		}
		browser := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}}
		if resp, body := fetch(t, browser, l.URL); resp.StatusCode != http.StatusOK || int64(len(body)) != g.ArchiveSize {
			t.Errorf("GET link: %d, %d bytes; want 200 and %d", resp.StatusCode, len(body), g.ArchiveSize)
		}
	})
}

func TestDownloadSettingsReachTheirPackagesAndAreCheckedAtStart(t *testing.T) {
	secret := strings.Repeat("k", 32)
	for _, tt := range []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{"the defaults", nil, "", func(t *testing.T, c config) {
			if c.Presign.TTL != 15*time.Minute || c.Presign.Secret != "" || c.Presign.PublicURL != "" || c.S3.PublicEndpoint != "" || c.S3.CAFile != "" || c.API.TrustForwarded {
				t.Errorf("defaults %+v %+v", c.Presign, c.S3)
			}
		}},
		{"every setting", map[string]string{
			"DOWNLOAD_URL_TTL": "1h", "DOWNLOAD_URL_SECRET": secret, "API_PUBLIC_URL": "https://console.example.com/api/proxy/mg",
			"API_TRUST_FORWARDED": "true", "S3_PUBLIC_ENDPOINT": "https://s3.example.com", "S3_CA_FILE": "/etc/s3/ca.crt",
		}, "", func(t *testing.T, c config) {
			got := []any{c.Presign.TTL, c.Presign.Secret, c.Presign.PublicURL, c.API.TrustForwarded, c.S3.PublicEndpoint, c.S3.CAFile}
			want := []any{time.Hour, secret, "https://console.example.com/api/proxy/mg", true, "https://s3.example.com", "/etc/s3/ca.crt"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", got, want)
			}
		}},
		{"seven days is the longest lifetime", map[string]string{"DOWNLOAD_URL_TTL": "168h"}, "", nil},
		{"a longer one is refused", map[string]string{"DOWNLOAD_URL_TTL": "169h"}, "DOWNLOAD_URL_TTL: must be from 1s to 168h0m0s (S3's limits), got 169h0m0s", nil},
		{"a shorter one than a second is refused", map[string]string{"DOWNLOAD_URL_TTL": "500ms"}, "DOWNLOAD_URL_TTL: must be from 1s", nil},
		{"fractions of a second are refused", map[string]string{"DOWNLOAD_URL_TTL": "1.5s"}, "DOWNLOAD_URL_TTL: must be whole seconds", nil},
		{"a short secret is refused without being shown", map[string]string{"DOWNLOAD_URL_SECRET": "hunter2"}, "DOWNLOAD_URL_SECRET: must be at least 32 bytes, got 7", nil},
		{"a public URL without a scheme is refused", map[string]string{"API_PUBLIC_URL": "mg.example.com"}, `API_PUBLIC_URL: "mg.example.com": scheme must be http or https`, nil},
		{"links for subscribers with the local store need the API's public URL", map[string]string{"NOTIFIER_SINK_PRESIGNED": "true"},
			"NOTIFIER_SINK_PRESIGNED: with the local archive store, download links for subscribers need API_PUBLIC_URL", nil},
		{"which is enough", map[string]string{"NOTIFIER_SINK_PRESIGNED": "true", "API_PUBLIC_URL": "https://mg.example.com"}, "", nil},
		{"a public S3 endpoint with a path is refused", map[string]string{"S3_PUBLIC_ENDPOINT": "https://s3.example.com/bucket"}, "S3_PUBLIC_ENDPOINT:", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := loadOrWantErr(t, tt.env, tt.wantErr)
			if !ok {
				return
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
	_, err := loadConfig([]string{"x"}, func(k string) string { return map[string]string{"DOWNLOAD_URL_SECRET": "hunter2"}[k] })
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v shows the secret", err)
	}
}

func TestATrustedSubscriberGetsADownloadLinkThatWorks(t *testing.T) {
	m := testenv.MinIO(t)
	for _, tt := range []struct {
		name string
		env  func(t *testing.T) map[string]string
		host string // the link's, "" for the API's
	}{
		{"S3, presigned for the public endpoint", func(t *testing.T) map[string]string { return s3Env(m) }, m.Endpoint},
		{"the local store, signed by the API", func(t *testing.T) map[string]string {
			port, err := testenv.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			return map[string]string{"HTTP_ADDRESS": addr, "API_PUBLIC_URL": "http://" + addr}
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := sinkstest.New(t, nil)
			s := start(t, t.TempDir(), with(tt.env(t), map[string]string{"NOTIFIER_SINKS": r.URL, "NOTIFIER_SINK_PRESIGNED": "true"}))
			g := s.post(t, "application/json", strings.NewReader(fmt.Sprintf(`{"command": %q}`, gatherCommand)))
			testenv.Eventually(t, 60*time.Second, "the completed event at the subscriber", func() bool { return len(r.Deliveries()) > 0 })
			var data struct {
				ArchiveName string `json:"archive-name"`
				URL         string `json:"download-url"`
				ExpiresAt   string `json:"download-url-expires-at"`
			}
			if err := json.Unmarshal(r.Deliveries()[0].Event.Data(), &data); err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(data.URL)
			if err != nil || data.ExpiresAt == "" {
				t.Fatalf("download-url %q (%v), expires-at %q", data.URL, err, data.ExpiresAt)
			}
			wantHost := tt.host
			if wantHost == "" {
				wantHost = strings.TrimPrefix(s.base, "http://")
			}
			if u.Host != wantHost {
				t.Errorf("link to %s, want %s", u.Host, wantHost)
			}
			_, archive := fetch(t, http.DefaultClient, fmt.Sprintf("%s/must-gather/%d/data", s.base, g.ID))
			resp, body := fetch(t, http.DefaultClient, data.URL)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, archive) {
				t.Errorf("GET download-url: %d, %d bytes; want 200 and the %d bytes of /data", resp.StatusCode, len(body), len(archive))
			}
		})
	}
}
