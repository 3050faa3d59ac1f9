package kubegather

import (
	"cmp"
	"context"
	"io"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// InspectDir is the archive directory of the fallback collection.
const InspectDir = "inspect"

// inspectLogLimit caps each container log the fallback collection keeps.
const inspectLogLimit = 10 << 20

// forkliftGroupVersion is the API of Forklift's own objects.
var forkliftGroupVersion = schema.GroupVersion{Group: "forklift.konveyor.io", Version: "v1beta1"}

// What the fallback collection lists in the Forklift namespace besides
// Forklift's own kinds, with the directory oc adm inspect uses for each.
var inspectKinds = []struct {
	dir string
	gvr schema.GroupVersionResource
}{
	{"core", schema.GroupVersionResource{Version: "v1", Resource: "pods"}},
	{"core", schema.GroupVersionResource{Version: "v1", Resource: "events"}},
	{"apps", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
}

// fallback collects, when the gather of the default image failed, what
// `oc adm inspect` would of the Forklift namespace (pods and their logs,
// events, deployments, Forklift's objects) and the Plans and Migrations
// a targeted gathering names, as YAML under InspectDir, so that a failed
// gathering still holds evidence. It reads with the runner's own
// credentials, not the pod's. As oc, it does nothing for a gathering with
// an image of its own, or one that was stopped.
func (r *run) fallback(ctx context.Context, errs []error) {
	mg := r.job.Gathering
	if joinErrors(errs) == nil || strings.TrimSpace(mg.Image) != "" || strings.TrimSpace(mg.ImageStream) != "" ||
		r.wasInterrupted() || r.g.dyn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.g.cfg.CleanupTimeout)
	defer cancel()
	t, targeted := mustgather.ParseTargeted(mg.Command)
	report := func(format string, args ...any) { r.out.printf(gatheringPrefix, format, args...) }

	ns := ""
	fcs, err := r.g.dyn.Resource(forkliftControllers).List(ctx, metav1.ListOptions{})
	switch {
	case err == nil && len(fcs.Items) > 0:
		fc := oldest(fcs.Items)
		ns = fc.GetNamespace()
	case err == nil || apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		report("inspect: no ForkliftController found: there is no Forklift namespace to collect")
	default:
		report("inspect: cannot read ForkliftControllers to find the Forklift namespace: %v", err)
	}
	what := []string{}
	if ns != "" {
		what = append(what, "namespace "+ns)
	}
	planNS := cmp.Or(t.Namespace, ns)
	if targeted && t.Plan != "" && planNS != "" {
		what = append(what, "plan "+planNS+"/"+t.Plan)
	}
	if targeted && t.Namespace != "" && t.Namespace != ns {
		what = append(what, "the Plans and Migrations of namespace "+t.Namespace)
	}
	if len(what) == 0 {
		return
	}
	report("the gather of the default image failed: falling back to an inspect-style collection of %s into %s/, as `oc adm inspect` would", strings.Join(what, ", "), InspectDir)

	c := &collection{r: r, ctx: ctx, report: report}
	if ns != "" {
		c.namespace(ns)
	}
	if targeted && t.Namespace != "" && t.Namespace != ns {
		for _, res := range []string{"plans", "migrations"} {
			c.list(t.Namespace, forkliftGroupVersion.Group, forkliftGroupVersion.WithResource(res), nil)
		}
	}
	if targeted && planNS != "" && (t.Plan != "" || t.VM != "") {
		c.named(planNS, t)
	}
	report("inspect: %d files written into %s/", c.files, InspectDir)
}

// collection writes what the fallback finds into the archive.
type collection struct {
	r      *run
	ctx    context.Context
	report func(format string, args ...any)
	files  int
}

func (c *collection) add(name string, b []byte) {
	c.r.archiveMu.Lock()
	err := c.r.job.Archive.AddBytes(path.Join(InspectDir, name), b, c.r.g.now())
	c.r.archiveMu.Unlock()
	if err != nil {
		c.report("inspect: %s not written: %v", name, err)
		return
	}
	c.files++
}

// namespace collects ns as oc adm inspect lays it out:
// namespaces/<ns>/<group>/<resource>.yaml, and each container's log at
// namespaces/<ns>/pods/<pod>/<container>/<container>/logs/current.log.
func (c *collection) namespace(ns string) {
	for _, k := range inspectKinds {
		list := c.list(ns, k.dir, k.gvr, nil)
		if k.gvr.Resource == "pods" && list != nil {
			for _, p := range list.Items {
				c.logs(ns, p)
			}
		}
	}
	resources, err := c.r.g.kube.Discovery().ServerResourcesForGroupVersion(forkliftGroupVersion.String())
	if err != nil {
		c.report("inspect: Forklift's API not listed: %v", err)
		return
	}
	var names []string
	for _, res := range resources.APIResources {
		if res.Namespaced && !strings.Contains(res.Name, "/") && slices.Contains(res.Verbs, "list") {
			names = append(names, res.Name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		c.list(ns, forkliftGroupVersion.Group, forkliftGroupVersion.WithResource(name), nil)
	}
}

// list writes the objects of gvr in ns that keep lets through (nil: all)
// as namespaces/<ns>/<dir>/<resource>.yaml, and returns them.
func (c *collection) list(ns, dir string, gvr schema.GroupVersionResource, keep func(unstructured.Unstructured) bool) *unstructured.UnstructuredList {
	list, err := c.r.g.dyn.Resource(gvr).Namespace(ns).List(c.ctx, metav1.ListOptions{})
	if err != nil {
		c.report("inspect: %s in %s not listed: %v", gvr.Resource, ns, err)
		return nil
	}
	if keep != nil {
		list.Items = slices.DeleteFunc(list.Items, func(u unstructured.Unstructured) bool { return !keep(u) })
	}
	for i := range list.Items {
		unstructured.RemoveNestedField(list.Items[i].Object, "metadata", "managedFields")
	}
	c.writeYAML(path.Join("namespaces", ns, dir, gvr.Resource+".yaml"), list)
	return list
}

func (c *collection) writeYAML(name string, obj interface{ MarshalJSON() ([]byte, error) }) {
	j, err := obj.MarshalJSON()
	var y []byte
	if err == nil {
		y, err = yaml.JSONToYAML(j)
	}
	if err != nil {
		c.report("inspect: %s not written: %v", name, err)
		return
	}
	c.add(name, y)
}

// logs writes the log of each container of pod that has started, as far
// as the node serves it, up to inspectLogLimit.
func (c *collection) logs(ns string, pod unstructured.Unstructured) {
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(pod.Object, &p); err != nil {
		c.report("inspect: pod %s/%s not read: %v", ns, pod.GetName(), err)
		return
	}
	for _, st := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if st.State.Running == nil && st.State.Terminated == nil {
			continue
		}
		req := c.r.g.kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: st.Name, LimitBytes: ptr.To[int64](inspectLogLimit)})
		rc, err := req.Stream(c.ctx)
		if err != nil {
			c.report("inspect: log of %s/%s container %s not reachable: %v", ns, p.Name, st.Name, err)
			continue
		}
		b, err := io.ReadAll(io.LimitReader(rc, inspectLogLimit))
		rc.Close()
		if err != nil {
			c.report("inspect: log of %s/%s container %s cut short: %v", ns, p.Name, st.Name, err)
		}
		c.add(path.Join("namespaces", ns, "pods", p.Name, st.Name, st.Name, "logs", "current.log"), b)
	}
}

