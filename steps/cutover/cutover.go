package cutover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/switcher"
)

// New is the cutover step of a spec.
func New(s *spec.Spec) engine.Step { return &cutoverStep{spec: s} }

// cutoverStep freezes writes, drains replication into green, copies the
// sequences, stops the forward subscription, starts reverse replication
// exactly where green's first application write will be, switches traffic
// and unfreezes. Everything that can be done before the freeze is: the
// freeze is the users' downtime.
//
// Every transition is recorded (env.Record) before it is made, so that a
// killed run is recoverable: the next apply finishes the cutover when the
// switch has happened and aborts it (back to blue, unfrozen) otherwise;
// rollback does the same before switching back; status says how.
type cutoverStep struct {
	spec *spec.Spec

	// newDriver builds the switch driver (tests may wrap the real one).
	newDriver func(spec *spec.Spec) (switcher.Driver, error)
	// hook, when set, runs at named stages of the freeze: tests use it to
	// break something at a precise moment (stop green before the switch).
	hook func(stage string) error

	// workerHealth is the forward apply worker's last health seen by the
	// preconditions (see subscriptionHealth).
	workerHealth pg.ApplyWorkerHealth
}

func (s *cutoverStep) ID() string      { return stepid.Cutover }
func (s *cutoverStep) Needs() []string { return []string{stepid.Verify} }

// Gate asks for approval unless cutover.approval is auto.
func (s *cutoverStep) Gate() string {
	if s.spec.Cutover.Approval == "auto" {
		return ""
	}
	return fmt.Sprintf("freezes writes (%s) for at most %s, moves the application to green through %s%s; an interrupted cutover is finished or aborted first",
		s.spec.Cutover.Freeze, time.Duration(s.spec.Cutover.PauseTimeout), switchName(s.spec), reverseNote(s.spec))
}

func reverseNote(spec *spec.Spec) string {
	if spec.Cutover.ReverseReplication {
		return ", and replicates green back to blue for rollback"
	}
	return " without reverse replication (rollback would lose green's writes)"
}

func switchName(spec *spec.Spec) string {
	sw := spec.Cutover.Switch
	switch {
	case sw.PgBouncer != nil:
		return "PgBouncer"
	case sw.HAProxy != nil:
		return "HAProxy"
	case sw.Exec != nil:
		return "the exec hook"
	}
	return "no switch"
}

// Outputs recorded in the state (never a secret).
const (
	keyPhase              = "phase"                      // the phase (phase.go)
	keyFreeze             = "freeze"                     // what was frozen: pooler, read-only, both
	keyBlueReadOnlyBefore = "blue_read_only_before"      // blue was read-only by its owner's choice
	keySyncCommit         = "forward_synchronous_commit" // the forward subscription's setting before the cutover
	keyFrozenAt           = "frozen_at"
	keyDrainLSN           = "drain_lsn"         // blue's position after the freeze, confirmed by green
	keyReverseLSN         = "reverse_start_lsn" // green's position where reverse replication starts
	keyPauseMS            = "pause_ms"
	keyAborted            = "aborted" // why the last attempt aborted
	keySequences          = "sequences"
	keyLive               = "live" // the live side once the last cutover or rollback settled (live.go)

	keyRollbackPhase       = "rollback_phase"
	keyGreenReadOnlyBefore = "green_read_only_before"
	keyRollbackFrozenAt    = "rollback_frozen_at"
	keyRollbackBlueLSN     = "rollback_blue_lsn" // blue's position once green's writes were all applied
	keyRollbackPauseMS     = "rollback_pause_ms"
)

// TrafficMayBeOnGreen says, from a cutover step's recorded outputs, whether
// traffic may have moved to green and not been brought back: the switch was
// called (even if the run failed or was killed after it) and no rollback
// switched back.
func TrafficMayBeOnGreen(outputs map[string]string) bool {
	return phase(outputs[keyPhase]).reached(phaseSwitching) && !rollbackPhase(outputs[keyRollbackPhase]).back()
}

// FreezeInPlace says whether a cutover or its rollback, killed or under
// way, may have left a side frozen: nothing else may change the databases
// until the cutover step finishes or undoes it.
func FreezeInPlace(outputs map[string]string) bool {
	return phase(outputs[keyPhase]).frozen() || rollbackPhase(outputs[keyRollbackPhase]).frozen()
}

