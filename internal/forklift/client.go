package forklift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// The resources of Migrations and Plans.
var (
	Migrations = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "migrations"}
	Plans      = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "plans"}
)

// Client reads and watches Migrations and Plans with the dynamic client.
type Client struct {
	dyn dynamic.Interface
	log *slog.Logger
}

// NewClient returns a Client of the cluster cfg reaches. log may be nil.
func NewClient(cfg *rest.Config, log *slog.Logger) (*Client, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("forklift client: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{dyn: dyn, log: log}, nil
}

// Migration reads a Migration; ErrNotFound when there is none.
func (c *Client) Migration(ctx context.Context, namespace, name string) (Migration, error) {
	var m Migration
	return m, c.get(ctx, Migrations, namespace, name, &m)
}

// Plan reads a Plan; ErrNotFound when there is none.
func (c *Client) Plan(ctx context.Context, namespace, name string) (Plan, error) {
	var p Plan
	return p, c.get(ctx, Plans, namespace, name, &p)
}

func (c *Client) get(ctx context.Context, r schema.GroupVersionResource, namespace, name string, v any) error {
	u, err := c.dyn.Resource(r).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s/%s: %w", r.Resource, namespace, name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("read %s %s/%s: %w", r.Resource, namespace, name, err)
	}
	return decode(u, v)
}

// Migrations lists the Migrations of namespace, of every namespace for "".
func (c *Client) Migrations(ctx context.Context, namespace string) ([]Migration, error) {
	list, err := c.dyn.Resource(Migrations).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list migrations in %q: %w", namespace, err)
	}
	out := make([]Migration, 0, len(list.Items))
	for i := range list.Items {
		var m Migration
		if err := decode(&list.Items[i], &m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// decode reads an object into v by Forklift's JSON field names.
func decode(u *unstructured.Unstructured, v any) error {
	data, err := u.MarshalJSON()
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		return fmt.Errorf("decode %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// Change names an object that was added or changed.
type Change struct {
	Kind, Namespace, Name string
}

// Watch watches the Migrations and Plans of namespaces (every namespace
// when there are none) and calls fn with each one that is added, listed
// when the watch starts, or changed, one at a time, until ctx ends. A
// change fn returns an error for comes again with back-off. It returns
// when ctx ends.
func (c *Client) Watch(ctx context.Context, namespaces []string, fn func(context.Context, Change) error) error {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[Change](),
		workqueue.TypedRateLimitingQueueConfig[Change]{Name: "forklift"})
	defer q.ShutDown()
	var informers sync.WaitGroup
	defer informers.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, ns := range namespaces {
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dyn, 0, ns, nil)
		for _, r := range []struct {
			gvr  schema.GroupVersionResource
			kind string
		}{{Migrations, KindMigration}, {Plans, KindPlan}} {
			enqueue := func(obj any) {
				if o, ok := obj.(metav1.Object); ok {
					q.Add(Change{Kind: r.kind, Namespace: o.GetNamespace(), Name: o.GetName()})
				}
			}
			inf := f.ForResource(r.gvr).Informer()
			if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    enqueue,
				UpdateFunc: func(_, obj any) { enqueue(obj) },
			}); err != nil {
				return fmt.Errorf("watch %s: %w", r.gvr.Resource, err)
			}
			if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
				c.log.WarnContext(ctx, "watch of Forklift objects failed; retrying", "resource", r.gvr.Resource, "namespace", ns, "err", err)
			}); err != nil {
				return err
			}
		}
		f.Start(ctx.Done())
		informers.Go(func() { <-ctx.Done(); f.Shutdown() })
	}
	go func() { <-ctx.Done(); q.ShutDown() }()
	for {
		ch, quit := q.Get()
		if quit {
			return nil
		}
		err := fn(ctx, ch)
		switch {
		case err == nil:
			q.Forget(ch)
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		default:
			c.log.WarnContext(ctx, "change of a Forklift object not handled; retrying", "kind", ch.Kind, "namespace", ch.Namespace, "name", ch.Name, "err", err)
			q.AddRateLimited(ch)
		}
		q.Done(ch)
	}
}
