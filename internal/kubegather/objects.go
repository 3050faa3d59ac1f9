package kubegather

import (
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// labels returns the labels every object of the gathering carries.
func (r *run) labels() map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy,
		LabelGathering: r.job.Gathering.ID.String(),
		LabelOwner:     r.g.cfg.Owner,
	}
}

// leftoverAfter is when the gathering's objects become leftovers: nobody
// can still be using them then.
func (r *run) leftoverAfter() string {
	timeout := r.job.Gathering.TimeoutDuration(r.g.cfg.DefaultTimeout)
	return r.g.now().Add(timeout + r.g.cfg.LeftoverGrace).UTC().Format(time.RFC3339)
}

// setup creates the namespace and the binding that lets its default
// ServiceAccount read the whole cluster, as oc does.
func (r *run) setup(ctx context.Context) error {
	ns, err := r.g.kube.CoreV1().Namespaces().Create(ctx, r.newNamespace(), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	r.ns = ns.Name
	r.out.printf(gatheringPrefix, "namespace/%s created", ns.Name)
	r.log.Info("namespace created", "namespace", ns.Name)

	crb, err := r.g.kube.RbacV1().ClusterRoleBindings().Create(ctx, r.newClusterRoleBinding(ns), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create clusterrolebinding for namespace %s: %w", ns.Name, err)
	}
	r.binding = crb.Name
	r.out.printf(gatheringPrefix, "clusterrolebinding.rbac.authorization.k8s.io/%s created", crb.Name)
	return nil
}

func (r *run) newNamespace() *corev1.Namespace {
	labels := r.labels()
	// Run level 0 keeps OpenShift's admission from adding an SCC and
	// node selector of its own, as oc does.
	labels["openshift.io/run-level"] = "0"
	for _, l := range []string{"enforce", "audit", "warn"} {
		labels["pod-security.kubernetes.io/"+l] = "privileged"
	}
	// Keep OpenShift from syncing the pod-security labels down from the
	// SCCs, as oc does.
	labels["security.openshift.io/scc.podSecurityLabelSync"] = "false"
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: r.g.cfg.NamespacePrefix,
			Labels:       labels,
			Annotations: map[string]string{
				AnnotationLeftoverAfter: r.leftoverAfter(),
				// An empty project node selector lets the pods run on
				// any node, control plane included.
				"openshift.io/node-selector": "",
			},
		},
	}
	if r.job.Runner != "" {
		ns.Annotations[AnnotationRunner] = r.job.Runner
	}
	return ns
}

func (r *run) newClusterRoleBinding(ns *corev1.Namespace) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "must-gather-",
			Labels:       r.labels(),
			Annotations:  map[string]string{AnnotationLeftoverAfter: r.leftoverAfter()},
			// The garbage collector deletes the binding with its
			// namespace, should our own deletion not happen.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1",
				Kind:       "Namespace",
				Name:       ns.Name,
				UID:        ns.UID,
			}},
		},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{
			Kind:      rbacv1.ServiceAccountKind,
			Name:      "default",
			Namespace: ns.Name,
		}},
	}
}

// cleanup deletes the binding and the namespace (and so the pods) whatever
// happened, with a context that outlives the gathering's.
// cleanupAtEnd returns what the gathering defers to delete its namespace
// and binding. When the runner takes that over (Job.Defer), they are
// deleted once the archive is stored, so that until then a runner that
// takes over finds the pods to re-attach to, and it returns a no-op.
func (r *run) cleanupAtEnd(ctx context.Context) func() {
	d := r.job.Defer
	if d == nil {
		return func() { r.cleanup(ctx) }
	}
	d(func(ctx context.Context, log io.Writer) {
		// After Gather returned: the job's own log is closed by then.
		r.out = &lineWriter{w: log, now: r.g.now}
		r.cleanup(ctx)
	})
	return func() {}
}

func (r *run) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.g.cfg.CleanupTimeout)
	defer cancel()
	if r.leftToAnother(ctx) {
		return
	}
	background := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &background}
	if r.binding != "" {
		err := r.g.kube.RbacV1().ClusterRoleBindings().Delete(ctx, r.binding, opts)
		switch {
		case err == nil || apierrors.IsNotFound(err):
			r.out.printf(gatheringPrefix, "clusterrolebinding.rbac.authorization.k8s.io/%s deleted", r.binding)
		default:
			r.out.printf(gatheringPrefix, "clusterrolebinding %s not deleted: %v", r.binding, err)
			r.log.Error("delete clusterrolebinding; Sweep will delete it", "binding", r.binding, "err", err)
		}
	}
	if r.ns != "" {
		err := r.g.kube.CoreV1().Namespaces().Delete(ctx, r.ns, opts)
		switch {
		case err == nil || apierrors.IsNotFound(err):
			r.out.printf(gatheringPrefix, "namespace/%s deleted", r.ns)
			r.log.Info("namespace deleted", "namespace", r.ns)
		default:
			r.out.printf(gatheringPrefix, "namespace %s not deleted: %v", r.ns, err)
			r.log.Error("delete namespace; Sweep will delete it", "namespace", r.ns, "err", err)
		}
	}
}

