package kubegather

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// What Forklift's targeted script (collection-scripts/targeted and
// targeted_crs of kubev2v/forklift-must-gather) prints. It prints the
// first line once per Forklift namespace found (one per
// ForkliftController); `oc get` prints the NotFound lines for a PLAN or VM
// that is not there, and the script goes on and exits 0 having gathered
// nothing of it. Its own "ERROR: " lines come before it exits 1.
var (
	targetedForkliftLine = "Targeted gathering for Forklift in namespaces ["
	// targetedCleaning comes after the loop over the Forklift
	// namespaces: seen without a targetedForkliftLine before it, the
	// script found no ForkliftController.
	targetedCleaning = "Cleaning must-gather directory structure..."
	targetedNotFound = regexp.MustCompile(`^Error from server \(NotFound\): ([a-z]+)\.[a-z0-9.]+ "([^"]*)" not found`)
)

// targetedOutcome reads the log of a targeted gathering that asked for t
// and returns why it gathered nothing of what was asked, in the script's
// own words, or "" when it did gather, or the log does not say (a log
// that is not the script's says nothing).
// A NotFound of only some of what was asked is not nothing: the plan
// without the VM, or the other way round, still says something.
func targetedOutcome(t mustgather.Targeted, log string) string {
	var scriptErrors, notFound []string
	missing := map[string]bool{}
	forklift, cleaning := false, false
	for line := range strings.SplitSeq(log, "\n") {
		// The log is followed with timestamps.
		if ts, rest, ok := strings.Cut(line, " "); ok {
			if _, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				line = rest
			}
		}
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "ERROR: "):
			scriptErrors = append(scriptErrors, line)
		case strings.HasPrefix(line, targetedForkliftLine):
			forklift = true
		case line == targetedCleaning:
			cleaning = true
		default:
			if m := targetedNotFound.FindStringSubmatch(line); m != nil {
				notFound = append(notFound, line)
				missing[m[1]+"/"+m[2]] = true
			}
		}
	}
	switch {
	case len(scriptErrors) > 0:
		return "the targeted gathering stopped: " + strings.Join(scriptErrors, "; ")
	case cleaning && !forklift:
		return "the targeted gathering found no ForkliftController on the cluster, so it gathered nothing (the image printed no \"" + targetedForkliftLine + "…]\" line)"
	}
	var asked []string
	if t.Plan != "" {
		asked = append(asked, "plans/"+t.Plan)
	}
	if t.VM != "" {
		asked = append(asked, "virtualmachines/"+t.VM)
	}
	if len(asked) == 0 {
		return ""
	}
	for _, a := range asked {
		if !missing[a] {
			return ""
		}
	}
	var what []string
	if t.Plan != "" {
		what = append(what, fmt.Sprintf("plan %q", t.Plan))
	}
	if t.VM != "" {
		what = append(what, fmt.Sprintf("VM %q", t.VM))
	}
	where := "the Forklift namespace"
	if t.Namespace != "" {
		where = "namespace " + t.Namespace
	}
	return fmt.Sprintf("the targeted gathering found nothing: %s not found in %s (the image said: %s)",
		strings.Join(what, " and "), where, strings.Join(notFound, "; "))
}

// checkTargeted turns a targeted gathering that gathered nothing of what
// it was asked for into the pod's failure, in the script's own words, and
// adds the script's ERROR lines to its failure. Only a gather that ended
// is judged.
func (p *podRun) checkTargeted(gatherErr error) error {
	t, ok := mustgather.ParseTargeted(p.r.job.Gathering.Command)
	if st := containerStatus(p.lastPod(), gatherContainer); !ok || st == nil || st.State.Terminated == nil {
		// A gather cut short has not said all it would.
		return gatherErr
	}
	why := targetedOutcome(t, string(p.gatherLog()))
	switch {
	case why == "":
		return gatherErr
	case gatherErr == nil:
		return fmt.Errorf("pod %s: %s", p.name, why)
	case strings.HasPrefix(why, "the targeted gathering stopped: "):
		if strings.Contains(gatherErr.Error(), strings.TrimPrefix(why, "the targeted gathering stopped: ")) {
			// The kubelet made the script's last words the container's
			// termination message, which the error already quotes.
			return gatherErr
		}
		return fmt.Errorf("%w: %s", gatherErr, why)
	}
	return gatherErr
}
