package cutover

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// preFreezeLagFloor is the lag the cutover waits for before it freezes:
// whatever is left is applied inside the pause, and 1 MiB of WAL is a few
// tens of milliseconds of apply. cutover.max_lag_bytes raises it.
const preFreezeLagFloor = 1 << 20

func preFreezeLag(spec *spec.Spec) int64 {
	if spec.Cutover.MaxLagBytes > preFreezeLagFloor {
		return spec.Cutover.MaxLagBytes
	}
	return preFreezeLagFloor
}

// Check lists the cutover's preconditions. When a killed run left a freeze
// in place it lists none that could fail: Apply must run, to finish or
// abort that cutover and unfreeze.
func (s *cutoverStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	recorded, _ := env.Output(stepid.Cutover, keyPhase)
	if ph := phase(recorded); ph.frozen() || ph.reached(phaseSwitched) {
		return []plans.Precondition{{Name: "cutover in progress", OK: true, Detail: "phase " + recorded + ": apply finishes or aborts it"}}, nil
	}
	return s.preconditions(ctx, env)
}

func (s *cutoverStep) preconditions(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	var pre []plans.Precondition
	add := func(name string, ok bool, detail string) {
		pre = append(pre, plans.Precondition{Name: name, OK: ok, Detail: detail})
	}

	res, _ := env.Output(stepid.Verify, stepid.VerifyResult)
	add("verify passed", res == "passed", fmt.Sprintf("last verify: %q (pgshift apply runs verify before the cutover)", res))

	sw := s.spec.Cutover.Switch
	if s.spec.Cutover.Freeze == "pooler" && sw.PgBouncer == nil {
		add("the freeze fits the switch", false, fmt.Sprintf("cutover.freeze: pooler holds writes through PgBouncer's PAUSE, but the switch is %s: set cutover.freeze: read-only", switchName(s.spec)))
	} else {
		add("the freeze fits the switch", true, "freeze "+s.spec.Cutover.Freeze+" with "+switchName(s.spec))
	}

	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return nil, err
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return nil, err
	}
	if _, readOnly := freezeModes(s.spec.Cutover.Freeze); readOnly {
		db, err := pg.Scalar[string](ctx, blue, "SELECT current_database()")
		if err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
		stuck, err := pg.UnendableSessions(ctx, blue, db, cutoverApplication)
		if err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
		detail := "the read-only freeze ends every other session on blue's database"
		if len(stuck) > 0 {
			detail = fmt.Sprintf("the read-only freeze ends every other session on blue's database, and pgshift's role may not end %s: close them, grant pgshift's role pg_signal_backend (a superuser's session needs a superuser), or set cutover.freeze: pooler",
				words.List(stuck))
		}
		add("every session on blue can be ended by the freeze", len(stuck) == 0, detail)
	}
	p, err := pg.MeasureReplication(ctx, blue, green, s.spec.SlotName(), s.spec.SubscriptionName())
	if err != nil {
		return nil, err
	}
	threshold := pg.CatchupThreshold(s.spec.Cutover.MaxLagBytes)
	add("every table ready", p.Subscription.Exists && len(p.Tables) > 0 && p.Ready == len(p.Tables),
		fmt.Sprintf("%d/%d tables ready on green (subscription %s)", p.Ready, len(p.Tables), s.spec.SubscriptionName()))
	unsubscribed, err := publishedNotSubscribed(ctx, blue, s.spec, p.Tables)
	if err != nil {
		return nil, err
	}
	detail := "green's subscription holds every table blue publishes"
	if len(unsubscribed) > 0 {
		detail = fmt.Sprintf("blue publishes %s that green's subscription does not hold, so green would go live without their rows: run pgshift plan, which names why (a table back in the selection while green still holds its old rows must be truncated on green first), then pgshift apply",
			words.List(unsubscribed))
	}
	add("every published table subscribed", len(unsubscribed) == 0, detail)
	tables, err := pg.SelectedTables(ctx, blue, s.spec.Tables.Include, s.spec.Tables.Exclude)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	health, err := subscriptionHealth(ctx, env, blue, green, p.Subscription, tables, &s.workerHealth)
	if err != nil {
		return nil, err
	}
	pre = append(pre, health...)
	if p.Slot.Lost {
		add("replication slot usable", false, pg.SlotLostError(s.spec.SlotName()).Error())
	}
	add("replication lag under threshold", p.Slot.Exists && p.Slot.LagBytes >= 0 && p.Slot.LagBytes <= threshold,
		fmt.Sprintf("lag %s, threshold %s; the freeze starts once it is under %s", words.Bytes(p.Slot.LagBytes), words.Bytes(threshold), words.Bytes(preFreezeLag(s.spec))))

	seqOK, seqDetail, err := sequencesCopyable(ctx, env, s.spec.Sequences.Margin)
	if err != nil {
		return nil, err
	}
	add("every sequence can be copied", seqOK, seqDetail)

	drv, err := s.driver()
	if err != nil {
		add("switch configured", false, err.Error())
	} else {
		err := drv.Check(ctx)
		detail := drv.Name() + " reachable"
		if err != nil {
			detail = err.Error()
		}
		add("switch reachable", err == nil, detail)
		drv.Close()
	}

	if s.spec.Cutover.ReverseReplication {
		green, err := env.Target.Pool(ctx)
		if err != nil {
			add("green reachable", false, err.Error())
			return pre, nil
		}
		var walLevel string
		var free int
		if err := green.QueryRow(ctx, `SELECT current_setting('wal_level'),
		       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)`).Scan(&walLevel, &free); err != nil {
			return nil, fmt.Errorf("green: read replication settings: %w", err)
		}
		add("green can publish (wal_level = logical)", walLevel == "logical",
			fmt.Sprintf("wal_level is %s on green; reverse replication needs logical (ALTER SYSTEM SET wal_level = logical and restart green, or set cutover.reverse_replication: false)", walLevel))
		st, err := pg.ReadSlot(ctx, green, s.spec.ReverseName())
		if err != nil {
			return nil, err
		}
		rights, err := pg.CheckSubscriptionRights(ctx, blue)
		if err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
		peer, _, _ := env.Target.PeerDSN()
		name, ok, detail := pg.SubscriptionPrecondition(rights, "blue", "green", "target.password_env",
			env.Target.Password() != "" || pg.ConninfoHasPassword(peer))
		if !ok {
			detail += " (or set cutover.reverse_replication: false: no way back without a new copy)"
		}
		add(name, ok, detail)
		add("a free replication slot on green", st.Exists || free > 0,
			fmt.Sprintf("%d free (raise max_replication_slots on green)", free))
	}
	return pre, nil
}

