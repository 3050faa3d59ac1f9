package kubegather

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// watchPod calls fn with the pod's current state and then with each new
// one, until fn reports done, and returns fn's error. Between changes fn is
// called again every PollInterval with the last state, so that it can act
// on time passing. A watch that ends is opened again; a new watch starts
// with the current state, so no change is missed. When ctx ends it returns
// its cause.
func (g *Gatherer) watchPod(ctx context.Context, ns, name string, fn func(*corev1.Pod) (bool, error)) error {
	tick := time.NewTicker(g.cfg.PollInterval)
	defer tick.Stop()
	var last *corev1.Pod
	recheck := func() (bool, error) {
		if last == nil {
			return false, nil
		}
		return fn(last)
	}
	opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	for {
		w, err := g.kube.CoreV1().Pods(ns).Watch(ctx, opts)
		if err == nil {
			done, err := consumePodWatch(ctx, w, name, tick.C, &last, fn, recheck)
			w.Stop()
			if done {
				return err
			}
		} else if ctx.Err() == nil {
			g.log.Warn("watch pod", "namespace", ns, "pod", name, "err", err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
			if done, err := recheck(); done {
				return err
			}
		}
	}
}

func consumePodWatch(ctx context.Context, w watch.Interface, name string, tick <-chan time.Time, last **corev1.Pod,
	fn func(*corev1.Pod) (bool, error), recheck func() (bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return true, context.Cause(ctx)
		case <-tick:
			if done, err := recheck(); done {
				return true, err
			}
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			switch {
			case ev.Type == watch.Error:
				return false, nil // expired or broken: start again
			case !isPod || pod.Name != name:
				continue
			case ev.Type == watch.Deleted:
				return true, fmt.Errorf("pod %s was deleted", name)
			case ev.Type == watch.Added || ev.Type == watch.Modified:
				*last = pod
				if done, err := fn(pod); done {
					return true, err
				}
			}
		}
	}
}

// warningEvents selects the events worth showing in the job's log: image
// pull failures, FailedScheduling and the like.
var warningEvents = fields.Set{"involvedObject.kind": "Pod", "type": corev1.EventTypeWarning}.AsSelector().String()

// watchEvents writes the warning events of the namespace's pods into the
// job's log until the returned func is called; that func also writes those
// the watch has not delivered yet.
func (r *run) watchEvents(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	seen := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			w, err := r.g.kube.CoreV1().Events(r.ns).Watch(ctx, metav1.ListOptions{FieldSelector: warningEvents})
			if err == nil {
				r.consumeEvents(ctx, w, seen)
				w.Stop()
			} else if ctx.Err() == nil {
				r.log.Warn("watch events", "namespace", r.ns, "err", err)
			}
			if !sleep(ctx, r.g.cfg.PollInterval) {
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.g.cfg.CleanupTimeout)
		defer cancel()
		list, err := r.g.kube.CoreV1().Events(r.ns).List(lctx, metav1.ListOptions{FieldSelector: warningEvents})
		if err != nil {
			r.log.Warn("list events", "namespace", r.ns, "err", err)
			return
		}
		for i := range list.Items {
			r.showEvent(&list.Items[i], seen)
		}
	}
}

func (r *run) consumeEvents(ctx context.Context, w watch.Interface, seen map[string]bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return
			}
			if e, isEvent := ev.Object.(*corev1.Event); isEvent && ev.Type != watch.Deleted {
				r.showEvent(e, seen)
			}
		}
	}
}

// showEvent writes a pod's warning event once: repeats (back-off) only
// raise its count.
func (r *run) showEvent(e *corev1.Event, seen map[string]bool) {
	if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "Pod" {
		return
	}
	key := e.InvolvedObject.Name + "\x00" + e.Reason + "\x00" + e.Message
	if seen[key] {
		return
	}
	seen[key] = true
	r.out.line("["+e.InvolvedObject.Name+"]", "EVENT", fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
}
