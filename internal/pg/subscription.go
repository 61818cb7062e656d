package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
)

// subscriptionState is a subscription on green as pg_subscription shows it.
type Subscription struct {
	Exists       bool
	OID          uint32
	Enabled      bool
	Slot         string // "" when slot_name = NONE
	Publications []string
}

func ReadSubscription(ctx context.Context, db Querier, name string) (Subscription, error) {
	var st Subscription
	err := db.QueryRow(ctx, `
SELECT s.oid, s.subenabled, coalesce(s.subslotname::text, ''), s.subpublications::text[]
  FROM pg_subscription s
 WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		name).Scan(&st.OID, &st.Enabled, &st.Slot, &st.Publications)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read subscription %q on green: %w", name, err)
	}
	st.Exists = true
	return st, nil
}

// relState is one table of a subscription as pg_subscription_rel on the
// subscriber tracks it.
type RelState struct {
	Table string // schema.table
	State string // i, d, f, s, r
}

// syncStateNames spells out srsubstate for status output.
var syncStateNames = map[string]string{
	"i": "initialize",
	"d": "copying data",
	"f": "copy finished",
	"s": "synchronized",
	"r": "ready",
}

func DescribeSyncState(s string) string {
	if n, ok := syncStateNames[s]; ok {
		return s + " (" + n + ")"
	}
	return s
}

const relStatesSQL = `
SELECT n.nspname || '.' || c.relname, sr.srsubstate::text
  FROM pg_subscription_rel sr
  JOIN pg_subscription s ON s.oid = sr.srsubid
  JOIN pg_class c ON c.oid = sr.srrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE s.subname = $1
   AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY 1`

func ReadRelStates(ctx context.Context, db Querier, subscription string) ([]RelState, error) {
	rows, err := db.Query(ctx, relStatesSQL, subscription)
	if err != nil {
		return nil, fmt.Errorf("read table sync states of subscription %q: %w", subscription, err)
	}
	defer rows.Close()
	var out []RelState
	for rows.Next() {
		var r RelState
		if err := rows.Scan(&r.Table, &r.State); err != nil {
			return nil, fmt.Errorf("read table sync states of subscription %q: %w", subscription, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func CountReady(states []RelState) int {
	n := 0
	for _, s := range states {
		if s.State == "r" {
			n++
		}
	}
	return n
}

// workerErrors reads the error counters of a subscription's workers
// (pg_stat_subscription_stats, PostgreSQL 15+); -1, -1 where the view does
// not exist.
func WorkerErrors(ctx context.Context, db Querier, subOID uint32) (syncErrors, applyErrors int64, err error) {
	var has bool
	if err := db.QueryRow(ctx, "SELECT to_regclass('pg_catalog.pg_stat_subscription_stats') IS NOT NULL").Scan(&has); err != nil {
		return 0, 0, fmt.Errorf("read subscription error counts: %w", err)
	}
	if !has {
		return -1, -1, nil
	}
	err = db.QueryRow(ctx, "SELECT sync_error_count, apply_error_count FROM pg_stat_subscription_stats WHERE subid = $1", subOID).Scan(&syncErrors, &applyErrors)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read subscription error counts: %w", err)
	}
	return syncErrors, applyErrors, nil
}

// DropSubscription drops a subscription whose slot someone else manages:
// disable it, detach it from its slot, drop it (so the drop never waits on
// the publisher), then remove the table-sync slots it may have left on the
// publisher mid-copy. The main slot is left to its own step. publisher may
// be nil when it is unreachable; the sync slots are then named in the log.
func DropSubscription(ctx context.Context, log hclog.Logger, subscriber, publisher Querier, name string) error {
	st, err := ReadSubscription(ctx, subscriber, name)
	if err != nil {
		return err
	}
	if !st.Exists {
		return nil
	}
	q := QuoteIdent(name)
	for _, stmt := range []string{
		"ALTER SUBSCRIPTION " + q + " DISABLE",
		"ALTER SUBSCRIPTION " + q + " SET (slot_name = NONE)",
		"DROP SUBSCRIPTION IF EXISTS " + q,
	} {
		if _, err := subscriber.Exec(ctx, stmt); err != nil {
			if IsUndefined(err) {
				return nil
			}
			return fmt.Errorf("drop subscription %q: %s: %w", name, stmt, err)
		}
	}
	log.Info("subscription dropped", "subscription", name)
	pattern := fmt.Sprintf(`pg\_%d\_sync\_%%`, st.OID)
	if publisher == nil {
		log.Warn("publisher unreachable: drop leftover table-sync slots there by hand", "slots_like", pattern)
		return nil
	}
	return dropSyncSlots(ctx, log, publisher, pattern)
}

// dropSyncSlots drops the table-sync slots a dropped subscription left.
func dropSyncSlots(ctx context.Context, log hclog.Logger, db Querier, pattern string) error {
	rows, err := db.Query(ctx, "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1 ORDER BY 1", pattern)
	if err != nil {
		return fmt.Errorf("list table-sync slots: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		if err := DropSlot(ctx, log, db, n, SlotReleaseWait); err != nil {
			return err
		}
	}
	return nil
}
