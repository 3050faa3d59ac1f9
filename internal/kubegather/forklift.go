package kubegather

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Where a Forklift install records the must-gather image that matches it.
var (
	// forkliftControllers: spec.must_gather_image_fqin, usually empty; the
	// namespace of the ForkliftController is the Forklift namespace.
	forkliftControllers = schema.GroupVersionResource{Group: "forklift.konveyor.io", Version: "v1beta1", Resource: "forkliftcontrollers"}
	// clusterServiceVersions: the operator's, with MustGatherImageAnnotation,
	// which `oc adm must-gather --all-images` reads too.
	clusterServiceVersions = schema.GroupVersionResource{Group: "operators.coreos.com", Version: "v1alpha1", Resource: "clusterserviceversions"}
)

const (
	// MustGatherImageAnnotation is the OLM annotation of a
	// ClusterServiceVersion that names the operator's must-gather image.
	MustGatherImageAnnotation = "operators.openshift.io/must-gather-image"
	// forkliftOperator is the Deployment of the Forklift operator, whose
	// container env carries the image the operator defaults to.
	forkliftOperator = "forklift-operator"
	// forkliftControllerCRD is what the Forklift operator's CSV owns.
	forkliftControllerCRD = "forkliftcontrollers.forklift.konveyor.io"
)

// forkliftImageEnv are the operator's env variables that name the
// must-gather image, in the order the operator reads them.
var forkliftImageEnv = []string{"MUST_GATHER_IMAGE", "RELATED_IMAGE_MUST_GATHER"}

// defaultImage returns the image of a gathering that names neither image
// nor image stream, and why: the one the installed Forklift records, read
// from its ForkliftController's spec.must_gather_image_fqin, else from its
// operator's ClusterServiceVersion annotation, else from the operator
// Deployment's env; else Config.DefaultImage. A source whose API the
// cluster lacks, or that holds nothing, is skipped quietly; one that cannot
// be read (Forbidden) is reported through report and skipped.
func (g *Gatherer) defaultImage(ctx context.Context, report func(format string, args ...any)) (image, reason string) {
	fallback := func(why string) (string, string) {
		return g.cfg.DefaultImage, "the configured default: " + why
	}
	if g.dyn == nil {
		return fallback("this cluster has no client for Forklift's API")
	}
	skip := func(source string, err error) bool {
		switch {
		case err == nil:
			return false
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		default: // Forbidden among others: say so, and go on.
			report("cannot read %s to find the installed Forklift's must-gather image: %v", source, err)
			g.log.Warn("read Forklift's must-gather image", "source", source, "err", err)
		}
		return true
	}

	fcs, err := g.dyn.Resource(forkliftControllers).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return fallback("Forklift is not installed (no ForkliftController API)")
	}
	if skip("ForkliftControllers", err) {
		return fallback("no ForkliftController could be read")
	}
	if len(fcs.Items) == 0 {
		return fallback("no ForkliftController found")
	}
	fc := oldest(fcs.Items)
	ns := fc.GetNamespace()
	if img := nestedString(fc.Object, "spec", "must_gather_image_fqin"); img != "" {
		return img, fmt.Sprintf("from ForkliftController %s/%s spec.must_gather_image_fqin", ns, fc.GetName())
	}

	csvs, err := g.dyn.Resource(clusterServiceVersions).Namespace(ns).List(ctx, metav1.ListOptions{})
	if !skip("ClusterServiceVersions in "+ns, err) {
		if csv, img := forkliftCSV(csvs.Items); img != "" {
			return img, fmt.Sprintf("from ClusterServiceVersion %s/%s annotation %s", ns, csv, MustGatherImageAnnotation)
		}
	}

	dep, err := g.kube.AppsV1().Deployments(ns).Get(ctx, forkliftOperator, metav1.GetOptions{})
	if !skip("Deployment "+ns+"/"+forkliftOperator, err) {
		for _, name := range forkliftImageEnv {
			for _, c := range dep.Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					if e.Name == name && e.Value != "" {
						return e.Value, fmt.Sprintf("from Deployment %s/%s container %s env %s", ns, forkliftOperator, c.Name, name)
					}
				}
			}
		}
	}
	return fallback(fmt.Sprintf("the Forklift install in %s names no must-gather image", ns))
}

// oldest returns the first created of objs (the one a second, ignored,
// install came after), by name on a tie; objs is not empty.
func oldest(objs []unstructured.Unstructured) unstructured.Unstructured {
	return slices.MinFunc(objs, func(a, b unstructured.Unstructured) int {
		return cmp.Or(a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time), cmp.Compare(a.GetNamespace()+"/"+a.GetName(), b.GetNamespace()+"/"+b.GetName()))
	})
}

// forkliftCSV returns the name and must-gather image of the Forklift
// operator's ClusterServiceVersion among csvs: one that owns the
// ForkliftController CRD and carries the annotation (others in the
// namespace, copied there by OLM, belong to other operators). During an
// upgrade the one that succeeded wins, then the newest.
func forkliftCSV(csvs []unstructured.Unstructured) (name, image string) {
	var best *unstructured.Unstructured
	rank := func(u *unstructured.Unstructured) (bool, metav1.Time) {
		return nestedString(u.Object, "status", "phase") == "Succeeded", u.GetCreationTimestamp()
	}
	for i := range csvs {
		u := &csvs[i]
		if u.GetAnnotations()[MustGatherImageAnnotation] == "" || !ownsCRD(u, forkliftControllerCRD) {
			continue
		}
		if best == nil {
			best = u
			continue
		}
		ok, created := rank(u)
		bestOK, bestCreated := rank(best)
		if ok && !bestOK || ok == bestOK && bestCreated.Before(&created) {
			best = u
		}
	}
	if best == nil {
		return "", ""
	}
	return best.GetName(), best.GetAnnotations()[MustGatherImageAnnotation]
}

// ownsCRD reports whether a ClusterServiceVersion lists crd in
// spec.customresourcedefinitions.owned.
func ownsCRD(csv *unstructured.Unstructured, crd string) bool {
	owned, _, _ := unstructured.NestedSlice(csv.Object, "spec", "customresourcedefinitions", "owned")
	for _, o := range owned {
		if m, ok := o.(map[string]any); ok && m["name"] == crd {
			return true
		}
	}
	return false
}
