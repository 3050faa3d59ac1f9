package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdpfetch "github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/kubev2v/must-gather-functions/functions/web"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// chromiumBin is the browser of the web page's tests: CHROMIUM_BIN, else
// chromium on the PATH (Debian's package, which `make tools` installs).
// Without one the tests skip, except under CI, where they fail.
func chromiumBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CHROMIUM_BIN"); bin != "" {
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	if bin, err := exec.LookPath("chromium"); err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium (CHROMIUM_BIN, or chromium on the PATH): `make tools` installs Debian's chromium; CI runs the browser tests")
	}
	t.Skip("no Chromium (CHROMIUM_BIN, or chromium on the PATH): `make tools` installs Debian's chromium")
	return ""
}

// tab is a page in a headless Chromium of its own: a fresh profile, no
// network but loopback, downloads saved into a folder of the test.
type tab struct {
	t         *testing.T
	ctx       context.Context
	downloads string
	// nextDownload waits for the next download to begin and finish.
	nextDownload func() (saved, error)

	mu       sync.Mutex
	problems []string // uncaught exceptions and policy violations in the page
}

// saved is a file the browser downloaded.
type saved struct {
	url  string // where from
	name string // the name the browser would give it
	file string // where it is
}

func openTab(t *testing.T) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumBin(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })

	tb := &tab{t: t, ctx: ctx, downloads: t.TempDir()}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			// Failed requests are the API's answers, which the test checks
			// itself; a thrown error or a refusal of the policy is a bug.
			if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				tb.mu.Lock()
				tb.problems = append(tb.problems, m.String())
				tb.mu.Unlock()
			}
		}
	}()
	begins, stopBegins := iter.Pull2(chromedp.Events(ctx, browser.DownloadWillBegin))
	progress, stopProgress := iter.Pull2(chromedp.Events(ctx, browser.DownloadProgress))
	t.Cleanup(func() { stopBegins(); stopProgress() })
	tb.nextDownload = func() (saved, error) {
		begin, err, ok := begins()
		if !ok || err != nil {
			return saved{}, fmt.Errorf("no download began: %v", err)
		}
		for {
			ev, err, ok := progress()
			if !ok || err != nil {
				return saved{}, fmt.Errorf("download of %s did not finish: %v", begin.URL, err)
			}
			if ev.GUID != begin.GUID {
				continue
			}
			switch ev.State {
			case browser.DownloadProgressStateCompleted:
				return saved{url: begin.URL, name: begin.SuggestedFilename, file: filepath.Join(tb.downloads, ev.GUID)}, nil
			case browser.DownloadProgressStateCanceled:
				return saved{}, fmt.Errorf("download of %s canceled", begin.URL)
			}
		}
	}
	events := true
	tb.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: tb.downloads, EventsEnabled: &events,
		})
		return err
	}))
	return tb
}

// do runs steps in the tab and fails the test at the first error.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v%s", err, tb.problemsText())
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the element sel is visible, at most within d.
func (tb *tab) waitFor(sel string, d time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		text, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string]("document.body.innerText"))
		tb.t.Fatalf("%s not visible within %s: %v%s\npage:\n%s", sel, d, err, tb.problemsText(), text)
	}
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf("document.querySelector(%q).textContent", sel))
}

func (tb *tab) problemsText() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.problems) == 0 {
		return ""
	}
	return "\nbrowser console:\n" + strings.Join(tb.problems, "\n")
}

// download clicks sel and returns the download it starts, and its bytes.
func (tb *tab) download(sel string) (saved, []byte) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel)))
	d, err := tb.nextDownload()
	if err != nil {
		tb.t.Fatalf("click %s: %v%s", sel, err, tb.problemsText())
	}
	b, err := os.ReadFile(d.file)
	if err != nil {
		tb.t.Fatal(err)
	}
	return d, b
}

// withoutDownloadLinks answers the page's requests for a download link
// (GET /must-gather/{id}/url) in the browser with the API's 404, as a
// server without download links answers, so that the page downloads
// from /data.
func (tb *tab) withoutDownloadLinks() {
	tb.t.Helper()
	paused := chromedp.Events(tb.ctx, cdpfetch.RequestPaused)
	tb.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, cdpfetch.Enable, cdpfetch.EnableParams{Patterns: []*cdpfetch.RequestPattern{{URLPattern: "*/must-gather/*/url"}}})
		return err
	}))
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(tb.ctx, cdpfetch.FulfillRequest, cdpfetch.FulfillRequestParams{
				RequestID: ev.RequestID, ResponseCode: http.StatusNotFound,
				ResponseHeaders: []*cdpfetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}},
				Body:            []byte(`{"error": "no such resource: ` + ev.Request.URL + `"}`),
			})
		}
	}()
}