// cutoverApplication names pgshift's sessions, which the read-only freeze
// keeps when it ends every other session.
const cutoverApplication = "pgshift-cutover"

// run is one cutover (or rollback) in progress: the driver and dedicated
// pools on both sides whose sessions are not read-only and survive the
// freeze's session purge.
type run struct {
	s       *cutoverStep
	env     *engine.Env
	spec    *spec.Spec
	drv     switcher.Driver
	blue    *pgxpool.Pool
	green   *pgxpool.Pool
	blueDB  string // database names, for ALTER DATABASE
	greenDB string
	frozen  time.Time

	lastLap time.Time
	laps    []string
}

func (s *cutoverStep) driver() (switcher.Driver, error) {
	if s.newDriver != nil {
		return s.newDriver(s.spec)
	}
	return newSwitchDriver(s.spec)
}

// newSwitchDriver builds the spec's driver, with blue and green as the
// servers' own network reaches them (subscription_dsn where the spec sets
// one: the address pgshift uses may be a tunnel the pooler cannot use).
func newSwitchDriver(spec *spec.Spec) (switcher.Driver, error) {
	var eps [2]switcher.Endpoint
	for i, db := range []*engine.Database{engine.NewDatabase("blue", spec.Source), engine.NewDatabase("green", spec.Target)} {
		dsn, field, err := db.PeerDSN()
		if err == nil {
			eps[i], err = switcher.EndpointFromDSN(dsn)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	return switcher.New(spec, eps[0], eps[1])
}

// cutoverPool opens a small pool whose sessions carry cutoverApplication and
// write even while the database's default is read-only.
func cutoverPool(ctx context.Context, db *engine.Database) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(db.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse dsn", db.Role)
	}
	if p := db.Password(); p != "" {
		cfg.ConnConfig.Password = p
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = cutoverApplication
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "off"
	cfg.MinConns = 2
	cfg.MaxConns = 6
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s: %w", db.Role, db.Redacted(), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: connect to %s: %w", db.Role, db.Redacted(), err)
	}
	return pool, nil
}

// open connects to both sides and the switch. green may be unreachable
// (an abort must still unfreeze blue): its pool is then nil.
func (s *cutoverStep) open(ctx context.Context, env *engine.Env) (*run, error) {
	drv, err := s.driver()
	if err != nil {
		return nil, err
	}
	r := &run{s: s, env: env, spec: s.spec, drv: drv}
	if r.blue, err = cutoverPool(ctx, env.Source); err != nil {
		r.close()
		return nil, err
	}
	if err := r.blue.QueryRow(ctx, "SELECT current_database()").Scan(&r.blueDB); err != nil {
		r.close()
		return nil, fmt.Errorf("blue: %w", err)
	}
	if r.green, err = cutoverPool(ctx, env.Target); err != nil {
		env.Log.Warn("green unreachable", "error", err)
		r.green = nil
	} else if err := r.green.QueryRow(ctx, "SELECT current_database()").Scan(&r.greenDB); err != nil {
		r.close()
		return nil, fmt.Errorf("green: %w", err)
	}
	return r, nil
}

func (r *run) needGreen() error {
	if r.green == nil {
		return fmt.Errorf("green (%s) is unreachable: start it or fix target.dsn, then run again", r.env.Target.Redacted())
	}
	return nil
}

func (r *run) close() {
	if r.drv != nil {
		r.drv.Close()
	}
	if r.blue != nil {
		r.blue.Close()
	}
	if r.green != nil {
		r.green.Close()
	}
}

func (r *run) out(key string) string {
	v, _ := r.env.Output(stepid.Cutover, key)
	return v
}

func (r *run) record(key, value string) { r.env.Record(key, value) }

func (r *run) stage(name string) error {
	if r.s.hook == nil {
		return nil
	}
	return r.s.hook(name)
}

