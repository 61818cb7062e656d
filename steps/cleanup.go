package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/steps/stepid"
)

// CleanupAction is one replication object `pgshift cleanup` drops. Actions
// are values, so the command lists them before anything runs.
type CleanupAction struct {
	Side string // "blue" or "green": where the object lives
	Kind string // "subscription", "slot" or "publication"
	Name string
	SQL  string // what runs, as shown to the user

	drop func(ctx context.Context, env *engine.Env) error
}

// Drop removes the object; dropping one already gone is no error.
func (a CleanupAction) Drop(ctx context.Context, env *engine.Env) error { return a.drop(ctx, env) }

// CleanupPlan is what cleanup would drop, in the order it must go:
// subscriptions first (so no slot is held), then slots, then publications.
// Notes say what is kept or could not be inspected, and why.
type CleanupPlan struct {
	Actions []CleanupAction
	Notes   []string
}

// PlanCleanup inspects both sides for the forward objects (publication and
// slot on blue, subscription on green) and the reverse ones (publication and
// slot on green, subscription on blue). A side that cannot be reached is
// named in a note; the other side's objects are still listed.
func PlanCleanup(ctx context.Context, env *engine.Env) (CleanupPlan, error) {
	var plan CleanupPlan
	spec := env.Spec
	blue, blueErr := env.Source.Pool(ctx)
	green, greenErr := env.Target.Pool(ctx)
	if blueErr != nil {
		plan.Notes = append(plan.Notes, fmt.Sprintf("blue not inspected: %v: run cleanup again once it is reachable to drop its objects", blueErr))
	}
	if greenErr != nil {
		plan.Notes = append(plan.Notes, fmt.Sprintf("green not inspected: %v: run cleanup again once it is reachable to drop its objects", greenErr))
	}
	if blueErr != nil && greenErr != nil {
		return plan, errors.Join(blueErr, greenErr)
	}
	reverse := spec.ReverseName()
	// publisherOf returns the pool on the other side, nil when unreachable.
	var bluePub, greenPub pg.Querier
	if blueErr == nil {
		bluePub = blue
	}
	if greenErr == nil {
		greenPub = green
	}

	type subSpec struct {
		side       string
		db         pg.Querier
		publisher  pg.Querier
		name       string
		reachError error
	}
	for _, sub := range []subSpec{
		{"green", greenPub, bluePub, spec.SubscriptionName(), greenErr},
		{"blue", bluePub, greenPub, reverse, blueErr},
	} {
		if sub.reachError != nil {
			continue
		}
		st, err := pg.ReadSubscription(ctx, sub.db, sub.name)
		if err != nil {
			return plan, fmt.Errorf("%s: %w", sub.side, err)
		}
		if !st.Exists {
			continue
		}
		q := pg.QuoteIdent(sub.name)
		sub := sub
		plan.Actions = append(plan.Actions, CleanupAction{
			Side: sub.side, Kind: "subscription", Name: sub.name,
			SQL: fmt.Sprintf("ALTER SUBSCRIPTION %s DISABLE; ALTER SUBSCRIPTION %s SET (slot_name = NONE); DROP SUBSCRIPTION %s", q, q, q),
			drop: func(ctx context.Context, env *engine.Env) error {
				return pg.DropSubscription(ctx, env.Log, sub.db, sub.publisher, sub.name)
			},
		})
	}

	type objSpec struct {
		side string
		db   pg.Querier
		name string
	}
	for _, sl := range []objSpec{{"blue", bluePub, spec.SlotName()}, {"green", greenPub, reverse}} {
		if sl.db == nil {
			continue
		}
		st, err := pg.ReadSlot(ctx, sl.db, sl.name)
		if err != nil {
			return plan, fmt.Errorf("%s: %w", sl.side, err)
		}
		if !st.Exists {
			continue
		}
		if sl.side == "blue" {
			owned, err := blueSlotOwned(ctx, env, sl.db, st)
			if err != nil {
				return plan, err
			}
			if !owned {
				plan.Notes = append(plan.Notes, fmt.Sprintf("slot %s on blue kept: pgshift did not create it (the state records no creation of it); if it is abandoned, drop it yourself: SELECT pg_drop_replication_slot(%s);",
					sl.name, pg.QuoteLiteral(sl.name)))
				continue
			}
		}
		sl := sl
		plan.Actions = append(plan.Actions, CleanupAction{
			Side: sl.side, Kind: "slot", Name: sl.name,
			SQL: fmt.Sprintf("SELECT pg_drop_replication_slot(%s)", pg.QuoteLiteral(sl.name)),
			drop: func(ctx context.Context, env *engine.Env) error {
				return pg.DropSlot(ctx, env.Log, sl.db, sl.name, pg.SlotReleaseWait)
			},
		})
	}

	for _, pub := range []struct {
		objSpec
		owner string // "" drops whatever holds the name
	}{
		{objSpec{"blue", bluePub, spec.PublicationName()}, pg.OwnerMark(spec.Name)},
		{objSpec{"green", greenPub, reverse}, ""},
	} {
		if pub.db == nil {
			continue
		}
		var comment string
		err := pub.db.QueryRow(ctx, `SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1`, pub.name).Scan(&comment)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return plan, fmt.Errorf("%s: read publication %q: %w", pub.side, pub.name, err)
		}
		if pub.owner != "" && comment != pub.owner {
			plan.Notes = append(plan.Notes, fmt.Sprintf("publication %s on %s kept: pgshift did not create it", pub.name, pub.side))
			continue
		}
		pub := pub
		owner := pub.owner
		if owner == "" {
			owner = comment
		}
		plan.Actions = append(plan.Actions, CleanupAction{
			Side: pub.side, Kind: "publication", Name: pub.name,
			SQL: "DROP PUBLICATION " + pg.QuoteIdent(pub.name),
			drop: func(ctx context.Context, env *engine.Env) error {
				return dropPublication(ctx, env, pub.db, pub.name, owner)
			},
		})
	}
	return plan, nil
}