// checkNoProblems fails the test if the page threw or broke its policy.
func (tb *tab) checkNoProblems() {
	tb.t.Helper()
	if p := tb.problemsText(); p != "" {
		tb.t.Errorf("the page had problems:%s", p)
	}
}

// screenshot saves the tab as docs/web.png when MGF_UPDATE_SCREENSHOT=1.
func (tb *tab) screenshot() {
	tb.t.Helper()
	if os.Getenv("MGF_UPDATE_SCREENSHOT") != "1" {
		return
	}
	png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "web.png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// fetch GETs path from the system, with token when not empty, and
// fails the test unless the answer is 200.
func (s *system) fetch(t *testing.T, path, token string) []byte {
	t.Helper()
	status, b := s.send(t, http.MethodGet, path, token, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, b)
	}
	return b
}

// pageCommand is what the tests start from the form: output over about a
// second, a line that would be markup if the page rendered output as HTML,
// and a file for the archive.
const pageCommand = `echo '<img src=x id=injected>'; for i in 1 2 3; do echo step $i; sleep 0.3; done; echo gathered > gathered.txt`

// startFromTheForm fills the form for any command and submits it with the
// keyboard (Enter in a field), once the page has its live updates. It
// records every status the list shows for the first gathering, in
// window.mgfStatuses.
func (tb *tab) startFromTheForm(name string) {
	tb.t.Helper()
	tb.waitFor(`#live[data-state="on"]`, 20*time.Second)
	_ = eval[bool](tb, `(() => {
		window.mgfStatuses = [];
		const record = () => {
			const s = document.querySelector('tr[data-id="1"] .status');
			if (s && window.mgfStatuses.at(-1) !== s.dataset.status) {
				window.mgfStatuses.push(s.dataset.status);
				window.mgfLastStatusAt = Date.now();
			}
		};
		new MutationObserver(record).observe(document.querySelector('#gatherings tbody'), {subtree: true, childList: true, attributes: true});
		return true;
	})()`)
	tb.do(
		chromedp.Click(chromedp.CSS(`input[name="kind"][value="custom"]`)),
		chromedp.WaitVisible(chromedp.ID("f-command")),
		chromedp.SetValue(chromedp.ID("f-command"), pageCommand),
		chromedp.SendKeys(chromedp.ID("f-custom-name"), name+"\r"),
	)
}

// watchItComplete waits for gathering id to show as completed in the list,
// then checks its output as the detail view shows it.
func (tb *tab) watchItComplete(id int) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf(`tr[data-id="%d"]`, id), 10*time.Second)
	tb.waitFor(fmt.Sprintf(`tr[data-id="%d"] .status[data-status="completed"]`, id), 60*time.Second)
	tb.waitFor(`#detail-fields .status[data-status="completed"]`, 5*time.Second)
	if eval[bool](tb, "window.mgfNotReloaded !== true") {
		tb.t.Error("the page was reloaded while the gathering ran")
	}
	// The command runs for about a second: the event stream shows it
	// running before it shows it completed.
	if seen := eval[[]string](tb, "window.mgfStatuses"); !slices.Contains(seen, "inprogress") || seen[len(seen)-1] != "completed" {
		tb.t.Errorf("statuses the list showed: %v, want inprogress, then completed last", seen)
	}
	out := tb.text("#output")
	if !strings.Contains(out, "<img src=x id=injected>") || !strings.Contains(out, "step 3") {
		tb.t.Errorf("output shown: %q, want the command's output as text", out)
	}
	if eval[bool](tb, `document.getElementById("injected") !== null`) {
		tb.t.Error("output became markup: an element from the gathering's output is in the page")
	}
}

// logStatusDelay logs how long after its record changed to completed the
// page showed gathering 1 completed: the delay of the event stream and the
// page together, on one machine's clock.
func logStatusDelay(t *testing.T, tb *tab, s *system, token string) {
	t.Helper()
	var g struct {
		UpdatedAt time.Time `json:"updated-at"`
	}
	if err := json.Unmarshal(s.fetch(t, "/must-gather/1", token), &g); err != nil {
		t.Fatal(err)
	}
	shown := time.UnixMilli(int64(eval[float64](tb, "window.mgfLastStatusAt")))
	t.Logf("the page showed completed %s after the record changed", shown.Sub(g.UpdatedAt).Round(time.Millisecond))
}

