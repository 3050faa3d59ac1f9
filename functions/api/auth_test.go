package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubev2v/must-gather-functions/internal/auth"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// withAuth reviews tokens against clusters.
func withAuth(t *testing.T, clusters map[string]*rest.Config) func(*env, *Deps) {
	return func(e *env, d *Deps) {
		r, err := auth.New(clusters, auth.Config{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d.Auth = r
		d.Policy.Servers = []string{"prod", "down"}
	}
}

func bearer(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + token}
}

func TestOnlyClusterAdminsReachTheGatherings(t *testing.T) {
	k := kube.Start(t)
	var local, prod atomic.Int64
	e := newEnv(t, withAuth(t, map[string]*rest.Config{
		"": kube.CountRequests(k.Admin, &local), "prod": kube.CountRequests(k.Admin, &prod), "down": kube.Unreachable(t, k.Admin),
	}), withLocalLinks(t, nil, ""))
	tokens := []struct {
		name, token string
		want        int // for the gatherings; 0: allowed
	}{
		{"the cluster-admin", k.Admin.BearerToken, 0},
		{"a user without rights", k.NoRights.BearerToken, http.StatusForbidden},
		{"no token", "", http.StatusUnauthorized},
		{"a garbage token", "garbage-token", http.StatusUnauthorized},
		{"an expired service-account token", k.ServiceAccountToken(t, "default", "expired", time.Now().Add(-time.Minute)), http.StatusUnauthorized},
	}
	admin := bearer(k.Admin.BearerToken)
	onLocal, onProd := e.create(`{"server": ""}`, admin...), e.create(`{"server": "prod"}`, admin...)
	for _, g := range []mustgather.Gathering{onLocal, onProd} {
		e.finish(g.ID, mustgather.StatusCompleted, map[string]string{"a": "b"})
	}
	// A gathering on a cluster whose API server is down cannot be created
	// through the API, which reviews the token there first.
	onDown, err := e.store.Create(context.Background(), mustgather.NewGathering(mustgather.Request{Server: "down", Timeout: "1m"}, testNow))
	if err != nil {
		t.Fatal(err)
	}

	endpoints := []struct {
		method, path, body string
		ok                 int
	}{
		{http.MethodPost, "/must-gather", `{}`, http.StatusCreated},
		{http.MethodPost, "/must-gather", `{"server": "prod"}`, http.StatusCreated},
		{http.MethodGet, "/must-gather", "", http.StatusOK},
		{http.MethodGet, "/must-gather/" + onLocal.ID.String(), "", http.StatusOK},
		{http.MethodGet, "/must-gather/" + onLocal.ID.String() + "/data", "", http.StatusOK},
		{http.MethodGet, "/must-gather/" + onProd.ID.String(), "", http.StatusOK},
		{http.MethodGet, "/must-gather/" + onProd.ID.String() + "/data", "", http.StatusOK},
		{http.MethodGet, "/must-gather/" + onLocal.ID.String() + "/url", "", http.StatusOK},
		{http.MethodGet, "/must-gather/" + onProd.ID.String() + "/url", "", http.StatusOK},
		{http.MethodGet, "/must-gather/999", "", http.StatusNotFound},
		{http.MethodGet, "/must-gather/999/url", "", http.StatusNotFound},
		{http.MethodGet, "/must-gather?limit=x", "", http.StatusBadRequest},
		{http.MethodPost, "/must-gather", `{"timeout": "forever"}`, http.StatusBadRequest},
	}
	for _, tok := range tokens {
		for _, ep := range endpoints {
			want := ep.ok
			if tok.want != 0 {
				want = tok.want
			}
			t.Run(fmt.Sprintf("%s gets %d from %s %s %s", tok.name, want, ep.method, ep.path, ep.body), func(t *testing.T) {
				var body []byte
				ct := ""
				if ep.body != "" {
					body, ct = []byte(ep.body), "application/json"
				}
				resp := e.do(ep.method, ep.path, ct, body, bearer(tok.token)...)
				if resp.status != want {
					t.Fatalf("status %d, want %d; body %s", resp.status, want, resp.body)
				}
				if want >= 400 && resp.header.Get("Content-Type") != "application/json" {
					t.Errorf("Content-Type %q, want a JSON error", resp.header.Get("Content-Type"))
				}
				if got := resp.header.Get("WWW-Authenticate"); (want == http.StatusUnauthorized) != (got == "Bearer") {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			})
		}
	}

	t.Run("metrics need get on /metrics, not the gatherings' rights", func(t *testing.T) {
		for _, tok := range tokens {
			want := tok.want
			if want == 0 {
				want = http.StatusOK
			}
			if resp := e.do(http.MethodGet, "/metrics", "", nil, bearer(tok.token)...); resp.status != want {
				t.Errorf("%s: status %d, want %d; body %s", tok.name, resp.status, want, resp.body)
			}
		}
	})

	t.Run("a scraper allowed only to get /metrics reads metrics but no gathering", func(t *testing.T) {
		scraper := metricsReader(t, k)
		if resp := e.do(http.MethodGet, "/metrics", "", nil, bearer(scraper)...); resp.status != http.StatusOK {
			t.Errorf("/metrics: status %d, want 200; body %s", resp.status, resp.body)
		}
		if resp := e.do(http.MethodGet, "/must-gather", "", nil, bearer(scraper)...); resp.status != http.StatusForbidden {
			t.Errorf("/must-gather: status %d, want 403; body %s", resp.status, resp.body)
		}
	})

	t.Run("health, readiness and the document need no token", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
			for _, tok := range tokens {
				if resp := e.do(http.MethodGet, path, "", nil, bearer(tok.token)...); resp.status != http.StatusOK {
					t.Errorf("%s with %s: status %d", path, tok.name, resp.status)
				}
			}
		}
	})

	t.Run("a gathering on another cluster is reviewed on that cluster", func(t *testing.T) {
		before := local.Load()
		// A token that the default cluster has not seen yet, so that no
		// cached decision answers.
		sa := k.ServiceAccountToken(t, "default", "remote", time.Now().Add(time.Hour))
		if resp := e.do(http.MethodGet, "/must-gather/"+onProd.ID.String(), "", nil, bearer(sa)...); resp.status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.status)
		}
		if local.Load() != before {
			t.Errorf("the default cluster was asked about a gathering on prod")
		}
		for _, req := range []struct{ method, path, body string }{
			{http.MethodPost, "/must-gather", `{"server": "down"}`},
			{http.MethodGet, "/must-gather/" + onDown.ID.String(), ""},
			{http.MethodGet, "/must-gather/" + onDown.ID.String() + "/data", ""},
			{http.MethodGet, "/must-gather/" + onDown.ID.String() + "/url", ""},
		} {
			resp := e.do(req.method, req.path, "application/json", []byte(req.body), admin...)
			if resp.status != http.StatusServiceUnavailable || !strings.Contains(string(resp.body), `"error"`) {
				t.Errorf("%s %s on a cluster that is down: %d %s, want 503", req.method, req.path, resp.status, resp.body)
			}
		}
	})

	t.Run("a second request within the TTL makes no review", func(t *testing.T) {
		e.do(http.MethodGet, "/must-gather", "", nil, admin...)
		before := local.Load()
		for range 3 {
			if resp := e.do(http.MethodGet, "/must-gather", "", nil, admin...); resp.status != http.StatusOK {
				t.Fatalf("status %d", resp.status)
			}
		}
		if n := local.Load() - before; n != 0 {
			t.Errorf("%d requests to the API server within the TTL, want 0", n)
		}
	})

	t.Run("each gathering says who asked for it, and the log says who did what", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/must-gather/"+onProd.ID.String(), "", nil, admin...)
		var fields map[string]any
		if err := json.Unmarshal(resp.body, &fields); err != nil {
			t.Fatal(err)
		}
		if fields["requested-by"] != kube.AdminUser {
			t.Errorf("requested-by = %v, want %q", fields["requested-by"], kube.AdminUser)
		}
		log := e.log.String()
		for _, want := range []string{
			fmt.Sprintf("msg=audit action=create user=%s gathering=%d server=prod", kube.AdminUser, onProd.ID),
			fmt.Sprintf("msg=audit action=download user=%s gathering=%d server=prod", kube.AdminUser, onProd.ID),
			fmt.Sprintf("msg=audit action=presign user=%s gathering=%d server=prod expires-at=", kube.AdminUser, onProd.ID),
		} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q", want)
			}
		}
	})

	t.Run("no token is in the log, the records or the events", func(t *testing.T) {
		found := func(where, text string) {
			for _, tok := range tokens {
				if tok.token != "" && strings.Contains(text, tok.token) {
					t.Errorf("the token of %s is in %s", tok.name, where)
				}
			}
		}
		found("the log", e.log.String())
		ctx := context.Background()
		for name := range e.js.KeyValueStoreNames(ctx).Name() {
			kv, err := e.js.KeyValue(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := kv.ListKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for key := range keys.Keys() {
				entry, err := kv.Get(ctx, key)
				if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Fatal(err)
				}
				if entry != nil {
					found("KV "+name+"/"+key, key+string(entry.Value()))
					n++
				}
			}
			t.Logf("scanned %d entries of KV bucket %s", n, name)
		}
		stream, err := e.js.Stream(ctx, streamName(t, e))
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := stream.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			found(fmt.Sprintf("event %d", seq), fmt.Sprint(m.Header)+string(m.Data))
		}
		t.Logf("scanned %d events", info.State.Msgs)
	})
}