// blueSlotOwned says whether the slot named like pgshift's on blue is
// pgshift's. The proof is the state (source.slot's claim, see slot_owner.go):
// env's outputs when the caller seeded them, else the state file at the
// spec's default path. Without any state the slot counts as pgshift's only
// when it has pgshift's shape (pgoutput, permanent, in blue's database) and
// pgshift's marked publication is on blue beside it.
func blueSlotOwned(ctx context.Context, env *engine.Env, blue pg.Querier, st pg.SlotStatus) (bool, error) {
	if owned, _ := slotOwnership(env); owned {
		return true, nil
	}
	for _, id := range []string{stepid.Audit, stepid.Roles, stepid.Schema, stepid.Publication, stepid.Slot,
		stepid.Copy, stepid.Subscription, stepid.Catchup, stepid.Verify, stepid.Cutover} {
		if len(env.Outputs(id)) > 0 {
			return false, nil // the state is known and records no creation of the slot
		}
	}
	if state, err := engine.ReadState(env.Spec.StatePath()); err == nil && state.Spec.Name == env.Spec.Name {
		seeded := engine.NewEnv(env.Spec, nil)
		engine.SeedOutputs(seeded, state)
		if owned, _ := slotOwnership(seeded); owned {
			return true, nil
		}
		// source.slot done: its apply accepts only a slot it claimed (a
		// foreign one is refused), so the slot is the one it made.
		claim, _ := seeded.Output(stepid.Slot, SlotClaimed)
		c := state.Step(stepid.Slot)
		return c != nil && c.Status == engine.StatusDone && claim != "false", nil
	}
	db, err := currentDatabase(ctx, blue)
	if err != nil {
		return false, fmt.Errorf("blue: %w", err)
	}
	if slotProblem(env.Spec.SlotName(), st, db) != "" {
		return false, nil
	}
	var comment string
	err = blue.QueryRow(ctx, `SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1`,
		env.Spec.PublicationName()).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blue: read publication %q: %w", env.Spec.PublicationName(), err)
	}
	return comment == pg.OwnerMark(env.Spec.Name), nil
}
