package kubegather

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// forkliftCRDs are minimal CRDs of our own for Forklift's ForkliftController
// (group, version and names as Forklift's, with the one spec field read
// here) and OLM's ClusterServiceVersion: the real ones are large, and only
// their names and these fields matter to the gatherer.
const forkliftCRDs = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: forkliftcontrollers.forklift.konveyor.io
spec:
  group: forklift.konveyor.io
  names: {kind: ForkliftController, listKind: ForkliftControllerList, plural: forkliftcontrollers, singular: forkliftcontroller}
  scope: Namespaced
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            properties:
              must_gather_image_fqin: {type: string}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clusterserviceversions.operators.coreos.com
spec:
  group: operators.coreos.com
  names: {kind: ClusterServiceVersion, listKind: ClusterServiceVersionList, plural: clusterserviceversions, singular: clusterserviceversion, shortNames: [csv]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// TestTheDefaultImageIsTheInstalledForklifts finds the must-gather image of
// the Forklift installed on a real kube-apiserver, in the order of its
// sources, as each appears and goes, and says in exec-output which it took
// and why. Forklift is installed in konveyor-forklift, not openshift-mtv,
// so that the namespace must be found.
func TestTheDefaultImageIsTheInstalledForklifts(t *testing.T) {
	k := kube.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	const (
		ns        = "konveyor-forklift"
		fcImage   = "quay.io/kubev2v/forklift-must-gather:from-fc"
		csvImage  = "quay.io/kubev2v/forklift-must-gather@sha256:" + "0123456789abcdef0123456789abcdef"
		envImage  = "quay.io/kubev2v/forklift-must-gather:from-env"
		otherCSVs = "quay.io/other/must-gather:1"
	)
	gatherer := func(t *testing.T, rc *rest.Config, allowed ...string) *Gatherer {
		cfg := testConfig()
		cfg.DefaultImage = forkliftImage
		cfg.AllowedImages = allowed
		g, err := NewForConfig(rc, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	// resolve returns the image chosen for a gathering without image, why,
	// and the lines reported on the way.
	resolve := func(t *testing.T, g *Gatherer) (image, reason string, reported []string) {
		t.Helper()
		images, reason, err := g.resolveImages(ctx, mustgather.Gathering{}, func(format string, args ...any) {
			reported = append(reported, fmt.Sprintf(format, args...))
		})
		if err != nil || len(images) != 1 {
			t.Fatalf("resolveImages: %v, %v", images, err)
		}
		return images[0], reason, reported
	}
	check := func(t *testing.T, g *Gatherer, wantImage, wantReason string, wantReported ...string) {
		t.Helper()
		img, reason, reported := resolve(t, g)
		if img != wantImage || reason != wantReason {
			t.Errorf("image %s (%s), want %s (%s)", img, reason, wantImage, wantReason)
		}
		if len(reported) != len(wantReported) {
			t.Fatalf("reported %q, want %d lines like %q", reported, len(wantReported), wantReported)
		}
		for i, want := range wantReported {
			if !strings.Contains(reported[i], want) {
				t.Errorf("reported %q, want it to contain %q", reported[i], want)
			}
		}
	}

	t.Run("without Forklift's API the configured default, quietly", func(t *testing.T) {
		check(t, gatherer(t, k.Admin), forkliftImage, "the configured default: Forklift is not installed (no ForkliftController API)")
	})

	k.InstallCRDs(t, []byte(forkliftCRDs))
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fcs := dyn.Resource(forkliftControllers).Namespace(ns)
	csvs := dyn.Resource(clusterServiceVersions).Namespace(ns)

	t.Run("with the API but no ForkliftController the configured default", func(t *testing.T) {
		check(t, gatherer(t, k.Admin), forkliftImage, "the configured default: no ForkliftController found")
	})

	fc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "forklift.konveyor.io/v1beta1", "kind": "ForkliftController",
		"metadata": map[string]any{"name": "forklift-controller"},
		"spec":     map[string]any{"must_gather_image_fqin": fcImage, "feature_ui_plugin": "true"},
	}}
	fc, err = fcs.Create(ctx, fc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the ForkliftController's must_gather_image_fqin", func(t *testing.T) {
		check(t, gatherer(t, k.Admin), fcImage, "from ForkliftController "+ns+"/forklift-controller spec.must_gather_image_fqin")
	})

	// Usually the field is empty, and the operator's CSV names the image.
	unstructured.RemoveNestedField(fc.Object, "spec", "must_gather_image_fqin")
	if _, err := fcs.Update(ctx, fc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Run("with neither CSV nor operator Deployment the configured default", func(t *testing.T) {
		check(t, gatherer(t, k.Admin), forkliftImage, "the configured default: the Forklift install in "+ns+" names no must-gather image")
	})

	newCSV := func(name, image string, owns string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
			"metadata": map[string]any{"name": name, "annotations": map[string]any{MustGatherImageAnnotation: image}},
			"spec": map[string]any{"customresourcedefinitions": map[string]any{"owned": []any{
				map[string]any{"name": owns, "kind": "X", "version": "v1"},
			}}},
			"status": map[string]any{"phase": "Succeeded"},
		}}
	}
	// OLM copies the CSV of an operator installed for all namespaces into
	// every namespace: its must-gather image is not Forklift's.
	if _, err := csvs.Create(ctx, newCSV("other-operator.v1.0.0", otherCSVs, "others.example.com"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := csvs.Create(ctx, newCSV("mtv-operator.v2.9.0", csvImage, forkliftControllerCRD), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const csvReason = "from ClusterServiceVersion " + ns + "/mtv-operator.v2.9.0 annotation " + MustGatherImageAnnotation
	t.Run("the annotation of the Forklift operator's CSV, not of another's", func(t *testing.T) {
		check(t, gatherer(t, k.Admin), csvImage, csvReason)
	})

	t.Run("the chosen image and why appear in exec-output, and the pod runs it", func(t *testing.T) {
		job := newTestJob(t, mustgather.Gathering{ID: 41, NodeName: k.Node, Timeout: "2m"})
		done := make(chan error, 1)
		go func() { done <- gatherer(t, k.Admin).Gather(ctx, job.Job) }()
		pod := k.WaitPod(t, func(p *corev1.Pod) bool {
			return p.Labels[LabelGathering] == "41" && p.Status.Phase == corev1.PodRunning
		})
		if got := pod.Spec.Containers[0].Image; got != csvImage {
			t.Errorf("the pod runs %s, want %s", got, csvImage)
		}
		if err := os.MkdirAll(filepath.Join(k.PodDir(pod.Namespace, pod.Name), "namespaces"), 0o755); err != nil {
			t.Fatal(err)
		}
		k.FinishGather(t, pod.Namespace, pod.Name, 0)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Gather: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("the gathering did not end")
		}
		want := "Using must-gather plug-in image: " + csvImage + " (" + csvReason + ")"
		if !strings.Contains(job.log.String(), want) {
			t.Errorf("exec-output lacks %q:\n%s", want, job.log)
		}
	})

	if err := csvs.Delete(ctx, "mtv-operator.v2.9.0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "forklift-operator"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "forklift"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "forklift"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "forklift-operator", Image: "quay.io/kubev2v/forklift-operator:latest",
					Env: []corev1.EnvVar{
						{Name: "WATCH_NAMESPACE", Value: ns},
						{Name: "RELATED_IMAGE_MUST_GATHER", Value: envImage},
						{Name: "MUST_GATHER_IMAGE", Value: ""},
					},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const envReason = "from Deployment " + ns + "/forklift-operator container forklift-operator env RELATED_IMAGE_MUST_GATHER"
	t.Run("the operator Deployment's env", func(t *testing.T) {
		check(t, gatherer(t, k.Admin), envImage, envReason)
	})

	if _, err := csvs.Create(ctx, newCSV("mtv-operator.v2.9.1", csvImage, forkliftControllerCRD), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Run("a source the runner may not read is reported and skipped", func(t *testing.T) {
		limited := limitedUser(t, ctx, k, admin, "limited-forklift-reader", []rbacv1.PolicyRule{
			{APIGroups: []string{"forklift.konveyor.io"}, Resources: []string{"forkliftcontrollers"}, Verbs: []string{"list"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
		})
		check(t, gatherer(t, limited), envImage, envReason,
			`cannot read ClusterServiceVersions in `+ns+` to find the installed Forklift's must-gather image: clusterserviceversions.operators.coreos.com is forbidden`)
	})

	t.Run("a found image the allow-list refuses ends the gathering, saying why", func(t *testing.T) {
		job := newTestJob(t, mustgather.Gathering{ID: 42, Timeout: "2m"})
		err := gatherer(t, k.Admin, "quay.io/kubev2v/forklift-must-gather:latest").Gather(ctx, job.Job)
		if !errors.Is(err, mustgather.ErrInvalid) {
			t.Fatalf("Gather: %v, want ErrInvalid", err)
		}
		want := "must-gather image " + csvImage + " (" + "from ClusterServiceVersion " + ns + "/mtv-operator.v2.9.1 annotation " + MustGatherImageAnnotation +
			") is not an allowed image; allowed: quay.io/kubev2v/forklift-must-gather:latest"
		if !strings.Contains(job.log.String(), want) {
			t.Errorf("exec-output lacks %q:\n%s", want, job.log)
		}
		nss, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelGathering + "=42"})
		if err != nil || len(nss.Items) != 0 {
			t.Errorf("namespaces of the refused gathering: %v, %v", nss, err)
		}
	})
}

// limitedUser returns a config of k's admin that acts as user, who holds
// only rules, once the API server's authorizer grants them.
func limitedUser(t *testing.T, ctx context.Context, k *kube.Cluster, admin kubernetes.Interface, user string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(k.Admin)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		testenv.Eventually(t, 30*time.Second, user+" may "+strings.Join(r.Verbs, ",")+" "+strings.Join(r.Resources, ","), func() bool {
			ssar, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, selfReview(r), metav1.CreateOptions{})
			return err == nil && ssar.Status.Allowed
		})
	}
	return rc
}

func selfReview(r rbacv1.PolicyRule) *authorizationv1.SelfSubjectAccessReview {
	return &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Group: r.APIGroups[0], Resource: r.Resources[0], Verb: r.Verbs[0]},
	}}
}

