package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
)

// slotStatus is a replication slot on the publisher as pg_replication_slots
// shows it, with the lag measured the only honest way: bytes of WAL between
// the publisher's current position and the position the subscriber has
// confirmed as flushed (WAL not yet sent is lag too).
type SlotStatus struct {
	Exists         bool
	Plugin         string
	SlotType       string
	Database       string
	Temporary      bool
	Active         bool
	ActivePID      int32
	ConfirmedFlush string // "" until a consumer confirmed something
	LagBytes       int64  // -1 when ConfirmedFlush is unknown
	Lost           bool   // invalidated: blue removed WAL the slot still needed (wal_status lost, 13+)
}

const slotStatusSQL = `
SELECT coalesce(plugin::text, ''), slot_type, coalesce(database::text, ''), temporary,
       active, coalesce(active_pid, 0),
       coalesce(confirmed_flush_lsn::text, ''),
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, -1),
       coalesce(to_jsonb(s) ->> 'wal_status' = 'lost', false) -- the column exists from 13 on
  FROM pg_replication_slots s
 WHERE slot_name = $1`

func ReadSlot(ctx context.Context, db Querier, slot string) (SlotStatus, error) {
	var s SlotStatus
	err := db.QueryRow(ctx, slotStatusSQL, slot).Scan(&s.Plugin, &s.SlotType, &s.Database, &s.Temporary,
		&s.Active, &s.ActivePID, &s.ConfirmedFlush, &s.LagBytes, &s.Lost)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotStatus{LagBytes: -1}, nil
	}
	if err != nil {
		return s, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	s.Exists = true
	return s, nil
}

// slotLostError says that a slot can no longer serve its subscriber.
func SlotLostError(slot string) error {
	return fmt.Errorf("replication slot %q on blue was invalidated: blue removed WAL it still needed (max_slot_wal_keep_size), so green cannot follow blue any more; roll back and apply again (the initial copy starts over), after raising max_slot_wal_keep_size on blue or keeping green's catch-up shorter", slot)
}

// slotHolder describes the process that holds an active slot, for messages
// that tell the user what to stop.
func SlotHolder(ctx context.Context, db Querier, pid int32) string {
	var app, addr string
	err := db.QueryRow(ctx, `SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local socket')
	                           FROM pg_stat_replication WHERE pid = $1`, pid).Scan(&app, &addr)
	if err != nil {
		return fmt.Sprintf("walsender pid %d", pid)
	}
	if app == "" {
		return fmt.Sprintf("walsender pid %d (from %s)", pid, addr)
	}
	return fmt.Sprintf("walsender pid %d for %q (from %s)", pid, app, addr)
}

// SlotReleaseWait bounds how long a drop waits for a slot's consumer to let
// go: the walsender of a subscription just dropped exits within a moment.
const SlotReleaseWait = 15 * time.Second

// DropSlot drops a replication slot once nothing holds it, logging the drop
// on log (nil: silent); a slot that does not exist is not an error. A
// consumer that is going away (the walsender of a subscription just
// dropped, or of a client that died) gets wait to let go; one that stays is
// named in the error, and the slot is kept.
func DropSlot(ctx context.Context, log hclog.Logger, db Querier, name string, wait time.Duration) error {
	dropped, err := dropSlot(ctx, db, name, wait)
	if dropped && log != nil {
		log.Info("replication slot dropped", "slot", name)
	}
	return err
}

func dropSlot(ctx context.Context, db Querier, name string, wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		st, err := ReadSlot(ctx, db, name)
		if err != nil {
			return false, err
		}
		if !st.Exists {
			return false, nil
		}
		if !st.Active {
			_, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
			if err == nil {
				return true, nil
			}
			if IsUndefined(err) {
				return false, nil
			}
			// object_in_use: a consumer attached in between; retry.
			if !IsObjectInUse(err) || time.Now().After(deadline) {
				return false, fmt.Errorf("drop replication slot %q: %w", name, err)
			}
		} else if time.Now().After(deadline) {
			return false, fmt.Errorf("replication slot %q is in use by %s: stop its subscriber first (pgshift rollback drops green's subscription before the slot; otherwise ALTER SUBSCRIPTION ... DISABLE on the subscriber, or SELECT pg_terminate_backend(%d) on blue), then run again",
				name, SlotHolder(ctx, db, st.ActivePID), st.ActivePID)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
