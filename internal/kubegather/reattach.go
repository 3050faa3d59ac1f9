package kubegather

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// AnnotationRunner on a gathering's namespace names the runner that carries
// the gathering (mustgather.Job.Runner), so that a runner that re-attaches
// can say whom it took over from.
const AnnotationRunner = "must-gather-functions.kubev2v.io/runner"

// AnnotationPodCreated on a gathering's namespace says that a gather pod
// was created in it (set once the first one is), so that a runner that
// takes over tells a namespace whose pods were deleted (the gathering
// fails) from one its predecessor had created none in yet (it starts the
// gathering).
const AnnotationPodCreated = "must-gather-functions.kubev2v.io/pod-created"

// markPodCreated sets AnnotationPodCreated on the run's namespace, once.
func (r *run) markPodCreated(ctx context.Context) {
	r.podCreated.Do(func() {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			AnnotationPodCreated: r.g.now().UTC().Format(time.RFC3339)}}})
		if err == nil {
			_, err = r.g.kube.CoreV1().Namespaces().Patch(ctx, r.ns, types.MergePatchType, patch, metav1.PatchOptions{})
		}
		if err != nil {
			// Without it, a runner that takes over after the pods were
			// deleted would start the gathering again instead of failing it.
			r.log.Warn("mark the namespace as holding a pod", "namespace", r.ns, "err", err)
		}
	})
}

var _ mustgather.Reattacher = (*Gatherer)(nil)

// Reattach implements mustgather.Reattacher. The pods of a gathering go on
// when its runner dies: Reattach finds the gathering's namespace (by its
// labels) and the pods in it, marks them runner's, and moves their
// leftover-after time on so that Sweep leaves them to the new runner. The
// Gatherer it returns follows the rest of each pod's log, waits for its
// gather to end and copies its output, as Gather would have, and then
// deletes the namespace and the binding; it creates no pod. With the
// namespace or every pod gone (deleted or failed) the error wraps
// mustgather.ErrGone; with a namespace that no pod was created in yet, it
// wraps mustgather.ErrNotStarted. Either way what is left is deleted.
func (g *Gatherer) Reattach(ctx context.Context, mg mustgather.Gathering, runner string) (mustgather.Reattached, error) {
	var none mustgather.Reattached
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelOwner: g.cfg.Owner, LabelGathering: mg.ID.String()}).String()
	nss, err := g.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return none, fmt.Errorf("find the namespace of gathering %d: %w", mg.ID, err)
	}
	var ns *corev1.Namespace
	for i := range nss.Items {
		if nss.Items[i].DeletionTimestamp == nil {
			ns = &nss.Items[i]
			break
		}
	}
	if ns == nil {
		return none, fmt.Errorf("its namespace is gone: %w", mustgather.ErrGone)
	}
	a := &reattached{g: g, ns: ns.Name}
	crbs, err := g.kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return none, fmt.Errorf("find the clusterrolebinding of gathering %d: %w", mg.ID, err)
	}
	for _, b := range crbs.Items {
		if b.DeletionTimestamp == nil {
			a.binding = b.Name
		}
	}
	pods, err := g.kube.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{LabelSelector: LabelGathering + "=" + mg.ID.String()})
	if err != nil {
		return none, fmt.Errorf("find the pods of gathering %d: %w", mg.ID, err)
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			a.pods = append(a.pods, p)
			names = append(names, ns.Name+"/"+p.Name)
		}
	}
	r := a.newRun(mustgather.Job{Gathering: mg, Log: discardLines{}})
	if len(pods.Items) == 0 && ns.Annotations[AnnotationPodCreated] == "" {
		// The namespace is made first and deleted last, and marked once a
		// pod is made in it: this one the stopped runner made no pod in.
		r.cleanup(ctx)
		return none, fmt.Errorf("namespace %s holds no pod: %w", ns.Name, mustgather.ErrNotStarted)
	}
	if len(a.pods) == 0 {
		r.cleanup(ctx)
		return none, fmt.Errorf("its pod in namespace %s is gone: %w", ns.Name, mustgather.ErrGone)
	}
	prev := ns.Annotations[AnnotationRunner]
	if prev == "" {
		prev = "(unknown)"
	}
	if err := a.renew(ctx, r, runner); err != nil {
		return none, err
	}
	what := "pod " + names[0]
	if len(names) > 1 {
		what = "pods " + strings.Join(names, ", ")
	}
	return mustgather.Reattached{
		Gatherer: a,
		Line:     fmt.Sprintf("runner %s re-attached to %s after runner %s stopped", runner, what, prev),
		// The namespace is created just before the pods.
		Started: ns.CreationTimestamp.Time,
	}, nil
}

// renew marks the namespace and the binding as runner's and moves their
// leftover-after time as far on as a new gathering's, so that no Sweep
// deletes them under the runner that re-attached.
func (a *reattached) renew(ctx context.Context, r *run, runner string) error {
	after := r.leftoverAfter()
	ns, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationLeftoverAfter: after, AnnotationRunner: runner}}})
	if err != nil {
		return err
	}
	if _, err := a.g.kube.CoreV1().Namespaces().Patch(ctx, a.ns, types.MergePatchType, ns, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("renew namespace %s: %w", a.ns, err)
	}
	if a.binding == "" {
		return nil
	}
	crb, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationLeftoverAfter: after}}})
	if err != nil {
		return err
	}
	_, err = a.g.kube.RbacV1().ClusterRoleBindings().Patch(ctx, a.binding, types.MergePatchType, crb, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("renew clusterrolebinding %s: %w", a.binding, err)
	}
	return nil
}

// discardLines is a job log that keeps nothing.
type discardLines struct{}