// During an upgrade OLM keeps two CSVs of the operator for a while; other
// operators' CSVs are copied into the namespace too.
func TestTheForkliftCSVIsTheOperatorsSucceededNewest(t *testing.T) {
	csv := func(name, image, owns, phase string, age time.Duration) unstructured.Unstructured {
		u := unstructured.Unstructured{Object: map[string]any{
			"spec":   map[string]any{"customresourcedefinitions": map[string]any{"owned": []any{map[string]any{"name": owns}}}},
			"status": map[string]any{"phase": phase},
		}}
		u.SetName(name)
		if image != "" {
			u.SetAnnotations(map[string]string{MustGatherImageAnnotation: image})
		}
		u.SetCreationTimestamp(metav1.NewTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).Add(-age)))
		return u
	}
	tests := []struct {
		name      string
		csvs      []unstructured.Unstructured
		wantName  string
		wantImage string
	}{
		{"none", nil, "", ""},
		{"only another operator's", []unstructured.Unstructured{csv("other.v1", "quay.io/o/mg:1", "others.example.com", "Succeeded", 0)}, "", ""},
		{"Forklift's without the annotation", []unstructured.Unstructured{csv("mtv.v2", "", forkliftControllerCRD, "Succeeded", 0)}, "", ""},
		{"a succeeded one before a newer one still installing", []unstructured.Unstructured{
			csv("mtv.v2.9.1", "mg:2.9.1", forkliftControllerCRD, "Installing", 0),
			csv("mtv.v2.9.0", "mg:2.9.0", forkliftControllerCRD, "Succeeded", time.Hour),
			csv("other.v1", "quay.io/o/mg:1", "others.example.com", "Succeeded", 2*time.Hour),
		}, "mtv.v2.9.0", "mg:2.9.0"},
		{"of two succeeded the newer", []unstructured.Unstructured{
			csv("mtv.v2.9.0", "mg:2.9.0", forkliftControllerCRD, "Succeeded", time.Hour),
			csv("mtv.v2.9.1", "mg:2.9.1", forkliftControllerCRD, "Succeeded", 0),
		}, "mtv.v2.9.1", "mg:2.9.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, image := forkliftCSV(tt.csvs)
			if name != tt.wantName || image != tt.wantImage {
				t.Errorf("got %q %q, want %q %q", name, image, tt.wantName, tt.wantImage)
			}
		})
	}
}
