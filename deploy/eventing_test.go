package deploy

import (
	"context"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// The Go module of Knative Eventing is not served, and its CRDs keep
// unknown fields in most of a Trigger's or Broker's spec, so the API
// server would take a misspelt field silently. These types copy the
// fields of knative.dev/eventing v0.49.2 (pkg/apis/eventing/v1,
// pkg/apis/duck/v1, pkg/apis/sources/v1) around the types of
// knative.dev/pkg that they use, for a strict decoding and the checks of
// Eventing's webhook that matter here.

type broker struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Config   *duckv1.KReference `json:"config,omitempty"`
		Delivery *deliverySpec      `json:"delivery,omitempty"`
	} `json:"spec"`
}

type trigger struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Broker    string             `json:"broker,omitempty"`
		BrokerRef *duckv1.KReference `json:"brokerRef,omitempty"`
		Filter    *struct {
			Attributes map[string]string `json:"attributes,omitempty"`
		} `json:"filter,omitempty"`
		Filters    []subscriptionsAPIFilter `json:"filters,omitempty"`
		Subscriber duckv1.Destination       `json:"subscriber"`
		Delivery   *deliverySpec            `json:"delivery,omitempty"`
	} `json:"spec"`
}

type subscriptionsAPIFilter struct {
	All    []subscriptionsAPIFilter `json:"all,omitempty"`
	Any    []subscriptionsAPIFilter `json:"any,omitempty"`
	Not    *subscriptionsAPIFilter  `json:"not,omitempty"`
	Exact  map[string]string        `json:"exact,omitempty"`
	Prefix map[string]string        `json:"prefix,omitempty"`
	Suffix map[string]string        `json:"suffix,omitempty"`
	CESQL  string                   `json:"cesql,omitempty"`
}

type deliverySpec struct {
	DeadLetterSink *duckv1.Destination `json:"deadLetterSink,omitempty"`
	Retry          *int32              `json:"retry,omitempty"`
	Timeout        *string             `json:"timeout,omitempty"`
	BackoffPolicy  *string             `json:"backoffPolicy,omitempty"`
	BackoffDelay   *string             `json:"backoffDelay,omitempty"`
	RetryAfterMax  *string             `json:"retryAfterMax,omitempty"`
	Format         *string             `json:"format,omitempty"`
}

type sinkBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		duckv1.SourceSpec  `json:",inline"`
		duckv1.BindingSpec `json:",inline"`
	} `json:"spec"`
}

type apiServerSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		duckv1.SourceSpec `json:",inline"`
		Resources         []struct {
			APIVersion    string                `json:"apiVersion"`
			Kind          string                `json:"kind"`
			LabelSelector *metav1.LabelSelector `json:"selector,omitempty"`
		} `json:"resources,omitempty"`
		ResourceOwner *struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		} `json:"owner,omitempty"`
		EventMode          string                   `json:"mode,omitempty"`
		ServiceAccountName string                   `json:"serviceAccountName,omitempty"`
		NamespaceSelector  *metav1.LabelSelector    `json:"namespaceSelector,omitempty"`
		Filters            []subscriptionsAPIFilter `json:"filters,omitempty"`
	} `json:"spec"`
}

type natsJetStreamChannel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Delivery *deliverySpec `json:"delivery,omitempty"`
	} `json:"spec"`
}

// isoDuration is the ISO 8601 durations Eventing takes for backoffDelay,
// timeout and retryAfterMax (PT1S, PT0.5S, P1DT2H).
var isoDuration = regexp.MustCompile(`^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$`)

func (d *deliverySpec) validate(ctx context.Context) *apis.FieldError {
	if d == nil {
		return nil
	}
	var errs *apis.FieldError
	if d.DeadLetterSink != nil {
		errs = errs.Also(d.DeadLetterSink.Validate(ctx).ViaField("deadLetterSink"))
	}
	if d.Retry != nil && *d.Retry < 0 {
		errs = errs.Also(apis.ErrInvalidValue(*d.Retry, "retry"))
	}
	if d.BackoffPolicy != nil && *d.BackoffPolicy != "linear" && *d.BackoffPolicy != "exponential" {
		errs = errs.Also(apis.ErrInvalidValue(*d.BackoffPolicy, "backoffPolicy"))
	}
	for field, v := range map[string]*string{"backoffDelay": d.BackoffDelay, "timeout": d.Timeout, "retryAfterMax": d.RetryAfterMax} {
		if v != nil && (!isoDuration.MatchString(*v) || *v == "P" || *v == "PT") {
			errs = errs.Also(apis.ErrInvalidValue(*v, field))
		}
	}
	return errs
}

