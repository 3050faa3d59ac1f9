package kubegather

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Sweep deletes the namespaces and ClusterRoleBindings that gatherings of
// this Gatherer's owner left behind, such as after a crash: those whose
// leftover-after time has passed. Objects without a readable time are
// leftovers DefaultTimeout plus LeftoverGrace after their creation.
func (g *Gatherer) Sweep(ctx context.Context) error {
	s := sweep{
		g:   g,
		sel: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelOwner: g.cfg.Owner}).String(),
		now: g.now(),
	}
	errs := sweepKind[*rbacv1.ClusterRoleBindingList](ctx, s, g.kube.RbacV1().ClusterRoleBindings(), "clusterrolebinding", "binding")
	errs = append(errs, sweepKind[*corev1.NamespaceList](ctx, s, g.kube.CoreV1().Namespaces(), "namespace", "namespace")...)
	return joinErrors(errs)
}

// sweep is one Sweep: what it selects and when it looks.
type sweep struct {
	g   *Gatherer
	sel string
	now time.Time
}

// kindClient lists and deletes the objects of one kind, as client-go's
// typed clients do.
type kindClient[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// sweepKind deletes the leftovers among the objects of one kind; attr is
// the log attribute that names one.
func sweepKind[L runtime.Object](ctx context.Context, s sweep, c kindClient[L], kind, attr string) []error {
	list, err := c.List(ctx, metav1.ListOptions{LabelSelector: s.sel})
	if err != nil {
		return []error{fmt.Errorf("sweep: list %ss: %w", kind, err)}
	}
	background := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &background}
	var errs []error
	err = meta.EachListItem(list, func(obj runtime.Object) error {
		o, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		if o.GetDeletionTimestamp() != nil || !s.g.leftover(o, s.now) {
			return nil
		}
		if err := c.Delete(ctx, o.GetName(), del); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("sweep: delete %s %s: %w", kind, o.GetName(), err))
			return nil
		}
		s.g.log.Info("leftover "+kind+" deleted", attr, o.GetName(), "gathering", o.GetLabels()[LabelGathering])
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("sweep: %ss: %w", kind, err))
	}
	return errs
}

func (g *Gatherer) leftover(o metav1.Object, now time.Time) bool {
	after, err := time.Parse(time.RFC3339, o.GetAnnotations()[AnnotationLeftoverAfter])
	if err != nil {
		after = o.GetCreationTimestamp().Add(g.cfg.DefaultTimeout + g.cfg.LeftoverGrace)
	}
	return now.After(after)
}