// checkDownload checks that the browser saved the archive of gathering 1,
// byte for byte, under its archive-name, from a URL that starts with from.
func checkDownload(t *testing.T, s *system, token string, d saved, got []byte, from string) {
	t.Helper()
	if want := s.fetch(t, "/must-gather/1/data", token); !bytes.Equal(got, want) {
		t.Errorf("downloaded %d bytes, want the %d bytes of /must-gather/1/data", len(got), len(want))
	}
	var g gathering
	if err := json.Unmarshal(s.fetch(t, "/must-gather/1", token), &g); err != nil {
		t.Fatal(err)
	}
	if d.name != g.ArchiveName || !strings.HasPrefix(d.url, from) {
		t.Errorf("downloaded %q from %s, want %q from %s…", d.name, d.url, g.ArchiveName, from)
	}
}

func TestThePageStartsAGatheringWatchesItCompleteAndDownloadsIt(t *testing.T) {
	t.Parallel()
	s := start(t, t.TempDir(), map[string]string{"GATHERER": "process"})
	tb := openTab(t)
	tb.do(chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("start-form")))
	_ = eval[bool](tb, "window.mgfNotReloaded = true")

	tb.startFromTheForm("from-the-page")
	tb.watchItComplete(1)
	logStatusDelay(t, tb, s, "")

	d, got := tb.download(`tr[data-id="1"] button.download`)
	// The page follows the API's signed download link (local store).
	checkDownload(t, s, "", d, got, s.base+"/must-gather/1/data?expires=")
	tb.screenshot()

	// An error of the API reaches the user with its message, and the
	// field at fault is marked.
	tb.do(
		chromedp.SetValue(chromedp.ID("f-timeout"), "forever"),
		chromedp.Click(chromedp.ID("start")),
	)
	tb.waitFor("#alert", 10*time.Second)
	if msg := tb.text("#alert"); !strings.Contains(msg, "HTTP 400") || !strings.Contains(msg, "timeout") {
		t.Errorf("alert: %q, want the API's 400 naming timeout", msg)
	}
	if eval[string](tb, `document.activeElement.id + " " + document.activeElement.getAttribute("aria-invalid")`) != "f-timeout true" {
		t.Error("the field the API named is not focused and marked invalid")
	}
	tb.checkNoProblems()
}

func TestWithAuthOnThePageAsksForATokenAndUsesIt(t *testing.T) {
	t.Parallel()
	k := kube.Start(t)
	s := start(t, t.TempDir(), map[string]string{"AUTH": "on", "KUBECONFIG": k.Kubeconfig, "GATHERER": "process"})
	tb := openTab(t)
	// The page itself needs no token; the list does, so the page asks.
	tb.do(chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("start-form")))
	_ = eval[bool](tb, "window.mgfNotReloaded = true")
	tb.waitFor("#token-section", 10*time.Second)
	if msg := tb.text("#alert"); !strings.Contains(msg, "HTTP 401") || !strings.Contains(msg, "Authorization") {
		t.Errorf("alert: %q, want the API's 401", msg)
	}
	if eval[string](tb, "document.activeElement.id") != "token" {
		t.Error("the token field does not have the focus")
	}

	useToken := func(token string) {
		t.Helper()
		tb.do(
			chromedp.SetValue(chromedp.ID("token"), token),
			chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		)
	}
	useToken(k.NoRights.BearerToken)
	tb.waitFor("#alert", 10*time.Second)
	testenv.Eventually(t, 10*time.Second, "the alert shows the 403 of a user without rights", func() bool { return strings.Contains(tb.text("#alert"), "HTTP 403") })
	tb.waitFor("#token-section", 10*time.Second) // asks for another token

	useToken(k.Admin.BearerToken)
	tb.startFromTheForm("with-a-token")
	tb.watchItComplete(1)
	logStatusDelay(t, tb, s, k.Admin.BearerToken)
	// Without download links, the token goes along with a fetch of /data.
	tb.withoutDownloadLinks()
	d, got := tb.download(`tr[data-id="1"] button.download`)
	checkDownload(t, s, k.Admin.BearerToken, d, got, "blob:")

	// The token stays in memory: not in the field, not in any storage.
	stored := eval[string](tb, `document.getElementById("token").value + JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie`)
	if strings.Contains(stored, k.Admin.BearerToken) {
		t.Error("the token is kept outside the page's memory")
	}
	tb.checkNoProblems()
}

