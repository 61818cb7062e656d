package cutover

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/switcher"
)

// Report tells `pgshift status` which side is live, where traffic goes and,
// above all, whether a killed cutover or rollback left a side frozen, and
// how to undo it. It only reads.
func (s *cutoverStep) Report(ctx context.Context, env *engine.Env) ([]string, error) {
	out := func(k string) string { v, _ := env.Output(stepid.Cutover, k); return v }
	facts := []string{"live side: " + LiveSide(env.Outputs(stepid.Cutover))}
	ph, rb := phase(out(keyPhase)), rollbackPhase(out(keyRollbackPhase))
	r := &run{s: s, env: env, spec: s.spec, blueDB: dbNameOf(env.Source), greenDB: dbNameOf(env.Target)}
	switch {
	case rb.frozen():
		facts = append(facts, fmt.Sprintf("GREEN IS FROZEN by a rollback of the cutover that stopped in phase %s (since %s): unless a pgshift run is in progress, run pgshift rollback --step cutover again (it finishes or undoes it); by hand: %s",
			rb, out(keyRollbackFrozenAt), r.howToUnfreeze(switcher.Green)))
	case ph.frozen():
		facts = append(facts, fmt.Sprintf("BLUE IS FROZEN by a cutover that stopped in phase %s (since %s): unless a pgshift run is in progress, run pgshift apply --approve-cutover (it finishes or aborts the cutover) or pgshift rollback --step cutover; by hand: %s",
			ph, out(keyFrozenAt), r.howToUnfreeze(switcher.Blue)))
	case rb.back():
		facts = append(facts, "cutover rolled back: traffic on blue, write pause "+out(keyRollbackPauseMS)+" ms")
	case ph == phaseDone || ph == phaseLive:
		facts = append(facts, "cutover done: write pause "+out(keyPauseMS)+" ms")
	case ph == phaseAborted:
		facts = append(facts, "last cutover aborted, traffic on blue, blue takes writes, nothing lost: "+out(keyAborted)+"; fix the cause and run pgshift apply --approve-cutover again")
	}
	switch confirmed := out(keyConfirmed); {
	case rb != rollbackNone:
		// Rolled back (or rolling back): the write through the switch
		// no longer says where traffic goes.
	case confirmed == "true":
		facts = append(facts, "a write through cutover.confirm.dsn landed on green after the switch")
	case confirmed == "false":
		facts = append(facts, "A WRITE THROUGH cutover.confirm.dsn WAS NOT CONFIRMED ON GREEN after the switch: traffic may be split; run pgshift rollback --step cutover to go back to blue")
	}
	if drv, err := s.driver(); err == nil {
		defer drv.Close()
		if side, err := drv.Current(ctx); err == nil {
			facts = append(facts, fmt.Sprintf("%s sends traffic to %s", drv.Name(), side))
		}
	}
	if ph.reached(phaseLive) && rb == rollbackNone && s.spec.Cutover.ReverseReplication {
		if green, err := env.Target.Pool(ctx); err == nil {
			if st, err := pg.ReadSlot(ctx, green, s.spec.ReverseName()); err == nil && st.Exists {
				facts = append(facts, fmt.Sprintf("reverse replication lag %s (slot %s on green)", words.Bytes(st.LagBytes), s.spec.ReverseName()))
			}
		}
	}
	// After the cutover the forward slot no longer advances: blue keeps all
	// WAL since its restart_lsn until cleanup drops it.
	if ph.reached(phaseLive) && rb == rollbackNone {
		if blue, err := env.Source.Pool(ctx); err == nil {
			var held int64
			err := blue.QueryRow(ctx, "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint FROM pg_replication_slots WHERE slot_name = $1", s.spec.SlotName()).Scan(&held)
			switch {
			case err != nil:
			case s.spec.Cutover.ReverseReplication:
				facts = append(facts, fmt.Sprintf("the forward slot %s holds %s of WAL on blue (kept for a rollback): run pgshift cleanup once blue is retired", s.spec.SlotName(), words.Bytes(held)))
			default:
				facts = append(facts, fmt.Sprintf("the forward slot %s holds %s of WAL on blue, and without reverse replication no rollback needs it: run pgshift cleanup", s.spec.SlotName(), words.Bytes(held)))
			}
		}
	}
	return facts, nil
}

// dbNameOf is the database a DSN names, for messages.
func dbNameOf(db *engine.Database) string {
	cfg, err := db.ConnConfig()
	if err != nil {
		return "?"
	}
	return cfg.Database
}