func TestAnUnreachableAPIServerAnswers503NeverAnOpenDoor(t *testing.T) {
	k := kube.Start(t)
	e := newEnv(t, withAuth(t, map[string]*rest.Config{"": kube.Unreachable(t, k.Admin), "prod": kube.Unreachable(t, k.Admin)}), withLocalLinks(t, nil, ""))
	admin := bearer(k.Admin.BearerToken)
	for _, req := range []struct{ method, path, body string }{
		{http.MethodPost, "/must-gather", `{}`},
		{http.MethodPost, "/must-gather", `{"server": "prod"}`},
		{http.MethodGet, "/must-gather", ""},
		{http.MethodGet, "/must-gather/1", ""},
		{http.MethodGet, "/must-gather/1/data", ""},
		{http.MethodGet, "/must-gather/1/url", ""},
		{http.MethodGet, "/metrics", ""},
	} {
		t.Run(req.method+" "+req.path+" "+req.body+" answers 503", func(t *testing.T) {
			resp := e.do(req.method, req.path, "application/json", []byte(req.body), admin...)
			if resp.status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503; body %s", resp.status, resp.body)
			}
			if errorOf(t, resp).Error == "" {
				t.Error("no JSON error")
			}
		})
	}
	if resp := e.do(http.MethodGet, "/healthz", "", nil); resp.status != http.StatusOK {
		t.Errorf("healthz: %d", resp.status)
	}
}

