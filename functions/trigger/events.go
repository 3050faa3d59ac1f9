package trigger

import (
	"context"
	"encoding/json"
	"fmt"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/forklift"
)

// The ApiServerSource event types (Resource mode) the trigger takes: their
// data is the whole object as it was when it changed.
const (
	EventAdd    = "dev.knative.apiserver.resource.add"
	EventUpdate = "dev.knative.apiserver.resource.update"
)

// EventTypes are the event types HandleEvent takes.
var EventTypes = []string{EventAdd, EventUpdate}

// HandleEvent acts on an ApiServerSource event of a Migration or Plan. Of
// the event it uses only which object changed: the object's group, kind,
// namespace and name; what the object says is read from the API server.
// An event that names no object of Forklift is malformed
// (eventing.ErrMalformed) and dropped; another error means deliver again.
func (t *Trigger) HandleEvent(ctx context.Context, e cloudevents.Event) error {
	c, err := changeOf(e)
	if err != nil {
		return err
	}
	return t.Handle(ctx, c)
}

// changeOf reads which object an ApiServerSource event is about: a
// Forklift Migration or Plan, with its namespace and name. Anything else
// is malformed.
func changeOf(e cloudevents.Event) (forklift.Change, error) {
	var obj struct {
		APIVersion string        `json:"apiVersion"`
		Kind       string        `json:"kind"`
		Metadata   forklift.Meta `json:"metadata"`
	}
	if err := json.Unmarshal(e.Data(), &obj); err != nil {
		return forklift.Change{}, fmt.Errorf("event %s: data: %w: %w", e.ID(), eventing.ErrMalformed, err)
	}
	if obj.APIVersion != forklift.Group+"/"+forklift.Version || (obj.Kind != forklift.KindMigration && obj.Kind != forklift.KindPlan) || obj.Metadata.Name == "" || obj.Metadata.Namespace == "" {
		return forklift.Change{}, fmt.Errorf("event %s: %q %q %s/%s is no Forklift Migration or Plan: %w", e.ID(), obj.APIVersion, obj.Kind, obj.Metadata.Namespace, obj.Metadata.Name, eventing.ErrMalformed)
	}
	return forklift.Change{Kind: obj.Kind, Namespace: obj.Metadata.Namespace, Name: obj.Metadata.Name}, nil
}
