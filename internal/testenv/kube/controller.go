package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/workqueue"
)

// kubeController does, for a Cluster, what the scheduler and
// kube-controller-manager would do and what kwok cannot: it binds new pods
// to a node (by node selector and node affinity, see chooseNode) after
// telling kwok where their exec and logs are,
// creates the "default" service account of new namespaces, and deletes the
// content of deleted namespaces and finalizes them. It lists and watches
// by itself because client-go's informers are not in the project's module
// graph.
type kubeController struct {
	k          *Cluster
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	pods       workqueue.TypedRateLimitingInterface[string]
	namespaces workqueue.TypedRateLimitingInterface[string]
	synced     chan struct{} // closed when both initial lists are queued

	mu       sync.Mutex
	prepared map[string]bool // pod UIDs, and namespace UIDs with a service account
	errs     []error         // the last errors, reported if the test fails
}

// GC finalizers: the garbage collector, which is not running, removes them.
var gcFinalizers = []string{metav1.FinalizerOrphanDependents, metav1.FinalizerDeleteDependents}

func startKubeController(k *Cluster) *kubeController {
	ctx, cancel := context.WithCancel(context.Background())
	c := &kubeController{
		k:          k,
		cancel:     cancel,
		pods:       workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		namespaces: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		synced:     make(chan struct{}),
		prepared:   map[string]bool{},
	}
	var listed sync.WaitGroup
	listed.Add(2)
	pods := k.client.CoreV1().Pods("")
	c.goWatch(ctx, c.pods, &listed,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return pods.List(ctx, o) },
		pods.Watch)
	namespaces := k.client.CoreV1().Namespaces()
	c.goWatch(ctx, c.namespaces, &listed,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return namespaces.List(ctx, o)
		},
		namespaces.Watch)
	c.goWork(ctx, c.pods, c.syncPod)
	c.goWork(ctx, c.namespaces, c.syncNamespace)
	go func() {
		listed.Wait()
		close(c.synced)
	}()
	return c
}

func (c *kubeController) waitSynced(ctx context.Context) error {
	select {
	case <-c.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("test environment: list pods and namespaces: %w", ctx.Err())
	}
}

func (c *kubeController) stop() {
	c.cancel()
	c.pods.ShutDown()
	c.namespaces.ShutDown()
	c.wg.Wait()
}

func (c *kubeController) report(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
	if len(c.errs) > 20 {
		c.errs = c.errs[1:]
	}
}

func (c *kubeController) errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// goWatch lists and then watches a resource, and queues the key of every
// object it sees, until ctx ends; it lists again when a watch fails.
func (c *kubeController) goWatch(ctx context.Context, q workqueue.TypedInterface[string], listed *sync.WaitGroup,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFrom func(context.Context, metav1.ListOptions) (watch.Interface, error)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		first := true
		for ctx.Err() == nil {
			if err := c.listAndWatch(ctx, q, list, watchFrom, func() {
				if first {
					first = false
					listed.Done()
				}
			}); err != nil && ctx.Err() == nil {
				c.report(err)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
}

func (c *kubeController) listAndWatch(ctx context.Context, q workqueue.TypedInterface[string],
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFrom func(context.Context, metav1.ListOptions) (watch.Interface, error), onListed func()) error {
	// From the watch cache, as informers do.
	l, err := list(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	rv, err := meta.NewAccessor().ResourceVersion(l)
	if err != nil {
		return err
	}
	if err := meta.EachListItem(l, func(o runtime.Object) error {
		q.Add(objectKey(o))
		return nil
	}); err != nil {
		return err
	}
	onListed()
	for {
		w, err := watchFrom(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				w.Stop()
				return fmt.Errorf("watch: %v", apierrors.FromObject(ev.Object))
			}
			if m, err := meta.Accessor(ev.Object); err == nil {
				rv = m.GetResourceVersion()
			}
			if ev.Type != watch.Bookmark {
				q.Add(objectKey(ev.Object))
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func objectKey(o runtime.Object) string {
	m, err := meta.Accessor(o)
	if err != nil {
		return ""
	}
	if m.GetNamespace() == "" {
		return m.GetName()
	}
	return m.GetNamespace() + "/" + m.GetName()
}

// goWork syncs the keys of q one at a time, retrying with backoff those that
// fail.
func (c *kubeController) goWork(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			key, shutdown := q.Get()
			if shutdown {
				return
			}
			if err := sync(ctx, key); err != nil && ctx.Err() == nil {
				c.report(fmt.Errorf("%s: %w", key, err))
				q.AddRateLimited(key)
			} else {
				q.Forget(key)
			}
			q.Done(key)
		}
	}()
}

// syncPod prepares a new pod's directory, logs and kwok objects, and then
// binds it to a node if it has none, as the scheduler would (see
// chooseNode).
func (c *kubeController) syncPod(ctx context.Context, key string) error {
	namespace, name, _ := strings.Cut(key, "/")
	pods := c.k.client.CoreV1().Pods(namespace)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if pod.DeletionTimestamp != nil {
		return c.dropGCFinalizers(ctx, pod.Finalizers, func(f []string) error {
			pod.Finalizers = f
			_, err := pods.Update(ctx, pod, metav1.UpdateOptions{})
			return err
		})
	}
	if err := c.preparePod(ctx, pod); err != nil {
		return err
	}
	if pod.Spec.NodeName != "" {
		return nil
	}
	if img := unpullable(pod); img != "" {
		return c.failPull(ctx, pod, img)
	}
	node, err := c.chooseNode(ctx, pod)
	if err != nil {
		return err
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	err = pods.Bind(ctx, binding, metav1.CreateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // bound already, or gone
	}
	return err
}

// UnpullableRegistry is a registry that no image can be pulled from: a pod
// with a container image from it is never bound to the node; the test
// environment instead reports, as a kubelet would, that its image cannot be
// pulled (container waiting with ErrImagePull and a Warning event).
const UnpullableRegistry = "unpullable.invalid/"

func unpullable(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		if strings.HasPrefix(c.Image, UnpullableRegistry) {
			return c.Image
		}
	}
	return ""
}

// failPull reports, once, that pod's image cannot be pulled.
func (c *kubeController) failPull(ctx context.Context, pod *corev1.Pod, image string) error {
	if len(pod.Status.ContainerStatuses) > 0 {
		return nil
	}
	msg := fmt.Sprintf("Failed to pull image %q: rpc error: code = NotFound desc = %s: not found", image, image)
	for _, ctr := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}},
		})
	}
	pod.Status.Phase = corev1.PodPending
	if _, err := c.k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return err
	}
	now := metav1.Now()
	_, err := c.k.client.CoreV1().Events(pod.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: pod.Name + "-"},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Type:           corev1.EventTypeWarning, Reason: "Failed", Message: msg,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "kubelet", Host: c.k.Node},
	}, metav1.CreateOptions{})
	return err
}

