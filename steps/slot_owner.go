package steps

import (
	"fmt"
	"strconv"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/steps/stepid"
)

// Outputs of source.slot that prove the slot on blue is pgshift's. A slot
// has no owner, comment or creation time in PostgreSQL, so the proof lives in
// the state: source.slot records the claim when it finds the name free,
// before anything creates it (itself, or target.copy with the snapshot
// method), and the creating backend's pid while its creation runs. A slot of
// that name found without the claim was made by someone else: pgshift does
// not use it, and rollback and cleanup do not drop it.
const (
	SlotClaimed    = "claimed"     // "true": the name was free and pgshift creates the slot
	SlotCreatorPID = "creator_pid" // blue's backend running pg_create_logical_replication_slot
	SlotLSN        = "consistent_lsn"
)

// slotOwnership says whether the state proves that pgshift created (or is
// creating) its slot, and how.
func slotOwnership(env *engine.Env) (bool, string) {
	switch v, _ := env.Output(stepid.Slot, SlotClaimed); v {
	case "true":
		return true, "source.slot recorded creating it"
	case "false": // dropped by pgshift's rollback, or its creation undone
		return false, ""
	}
	// States written before the claim existed: the consistent LSN is
	// recorded only after pgshift's own creation (or copy) returned.
	if _, ok := env.Output(stepid.Slot, SlotLSN); ok {
		return true, "source.slot recorded its consistent LSN"
	}
	if _, ok := env.Output(stepid.Copy, CopyConsistentLSN); ok {
		return true, "target.copy recorded its consistent LSN"
	}
	return false, ""
}

// recordedCreator is the pid recorded as creating the slot, 0 when none.
func recordedCreator(env *engine.Env) int32 {
	v, _ := env.Output(stepid.Slot, SlotCreatorPID)
	pid, _ := strconv.ParseInt(v, 10, 32)
	return int32(pid)
}

// foreignSlotError refuses a slot pgshift did not create.
func foreignSlotError(name string) error {
	return fmt.Errorf("replication slot %s on blue was not created by pgshift (the state records no creation of it by source.slot): pgshift neither uses nor drops it; if it is abandoned, drop it (SELECT pg_drop_replication_slot(%s);), otherwise set replication.slot to another name",
		pg.QuoteLiteral(name), pg.QuoteLiteral(name))
}
