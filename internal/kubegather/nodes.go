package kubegather

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// labelControlPlane marks control-plane nodes, which oc prefers for its
// pods.
const labelControlPlane = "node-role.kubernetes.io/control-plane"

// placement is where a gathering's pods may run, read from the cluster's
// nodes once at the start.
type placement struct {
	// avoid are the nodes a pod must not be scheduled to: not Ready,
	// unreachable or cordoned. The pods tolerate every taint, so without
	// this a pod could land on a node that never runs it and wait there
	// until the timeout.
	avoid []string
}

// nodeUsable reports whether node can run a gather pod now, and why not:
// it must be Ready and carry neither of the taints the node controller
// puts on a node it does not hear from. A cordoned node is usable only
// when cordonedOK: a pod pinned to it runs, one left to the scheduler does
// not go there.
func nodeUsable(node *corev1.Node, cordonedOK bool) (bool, string) {
	for _, t := range node.Spec.Taints {
		switch t.Key {
		case corev1.TaintNodeUnreachable:
			return false, "unreachable"
		case corev1.TaintNodeNotReady:
			return false, "not Ready"
		}
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return false, "not Ready"
	}
	if node.Spec.Unschedulable && !cordonedOK {
		return false, "cordoned"
	}
	return true, ""
}

// place lists the nodes and returns the placement of pods left to the
// scheduler. A cluster whose nodes cannot be listed gets no required
// affinity, only the preference for control-plane nodes.
func (g *Gatherer) place(ctx context.Context, report func(format string, args ...any)) placement {
	nodes, err := g.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		g.log.Warn("list nodes; pods may be scheduled to nodes that are not Ready", "err", err)
		report("nodes not listed (%v): the pods may be scheduled to a node that is not Ready", err)
		return placement{}
	}
	var p placement
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if ok, _ := nodeUsable(n, false); !ok {
			p.avoid = append(p.avoid, n.Name)
		}
	}
	if len(p.avoid) == len(nodes.Items) && len(nodes.Items) > 0 {
		// Keeping off every node would keep the pods off one that
		// recovers too: leave them to the scheduler.
		report("no node is Ready, reachable and schedulable: the pods are left to the scheduler")
		return placement{}
	}
	slices.Sort(p.avoid)
	return p
}

// affinity returns the node affinity of a pod that the scheduler places:
// never on a node to avoid, preferably on a control-plane node, as oc
// does. A node name is matched as a field, not through the hostname
// label, which a node may lack or have otherwise.
func (p placement) affinity() *corev1.Affinity {
	na := &corev1.NodeAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
			Weight: 100,
			Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: labelControlPlane, Operator: corev1.NodeSelectorOpExists},
			}},
		}},
	}
	if len(p.avoid) > 0 {
		// A field requirement takes one value; the requirements of a
		// term must all hold.
		var term corev1.NodeSelectorTerm
		for _, name := range p.avoid {
			term.MatchFields = append(term.MatchFields, corev1.NodeSelectorRequirement{
				Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpNotIn, Values: []string{name},
			})
		}
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term}}
	}
	return &corev1.Affinity{NodeAffinity: na}
}

// warnNode says in exec-output when the node a gathering pins its pod to
// cannot run it now; the pod is still created there, as the user asked.
func (g *Gatherer) warnNode(node *corev1.Node, report func(format string, args ...any)) {
	if ok, why := nodeUsable(node, true); !ok {
		report("node %s is %s: its pod may not start before the timeout", node.Name, why)
	}
}

// selectNodes lists the nodes that sel selects, as oc's --node-selector
// does, and returns the names of those that can run a pod now; it says in
// exec-output which it leaves out and why. None is an error.
func (g *Gatherer) selectNodes(ctx context.Context, sel string, report func(format string, args ...any)) ([]string, error) {
	nodes, err := g.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list the nodes of node-selector %q: %w", sel, err)
	}
	var names []string
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if ok, why := nodeUsable(n, true); !ok {
			report("node %s matches node-selector %q but is %s: no pod runs there", n.Name, sel, why)
			continue
		}
		names = append(names, n.Name)
	}
	slices.Sort(names)
	switch {
	case len(names) == 0 && len(nodes.Items) == 0:
		return nil, fmt.Errorf("node-selector %q selects no node", sel)
	case len(names) == 0:
		return nil, fmt.Errorf("node-selector %q selects no Ready node (%d selected, none Ready)", sel, len(nodes.Items))
	}
	report("node-selector %q: one pod per image on each of %d nodes: %s", sel, len(names), strings.Join(names, ", "))
	return names, nil
}