// Apply runs the cutover, first finishing or aborting one a killed run left
// in the middle.
func (s *cutoverStep) Apply(ctx context.Context, env *engine.Env) error {
	r, err := s.open(ctx, env)
	if err != nil {
		return err
	}
	defer r.close()
	switch ph := r.phase(); {
	case ph == phaseDone:
		return r.confirmDone(ctx)
	case ph == phaseSwitched || ph == phaseLive:
		env.Log.Warn("an earlier cutover was interrupted after the switch: finishing it", "phase", ph)
		return r.finishAndConfirm(ctx)
	case ph == phaseSwitching:
		if r.switchedTo(ctx, switcher.Green) {
			env.Log.Warn("an earlier cutover was interrupted during the switch, which took effect: finishing it")
			return r.finishAndConfirm(ctx)
		}
		fallthrough
	case ph.frozen():
		env.Log.Warn("an earlier cutover was interrupted during the freeze: switching back to blue and unfreezing it first", "phase", ph)
		if err := r.recoverToBlue(ctx); err != nil {
			return err
		}
	}
	return r.cutover(ctx)
}

// switchedTo says whether a switch that a killed run began towards side took
// effect. A switch that cannot report its side (exec), or cannot tell now
// (unreachable, or halfway: both HAProxy servers in service), counts as
// done: the side left behind was drained into the other before the switch
// began, so finishing forward loses nothing, while going back would lose
// the writes the new side may have taken since. Finishing forward runs the
// switch again; while it cannot be reached, that fails and the freeze stays,
// saying so.
func (r *run) switchedTo(ctx context.Context, side switcher.Side) bool {
	got, err := r.drv.Current(ctx)
	switch {
	case errors.Is(err, switcher.ErrUnknownSide):
		r.env.Log.Warn("the switch cannot report where traffic goes: finishing the interrupted switch (its command runs again)", "to", side)
		return true
	case err != nil:
		r.env.Log.Warn("the switch cannot tell where traffic goes now: finishing the interrupted switch, which loses nothing, rather than going back, which could lose what the new side took", "to", side, "error", err)
		return true
	}
	return got == side
}

// confirmDone checks, on a re-run after success, that traffic is on green.
func (r *run) confirmDone(ctx context.Context) error {
	side, err := r.drv.Current(ctx)
	switch {
	case errors.Is(err, switcher.ErrUnknownSide):
		return nil
	case err != nil:
		return err
	case side != switcher.Green:
		return fmt.Errorf("the cutover is recorded as done, but %s sends traffic to %s: someone moved it back; run `pgshift rollback --step cutover` to make blue the primary cleanly (replication kept), or switch it to green again by hand", r.drv.Name(), side)
	}
	r.env.Log.Info("cutover already done: traffic goes to green", "pause_ms", r.out(keyPauseMS))
	if r.out(keyConfirmed) == "false" || (r.out(keyConfirmed) == "" && r.spec.Cutover.Confirm != nil) {
		// The last run could not confirm a write through the switch (or
		// had no confirm.dsn): try again rather than pass silently.
		return r.confirmThroughSwitch(ctx)
	}
	return nil
}

func (s *cutoverStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	recorded, _ := env.Output(stepid.Cutover, keyPhase)
	if phase(recorded) == phaseDone {
		pause, _ := env.Output(stepid.Cutover, keyPauseMS)
		c := plans.Change{Action: plans.ActionNone, Summary: "green is live since the cutover (write pause " + pause + " ms)"}
		if v, _ := env.Output(stepid.Cutover, keyConfirmed); v == "false" {
			c.Warnings = append(c.Warnings, "a write through cutover.confirm.dsn was not confirmed on green after the cutover: traffic may be split between blue and green; check the switch (pgshift status), or go back with pgshift rollback --step cutover")
		}
		return c, nil
	}
	c := s.Describe()
	// Which side is live leads the summary: after a rollback of the
	// cutover it is blue again, and this cutover goes on from the
	// replication the rollback kept.
	c.Summary = LiveSide(env.Outputs(stepid.Cutover)) + " is live; " + c.Summary
	if phase(recorded).frozen() {
		c.Warnings = append(c.Warnings, "a cutover was interrupted during its freeze ("+recorded+"): blue may still be frozen; apply --approve-cutover finishes or aborts it")
	}
	drv, err := s.driver()
	if err != nil {
		return plans.Change{Action: plans.ActionBlocker, Summary: "cutover.switch is not usable", Blockers: []string{err.Error()}}, nil
	}
	defer drv.Close()
	c.Details = append(drv.Describe(switcher.Green), c.Details...)
	return c, nil
}

