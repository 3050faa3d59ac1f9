package cli

import (
	"flag"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubev2v/must-gather-functions/client"
)

// The Service of the API that deploy/components/cli adds, for the service
// proxy (the Knative Service's own has no endpoints).
const (
	DefaultKubeNamespace = "must-gather-functions"
	DefaultKubeService   = "http:must-gather-functions-api-cli:80"
)

// connFlags say how to reach the API: at a URL with a token, or through
// the Kubernetes API server's service proxy with the current kubeconfig
// context's credentials.
type connFlags struct {
	serverURL, token      string
	kubeconfig, context   string
	kubeNamespace, kubeSv string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.serverURL, "server-url", "", "`URL` of the API (default $MUST_GATHER_URL; without either, through the kubeconfig's API server)")
	fs.StringVar(&c.token, "token", "", "bearer `token` for the API (default $MUST_GATHER_TOKEN; through the API server, the kubeconfig's token)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig `file` (default $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&c.context, "context", "", "kubeconfig `context` (default the current one)")
	fs.StringVar(&c.kubeNamespace, "kube-namespace", DefaultKubeNamespace, "`namespace` of the API's Service, for the service proxy")
	fs.StringVar(&c.kubeSv, "kube-service", DefaultKubeService, "the API's `service`, for the service proxy, as [scheme:]name[:port]")
}

// client makes the API's client from the flags, else the environment, else
// the kubeconfig.
func (c *connFlags) client(getenv func(string) string) (*client.Client, error) {
	token := c.token
	if token == "" {
		token = getenv("MUST_GATHER_TOKEN")
	}
	base := c.serverURL
	if base == "" {
		base = getenv("MUST_GATHER_URL")
	}
	if base != "" {
		var opts []client.Option
		if token != "" {
			opts = append(opts, client.WithToken(token))
		}
		cl, err := client.New(base, opts...)
		if err != nil {
			return nil, &usageError{err.Error()}
		}
		return cl, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if v := getenv("KUBECONFIG"); v != "" {
		rules.Precedence = filepath.SplitList(v)
	}
	rules.ExplicitPath = c.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no --server-url nor MUST_GATHER_URL, and no kubeconfig to reach the service through: %w", err)
	}
	return c.proxyClient(cfg, token)
}

// proxyClient reaches the API through the service proxy of the API server
// of cfg, with cfg's transport (its TLS, token or exec plugin). The API
// server takes the Authorization header for itself, so the token for the
// API goes in X-Forwarded-Access-Token: the given one, else cfg's own.
func (c *connFlags) proxyClient(cfg *rest.Config, token string) (*client.Client, error) {
	base, err := proxyURL(cfg, c.kubeNamespace, c.kubeSv)
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if token == "" {
		token = cfg.BearerToken
	}
	opts := []client.Option{client.WithHTTPClient(hc)}
	if token != "" {
		opts = append(opts, client.WithForwardedToken(token))
	}
	return client.New(base, opts...)
}

// proxyURL is the base URL of a Service through the service proxy of the
// API server of cfg: <host>/api/v1/namespaces/<ns>/services/<svc>/proxy.
func proxyURL(cfg *rest.Config, namespace, service string) (string, error) {
	if namespace == "" || service == "" || strings.Contains(namespace, "/") || strings.Contains(service, "/") {
		return "", &usageError{fmt.Sprintf("--kube-namespace %q and --kube-service %q: want a namespace and [scheme:]name[:port]", namespace, service)}
	}
	u, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	u.Path = path.Join("/", u.Path, "api/v1/namespaces", namespace, "services", service, "proxy")
	u.RawPath = ""
	u.RawQuery = ""
	return u.String(), nil
}