// eventingObject returns a new value of the mirror type of gvk, or nil.
func eventingObject(gvk schema.GroupVersionKind) interface {
	validate(context.Context) *apis.FieldError
} {
	switch gvk {
	case schema.GroupVersionKind{Group: "eventing.knative.dev", Version: "v1", Kind: "Broker"}:
		return &broker{}
	case schema.GroupVersionKind{Group: "eventing.knative.dev", Version: "v1", Kind: "Trigger"}:
		return &trigger{}
	case schema.GroupVersionKind{Group: "sources.knative.dev", Version: "v1", Kind: "SinkBinding"}:
		return &sinkBinding{}
	case schema.GroupVersionKind{Group: "sources.knative.dev", Version: "v1", Kind: "ApiServerSource"}:
		return &apiServerSource{}
	case schema.GroupVersionKind{Group: "messaging.knative.dev", Version: "v1alpha1", Kind: "NatsJetStreamChannel"}:
		return &natsJetStreamChannel{}
	}
	return nil
}

func (b *broker) validate(ctx context.Context) *apis.FieldError {
	var errs *apis.FieldError
	if b.Annotations["eventing.knative.dev/broker.class"] == "" {
		errs = errs.Also(apis.ErrMissingField("metadata.annotations[eventing.knative.dev/broker.class]"))
	}
	return errs.Also(b.Spec.Delivery.validate(ctx).ViaField("spec.delivery"))
}

func (tr *trigger) validate(ctx context.Context) *apis.FieldError {
	var errs *apis.FieldError
	if tr.Spec.Broker == "" && tr.Spec.BrokerRef == nil {
		errs = errs.Also(apis.ErrMissingOneOf("spec.broker", "spec.brokerRef"))
	}
	if (tr.Spec.Filter == nil || len(tr.Spec.Filter.Attributes) == 0) && len(tr.Spec.Filters) == 0 {
		errs = errs.Also(apis.ErrMissingOneOf("spec.filter", "spec.filters"))
	}
	errs = errs.Also(tr.Spec.Subscriber.Validate(ctx).ViaField("spec.subscriber"))
	return errs.Also(tr.Spec.Delivery.validate(ctx).ViaField("spec.delivery"))
}

func (s *sinkBinding) validate(ctx context.Context) *apis.FieldError {
	errs := s.Spec.Sink.Validate(ctx).ViaField("spec.sink")
	return errs.Also(s.Spec.Subject.Validate(ctx).ViaField("spec.subject"))
}

func (c *natsJetStreamChannel) validate(ctx context.Context) *apis.FieldError {
	return c.Spec.Delivery.validate(ctx).ViaField("spec.delivery")
}

// validate checks what Eventing's webhook checks of an ApiServerSource
// (pkg/apis/sources/v1/apiserver_validation.go): a known mode, at least
// one resource, each with an apiVersion and a kind, and a sink.
func (a *apiServerSource) validate(ctx context.Context) *apis.FieldError {
	var errs *apis.FieldError
	if a.Spec.EventMode != "Reference" && a.Spec.EventMode != "Resource" {
		errs = errs.Also(apis.ErrInvalidValue(a.Spec.EventMode, "spec.mode"))
	}
	if len(a.Spec.Resources) == 0 {
		errs = errs.Also(apis.ErrMissingField("spec.resources"))
	}
	for i, r := range a.Spec.Resources {
		if r.APIVersion == "" || r.Kind == "" {
			errs = errs.Also(apis.ErrMissingField("apiVersion", "kind").ViaFieldIndex("spec.resources", i))
		}
	}
	return errs.Also(a.Spec.Sink.Validate(ctx).ViaField("spec.sink"))
}