func (discardLines) Write(p []byte) (int, error) { return len(p), nil }

// reattached carries on the pods of a gathering whose runner stopped.
type reattached struct {
	g       *Gatherer
	ns      string
	binding string
	pods    []corev1.Pod
}

func (a *reattached) newRun(job mustgather.Job) *run {
	return &run{
		g:       a.g,
		job:     job,
		opts:    podOptions(job.Gathering),
		log:     a.g.log.With("gathering", job.Gathering.ID),
		out:     &lineWriter{w: job.Log, now: a.g.now},
		dirs:    map[string]int{},
		ns:      a.ns,
		binding: a.binding,
	}
}

// Gather implements mustgather.Gatherer for the pods found.
func (a *reattached) Gather(ctx context.Context, job mustgather.Job) error {
	r := a.newRun(job)
	work, stopped := r.workUntilStop(ctx)
	defer stopped()
	defer r.cleanupAtEnd(ctx)()
	stopEvents := r.watchEvents(work)
	errs := make([]error, len(a.pods))
	var wg sync.WaitGroup
	for i := range a.pods {
		wg.Go(func() { errs[i] = r.resumePod(ctx, work, &a.pods[i]) })
	}
	wg.Wait()
	stopEvents()
	// As after a gather of its own: the fallback collection when the
	// default image's gather failed. The cluster state at the start is
	// only in the output of the runner that stopped; none is archived.
	r.fallback(ctx, errs)
	return r.ended(work, errs)
}

// resumePod carries on a pod that a stopped run created: it follows the
// rest of the gather's log, waits for the gather's end and copies the
// output.
func (r *run) resumePod(ctx, work context.Context, pod *corev1.Pod) error {
	mg := r.job.Gathering
	p := &podRun{r: r, name: pod.Name, prefix: "[" + pod.Name + "]", dir: r.sourceDir(), last: pod}
	for _, c := range pod.Spec.Containers {
		if c.Name == gatherContainer {
			p.image = c.Image
		}
	}
	if mg.NodeSelector != "" {
		p.node = pod.Spec.NodeName
	}
	p.replayed = r.linesShown(ctx, p)
	log := r.log.With("pod", pod.Name, "image", p.image)
	log.Info("pod re-attached", "log lines shown before", p.replayed)
	return p.gatherAndCopy(ctx, work, log)
}

// linesShown returns how many lines of the pod's gather log the gathering's
// output already shows: the stopped run showed them, and the rest of the
// log follows them. The log read now is matched against the pod's last
// lines in the output, which carry the kubelet's timestamps; when they are
// not found (the output kept too little), the whole log is shown again.
func (r *run) linesShown(ctx context.Context, p *podRun) int {
	var shown []string
	for line := range strings.SplitSeq(r.job.Gathering.ExecOutput, "\n") {
		if text, ok := strings.CutPrefix(line, p.prefix+" POD "); ok {
			shown = append(shown, text)
		}
	}
	if len(shown) == 0 {
		return 0
	}
	rc, err := r.g.kube.CoreV1().Pods(r.ns).GetLogs(p.name, &corev1.PodLogOptions{Container: gatherContainer, Timestamps: true}).Stream(ctx)
	if err != nil {
		r.log.Warn("read the log shown so far; showing all of it", "pod", p.name, "err", err)
		return 0
	}
	defer rc.Close()
	last := shown[len(shown)-1]
	// recent holds the latest lines read, as many as shown has.
	recent := make([]string, 0, 2*len(shown))
	at, n := 0, 0
	br := bufio.NewReaderSize(rc, maxLine)
	for {
		// Split as copyLines splits.
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			n++
			if len(recent) == cap(recent) {
				recent = append(recent[:0], recent[len(recent)-len(shown)+1:]...)
			}
			text := strings.TrimRight(string(line), "\r\n")
			recent = append(recent, text)
			if text == last && endsWith(recent, shown) {
				at = n
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return at
		}
	}
}

// endsWith reports whether lines ends with the lines of suffix.
func endsWith(lines, suffix []string) bool {
	if len(suffix) > len(lines) {
		return false
	}
	for i, s := range suffix {
		if lines[len(lines)-len(suffix)+i] != s {
			return false
		}
	}
	return true
}

var _ mustgather.Reattacher = (*Router)(nil)

// Reattach implements mustgather.Reattacher with the Gatherer of the
// gathering's server. A server no longer configured leaves nothing to
// re-attach to.
func (r *Router) Reattach(ctx context.Context, g mustgather.Gathering, runner string) (mustgather.Reattached, error) {
	ra, ok := r.gatherers[g.Server].(mustgather.Reattacher)
	if !ok {
		return mustgather.Reattached{}, fmt.Errorf("server %q is not configured here: %w", g.Server, mustgather.ErrGone)
	}
	return ra.Reattach(ctx, g, runner)
}

// leftToAnother reports whether another runner re-attached to the
// gathering's pods, as when this run's lease lapsed while it still ran:
// the namespace names that runner, which then deletes the namespace and
// the binding itself.
func (r *run) leftToAnother(ctx context.Context) bool {
	if r.job.Runner == "" || r.ns == "" {
		return false
	}
	ns, err := r.g.kube.CoreV1().Namespaces().Get(ctx, r.ns, metav1.GetOptions{})
	if err != nil {
		return false // deleted below, or left to Sweep
	}
	other := ns.Annotations[AnnotationRunner]
	if other == "" || other == r.job.Runner {
		return false
	}
	r.out.printf(gatheringPrefix, "namespace/%s left to runner %s, which re-attached to it", r.ns, other)
	r.log.Info("namespace left to the runner that re-attached to it", "namespace", r.ns, "runner", other)
	return true
}
