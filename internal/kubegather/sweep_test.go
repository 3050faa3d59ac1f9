package kubegather

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func TestSweepDeletesOnlyExpiredLeftoversOfItsOwner(t *testing.T) {
	past, future := testNow.Add(-time.Minute).Format(time.RFC3339), testNow.Add(time.Minute).Format(time.RFC3339)
	meta := func(name, owner, leftoverAfter string, created time.Time) metav1.ObjectMeta {
		m := metav1.ObjectMeta{
			Name:              name,
			Labels:            map[string]string{LabelManagedBy: ManagedBy, LabelOwner: owner, LabelGathering: "1"},
			CreationTimestamp: metav1.NewTime(created),
		}
		if leftoverAfter != "" {
			m.Annotations = map[string]string{AnnotationLeftoverAfter: leftoverAfter}
		}
		return m
	}
	deleting := meta("ns-being-deleted", ManagedBy, past, testNow)
	deleting.DeletionTimestamp = &metav1.Time{Time: testNow}
	deleting.Finalizers = []string{"kubernetes"}
	objects := []runtime.Object{
		&corev1.Namespace{ObjectMeta: meta("ns-expired", ManagedBy, past, testNow)},
		&corev1.Namespace{ObjectMeta: meta("ns-in-use", ManagedBy, future, testNow)},
		&corev1.Namespace{ObjectMeta: meta("ns-of-another-owner", "someone-else", past, testNow)},
		&corev1.Namespace{ObjectMeta: meta("ns-old-without-annotation", ManagedBy, "", testNow.Add(-time.Hour))},
		&corev1.Namespace{ObjectMeta: meta("ns-new-without-annotation", ManagedBy, "", testNow)},
		&corev1.Namespace{ObjectMeta: deleting},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "openshift-mtv"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: meta("crb-expired", ManagedBy, past, testNow)},
		&rbacv1.ClusterRoleBinding{ObjectMeta: meta("crb-in-use", ManagedBy, future, testNow)},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cluster-admin"}},
	}
	kube := fake.NewClientset(objects...)
	g := New(kube, nil, nil, nil, Config{}, nil)
	g.now = func() time.Time { return testNow }
	if err := g.Sweep(context.Background()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}

	ctx := context.Background()
	nss, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crbs, err := kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, n := range nss.Items {
		left = append(left, n.Name)
	}
	for _, b := range crbs.Items {
		left = append(left, b.Name)
	}
	slices.Sort(left)
	want := []string{"cluster-admin", "crb-in-use", "ns-being-deleted", "ns-in-use", "ns-new-without-annotation", "ns-of-another-owner", "openshift-mtv"}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("objects left (-want +got):\n%s", diff)
	}
}
