package main

import (
	"context"
	"net/http"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/functions/notifier"
)

// newNotifier builds the notifier on the store's watch of the records,
// authorizing as the API does with guard.
func newNotifier(cfg config, d *deps, guard api.Guard) *notifier.Notifier {
	return notifier.New(cfg.Notifier, notifier.Deps{
		Logger: d.log.With("function", "notifier"), Store: d.store, Changes: d.store, Guard: guard, Registry: d.reg,
	})
}

// startNotifier runs the notifier's watch until srv begins to shut down:
// its streams never end by themselves, and Shutdown waits for every
// response, so they are ended first, and their clients reconnect to
// another replica.
func startNotifier(d *deps, srv *http.Server, errc chan<- error) {
	ctx, cancel := context.WithCancel(context.Background())
	srv.RegisterOnShutdown(cancel)
	go func() {
		if err := d.notifier.Run(ctx); err != nil {
			errc <- err
		}
	}()
}