// Fingerprint keeps the action and what would change, not the pause.
func (s *cutoverStep) Fingerprint(c plans.Change) string {
	return string(c.Action) + "\n" + strings.Join(c.Details, "\n") + "\n" + strings.Join(c.Blockers, "\n")
}

func (s *cutoverStep) Describe() plans.Change {
	rev := s.spec.ReverseName()
	details := []string{
		fmt.Sprintf("before the freeze: wait for lag under %s, REFRESH MATERIALIZED VIEW on green, forward subscription synchronous_commit = on", words.Bytes(preFreezeLag(s.spec))),
	}
	if s.spec.Cutover.ReverseReplication {
		conninfo := "<target.dsn cannot be turned into a conninfo>"
		if dsn, field, err := engine.NewDatabase("green", s.spec.Target).PeerDSN(); err != nil {
			conninfo = "<" + field + " cannot be turned into a conninfo>"
		} else if _, redacted, err := pg.SubscriptionConninfo(dsn, ""); err == nil {
			if s.spec.Target.PasswordEnv != "" {
				redacted += " password=********"
			}
			conninfo = redacted
		}
		details = append(details,
			fmt.Sprintf("before the freeze: CREATE PUBLICATION %s on green (the replicated tables); CREATE SUBSCRIPTION %s on blue CONNECTION %s (enabled = false, copy_data = false, create_slot = false, and the replication.options blue's version accepts but binary and failover)",
				pg.QuoteIdent(rev), pg.QuoteIdent(rev), pg.QuoteLiteral(conninfo)))
	}
	details = append(details,
		fmt.Sprintf("freeze (%s), drain: green confirms blue's last position; copy every sequence + %d", s.spec.Cutover.Freeze, s.spec.Sequences.Margin),
		fmt.Sprintf("ALTER SUBSCRIPTION %s DISABLE on green", pg.QuoteIdent(s.spec.SubscriptionName())))
	if s.spec.Cutover.ReverseReplication {
		details = append(details, fmt.Sprintf("pg_create_logical_replication_slot(%s, 'pgoutput') on green", pg.QuoteLiteral(rev)))
	}
	details = append(details, fmt.Sprintf("switch to green, unfreeze (aborts back to blue past %s)", time.Duration(s.spec.Cutover.PauseTimeout)))
	if c := s.spec.Cutover.Confirm; c != nil && c.DSN != "" {
		details = append(details, "after the unfreeze: a write through "+engine.NewDatabase("cutover.confirm", spec.Endpoint{DSN: c.DSN}).Redacted()+" (temporary table, dropped at commit) must land on green")
	} else {
		details = append(details, "write through the switch not confirmed (set cutover.confirm.dsn)")
	}
	if s.spec.Cutover.ReverseReplication {
		details = append(details, fmt.Sprintf("ALTER SUBSCRIPTION %s ENABLE on blue", pg.QuoteIdent(rev)))
	}
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("freeze writes (%s, at most %s), drain, copy sequences, switch to green", s.spec.Cutover.Freeze, time.Duration(s.spec.Cutover.PauseTimeout)),
		Details: details}
}

func (s *cutoverStep) DescribeRollback() string {
	if !s.spec.Cutover.ReverseReplication {
		return "switch back to blue: refused after a cutover without reverse replication (green's writes are not on blue)"
	}
	return fmt.Sprintf("freeze green, drain reverse replication into blue, copy sequences back, switch to blue, unfreeze; drop %s on both sides; re-enable %s", s.spec.ReverseName(), s.spec.SubscriptionName())
}

// What the cutover offers the engine (found by type assertion: a misspelt
// method would silently drop the gate or the status facts).
var (
	_ engine.Step              = (*cutoverStep)(nil)
	_ engine.Gated             = (*cutoverStep)(nil)
	_ engine.Reporter          = (*cutoverStep)(nil)
	_ engine.Describer         = (*cutoverStep)(nil)
	_ engine.RollbackDescriber = (*cutoverStep)(nil)
	_ engine.Fingerprinter     = (*cutoverStep)(nil)
)
