package steps

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

func init() {
	register(func(spec *spec.Spec) []engine.Step { return []engine.Step{&slotStep{spec: spec}} })
}

// slotStep creates the subscription's slot on blue itself (the subscription
// then uses create_slot = false), so that the slot can be observed, rolled
// back and measured for lag from the start, and green never needs to create
// anything on blue.
type slotStep struct {
	spec *spec.Spec
	// inactiveWait overrides pg.SlotReleaseWait when set.
	inactiveWait time.Duration
}

func (s *slotStep) ID() string      { return stepid.Slot }
func (s *slotStep) Needs() []string { return []string{stepid.Publication} }

// byCopy says whether the snapshot copy method creates the slot (it needs
// the snapshot exported at the slot's consistent point).
func (s *slotStep) byCopy() bool { return s.spec.Replication.InitialCopy.Method == "snapshot" }

func createSlotSQL(name string) string {
	return fmt.Sprintf("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", pg.QuoteLiteral(name))
}

// slotProblem says why an existing slot cannot serve as pgshift's.
func slotProblem(name string, st pg.SlotStatus, database string) string {
	switch {
	case st.SlotType != "logical":
		return fmt.Sprintf("slot %q on blue is a %s slot", name, st.SlotType)
	case st.Plugin != "pgoutput":
		return fmt.Sprintf("slot %q on blue uses output plugin %q, not pgoutput", name, st.Plugin)
	case database != "" && st.Database != database:
		return fmt.Sprintf("slot %q on blue belongs to database %q, not %q", name, st.Database, database)
	case st.Temporary:
		return fmt.Sprintf("slot %q on blue is temporary", name)
	}
	return ""
}

func slotConflictError(problem string) error {
	return fmt.Errorf("%s: drop it (SELECT pg_drop_replication_slot(...)) if nothing uses it, or set replication.slot to another name", problem)
}

func currentDatabase(ctx context.Context, db pg.Querier) (string, error) {
	var name string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		return "", fmt.Errorf("read current database: %w", err)
	}
	return name, nil
}

func (s *slotStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return plans.Change{}, err
	}
	name := s.spec.SlotName()
	st, err := pg.ReadSlot(ctx, db, name)
	if err != nil {
		return plans.Change{}, err
	}
	if !st.Exists {
		if s.byCopy() {
			return plans.Change{Action: plans.ActionCreate,
				Summary: fmt.Sprintf("logical replication slot %s: target.copy creates it with an exported snapshot", name)}, nil
		}
		return plans.Change{Action: plans.ActionCreate,
			Summary: fmt.Sprintf("logical replication slot %s (pgoutput) on blue", name),
			Details: []string{createSlotSQL(name)}}, nil
	}
	dbname, err := currentDatabase(ctx, db)
	if err != nil {
		return plans.Change{}, err
	}
	if p := slotProblem(name, st, dbname); p != "" {
		return plans.Change{Action: plans.ActionBlocker, Summary: "slot " + name + " exists and is not usable",
			Blockers: []string{slotConflictError(p).Error()}}, nil
	}
	summary := fmt.Sprintf("slot %s (pgoutput), lag %s", name, words.Bytes(st.LagBytes))
	if st.Active {
		summary += ", in use"
	}
	return plans.Change{Action: plans.ActionNone, Summary: summary}, nil
}

func (s *slotStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return []plans.Precondition{{Name: "blue reachable", OK: false, Detail: err.Error()}}, nil
	}
	var walLevel string
	var free int
	if err := db.QueryRow(ctx, `SELECT current_setting('wal_level'),
	       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)`).Scan(&walLevel, &free); err != nil {
		return nil, fmt.Errorf("blue: read replication settings: %w", err)
	}
	st, err := pg.ReadSlot(ctx, db, s.spec.SlotName())
	if err != nil {
		return nil, err
	}
	return []plans.Precondition{
		{Name: "wal_level = logical on blue", OK: walLevel == "logical",
			Detail: fmt.Sprintf("wal_level is %s (ALTER SYSTEM SET wal_level = logical, then restart blue)", walLevel)},
		{Name: "a free replication slot on blue", OK: st.Exists || free > 0,
			Detail: fmt.Sprintf("%d free (raise max_replication_slots and restart blue when 0)", free)},
	}, nil
}

func (s *slotStep) Apply(ctx context.Context, env *engine.Env) error {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	name := s.spec.SlotName()
	st, err := pg.ReadSlot(ctx, db, name)
	if err != nil {
		return err
	}
	// A slot held by an ordinary backend is still being created (a previous
	// run died while pg_create_logical_replication_slot waited for blue's
	// running transactions): wait until it is made for good, or gone.
	for st.Exists && st.Active && !s.byCopy() {
		var walsender bool
		if err := db.QueryRow(ctx, "SELECT coalesce((SELECT backend_type = 'walsender' FROM pg_stat_activity WHERE pid = $1), false)", st.ActivePID).Scan(&walsender); err != nil {
			return fmt.Errorf("read the holder of slot %q on blue: %w", name, err)
		}
		if walsender {
			break
		}
		env.Log.Info("waiting for an earlier creation of the slot to finish", "slot", name, "pid", st.ActivePID)
		select {
		case <-ctx.Done():
			return fmt.Errorf("slot %q on blue is still being created by backend pid %d: %w", name, st.ActivePID, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
		if st, err = pg.ReadSlot(ctx, db, name); err != nil {
			return err
		}
	}
	if st.Exists {
		dbname, err := currentDatabase(ctx, db)
		if err != nil {
			return err
		}
		if p := slotProblem(name, st, dbname); p != "" {
			return slotConflictError(p)
		}
		// A previous run created it and may have died before recording.
		if _, ok := env.Output(stepid.Slot, "consistent_lsn"); !ok && st.ConfirmedFlush != "" {
			env.Record("consistent_lsn", st.ConfirmedFlush)
		}
		return nil
	}
	if s.byCopy() {
		// The slot must come from the connection that exports the copy's
		// snapshot; this step only owns its rollback then.
		return nil
	}
	env.Log.Info("creating replication slot on blue (waits for transactions running on blue to finish)", "slot", name)
	var lsn string
	err = db.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", name).Scan(&lsn)
	if err != nil {
		return fmt.Errorf("create replication slot %q on blue: %w", name, err)
	}
	env.Log.Info("replication slot created", "slot", name, "consistent_lsn", lsn)
	env.Record("consistent_lsn", lsn)
	return nil
}

func (s *slotStep) Rollback(ctx context.Context, env *engine.Env) error {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	wait := s.inactiveWait
	if wait == 0 {
		wait = pg.SlotReleaseWait
	}
	return pg.DropSlot(ctx, env.Log, db, s.spec.SlotName(), wait)
}

func (s *slotStep) Describe() plans.Change {
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("logical replication slot %s (pgoutput) on blue", s.spec.SlotName()),
		Details: []string{createSlotSQL(s.spec.SlotName())}}
}

func (s *slotStep) DescribeRollback() string {
	return fmt.Sprintf("SELECT pg_drop_replication_slot(%s) on blue, once no subscriber holds it", pg.QuoteLiteral(s.spec.SlotName()))
}

// Fingerprint leaves the moving lag out of the saved plan's check.
func (s *slotStep) Fingerprint(c plans.Change) string {
	return string(c.Action) + " " + strings.Join(c.Blockers, "\n")
}
