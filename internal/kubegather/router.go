package kubegather

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// ErrUnknownServer is returned for a gathering whose server is not one of
// the configured clusters.
var ErrUnknownServer = errors.New("unknown server")

// ErrNoCluster is returned by LoadClusters when it finds no cluster at all.
var ErrNoCluster = errors.New("no cluster configured: not running in a pod and no kubeconfig context")

// Router runs each gathering with the Gatherer of its server: "" is the
// default cluster, other names are configured clusters. A server is only
// ever a name looked up here, never an address a caller sent.
type Router struct {
	gatherers map[string]mustgather.Gatherer
}

var _ mustgather.Gatherer = (*Router)(nil)

// NewRouter returns a Router over gatherers, keyed by server name.
func NewRouter(gatherers map[string]mustgather.Gatherer) *Router {
	return &Router{gatherers: maps.Clone(gatherers)}
}

// Gather implements mustgather.Gatherer.
func (r *Router) Gather(ctx context.Context, job mustgather.Job) error {
	name := job.Gathering.Server
	g, ok := r.gatherers[name]
	if !ok {
		if name == "" {
			return fmt.Errorf("no default cluster is configured; name a server (%s): %w", r.known(), ErrUnknownServer)
		}
		return fmt.Errorf("server %q; known servers: %s: %w (%w)", name, r.known(), ErrUnknownServer, mustgather.ErrInvalid)
	}
	return g.Gather(ctx, job)
}

// Servers returns the names of the configured clusters other than the
// default, sorted; they are what a request's server may name.
func (r *Router) Servers() []string {
	var s []string
	for name := range r.gatherers {
		if name != "" {
			s = append(s, name)
		}
	}
	slices.Sort(s)
	return s
}

func (r *Router) known() string {
	if s := r.Servers(); len(s) > 0 {
		return strings.Join(s, ", ")
	}
	return "none"
}

// Sweep sweeps every cluster whose Gatherer can; see Gatherer.Sweep.
func (r *Router) Sweep(ctx context.Context) error {
	var errs []error
	for name, g := range r.gatherers {
		if s, ok := g.(interface{ Sweep(context.Context) error }); ok {
			if err := s.Sweep(ctx); err != nil {
				errs = append(errs, fmt.Errorf("cluster %q: %w", name, err))
			}
		}
	}
	return joinErrors(errs)
}

// LoadClusters returns the REST configs of the clusters a runner may
// gather from, keyed by server name. The default cluster ("") is the
// in-cluster config when running in a pod, else the current context of the
// kubeconfig. Each entry of contexts is a context of the kubeconfig, named
// as itself or as "server=context". kubeconfigPath "" uses $KUBECONFIG or
// ~/.kube/config. It returns ErrNoCluster when it finds none.
func LoadClusters(kubeconfigPath string, contexts []string) (map[string]*rest.Config, error) {
	out := map[string]*rest.Config{}
	inCluster, err := rest.InClusterConfig()
	switch {
	case err == nil:
		out[""] = inCluster
	case !errors.Is(err, rest.ErrNotInCluster):
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfigPath != "" {
		rules.ExplicitPath = kubeconfigPath
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	build := func(context string) (*rest.Config, error) {
		if _, ok := raw.Contexts[context]; !ok {
			return nil, fmt.Errorf("kubeconfig has no context %q", context)
		}
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, context, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig context %q: %w", context, err)
		}
		return cfg, nil
	}
	if _, ok := out[""]; !ok && raw.CurrentContext != "" {
		cfg, err := build(raw.CurrentContext)
		if err != nil {
			return nil, err
		}
		out[""] = cfg
	}
	entries, err := ParseContexts(contexts)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if _, dup := out[e.Server]; dup {
			return nil, fmt.Errorf("cluster %q named twice", e.Server)
		}
		cfg, err := build(e.Context)
		if err != nil {
			return nil, err
		}
		out[e.Server] = cfg
	}
	if len(out) == 0 {
		return nil, ErrNoCluster
	}
	for _, cfg := range out {
		rest.AddUserAgent(cfg, ManagedBy)
	}
	return out, nil
}

// ContextEntry is one configured cluster: a server name a request may use
// and the kubeconfig context it stands for.
type ContextEntry struct {
	Server, Context string
}

// ParseContexts reads entries of the form "context" or "server=context";
// blank entries are skipped.
func ParseContexts(entries []string) ([]ContextEntry, error) {
	var out []ContextEntry
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, context, ok := strings.Cut(entry, "=")
		if !ok {
			context = name
		}
		name, context = strings.TrimSpace(name), strings.TrimSpace(context)
		if name == "" || context == "" {
			return nil, fmt.Errorf("cluster %q: want context or server=context", entry)
		}
		out = append(out, ContextEntry{Server: name, Context: context})
	}
	return out, nil
}

// NewForConfig returns a Gatherer for the cluster of rc, with the real
// executor and log follower.
func NewForConfig(rc *rest.Config, cfg Config, log *slog.Logger) (*Gatherer, error) {
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", rc.Host, err)
	}
	exec, err := NewExecutor(rc)
	if err != nil {
		return nil, err
	}
	return New(kube, dyn, exec, NewLogFollower(kube), cfg, log), nil
}

// NewRouterForClusters returns a Router with a Gatherer per cluster, as
// LoadClusters returns them.
func NewRouterForClusters(clusters map[string]*rest.Config, cfg Config, log *slog.Logger) (*Router, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gs := map[string]mustgather.Gatherer{}
	for name, rc := range clusters {
		g, err := NewForConfig(rc, cfg, log.With("cluster", name))
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		gs[name] = g
	}
	return NewRouter(gs), nil
}