func TestTheForwardedTokenIsReadOnlyWhenEnabled(t *testing.T) {
	k := kube.Start(t)
	clusters := map[string]*rest.Config{"": k.Admin}
	for _, tt := range []struct {
		name      string
		forwarded bool
		header    []string
		want      int
	}{
		{"enabled, the forwarded token admits", true, []string{"X-Forwarded-Access-Token", k.Admin.BearerToken}, http.StatusOK},
		{"enabled, the forwarded token wins over Authorization", true,
			[]string{"X-Forwarded-Access-Token", k.Admin.BearerToken, "Authorization", "Basic dXNlcjpwYXNz"}, http.StatusOK},
		{"enabled, a forwarded token without rights is forbidden", true, []string{"X-Forwarded-Access-Token", k.NoRights.BearerToken}, http.StatusForbidden},
		{"enabled, Authorization still works without it", true, []string{"Authorization", "Bearer " + k.Admin.BearerToken}, http.StatusOK},
		{"disabled, the forwarded token is ignored", false, []string{"X-Forwarded-Access-Token", k.Admin.BearerToken}, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withAuth(t, clusters), func(_ *env, d *Deps) { d.ForwardedToken = tt.forwarded })
			if resp := e.do(http.MethodGet, "/must-gather", "", nil, tt.header...); resp.status != tt.want {
				t.Errorf("status %d, want %d; body %s", resp.status, tt.want, resp.body)
			}
		})
	}
}

// metricsReader returns a token of a service account bound to a role that
// allows only get on /metrics, as Prometheus has.
func metricsReader(t *testing.T, k *kube.Cluster) string {
	t.Helper()
	c, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	name := testenv.Name("metrics-reader")
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics"}}},
	}
	if _, err := c.RbacV1().ClusterRoles().Create(context.Background(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return serviceAccountBoundTo(t, k, name)
}

// serviceAccountBoundTo returns a token of a new service account of the
// default namespace bound to the cluster role.
func serviceAccountBoundTo(t *testing.T, k *kube.Cluster, clusterRole string) string {
	t.Helper()
	c, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	name := testenv.Name("sa")
	token := k.ServiceAccountToken(t, "default", name, time.Now().Add(time.Hour))
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: name}},
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(context.Background(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return token
}
