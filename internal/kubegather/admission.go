package kubegather

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// AnnotationSCC is where OpenShift's admission records the
// SecurityContextConstraints a pod was admitted under.
const AnnotationSCC = "openshift.io/scc"

// restrictedSCC reports whether an SCC is one of OpenShift's restricted
// ones: a pod admitted under one runs as an arbitrary user without
// capabilities, which happens when the ServiceAccount may use no other,
// that is, before the cluster-admin binding has reached the admission
// plugin.
func restrictedSCC(name string) bool {
	return strings.HasPrefix(name, "restricted") || strings.HasPrefix(name, "nonroot")
}

// refusal says why admission turned a pod down in a way that may pass on
// a later try, or returns "" for an error that will not.
func refusal(err error) string {
	msg := err.Error()
	switch {
	case apierrors.IsForbidden(err):
		// An admission webhook, pod security or SCC admission, or a
		// ServiceAccount not made yet: all may come right once the
		// namespace and its binding have propagated.
		return msg
	case apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err):
		// A webhook that could not be called, or a busy API server.
		return msg
	case apierrors.IsInvalid(err) && (strings.Contains(msg, "ValidatingAdmissionPolicy") || strings.Contains(msg, "admission webhook")):
		// A ValidatingAdmissionPolicy denies with 422 by default; a
		// pod that is invalid in itself is not retried.
		return msg
	}
	return ""
}

// createPod creates pod, and creates it again while admission refuses it
// or admits it under a restricted SCC, which is what a cluster does
// until the namespace's ClusterRoleBinding of cluster-admin has reached
// every API server and admission plugin (and until the namespace's
// default ServiceAccount exists). It tries for Config.AdmissionRetry,
// with backoff, saying each refusal in exec-output, and then gives up
// with an error that says what to check. A pod still admitted under a
// restricted SCC at the end is kept, with a warning: it may still gather
// something.
func (r *run) createPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	cfg := r.g.cfg
	image := pod.Spec.Containers[0].Image
	// Real time, not g.now: this measures a wait.
	deadline := time.Now().Add(cfg.AdmissionRetry)
	wait := max(cfg.PollInterval/5, time.Millisecond)
	for attempt := 1; ; attempt++ {
		created, err := r.g.kube.CoreV1().Pods(r.ns).Create(ctx, pod, metav1.CreateOptions{})
		var why string
		switch {
		case err == nil:
			scc := created.Annotations[AnnotationSCC]
			if !restrictedSCC(scc) {
				if attempt > 1 {
					r.out.printf(gatheringPrefix, "pod for plug-in image %s admitted after %d attempts", image, attempt)
				}
				r.markPodCreated(ctx)
				return created, nil
			}
			if time.Now().Add(wait).After(deadline) {
				r.out.printf(gatheringPrefix, "pod %s for plug-in image %s runs under SCC %s, not the privileged one its cluster-admin binding allows, after %d attempts in %s: "+
					"the ClusterRoleBinding %s has not reached admission; the gather runs as an arbitrary user and may miss what needs root",
					created.Name, image, scc, attempt, cfg.AdmissionRetry, r.binding)
				r.markPodCreated(ctx)
				return created, nil
			}
			why = fmt.Sprintf("admitted under SCC %s (the binding has not propagated yet); deleting pod %s", scc, created.Name)
			if derr := r.deletePod(ctx, created.Name); derr != nil {
				// Another pod will do; this one goes with the namespace.
				r.log.Warn("delete pod admitted under a restricted SCC", "pod", created.Name, "err", derr)
			}
		default:
			why = refusal(err)
			if why == "" || ctx.Err() != nil {
				return nil, err
			}
			if !time.Now().Add(wait).Before(deadline) {
				return nil, &admissionError{attempts: attempt, budget: cfg.AdmissionRetry, binding: r.binding, ns: r.ns, err: err}
			}
		}
		r.log.Info("pod refused by admission; retrying", "image", image, "attempt", attempt, "reason", why, "wait", wait)
		r.out.printf(gatheringPrefix, "pod for plug-in image %s refused (attempt %d): %s; trying again in %s", image, attempt, why, wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return nil, context.Cause(ctx)
		}
		wait = min(2*wait, max(3*cfg.PollInterval, time.Millisecond))
	}
}

func (r *run) deletePod(ctx context.Context, name string) error {
	err := r.g.kube.CoreV1().Pods(r.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// admissionError is a pod that admission kept refusing for the whole
// retry budget.
type admissionError struct {
	attempts int
	budget   time.Duration
	binding  string
	ns       string
	err      error
}

func (e *admissionError) Error() string {
	return fmt.Sprintf("admission refused it %d times over %s (MUST_GATHER_ADMISSION_RETRY): %v; "+
		"check that the ClusterRoleBinding %s (cluster-admin for system:serviceaccount:%s:default) exists, "+
		"and which admission webhook, ValidatingAdmissionPolicy or security policy refuses pods in namespace %s",
		e.attempts, e.budget, e.err, e.binding, e.ns, e.ns)
}

func (e *admissionError) Unwrap() error { return e.err }