// failedPreconditions turns the failing ones into an error.
func failedPreconditions(pre []plans.Precondition) error {
	var failed []string
	for _, p := range pre {
		if !p.OK {
			failed = append(failed, p.Name+": "+p.Detail)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("cutover not started, nothing was frozen: %s", strings.Join(failed, "; "))
}

// sequencesCopyable finds, before anything is frozen, the sequences the
// freeze could not copy to green: green would hand out values blue already
// used, and inserts there would fail on duplicate keys after the switch.
func sequencesCopyable(ctx context.Context, env *engine.Env, margin int64) (bool, string, error) {
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return false, "", err
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return false, "", err
	}
	src, err := ListSequences(ctx, blue, false)
	if err != nil {
		return false, "", fmt.Errorf("blue: %w", err)
	}
	dst, err := ListSequences(ctx, green, false)
	if err != nil {
		return false, "", fmt.Errorf("green: %w", err)
	}
	report, _ := planSequenceSync(src, dst, margin)
	var problems []string
	if n := len(report.OnlyOnSource); n > 0 {
		problems = append(problems, fmt.Sprintf("%s missing on green (%s): create %s there",
			words.Plural(n, "sequence", "sequences"), words.List(report.OnlyOnSource), words.Pick(n, "it", "them")))
	}
	if n := len(report.Unreadable); n > 0 {
		first := report.Unreadable[0]
		for _, q := range src {
			if q.qualified() == first {
				first = pg.DisplayName(q.Schema, q.Name)
				break
			}
		}
		problems = append(problems, fmt.Sprintf("%s not readable by the connecting roles (%s): GRANT SELECT, UPDATE ON SEQUENCE %s TO them on both sides",
			words.Plural(n, "sequence", "sequences"), words.List(report.Unreadable), first))
	}
	if n := len(report.Mismatched); n > 0 {
		problems = append(problems, fmt.Sprintf("%s counting up on one side and down on the other (%s): make green's match blue's (ALTER SEQUENCE ... INCREMENT BY)",
			words.Plural(n, "sequence", "sequences"), words.List(report.Mismatched)))
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; "), nil
	}
	return true, fmt.Sprintf("%s on both sides", words.Plural(len(report.Synced), "sequence", "sequences")), nil
}

// publishedNotSubscribed lists the tables of blue's publication that green's
// subscription does not hold: a table target.subscription refused to add
// (or a refresh not yet run) is ready nowhere, so "every table ready" alone
// would not see it.
func publishedNotSubscribed(ctx context.Context, blue pg.Querier, spec *spec.Spec, states []pg.RelState) ([]string, error) {
	pub, err := pg.ReadPublication(ctx, blue, spec.PublicationName(), spec.Name)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	have := make([]string, len(states))
	for i, r := range states {
		have[i] = r.Table
	}
	missing, _ := pg.DiffTables(have, pub.Tables)
	tables, err := pg.ResolveTables(ctx, blue, missing)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.DisplayName()
	}
	return names, nil
}
