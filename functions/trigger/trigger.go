// Package trigger starts a targeted gathering by itself when a Forklift
// migration fails. It acts on changes of Migration and Plan objects, from
// a watch of the cluster or from ApiServerSource events, but trusts
// neither: on each change it reads the objects from the API server and
// acts on what they say. A migration starts one gathering at most: its uid
// is marked in durable state before the gathering is stored.
package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/forklift"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Config configures a Trigger. A zero field takes its value from
// DefaultConfig.
type Config struct {
	// Namespaces limits the trigger to migrations in these namespaces;
	// empty means every namespace.
	Namespaces []string
	// Lookback is how old a failure may be and still start a gathering,
	// so that a trigger that starts, or comes back after an outage, catches
	// up on recent failures but not on old ones.
	Lookback time.Duration
	// RequestedBy is the identity gatherings it starts are requested by;
	// empty means DefaultRequestedBy.
	RequestedBy string
}

// DefaultRequestedBy is the trigger's identity when its own service account
// is unknown.
const DefaultRequestedBy = "system:serviceaccount:must-gather-functions:must-gather-functions-trigger"

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{Lookback: time.Hour}
}

// Cluster reads Forklift's objects from the API server (forklift.Client).
// It returns an error that wraps forklift.ErrNotFound for an object that
// does not exist.
type Cluster interface {
	Migration(ctx context.Context, namespace, name string) (forklift.Migration, error)
	Plan(ctx context.Context, namespace, name string) (forklift.Plan, error)
	// Migrations lists the migrations of namespace, or of every namespace
	// for "".
	Migrations(ctx context.Context, namespace string) ([]forklift.Migration, error)
}

// Marks is a durable set of keys of which only the first Mark wins
// (jsstore.Marks).
type Marks interface {
	Mark(ctx context.Context, key string, value []byte) (bool, error)
	Set(ctx context.Context, key string, value []byte) error
	Unmark(ctx context.Context, key string) error
}

// Deps are what a Trigger works with.
type Deps struct {
	Logger  *slog.Logger
	Store   mustgather.Store
	Events  mustgather.Events
	Marks   Marks
	Cluster Cluster
	// Policy validates the gatherings it starts, as the API's requests.
	Policy mustgather.Policy
	Now    func() time.Time
}

// Trigger starts a gathering for each failed migration.
type Trigger struct {
	cfg Config
	d   Deps
}