// imageStreamTags is the OpenShift API that resolves image streams.
var imageStreamTags = schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreamtags"}

// resolveImages returns the images the gathering runs: its image list, the
// image its image stream tag points at, or the default image that
// defaultImage finds, with why it was chosen. An image found on the
// cluster must pass the allow-list too.
func (g *Gatherer) resolveImages(ctx context.Context, mg mustgather.Gathering, report func(format string, args ...any)) (images []string, reason string, err error) {
	p := mustgather.Policy{AllowedImages: g.cfg.AllowedImages}
	if s := strings.TrimSpace(mg.ImageStream); s != "" {
		img, err := g.resolveImageStream(ctx, s)
		if err != nil {
			return nil, "", err
		}
		if !p.AllowsImage(img) {
			return nil, "", fmt.Errorf("image stream %s resolves to %s, which is not an allowed image; allowed: %s: %w",
				s, img, strings.Join(p.AllowedImages, ", "), mustgather.ErrInvalid)
		}
		return []string{img}, "", nil
	}
	seen := map[string]bool{}
	for img := range strings.SplitSeq(mg.Image, ",") {
		img = strings.TrimSpace(img)
		// The same image twice would only gather the same twice.
		if img != "" && !seen[img] {
			seen[img] = true
			images = append(images, img)
		}
	}
	if len(images) > 0 {
		return images, "", nil
	}
	img, reason := g.defaultImage(ctx, report)
	if !p.AllowsImage(img) {
		return nil, "", fmt.Errorf("must-gather image %s (%s) is not an allowed image; allowed: %s: %w",
			img, reason, strings.Join(p.AllowedImages, ", "), mustgather.ErrInvalid)
	}
	return []string{img}, reason, nil
}

// resolveImageStream reads namespace/name:tag's pull spec from the
// ImageStreamTag API.
func (g *Gatherer) resolveImageStream(ctx context.Context, s string) (string, error) {
	ns, nameTag, ok := strings.Cut(s, "/")
	if !ok || ns == "" || !strings.Contains(nameTag, ":") {
		return "", fmt.Errorf("image stream %q: must be namespace/name:tag: %w", s, mustgather.ErrInvalid)
	}
	if g.dyn == nil {
		return "", fmt.Errorf("resolve image stream %s: this cluster has no image stream client", s)
	}
	ist, err := g.dyn.Resource(imageStreamTags).Namespace(ns).Get(ctx, nameTag, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("resolve image stream %s: %w", s, err)
	}
	ref := nestedString(ist.Object, "image", "dockerImageReference")
	if ref == "" {
		return "", fmt.Errorf("resolve image stream %s: the tag has no image.dockerImageReference", s)
	}
	return ref, nil
}

func nestedString(obj map[string]any, fields ...string) string {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[f]
	}
	s, _ := cur.(string)
	return s
}

// checkNode fails early for a node-name that does not exist: a pod bound to
// a missing node would wait in Pending until the timeout. It returns the
// node, or nil when it may not be read.
func (g *Gatherer) checkNode(ctx context.Context, node string) (*corev1.Node, error) {
	n, err := g.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case err == nil:
		return n, nil
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("node %q not found: %w", node, mustgather.ErrInvalid)
	case apierrors.IsForbidden(err):
		// Not allowed to look: let the pod find out.
		g.log.Warn("cannot check node-name", "node", node, "err", err)
		return nil, nil
	}
	return nil, fmt.Errorf("get node %s: %w", node, err)
}

// podSpec is what varies between the pods of gatherings.
type podSpec struct {
	image     string
	command   string
	sourceDir string
	nodeName  string
	// affinity places a pod without nodeName.
	affinity    *corev1.Affinity
	hostNetwork bool
	opts        PodOptions
}

const outputVolume = "must-gather-output"

