package kube

import (
	"context"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// chooseNode picks the node a pod without one is bound to, as the
// scheduler would by its node selector and node affinity alone: among the
// nodes that match the selector and the required affinity, one with the
// highest weight of matching preferred terms, the cluster's own node
// first on a tie, then by name. Taints, resources and pod affinity are not
// looked at. With no node matching, the cluster's own node is used, so
// that the pod still runs and a test sees its spec.
func (c *kubeController) chooseNode(ctx context.Context, pod *corev1.Pod) (string, error) {
	nodes, err := c.k.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	best, bestScore := "", -1
	names := make([]string, 0, len(nodes.Items))
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		names = append(names, nodes.Items[i].Name)
		byName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	slices.Sort(names)
	// The cluster's own node first, so that it wins a tie.
	if i := slices.Index(names, c.k.Node); i > 0 {
		names = append([]string{c.k.Node}, slices.Delete(names, i, i+1)...)
	}
	for _, name := range names {
		n := byName[name]
		if !fitsNode(pod, n) {
			continue
		}
		score := 0
		if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
			for _, t := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				if termMatches(t.Preference, n) {
					score += int(t.Weight)
				}
			}
		}
		if score > bestScore {
			best, bestScore = name, score
		}
	}
	if best == "" {
		return c.k.Node, nil
	}
	return best, nil
}

// fitsNode reports whether n matches pod's node selector and required node
// affinity (any one of its terms).
func fitsNode(pod *corev1.Pod, n *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if got, ok := n.Labels[k]; !ok || got != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	return slices.ContainsFunc(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms,
		func(t corev1.NodeSelectorTerm) bool { return termMatches(t, n) })
}

// termMatches reports whether every requirement of t holds for n; a term
// without requirements matches no node, as in the scheduler.
func termMatches(t corev1.NodeSelectorTerm, n *corev1.Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for _, r := range t.MatchExpressions {
		v, ok := n.Labels[r.Key]
		if !requirementHolds(r, v, ok) {
			return false
		}
	}
	for _, r := range t.MatchFields {
		if r.Key != metav1.ObjectNameField || !requirementHolds(r, n.Name, true) {
			return false
		}
	}
	return true
}

func requirementHolds(r corev1.NodeSelectorRequirement, v string, ok bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return ok && slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return ok
	case corev1.NodeSelectorOpDoesNotExist:
		return !ok
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return got > want
		}
		return got < want
	}
	return false
}
