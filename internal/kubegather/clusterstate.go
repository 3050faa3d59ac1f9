package kubegather

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// OpenShift's cluster version and operators (config.openshift.io/v1), which
// oc summarizes at the start and end of every must-gather.
var (
	clusterVersions  = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "clusterversions"}
	clusterOperators = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "clusteroperators"}
)

// ClusterStateFile is the archive file that holds the cluster state
// summaries of the start and the end of a gathering on OpenShift.
const ClusterStateFile = "cluster-state.txt"

// longExistingOperators are the cluster operators every OpenShift has had
// for long, as oc lists them: one missing is worth saying.
var longExistingOperators = []string{
	"authentication", "cloud-credential", "cluster-autoscaler", "config-operator", "console", "dns", "etcd",
	"image-registry", "ingress", "insights", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"kube-storage-version-migrator", "machine-api", "machine-approver", "machine-config", "marketplace",
	"monitoring", "network", "openshift-apiserver", "openshift-controller-manager", "operator-lifecycle-manager",
	"service-ca", "storage",
}

// clusterState returns oc's summary of the cluster's version and
// operators (PrintBasicClusterState), or "" on a cluster without
// OpenShift's config API.
func (g *Gatherer) clusterState(ctx context.Context) string {
	if g.dyn == nil {
		return ""
	}
	cos, err := g.dyn.Resource(clusterOperators).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return ""
	}
	var b strings.Builder
	b.WriteString("When opening a support case, bugzilla, or issue please include the following summary data along with any other requested information:\n")
	cv, cvErr := g.dyn.Resource(clusterVersions).Get(ctx, "version", metav1.GetOptions{})
	if cvErr != nil {
		fmt.Fprintf(&b, "error getting cluster version: %v\n", cvErr)
		cv = nil
	}
	var id string
	if cv != nil {
		id = nestedString(cv.Object, "spec", "clusterID")
	}
	fmt.Fprintf(&b, "ClusterID: %s\n", id)
	fmt.Fprintf(&b, "ClusterVersion: %s\n", clusterVersionSummary(cv, g.now()))
	if err != nil {
		fmt.Fprintf(&b, "error getting cluster operators: %v\n", err)
		cos = nil
	}
	b.WriteString("ClusterOperators:\n")
	b.WriteString(clusterOperatorsSummary(cos))
	return b.String()
}

// conditions returns the status conditions of obj by type.
func conditions(obj map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	list, _, _ := unstructured.NestedSlice(obj, "status", "conditions")
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			if t, _ := m["type"].(string); t != "" {
				out[t] = m
			}
		}
	}
	return out
}

