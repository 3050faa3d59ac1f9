package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/functions/notifier/sinks"
)

// startSinks delivers the final status events to NOTIFIER_SINKS, in the
// group g, when there are sinks. The dead-letter stream and the deliveries
// bucket take their names from the events stream and the KV bucket, so that
// two deployments on one NATS keep theirs apart, and a delivery is
// remembered as long as the stream keeps its event.
func startSinks(ctx context.Context, cfg config, d *deps, g *group, errc chan<- error) error {
	if len(cfg.Sinks.Sinks) == 0 {
		return nil
	}
	sc := cfg.Sinks
	sc.DeadLetterStream = cfg.Bus.Stream + "_DEADLETTER"
	sc.DeliveriesBucket = cfg.Store.Bucket + "-deliveries"
	sc.DeliveriesTTL = cfg.Bus.MaxAge
	sc.EventsKey = cfg.Bus.SigningKey
	log := d.log.With("function", "notifier")
	n, err := sinks.New(ctx, sc, sinks.Deps{
		JS: d.js, Bus: d.bus, Records: d.store, Logger: log, Registry: d.reg, Presign: d.links.Link,
	})
	switch {
	case errors.Is(err, sinks.ErrNoPresigner):
		return fmt.Errorf("NOTIFIER_SINK_PRESIGNED: %w", err)
	case errors.Is(err, sinks.ErrCAFile):
		return fmt.Errorf("NOTIFIER_SINK_CA_FILE: %w", err)
	case err != nil:
		return err
	}
	log.Info("delivering final events to subscribers", "sinks", len(sc.Sinks), "signed", sc.Secret != "", "dead_letters", sc.DeadLetterStream)
	if d.receiver != nil {
		// Over HTTP a Trigger delivers them on POST /, after the recorder
		// if this process runs it too.
		d.receiver.Also(n.Handle, eventing.TypeCompleted, eventing.TypeFailed)
		return nil
	}
	g.wg.Go(func() {
		if err := n.Run(g.ctx); err != nil {
			select {
			case errc <- fmt.Errorf("notifier sinks: %w", err):
			default:
			}
		}
	})
	return nil
}
