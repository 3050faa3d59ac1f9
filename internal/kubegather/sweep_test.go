package kubegather

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// TestSweepDeletesOnlyExpiredLeftoversOfItsOwner sweeps a real
// kube-apiserver holding namespaces and bindings of each kind: expired,
// in use, of another owner, without the annotation (old and new, by their
// creation time as the API server set it), already being deleted, and
// others that are not a gathering's.
func TestSweepDeletesOnlyExpiredLeftoversOfItsOwner(t *testing.T) {
	k := kube.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	meta := func(name, owner, leftoverAfter string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelOwner: owner, LabelGathering: "1"},
		}
		if leftoverAfter != "" {
			m.Annotations = map[string]string{AnnotationLeftoverAfter: leftoverAfter}
		}
		return m
	}
	createNS := func(m metav1.ObjectMeta) *corev1.Namespace {
		ns, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: m}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	// The API server sets creation times to the second: the old one is
	// made a second before the others, so that a sweep at the others'
	// expiry finds it expired and them not.
	old := createNS(meta("ns-old-without-annotation", ManagedBy, ""))
	err = testenv.Poll(ctx, 50*time.Millisecond, func() error {
		if time.Now().Truncate(time.Second).After(old.CreationTimestamp.Time) {
			return nil
		}
		return errors.New("still the second the old namespace was made in")
	})
	if err != nil {
		t.Fatal(err)
	}
	young := createNS(meta("ns-new-without-annotation", ManagedBy, ""))
	cfg := Config{DefaultTimeout: time.Hour, LeftoverGrace: time.Minute}
	now := young.CreationTimestamp.Add(cfg.DefaultTimeout + cfg.LeftoverGrace)
	past, future := now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Minute).Format(time.RFC3339)

	createNS(meta("ns-expired", ManagedBy, past))
	createNS(meta("ns-in-use", ManagedBy, future))
	createNS(meta("ns-of-another-owner", "someone-else", past))
	createNS(metav1.ObjectMeta{Name: "openshift-mtv"})
	// A finalizer of its own keeps this one terminating.
	deleting := meta("ns-being-deleted", ManagedBy, past)
	deleting.Finalizers = []string{"example.com/hold"}
	createNS(deleting)
	if err := admin.CoreV1().Namespaces().Delete(ctx, "ns-being-deleted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []metav1.ObjectMeta{meta("crb-expired", ManagedBy, past), meta("crb-in-use", ManagedBy, future)} {
		crb := &rbacv1.ClusterRoleBinding{ObjectMeta: m, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	g, err := NewForConfig(k.Admin, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return now }
	if err := g.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}

	// Left: what exists and is not being deleted, but for the one that
	// was being deleted before.
	var left []string
	for _, name := range []string{"ns-old-without-annotation", "ns-new-without-annotation", "ns-expired", "ns-in-use",
		"ns-of-another-owner", "openshift-mtv", "ns-being-deleted"} {
		ns, err := admin.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			t.Fatal(err)
		case ns.DeletionTimestamp == nil || name == "ns-being-deleted":
			left = append(left, name)
		}
	}
	for _, name := range []string{"crb-expired", "crb-in-use", "cluster-admin"} {
		_, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			t.Fatal(err)
		default:
			left = append(left, name)
		}
	}
	slices.Sort(left)
	want := []string{"cluster-admin", "crb-in-use", "ns-being-deleted", "ns-in-use", "ns-new-without-annotation", "ns-of-another-owner", "openshift-mtv"}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("objects left (-want +got):\n%s", diff)
	}
}