// clusterVersionSummary says what the cluster version does, as oc's
// humanSummaryForClusterVersion.
func clusterVersionSummary(cv *unstructured.Unstructured, now time.Time) string {
	if cv == nil {
		return "Cluster is in a version state we don't recognize"
	}
	history, _, _ := unstructured.NestedSlice(cv.Object, "status", "history")
	entry := func(i int) map[string]any {
		m, _ := history[i].(map[string]any)
		return m
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	completed := func(i int) bool { return str(entry(i), "state") == "Completed" }

	since := "<unknown>"
	if len(history) > 0 {
		if t, err := time.Parse(time.RFC3339, str(entry(0), "startedTime")); err == nil {
			since = humanDuration(now.Sub(t))
		}
	}
	progressing := "<unknown>"
	if c, ok := conditions(cv.Object)["Progressing"]; ok {
		progressing = str(c, "message")
	}
	desired := nestedString(cv.Object, "status", "desired", "version")
	switch {
	case len(history) == 0 || len(history) == 1 && !completed(0):
		return fmt.Sprintf("Installing %q for %s: %s", desired, since, progressing)
	case len(history) > 1 && !completed(0):
		return fmt.Sprintf("Updating to %q from %q for %s: %s", desired, str(entry(1), "version"), since, progressing)
	default:
		return fmt.Sprintf("Stable at %q", str(entry(0), "version"))
	}
}

// clusterOperatorsSummary lists the operators that are not available,
// degraded, not upgradeable or progressing, and the long existing ones
// that are missing, as oc's humanSummaryForInterestingClusterOperators;
// each line starts with a tab.
func clusterOperatorsSummary(cos *unstructured.UnstructuredList) string {
	if cos == nil {
		return "\tclusteroperators not found\n"
	}
	if len(cos.Items) == 0 {
		return "\tclusteroperators are missing\n"
	}
	missing := map[string]bool{}
	for _, name := range longExistingOperators {
		missing[name] = true
	}
	var lines []string
	for _, co := range cos.Items {
		delete(missing, co.GetName())
		if s := clusterOperatorSummary(co); s != "" {
			lines = append(lines, s)
		}
	}
	var gone []string
	for name := range missing {
		gone = append(gone, name)
	}
	slices.Sort(gone)
	for _, name := range gone {
		lines = append(lines, fmt.Sprintf("clusteroperator/%s is missing", name))
	}
	if len(lines) == 0 {
		return "\tAll healthy and stable\n"
	}
	return "\t" + strings.Join(lines, "\n\t") + "\n"
}

func clusterOperatorSummary(co unstructured.Unstructured) string {
	conds := conditions(co.Object)
	is := func(t, status string) bool {
		c, ok := conds[t]
		return ok && c["status"] == status
	}
	msg := func(t string) string {
		c, ok := conds[t]
		if !ok {
			return "<missing>"
		}
		s, _ := c["message"].(string)
		return s
	}
	available := is("Available", "True")
	progressing := !is("Progressing", "False")
	degraded := !is("Degraded", "False")
	upgradeable := !is("Upgradeable", "False")
	name := co.GetName()
	switch {
	case !available:
		return fmt.Sprintf("clusteroperator/%s is not available (%s) because %s", name, msg("Available"), msg("Degraded"))
	case degraded:
		return fmt.Sprintf("clusteroperator/%s is degraded because %s", name, msg("Degraded"))
	case !upgradeable:
		return fmt.Sprintf("clusteroperator/%s is not upgradeable because %s", name, msg("Upgradeable"))
	case progressing:
		return fmt.Sprintf("clusteroperator/%s is progressing: %s", name, msg("Progressing"))
	}
	return ""
}

// humanDuration writes d as docker's units.HumanDuration, which oc uses:
// "About a minute", "3 hours", "2 days".
func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := int(d.Minutes()); {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Round(time.Hour).Hours()); {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	default:
		return fmt.Sprintf("%d years", h/24/365)
	}
}

// clusterStateAtStart writes the cluster state into exec-output, as oc
// does before it creates anything, and returns it.
func (r *run) clusterStateAtStart(ctx context.Context) string {
	if ctx.Err() != nil {
		return ""
	}
	state := r.g.clusterState(ctx)
	if state != "" {
		r.out.printf(gatheringPrefix, "%s", state)
	}
	return state
}

// clusterStateAtEnd writes the cluster state into exec-output again, as oc
// does at the end, and both into ClusterStateFile. It runs under ctx,
// which outlives a stopped job.
func (r *run) clusterStateAtEnd(ctx context.Context, atStart string) {
	if atStart == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.g.cfg.CleanupTimeout)
	defer cancel()
	state := r.g.clusterState(ctx)
	r.out.printf(gatheringPrefix, "Reprinting Cluster State:\n%s", state)
	r.archiveMu.Lock()
	defer r.archiveMu.Unlock()
	b := "Cluster state at the start of the gathering:\n" + atStart + "\nCluster state at the end of the gathering:\n" + state
	if err := r.job.Archive.AddBytes(ClusterStateFile, []byte(b), r.g.now()); err != nil {
		r.log.Warn("add the cluster state to the archive", "err", err)
	}
}
