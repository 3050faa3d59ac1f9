package runner

import (
	"io"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// redaction redacts one gathering: every file the gatherer adds to the
// archive, through the archive's filter, and its output, which becomes
// exec-output and must-gather.logs, line by line as it is written.
type redaction struct {
	rep *redact.Report
	log *redact.Writer
	aw  *archive.Writer
}

// redactionsFile is the archive's list of what was redacted and withheld.
const redactionsFile = "redactions.json"

// startRedaction turns redaction on for g when it asks for it, and returns
// where the gatherer's output goes: out, or a redacting writer to out.
func (r *Runner) startRedaction(g mustgather.Gathering, aw *archive.Writer, out io.Writer) (*redaction, io.Writer) {
	if !g.Redact {
		return nil, out
	}
	x := &redaction{rep: redact.NewReport(), aw: aw}
	x.log = r.redactor.Writer("must-gather.logs", out, x.rep)
	aw.SetFilter(r.redactor.Filter(x.rep))
	return x, x.log
}

// stop ends the redaction of what the gatherer adds: the output so far is
// redacted and passed on, and entries added from now on, the runner's own,
// are stored as they are.
func (x *redaction) stop() {
	if x == nil {
		return
	}
	x.log.Close()
	x.aw.SetFilter(nil)
}

// addReport adds redactions.json to the archive.
func (x *redaction) addReport(now time.Time) error {
	if x == nil {
		return nil
	}
	return x.aw.AddBytes(redactionsFile, x.rep.JSON(), now)
}

// summary returns what the gathering's JSON shows of the redaction.
func (x *redaction) summary() *mustgather.Redaction {
	if x == nil {
		return nil
	}
	s := x.rep.Summary()
	return &mustgather.Redaction{Files: s.Files, Matches: s.Matches, Withheld: s.Withheld}
}
