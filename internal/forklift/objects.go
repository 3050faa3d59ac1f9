// Package forklift reads Forklift's Migration and Plan objects from a
// cluster with client-go's dynamic client, without Forklift's Go module,
// and watches them.
package forklift

import (
	"errors"
	"time"
)

// The objects below hold the fields of Forklift's Migration and Plan
// (forklift.konveyor.io/v1beta1) that the project reads, under Forklift's
// own JSON names, so that an object read from the API server or carried by
// an event decodes into them without Forklift's Go module.

// Group is Forklift's API group; Version the version the trigger reads.
const (
	Group   = "forklift.konveyor.io"
	Version = "v1beta1"
)

// Kinds of the objects read here.
const (
	KindMigration = "Migration"
	KindPlan      = "Plan"
)

// Meta is the part of an object's metadata read here.
type Meta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
}

// Ref is a reference to another object, as Forklift's ObjectReference.
type Ref struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	UID       string `json:"uid,omitempty"`
}

// Condition is one of Forklift's conditions (pkg/lib/condition).
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Category           string    `json:"category,omitempty"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Durable            bool      `json:"durable,omitempty"`
}

// Conditions is a status's list of conditions.
type Conditions []Condition

// True returns the condition of type t when its status is True.
func (cs Conditions) True(t string) (Condition, bool) {
	for _, c := range cs {
		if c.Type == t && c.Status == "True" {
			return c, true
		}
	}
	return Condition{}, false
}

// Condition types read here.
const (
	CondFailed    = "Failed"
	CondSucceeded = "Succeeded"
	CondCanceled  = "Canceled"
)

// VMError is the error of one VM's migration.
type VMError struct {
	Phase   string   `json:"phase"`
	Reasons []string `json:"reasons"`
}

// VMStatus is one VM's part of a migration's status.
type VMStatus struct {
	ID         string     `json:"id"`
	Name       string     `json:"name,omitempty"`
	Phase      string     `json:"phase,omitempty"`
	Error      *VMError   `json:"error,omitempty"`
	Conditions Conditions `json:"conditions,omitempty"`
}

// Migration is Forklift's Migration: one run of a Plan.
type Migration struct {
	Kind     string `json:"kind"`
	Metadata Meta   `json:"metadata"`
	Spec     struct {
		Plan Ref `json:"plan"`
	} `json:"spec"`
	Status struct {
		Conditions Conditions `json:"conditions,omitempty"`
		VMs        []VMStatus `json:"vms,omitempty"`
	} `json:"status"`
}

// PlanRef returns the migration's plan, in the migration's namespace when
// the reference names none.
func (m Migration) PlanRef() Ref {
	r := m.Spec.Plan
	if r.Namespace == "" {
		r.Namespace = m.Metadata.Namespace
	}
	return r
}

// Snapshot is one entry of a plan's migration history.
type Snapshot struct {
	Conditions Conditions `json:"conditions,omitempty"`
	Plan       Ref        `json:"plan"`
	Migration  Ref        `json:"migration"`
}

// Plan is Forklift's Plan.
type Plan struct {
	Kind     string `json:"kind"`
	Metadata Meta   `json:"metadata"`
	Status   struct {
		Conditions Conditions `json:"conditions,omitempty"`
		Migration  struct {
			History []Snapshot `json:"history,omitempty"`
			VMs     []VMStatus `json:"vms,omitempty"`
		} `json:"migration"`
	} `json:"status"`
}

// Latest returns the plan's latest migration, the last of its history.
func (p Plan) Latest() (Snapshot, bool) {
	h := p.Status.Migration.History
	if len(h) == 0 {
		return Snapshot{}, false
	}
	return h[len(h)-1], true
}

// ErrNotFound is returned for an object that does not exist.
var ErrNotFound = errors.New("object not found")