// New returns a Trigger.
func New(cfg Config, d Deps) *Trigger {
	def := DefaultConfig()
	if cfg.Lookback <= 0 {
		cfg.Lookback = def.Lookback
	}
	if cfg.RequestedBy == "" {
		cfg.RequestedBy = DefaultRequestedBy
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Trigger{cfg: cfg, d: d}
}

// Watches reports whether the trigger acts on objects of namespace.
func (t *Trigger) Watches(namespace string) bool {
	return len(t.cfg.Namespaces) == 0 || slices.Contains(t.cfg.Namespaces, namespace)
}

// Namespaces returns the namespaces it acts on; none means all.
func (t *Trigger) Namespaces() []string { return slices.Clone(t.cfg.Namespaces) }

// Handle acts on a change of a Migration or Plan: it reads the object, and for a Plan the latest migration
// of its history, from the API server, and starts a gathering if that
// migration failed. An error means it could not tell or could not start
// the gathering, and the change should be delivered again.
func (t *Trigger) Handle(ctx context.Context, ch forklift.Change) error {
	namespace, name := ch.Namespace, ch.Name
	if !t.Watches(namespace) {
		return nil
	}
	switch ch.Kind {
	case forklift.KindMigration:
		m, err := t.d.Cluster.Migration(ctx, namespace, name)
		if errors.Is(err, forklift.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		return t.migration(ctx, m)
	case forklift.KindPlan:
		p, err := t.d.Cluster.Plan(ctx, namespace, name)
		if errors.Is(err, forklift.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		last, ok := p.Latest()
		if !ok || last.Migration.Name == "" {
			return nil
		}
		if _, failed := last.Conditions.True(forklift.CondFailed); !failed {
			return nil
		}
		ns := last.Migration.Namespace
		if ns == "" {
			ns = namespace
		}
		if !t.Watches(ns) {
			return nil
		}
		m, err := t.d.Cluster.Migration(ctx, ns, last.Migration.Name)
		if errors.Is(err, forklift.ErrNotFound) {
			t.d.Logger.InfoContext(ctx, "plan's failed migration is gone; nothing to gather for", "plan", namespace+"/"+name, "migration", ns+"/"+last.Migration.Name)
			return nil
		} else if err != nil {
			return err
		}
		return t.decided(ctx, m, Decide(m, p))
	}
	return nil
}

// CatchUp acts on every migration the API server lists, so that failures
// of the look-back that happened while the trigger was not running start
// their gathering. A watch's first list does the same by itself.
func (t *Trigger) CatchUp(ctx context.Context) error {
	namespaces := t.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var errs []error
	for _, ns := range namespaces {
		ms, err := t.d.Cluster.Migrations(ctx, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range ms {
			if err := t.migration(ctx, m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// migration decides on m, read from the API server, with its plan.
func (t *Trigger) migration(ctx context.Context, m forklift.Migration) error {
	if _, failed := m.Status.Conditions.True(forklift.CondFailed); !failed {
		return nil
	}
	ref := m.PlanRef()
	p, err := t.d.Cluster.Plan(ctx, ref.Namespace, ref.Name)
	if err != nil && !errors.Is(err, forklift.ErrNotFound) {
		return err
	}
	return t.decided(ctx, m, Decide(m, p))
}

// decided starts the gathering of d unless its migration has one already.
func (t *Trigger) decided(ctx context.Context, m forklift.Migration, d Decision) error {
	log := t.d.Logger.With("migration", m.Metadata.Namespace+"/"+m.Metadata.Name, "uid", m.Metadata.UID)
	if !d.Start {
		log.DebugContext(ctx, "no gathering", "why", d.Why)
		return nil
	}
	now := t.d.Now()
	if !d.FailedAt.IsZero() && now.Sub(d.FailedAt) > t.cfg.Lookback {
		log.DebugContext(ctx, "no gathering: the migration failed before the look-back", "failed-at", d.FailedAt, "lookback", t.cfg.Lookback)
		return nil
	}
	key := markKey(d.Key)
	first, err := t.d.Marks.Mark(ctx, key, nil)
	if err != nil {
		return err
	}
	if !first {
		log.DebugContext(ctx, "no gathering: the migration has one already")
		return nil
	}
	req, err := d.Request.Validate(t.d.Policy)
	if err != nil {
		// Delivering it again cannot make it valid: keep the mark.
		log.WarnContext(ctx, "no gathering: the migration's plan makes no valid request", "err", err)
		return nil
	}
	g := mustgather.NewGathering(req, now)
	g.RequestedBy, g.Cause, g.Preface, g.ExecOutput = t.cfg.RequestedBy, d.Cause, d.Preface, d.Preface
	g, err = mustgather.Start(ctx, t.d.Store, t.d.Events, g)
	if err != nil && !errors.Is(err, mustgather.ErrNotAnnounced) {
		if uerr := t.d.Marks.Unmark(context.WithoutCancel(ctx), key); uerr != nil {
			return fmt.Errorf("migration %s: %w (and its mark stays, so it starts no gathering: %w)", m.Metadata.UID, err, uerr)
		}
		return err
	}
	log.InfoContext(ctx, "gathering started for a failed migration", "gathering", g.ID, "custom-name", g.CustomName, "cause", g.Cause)
	if err != nil {
		log.WarnContext(ctx, "gathering stored but not announced; the reaper will announce it", "gathering", g.ID, "err", err)
	}
	if err := t.d.Marks.Set(ctx, key, []byte(g.ID.String())); err != nil {
		log.WarnContext(ctx, "gathering started but not recorded in its mark", "gathering", g.ID, "err", err)
	}
	return nil
}

// markKey is the key of a migration's mark: a uid is letters, digits and
// dashes, valid in a KV key.
func markKey(uid string) string { return "migration." + uid }
