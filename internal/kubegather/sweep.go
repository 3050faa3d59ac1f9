package kubegather

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Sweep deletes the namespaces and ClusterRoleBindings that gatherings of
// this Gatherer's owner left behind, such as after a crash: those whose
// leftover-after time has passed. Objects without a readable time are
// leftovers DefaultTimeout plus LeftoverGrace after their creation.
func (g *Gatherer) Sweep(ctx context.Context) error {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelOwner: g.cfg.Owner}).String()
	now := g.now()
	var errs []error
	background := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &background}

	crbs, err := g.kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		errs = append(errs, fmt.Errorf("sweep: list clusterrolebindings: %w", err))
	} else {
		for _, b := range crbs.Items {
			if b.DeletionTimestamp != nil || !g.leftover(b.ObjectMeta, now) {
				continue
			}
			if err := g.kube.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, del); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("sweep: delete clusterrolebinding %s: %w", b.Name, err))
				continue
			}
			g.log.Info("leftover clusterrolebinding deleted", "binding", b.Name, "gathering", b.Labels[LabelGathering])
		}
	}

	nss, err := g.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		errs = append(errs, fmt.Errorf("sweep: list namespaces: %w", err))
	} else {
		for _, ns := range nss.Items {
			if ns.DeletionTimestamp != nil || !g.leftover(ns.ObjectMeta, now) {
				continue
			}
			if err := g.kube.CoreV1().Namespaces().Delete(ctx, ns.Name, del); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("sweep: delete namespace %s: %w", ns.Name, err))
				continue
			}
			g.log.Info("leftover namespace deleted", "namespace", ns.Name, "gathering", ns.Labels[LabelGathering])
		}
	}
	return joinErrors(errs)
}

func (g *Gatherer) leftover(m metav1.ObjectMeta, now time.Time) bool {
	after, err := time.Parse(time.RFC3339, m.Annotations[AnnotationLeftoverAfter])
	if err != nil {
		after = m.CreationTimestamp.Add(g.cfg.DefaultTimeout + g.cfg.LeftoverGrace)
	}
	return now.After(after)
}
