package trigger

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/forklift"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Decision is what the trigger does about one migration.
type Decision struct {
	// Start is true when the migration failed and a gathering starts;
	// otherwise Why says why not.
	Start bool
	Why   string
	// Key is the migration's uid: a migration starts one gathering at
	// most, however often its failure is reported.
	Key string
	// FailedAt is when the Failed condition turned true; zero when the
	// object does not say.
	FailedAt time.Time
	// Request is the targeted gathering of the migration's plan.
	Request mustgather.Request
	// Cause is the gathering's cause; Preface what its exec-output begins
	// with: the failure's message and the per-VM errors.
	Cause   string
	Preface string
}

// Decide returns what to do about migration m of plan p, as the API server
// has them: a migration whose Failed condition is true, and that neither
// succeeded nor was canceled, starts a targeted gathering of its plan.
// p may be the zero Plan when it could not be read; the migration's plan
// reference then names the plan.
func Decide(m forklift.Migration, p forklift.Plan) Decision {
	d := Decision{Key: m.Metadata.UID}
	failed, ok := m.Status.Conditions.True(forklift.CondFailed)
	switch {
	case m.Metadata.UID == "":
		d.Why = "the migration has no uid"
		return d
	case !ok:
		d.Why = "the migration has not failed"
		return d
	}
	for _, t := range []string{forklift.CondCanceled, forklift.CondSucceeded} {
		if _, ok := m.Status.Conditions.True(t); ok {
			d.Why = "the migration is " + strings.ToLower(t)
			return d
		}
	}
	plan := m.PlanRef()
	if plan.Name == "" {
		d.Why = "the migration names no plan"
		return d
	}
	if p.Metadata.Name == plan.Name && p.Metadata.UID != "" {
		plan.UID = p.Metadata.UID
	}
	name := "plan:" + plan.Name
	if plan.UID != "" {
		name += ":" + plan.UID
	}
	d.Start = true
	d.FailedAt = failed.LastTransitionTime
	d.Request = mustgather.Request{CustomName: name, Plan: plan.Name, Namespace: plan.Namespace}
	d.Cause = fmt.Sprintf("migration %s/%s failed", m.Metadata.Namespace, m.Metadata.Name)
	vms := m.Status.VMs
	if len(vms) == 0 && p.Metadata.Name == plan.Name {
		vms = p.Status.Migration.VMs
	}
	d.Preface = preface(d.Cause, failed, vms)
	return d
}

// preface writes the failure as the first lines of a gathering's output.
func preface(cause string, failed forklift.Condition, vms []forklift.VMStatus) string {
	var b strings.Builder
	b.WriteString(cause)
	if failed.Message != "" {
		b.WriteString(": " + oneLine(failed.Message))
	}
	b.WriteByte('\n')
	for _, vm := range vms {
		who := vm.ID
		if vm.Name != "" {
			who += " (" + vm.Name + ")"
		}
		if e := vm.Error; e != nil {
			fmt.Fprintf(&b, "vm %s: error in phase %s: %s\n", who, e.Phase, oneLine(strings.Join(e.Reasons, "; ")))
		}
		for _, c := range vm.Conditions {
			if c.Type == forklift.CondFailed && c.Status == "True" {
				fmt.Fprintf(&b, "vm %s: %s: %s\n", who, c.Type, oneLine(c.Message))
			}
		}
	}
	b.WriteString("---\n")
	return b.String()
}

// oneLine keeps a message that came from the cluster on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