// preparePod creates, once per pod, the pod's directory and an empty log
// file for each container, and a ClusterExec and a ClusterLogs that point
// kwok at them, before the pod is bound so that kwok knows them by the time
// the pod runs.
func (c *kubeController) preparePod(ctx context.Context, pod *corev1.Pod) error {
	c.mu.Lock()
	done := c.prepared[string(pod.UID)]
	c.mu.Unlock()
	if done {
		return nil
	}
	logs := map[string]string{}
	for _, ctr := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		path := c.k.logFile(pod.Namespace, pod.Name, ctr.Name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		logs[ctr.Name] = path
	}
	root := c.k.PodDir(pod.Namespace, pod.Name)
	if err := c.k.pointKwokAt(ctx, "pod-"+string(pod.UID), pod.Namespace, pod.Name, root, logs); err != nil {
		return err
	}
	c.mu.Lock()
	c.prepared[string(pod.UID)] = true
	c.mu.Unlock()
	return nil
}

// isPrepared reports whether preparePod has pointed kwok at the pod with
// uid. A pod created with a node name runs at once, before that may have
// happened.
func (c *kubeController) isPrepared(uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prepared[uid]
}

// syncNamespace creates the default service account of a new namespace, as
// the serviceaccount controller would, and deletes the content of a deleted
// namespace and finalizes it, as the namespace controller would but at once.
func (c *kubeController) syncNamespace(ctx context.Context, name string) error {
	namespaces := c.k.client.CoreV1().Namespaces()
	ns, err := namespaces.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil {
		return c.ensureServiceAccount(ctx, ns)
	}
	if i := slices.Index(ns.Spec.Finalizers, corev1.FinalizerKubernetes); i >= 0 {
		if err := c.deleteContent(ctx, name); err != nil {
			return err
		}
		ns.Spec.Finalizers = slices.Delete(ns.Spec.Finalizers, i, i+1)
		if ns, err = namespaces.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("finalize: %w", err)
		}
	}
	return c.dropGCFinalizers(ctx, ns.Finalizers, func(f []string) error {
		ns.Finalizers = f
		_, err := namespaces.Update(ctx, ns, metav1.UpdateOptions{})
		return err
	})
}

func (c *kubeController) ensureServiceAccount(ctx context.Context, ns *corev1.Namespace) error {
	c.mu.Lock()
	done := c.prepared[string(ns.UID)]
	c.mu.Unlock()
	if done {
		return nil
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	_, err := c.k.client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		if apierrors.IsForbidden(err) {
			return nil // the namespace is being deleted
		}
		return fmt.Errorf("create service account: %w", err)
	}
	c.mu.Lock()
	c.prepared[string(ns.UID)] = true
	c.mu.Unlock()
	return nil
}

// deleteContent deletes every namespaced object of a namespace at once, pods
// with no grace period.
func (c *kubeController) deleteContent(ctx context.Context, namespace string) error {
	lists, err := c.k.client.Discovery().ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return fmt.Errorf("discover resources: %w", err)
	}
	grace := int64(0)
	background := metav1.DeletePropagationBackground
	var errs []error
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if !slices.Contains(r.Verbs, "deletecollection") {
				continue
			}
			err := c.k.dynamic.Resource(gv.WithResource(r.Name)).Namespace(namespace).
				DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace, PropagationPolicy: &background}, metav1.ListOptions{})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
				errs = append(errs, fmt.Errorf("delete %s: %w", r.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// dropGCFinalizers removes the garbage collector's finalizers, if any, with
// update.
func (c *kubeController) dropGCFinalizers(ctx context.Context, finalizers []string, update func([]string) error) error {
	kept := slices.DeleteFunc(slices.Clone(finalizers), func(f string) bool { return slices.Contains(gcFinalizers, f) })
	if len(kept) == len(finalizers) {
		return nil
	}
	err := update(kept)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