// named writes the Plan a targeted gathering names (or, for a VM, the
// Plans that hold it) and the Migrations of those Plans, one file each,
// as namespaces/<ns>/forklift.konveyor.io/<resource>/<name>.yaml.
func (c *collection) named(ns string, t mustgather.Targeted) {
	plans, err := c.r.g.dyn.Resource(forkliftGroupVersion.WithResource("plans")).Namespace(ns).List(c.ctx, metav1.ListOptions{})
	if err != nil {
		c.report("inspect: plans in %s not listed: %v", ns, err)
		return
	}
	kept := map[string]bool{}
	for _, p := range plans.Items {
		if t.Plan != "" && p.GetName() == t.Plan || t.Plan == "" && planHasVM(p, t.VM) {
			kept[p.GetName()] = true
			c.writeObject(ns, "plans", p)
		}
	}
	if len(kept) == 0 {
		c.report("inspect: no Plan in %s matches the request", ns)
		return
	}
	migrations, err := c.r.g.dyn.Resource(forkliftGroupVersion.WithResource("migrations")).Namespace(ns).List(c.ctx, metav1.ListOptions{})
	if err != nil {
		c.report("inspect: migrations in %s not listed: %v", ns, err)
		return
	}
	for _, m := range migrations.Items {
		if kept[nestedString(m.Object, "spec", "plan", "name")] {
			c.writeObject(ns, "migrations", m)
		}
	}
}

func (c *collection) writeObject(ns, resource string, u unstructured.Unstructured) {
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	c.writeYAML(path.Join("namespaces", ns, forkliftGroupVersion.Group, resource, u.GetName()+".yaml"), &u)
}

// planHasVM reports whether a Plan lists vm, by name or id, in spec.vms.
func planHasVM(p unstructured.Unstructured, vm string) bool {
	if vm == "" {
		return false
	}
	vms, _, _ := unstructured.NestedSlice(p.Object, "spec", "vms")
	for _, v := range vms {
		if m, ok := v.(map[string]any); ok && (m["name"] == vm || m["id"] == vm) {
			return true
		}
	}
	return false
}
