package main

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

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
	progress  func() (string, error) // waits for the next finished download, its file name

	mu       sync.Mutex
	problems []string // uncaught exceptions and policy violations in the page
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
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	next, stop := iter.Pull2(progress)
	t.Cleanup(stop)
	tb.progress = func() (string, error) {
		for {
			ev, err, ok := next()
			if !ok || err != nil {
				return "", fmt.Errorf("no finished download: %v", err)
			}
			switch ev.State {
			case browser.DownloadProgressStateCompleted:
				return ev.GUID, nil
			case browser.DownloadProgressStateCanceled:
				return "", fmt.Errorf("download %s canceled", ev.GUID)
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

// download clicks sel and returns the bytes of the file the browser saved.
func (tb *tab) download(sel string) []byte {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel)))
	guid, err := tb.progress()
	if err != nil {
		tb.t.Fatalf("click %s: %v%s", sel, err, tb.problemsText())
	}
	b, err := os.ReadFile(filepath.Join(tb.downloads, guid))
	if err != nil {
		tb.t.Fatal(err)
	}
	return b
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
// keyboard (Enter in a field).
func (tb *tab) startFromTheForm(name string) {
	tb.t.Helper()
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
	out := tb.text("#output")
	if !strings.Contains(out, "<img src=x id=injected>") || !strings.Contains(out, "step 3") {
		tb.t.Errorf("output shown: %q, want the command's output as text", out)
	}
	if eval[bool](tb, `document.getElementById("injected") !== null`) {
		tb.t.Error("output became markup: an element from the gathering's output is in the page")
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

	got := tb.download(`tr[data-id="1"] button.download`)
	want := s.fetch(t, "/must-gather/1/data", "")
	if !bytes.Equal(got, want) {
		t.Errorf("downloaded %d bytes, want the %d bytes of /must-gather/1/data", len(got), len(want))
	}
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
	got := tb.download(`tr[data-id="1"] button.download`)
	want := s.fetch(t, "/must-gather/1/data", k.Admin.BearerToken)
	if !bytes.Equal(got, want) {
		t.Errorf("downloaded %d bytes, want the %d bytes of /must-gather/1/data", len(got), len(want))
	}

	// The token stays in memory: not in the field, not in any storage.
	stored := eval[string](tb, `document.getElementById("token").value + JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie`)
	if strings.Contains(stored, k.Admin.BearerToken) {
		t.Error("the token is kept outside the page's memory")
	}
	tb.checkNoProblems()
}
