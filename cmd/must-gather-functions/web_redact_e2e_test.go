package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestThePagesRedactBoxTurnsRedactionOffAndOnWhereTheServerRedactsByDefault
// runs a server with REDACT_DEFAULT=true: the form's box starts checked,
// a gathering started with it unchecked is not redacted, and one started
// with it checked is.
func TestThePagesRedactBoxTurnsRedactionOffAndOnWhereTheServerRedactsByDefault(t *testing.T) {
	t.Parallel()
	s := start(t, t.TempDir(), map[string]string{"GATHERER": "process", "REDACT_DEFAULT": "true"})
	tb := openTab(t)
	tb.do(chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("start-form")))
	if !eval[bool](tb, `document.getElementById("f-redact").checked`) {
		t.Fatal("the redact box is not checked on a server that redacts by default")
	}
	tb.do(
		chromedp.Click(chromedp.CSS(`input[name="kind"][value="custom"]`)),
		chromedp.WaitVisible(chromedp.ID("f-command")),
		chromedp.Click(chromedp.CSS(`#start-form details > summary`)), // More options
		chromedp.WaitVisible(chromedp.ID("f-redact")),
	)
	for id, redact := range []bool{false, true} {
		id++
		if eval[bool](tb, `document.getElementById("f-redact").checked`) != redact {
			tb.do(chromedp.Click(chromedp.ID("f-redact")))
		}
		if eval[bool](tb, `document.getElementById("f-redact").checked`) != redact {
			t.Fatalf("a click on the redact box did not set it to %v", redact)
		}
		tb.do(
			chromedp.SetValue(chromedp.ID("f-command"), "echo gathered > gathered.txt"),
			chromedp.SetValue(chromedp.ID("f-custom-name"), fmt.Sprintf("redact-%v", redact)),
			chromedp.Click(chromedp.ID("start")),
		)
		tb.waitFor(fmt.Sprintf(`tr[data-id="%d"] .status[data-status="completed"]`, id), 60*time.Second)
		var g struct {
			CustomName string `json:"custom-name"`
			Redact     bool   `json:"redact"`
			Redaction  *struct {
				Files int `json:"files"`
			} `json:"redaction"`
		}
		if err := json.Unmarshal(s.fetch(t, fmt.Sprintf("/must-gather/%d", id), ""), &g); err != nil {
			t.Fatal(err)
		}
		if g.CustomName != fmt.Sprintf("redact-%v", redact) || g.Redact != redact || (g.Redaction != nil) != redact {
			t.Errorf("gathering %d started with the box checked %v: %+v, want redact %v", id, redact, g, redact)
		}
	}
	tb.checkNoProblems()
}
