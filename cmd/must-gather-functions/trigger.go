package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/trigger"
	"github.com/kubev2v/must-gather-functions/internal/forklift"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/kubegather"
)

// caughtUp is logged once the trigger has caught up on the migrations
// that failed while it was not running (EVENTS_TRANSPORT=http).
const caughtUp = "caught up on migrations that failed within the look-back"

// serviceAccountToken is where a pod's ServiceAccount token is mounted.
const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// startTrigger starts the trigger on the default cluster: with
// EVENTS_TRANSPORT=http it takes ApiServerSource events on POST / and
// catches up once; otherwise it watches Migrations and Plans, whose first
// list is the catch-up. Without a cluster (no KUBECONFIG, not in a pod)
// it has nothing to watch.
func startTrigger(cfg config, d *deps, g *group, errc chan<- error, getenv func(string) string) error {
	log := d.log.With("function", "trigger")
	if !cfg.TriggerOn {
		log.Info("trigger off (TRIGGER=false)")
		return nil
	}
	if getenv("KUBERNETES_SERVICE_HOST") == "" && cfg.Kubeconfig == "" {
		log.Info("no cluster configured (KUBECONFIG, or a pod's): the trigger has no migrations to watch")
		return nil
	}
	clusters, err := kubegather.LoadClusters(cfg.Kubeconfig, cfg.KubeContexts)
	if err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	rc, ok := clusters[""]
	if !ok {
		return fmt.Errorf("trigger: no default cluster: KUBECONFIG has no current context")
	}
	client, err := forklift.NewClient(rc, log)
	if err != nil {
		return err
	}
	marks, err := jsstore.NewMarks(g.ctx, d.js, cfg.TriggerBucket, cfg.Store.Replicas)
	if err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	tcfg := cfg.Trigger
	if tcfg.RequestedBy == "" {
		tcfg.RequestedBy = podServiceAccount(serviceAccountToken)
	}
	tr := trigger.New(tcfg, trigger.Deps{
		Logger: log, Store: d.store, Events: d.events(eventing.SourceTrigger), Marks: marks, Cluster: client,
		Policy: cfg.API.Policy,
	})
	if d.receiver != nil {
		d.receiver.Handle(tr.HandleEvent, trigger.EventTypes...)
		g.wg.Go(func() {
			if err := tr.CatchUp(g.ctx); err != nil {
				log.Warn("catching up on failed migrations", "err", err)
				return
			}
			log.Info(caughtUp, "lookback", tcfg.Lookback)
		})
		return nil
	}
	g.wg.Go(func() {
		if err := client.Watch(g.ctx, tr.Namespaces(), tr.Handle); err != nil {
			errc <- fmt.Errorf("trigger: %w", err)
		}
	})
	return nil
}

// podServiceAccount returns the user of the pod's ServiceAccount token,
// system:serviceaccount:<namespace>:<name>, as the API server names it:
// the token's subject. It returns "" outside a pod. The token is read, not
// verified: it only names who the trigger's gatherings are requested by.
func podServiceAccount(path string) string {
	token, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	parts := strings.Split(strings.TrimSpace(string(token)), ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil || !strings.HasPrefix(claims.Sub, "system:serviceaccount:") {
		return ""
	}
	return claims.Sub
}
