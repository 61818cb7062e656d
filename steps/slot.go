package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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
	// waitLog overrides how often the wait for blue's transactions is
	// logged (5 s).
	waitLog time.Duration
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
	if owned, _ := slotOwnership(env); !owned {
		return plans.Change{Action: plans.ActionBlocker, Summary: "slot " + name + " exists on blue and is not pgshift's",
			Blockers: []string{foreignSlotError(name).Error()}}, nil
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
	var maxSlots, used int
	if err := db.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int,
	       (SELECT count(*) FROM pg_replication_slots)::int`).Scan(&walLevel, &maxSlots, &used); err != nil {
		return nil, fmt.Errorf("blue: read replication settings: %w", err)
	}
	st, err := pg.ReadSlot(ctx, db, s.spec.SlotName())
	if err != nil {
		return nil, err
	}
	sync, err := readSyncCapacity(ctx, env, db)
	if err != nil {
		return nil, err
	}
	main := 1
	if st.Exists {
		main = 0
	}
	need, free := main+max(sync.Need-sync.HeldSlots, 0), maxSlots-used
	return []plans.Precondition{
		{Name: "wal_level = logical on blue", OK: walLevel == "logical",
			Detail: fmt.Sprintf("wal_level is %s (ALTER SYSTEM SET wal_level = logical, then restart blue)", walLevel)},
		{Name: "free replication slots on blue for the slot and the table sync", OK: free >= need,
			Detail: fmt.Sprintf("%d free, %d needed", free, need)},
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
	// running transactions): wait until it is made for good, or gone, if
	// that backend is the one pgshift recorded as creating it.
	var waitingSince, lastLog time.Time // waitingSince on blue's clock
	for st.Exists && st.Active && !s.byCopy() {
		var walsender bool
		if err := db.QueryRow(ctx, "SELECT coalesce((SELECT backend_type = 'walsender' FROM pg_stat_activity WHERE pid = $1), false)", st.ActivePID).Scan(&walsender); err != nil {
			return fmt.Errorf("read the holder of slot %q on blue: %w", name, err)
		}
		if walsender {
			break
		}
		if owned, _ := slotOwnership(env); !owned || recordedCreator(env) != st.ActivePID {
			return fmt.Errorf("%w (backend pid %d on blue is creating it, and pgshift did not start that creation)", foreignSlotError(name), st.ActivePID)
		}
		if waitingSince.IsZero() {
			if waitingSince, err = pg.Scalar[time.Time](ctx, db, "SELECT now()"); err != nil {
				return fmt.Errorf("blue: read the clock: %w", err)
			}
		}
		if time.Since(lastLog) >= s.logEvery() {
			lastLog = time.Now()
			s.logBlockers(ctx, env, db, "waiting for an earlier creation of the slot to finish", st.ActivePID, waitingSince)
		}
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
		if owned, _ := slotOwnership(env); !owned {
			return foreignSlotError(name)
		}
		// The run that created it may have died before recording.
		if _, ok := env.Output(stepid.Slot, SlotLSN); !ok && st.ConfirmedFlush != "" && !s.byCopy() {
			env.Record(SlotLSN, st.ConfirmedFlush)
		}
		return nil
	}
	// The name is free: claim it in the state before anything creates it,
	// so that a slot of this name found later is known to be pgshift's.
	env.Record(SlotClaimed, "true")
	if s.byCopy() {
		// The slot must come from the connection that exports the copy's
		// snapshot; this step only owns its rollback then.
		return nil
	}
	return s.create(ctx, env, db, name)
}

// create runs pg_create_logical_replication_slot on a connection of its own.
// The creation waits for every transaction holding a transaction id on blue
// to end: meanwhile the transactions it waits for are logged every few
// seconds. When ctx ends first, the creation is cancelled on blue and
// awaited, so that no half-made slot stays behind.
func (s *slotStep) create(ctx context.Context, env *engine.Env, pool *pgxpool.Pool, name string) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	pid := conn.Conn().PgConn().PID()
	start, err := pg.Scalar[time.Time](ctx, conn, "SELECT clock_timestamp()")
	if err != nil {
		conn.Release()
		return fmt.Errorf("blue: read the clock: %w", err)
	}
	env.Record(SlotCreatorPID, strconv.FormatUint(uint64(pid), 10))
	env.Log.Info("creating replication slot on blue (waits for transactions running on blue to finish)", "slot", name, "pid", pid)

	done := make(chan slotResult, 1)
	// The creation runs under its own context: on ctx's end it is cancelled
	// on blue explicitly, and awaited.
	qctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		var lsn string
		err := conn.QueryRow(qctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", name).Scan(&lsn)
		done <- slotResult{lsn, err}
	}()
	tick := time.NewTicker(s.logEvery())
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			conn.Release()
			if r.err != nil {
				return fmt.Errorf("create replication slot %q on blue: %w", name, r.err)
			}
			env.Log.Info("replication slot created", "slot", name, "consistent_lsn", r.lsn)
			env.Record(SlotLSN, r.lsn)
			return nil
		case <-tick.C:
			s.logBlockers(ctx, env, pool, "creating the slot waits for transactions on blue to end", int32(pid), start)
		case <-ctx.Done():
			return s.cancelCreate(ctx, env, pool, conn, int32(pid), name, start, done, stop)
		}
	}
}

// slotResult is what pg_create_logical_replication_slot returned.
type slotResult struct {
	lsn string
	err error
}

// cancelCreate ends a creation cut short by ctx: the backend's query is
// cancelled on blue (PostgreSQL drops a slot whose creation fails), the
// result awaited, and the slot checked gone.
func (s *slotStep) cancelCreate(ctx context.Context, env *engine.Env, pool *pgxpool.Pool, conn *pgxpool.Conn, pid int32, name string,
	start time.Time, done <-chan slotResult, stop context.CancelFunc) error {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	blockers, _ := listOpenTx(bg, pool, start, pid, true)
	if _, err := pool.Exec(bg, "SELECT pg_cancel_backend($1)", pid); err != nil {
		env.Log.Warn("could not cancel the slot's creation on blue", "slot", name, "pid", pid, "error", err)
	}
	var r slotResult
	select {
	case r = <-done:
	case <-bg.Done():
		stop() // pgx cancels and closes the connection; the backend ends with it
		r = <-done
	}
	conn.Release()
	why := ""
	if len(blockers) > 0 {
		why = fmt.Sprintf(" while it waited for %s on blue: %s", words.Plural(len(blockers), "transaction", "transactions"), describeOpenTx(blockers))
	}
	if r.err == nil {
		// The creation finished before the cancel reached it: the slot is
		// made and pgshift's.
		env.Record(SlotLSN, r.lsn)
		return fmt.Errorf("creating replication slot %q on blue: %w (the slot was created just before; the next apply uses it)", name, ctx.Err())
	}
	// Wait until blue has dropped the half-made slot.
	for {
		st, err := pg.ReadSlot(bg, pool, name)
		if err == nil && !st.Exists {
			env.Record(SlotClaimed, "false")
			return fmt.Errorf("creating replication slot %q on blue was interrupted%s; nothing was created: %w", name, why, ctx.Err())
		}
		if err != nil || bg.Err() != nil {
			return fmt.Errorf("creating replication slot %q on blue was interrupted%s, and blue may still hold it (backend pid %d): check pg_replication_slots and run apply again (it waits for that creation): %w", name, why, pid, ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logEvery is how often the wait for blue's transactions is logged.
func (s *slotStep) logEvery() time.Duration {
	if s.waitLog > 0 {
		return s.waitLog
	}
	return 5 * time.Second
}

// logBlockers logs the transactions the slot's creation (by backend pid,
// started at start on blue's clock) waits for.
func (s *slotStep) logBlockers(ctx context.Context, env *engine.Env, db pg.Querier, msg string, pid int32, start time.Time) {
	txs, err := listOpenTx(ctx, db, start, pid, true)
	if err != nil {
		env.Log.Warn(msg, "slot", s.spec.SlotName(), "pid", pid, "error", err)
		return
	}
	if len(txs) == 0 {
		env.Log.Info(msg, "slot", s.spec.SlotName(), "pid", pid)
		return
	}
	args := []any{"slot", s.spec.SlotName(), "pid", pid, "waiting_for", describeOpenTx(txs)}
	first := txs[0]
	args = append(args, "blocker_pid", first.PID, "blocker_age", first.Age.Round(time.Second).String(),
		"blocker_state", first.State, "blocker_application", first.App, "blocker_query", first.Query)
	env.Log.Warn(fmt.Sprintf("%s: %s; %s", msg, words.Plural(len(txs), "transaction", "transactions"), endTxFix(txs)), args...)
}

func (s *slotStep) Rollback(ctx context.Context, env *engine.Env) error {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	name := s.spec.SlotName()
	if owned, _ := slotOwnership(env); !owned {
		st, err := pg.ReadSlot(ctx, db, name)
		if err != nil {
			return err
		}
		if st.Exists {
			env.Log.Warn("replication slot kept: pgshift did not create it", "slot", name,
				"fix", fmt.Sprintf("if it is abandoned, drop it: SELECT pg_drop_replication_slot(%s);", pg.QuoteLiteral(name)))
		}
		return nil
	}
	wait := s.inactiveWait
	if wait == 0 {
		wait = pg.SlotReleaseWait
	}
	if err := pg.DropSlot(ctx, env.Log, db, name, wait); err != nil {
		return err
	}
	env.Record(SlotClaimed, "false") // a slot of this name made later is not pgshift's
	return nil
}

func (s *slotStep) Describe() plans.Change {
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("logical replication slot %s (pgoutput) on blue", s.spec.SlotName()),
		Details: []string{createSlotSQL(s.spec.SlotName())}}
}

func (s *slotStep) DescribeRollback() string {
	return fmt.Sprintf("SELECT pg_drop_replication_slot(%s) on blue, once no subscriber holds it, if pgshift created it", pg.QuoteLiteral(s.spec.SlotName()))
}

// Fingerprint leaves the moving lag out of the saved plan's check.
func (s *slotStep) Fingerprint(c plans.Change) string {
	return string(c.Action) + " " + strings.Join(c.Blockers, "\n")
}