// TestThePageReadsAnEventStreamCutAnywhere runs the page's own stream
// parser in the browser on a stream cut into chunks of every size, with
// each kind of line ending: the events are the same however it arrives.
func TestThePageReadsAnEventStreamCutAnywhere(t *testing.T) {
	t.Parallel()
	page, err := web.New(web.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(page)
	t.Cleanup(srv.Close)
	tb := openTab(t)
	tb.do(chromedp.Navigate(srv.URL + "/"))
	const stream = "retry: 3000\r\n: connected\r\n\r\n" +
		"id: 5\r\nevent: gathering\r\ndata: {\"a\":\r\ndata:1}\r\n\r\n" +
		"id: 6\ndata: x\n\n: heartbeat\r\rdata: y\r\rid\nevent: gathering\ndata\n\n" +
		"data: no blank line yet"
	got, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`(async () => {
		const { EventStreamParser } = await import('./static/sse.js');
		const text = %q;
		const results = [];
		for (const size of [1, 2, 3, 5, 7, 11, text.length]) {
			const seen = [];
			const p = new EventStreamParser({
				onEvent: (e) => seen.push('event ' + e.id + ' ' + e.type + ' ' + JSON.stringify(e.data)),
				onComment: (c) => seen.push('comment ' + c),
				onRetry: (ms) => seen.push('retry ' + ms),
			});
			for (let i = 0; i < text.length; i += size) p.push(text.slice(i, i + size));
			results.push(seen.join('; '));
		}
		return results;
	})()`, stream), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	want := `retry 3000; comment connected; event 5 gathering "{\"a\":\n1}"; event 6 message "x"; comment heartbeat; event 6 message "y"; event  gathering ""`
	for i, g := range got {
		if g != want {
			t.Errorf("chunk size #%d:\n got %s\nwant %s", i, g, want)
		}
	}
	tb.checkNoProblems()
}

// streamRequests records the Last-Event-ID header ("" for none) of every
// request the page makes to GET /events, from now on.
func (tb *tab) streamRequests() func() []string {
	tb.t.Helper()
	sent := chromedp.Events(tb.ctx, network.RequestWillBeSent)
	tb.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
		return err
	}))
	var mu sync.Mutex
	var ids []string
	go func() {
		for ev, err := range sent {
			if err != nil {
				return
			}
			if !strings.HasSuffix(ev.Request.URL, "/events") {
				continue
			}
			id := ""
			for k, v := range ev.Request.Headers {
				if strings.EqualFold(k, "Last-Event-ID") {
					id = fmt.Sprint(v)
				}
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ids)
	}
}

// TestThePageResumesItsStreamWhenTheServerComesBack stops the whole system
// under an open page and starts it again on the same address and data: the
// page says it lost the connection, reconnects by itself asking to resume
// after the last event it had (Last-Event-ID), and shows what happens
// next without a reload.
func TestThePageResumesItsStreamWhenTheServerComesBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, dir, map[string]string{"GATHERER": "process"})
	tb := openTab(t)
	requests := tb.streamRequests()
	tb.do(chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("start-form")))
	_ = eval[bool](tb, "window.mgfNotReloaded = true")
	tb.waitFor(`#live[data-state="on"]`, 20*time.Second)
	s.post(t, "application/json", strings.NewReader(`{"command": "true"}`))
	tb.waitFor(`tr[data-id="1"] .status[data-status="completed"]`, 60*time.Second)

	s.stop()
	tb.waitFor(`#live[data-state="waiting"]`, 20*time.Second)
	s = start(t, dir, map[string]string{"GATHERER": "process", "HTTP_ADDRESS": strings.TrimPrefix(s.base, "http://")})
	tb.waitFor(`#live[data-state="on"]`, 60*time.Second)
	s.post(t, "application/json", strings.NewReader(`{"command": "true"}`))
	tb.waitFor(`tr[data-id="2"] .status[data-status="completed"]`, 60*time.Second)

	if eval[bool](tb, "window.mgfNotReloaded !== true") {
		t.Error("the page was reloaded")
	}
	ids := requests()
	t.Logf("Last-Event-ID of the stream's requests: %q", ids)
	if len(ids) < 2 || ids[0] != "" || !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(ids[len(ids)-1]) {
		t.Errorf("Last-Event-ID of the stream's requests: %q, want none at first and the last event's id when it reconnects", ids)
	}
	tb.checkNoProblems()
}
