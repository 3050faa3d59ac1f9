package main

import (
	"context"
	"net/http"

	"github.com/kubev2v/must-gather-functions/functions/api"
	"github.com/kubev2v/must-gather-functions/internal/view"
)

// newView builds the API's view of the gatherings on the store's feed of
// writes, as cfg says; startView runs it.
func newView(d *deps, cfg view.Config) *view.View {
	cfg.Logger = d.log.With("function", "api")
	d.view = view.New(d.store, api.EncodeGathering, cfg)
	return d.view
}

// startView keeps the view current until srv begins to shut down. The
// process is not ready until the view has caught up with the store.
func startView(d *deps, srv *http.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	srv.RegisterOnShutdown(cancel)
	go func() { _ = d.view.Run(ctx) }()
}