// newPod returns the gather pod for s: a gather container that runs the
// command and a copy container that keeps the pod alive until the output
// is copied, sharing an emptyDir at the source dir.
func (g *Gatherer) newPod(s podSpec, labels map[string]string) *corev1.Pod {
	dir := path.Clean(s.sourceDir)
	mounts := []corev1.VolumeMount{{Name: outputVolume, MountPath: dir}}
	env := []corev1.EnvVar{
		{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	if s.opts.Since != "" {
		env = append(env, corev1.EnvVar{Name: "MUST_GATHER_SINCE", Value: s.opts.Since})
	}
	if s.opts.SinceTime != "" {
		env = append(env, corev1.EnvVar{Name: "MUST_GATHER_SINCE_TIME", Value: s.opts.SinceTime})
	}
	gather := corev1.Container{
		Name:            gatherContainer,
		Image:           s.image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		// The command is an argument, not part of the script, so that
		// it needs no quoting.
		Command:                  []string{"/bin/bash", "-c", gatherScript, "gather", s.command, dir, fmt.Sprint(g.cfg.VolumePercentage)},
		Env:                      env,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             mounts,
	}
	if s.hostNetwork {
		// For packet captures on the host; NET_RAW only allows reading.
		gather.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"CAP_NET_RAW"}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "must-gather-",
			Labels:       map[string]string{"app": "must-gather"},
		},
		Spec: corev1.PodSpec{
			// May be OOM-killed but not preempted, as oc's.
			PriorityClassName:             "system-cluster-critical",
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Volumes:                       []corev1.Volume{{Name: outputVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{gather, {
				Name:                     copyContainer,
				Image:                    s.image,
				ImagePullPolicy:          corev1.PullIfNotPresent,
				Command:                  []string{"/bin/bash", "-c", "trap : TERM INT; sleep infinity & wait"},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				VolumeMounts:             mounts,
			}},
			NodeSelector: map[string]string{corev1.LabelOSStable: "linux"},
			HostNetwork:  s.hostNetwork,
			// An empty key with Exists tolerates every taint.
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
	for k, v := range labels {
		pod.Labels[k] = v
	}
	if s.nodeName != "" {
		pod.Spec.NodeName = s.nodeName
	} else {
		pod.Spec.Affinity = s.affinity
		for k, v := range g.cfg.NodeSelector {
			pod.Spec.NodeSelector[k] = v
		}
	}
	return pod
}

// gatherScript runs the gather command ($1) in a process group of its own,
// so that a watcher can stop all of it when the output volume ($2) is
// fuller than $3 percent, flushes the output to disk and exits with the
// command's status. Job control is on only while the command starts, so
// bash prints no job notices.
const gatherScript = `set -m
/bin/bash -c "$1" &
gather=$!
set +m
if [ "$3" -lt 100 ]; then
  (
    while kill -0 "$gather" 2>/dev/null; do
      used=$(df -P "$2" 2>/dev/null | awk 'NR==2 {sub(/%/, "", $5); print $5}')
      case $used in ''|*[!0-9]*) used=0 ;; esac
      if [ "$used" -gt "$3" ]; then
        echo "[disk usage checker] $2 is $used% full, more than the allowed $3%: stopping the gather"
        kill -TERM -- "-$gather"
        exit
      fi
      sleep 5
    done
  ) &
fi
wait "$gather"
status=$?
sync
exit "$status"`

// copyCommand streams the source dir as an uncompressed tar.
func copyCommand(dir string) []string {
	return []string{"tar", "cf", "-", "-C", path.Clean(dir), "."}
}

// copyStoppedCommand is copyCommand for a gather that may still be
// writing: gzip files that do not test whole (a tarball still being
// packed) are left out, since one broken tarball would end the archive's
// stream. Without find or gzip in the image nothing is left out.
func copyStoppedCommand(dir string) []string {
	return []string{"/bin/bash", "-c",
		`cd -- "$1" || exit 2; tar cf - --exclude-from=<(find . -type f -name '*.gz' ! -exec gzip -t {} \; -print 2>/dev/null) .`,
		"copy", path.Clean(dir)}
}

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]+`)

// dirName names the archive directory of a pod's output after its image,
// as oc names its dest-dir: the image ID the kubelet reports, else the
// image reference, with every run of other characters than letters and
// digits turned into "-". A pod of a node-selector gathering has it under
// a directory named after its node the same way, as oc does. A name used
// before gets a number.
func (r *run) dirName(pod *corev1.Pod, image, node string) string {
	ref := image
	if st := containerStatus(pod, gatherContainer); st != nil && st.ImageID != "" {
		ref = st.ImageID
	}
	name := safeName(ref, "image")
	if node != "" {
		name = safeName(node, "node") + "/" + name
	}
	r.dirs[name]++
	if n := r.dirs[name]; n > 1 {
		name = fmt.Sprintf("%s-%d", name, n)
	}
	return name
}

func safeName(s, empty string) string {
	name := strings.Trim(nonAlnum.ReplaceAllString(s, "-"), "-")
	if name == "" {
		return empty
	}
	return name
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	if pod == nil {
		return nil
	}
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}
