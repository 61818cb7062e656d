package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// replQuerier is what both *pgx.Conn and *pgxpool.Pool offer for the
// single-row and statement calls of the replication steps.
type replQuerier interface {
	querier
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// slotStatus is a replication slot on the publisher as pg_replication_slots
// shows it, with the lag measured the only honest way: bytes of WAL between
// the publisher's current position and the position the subscriber has
// confirmed as flushed (WAL not yet sent is lag too).
type slotStatus struct {
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

func readSlot(ctx context.Context, db replQuerier, slot string) (slotStatus, error) {
	var s slotStatus
	err := db.QueryRow(ctx, slotStatusSQL, slot).Scan(&s.Plugin, &s.SlotType, &s.Database, &s.Temporary,
		&s.Active, &s.ActivePID, &s.ConfirmedFlush, &s.LagBytes, &s.Lost)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotStatus{LagBytes: -1}, nil
	}
	if err != nil {
		return s, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	s.Exists = true
	return s, nil
}

// slotLostError says that a slot can no longer serve its subscriber.
func slotLostError(slot string) error {
	return fmt.Errorf("replication slot %q on blue was invalidated: blue removed WAL it still needed (max_slot_wal_keep_size), so green cannot follow blue any more; roll back and apply again (the initial copy starts over), after raising max_slot_wal_keep_size on blue or keeping green's catch-up shorter", slot)
}

// slotHolder describes the process that holds an active slot, for messages
// that tell the user what to stop.
func slotHolder(ctx context.Context, db replQuerier, pid int32) string {
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

// relState is one table of a subscription as pg_subscription_rel on the
// subscriber tracks it.
type relState struct {
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

func describeSyncState(s string) string {
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

func readRelStates(ctx context.Context, db querier, subscription string) ([]relState, error) {
	rows, err := db.Query(ctx, relStatesSQL, subscription)
	if err != nil {
		return nil, fmt.Errorf("read table sync states of subscription %q: %w", subscription, err)
	}
	defer rows.Close()
	var out []relState
	for rows.Next() {
		var r relState
		if err := rows.Scan(&r.Table, &r.State); err != nil {
			return nil, fmt.Errorf("read table sync states of subscription %q: %w", subscription, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func countReady(states []relState) int {
	n := 0
	for _, s := range states {
		if s.State == "r" {
			n++
		}
	}
	return n
}

// replServerMajor reads the major version (13, 17, ...) of a server.
func replServerMajor(ctx context.Context, db replQuerier) (int, error) {
	var num string
	if err := db.QueryRow(ctx, "SHOW server_version_num").Scan(&num); err != nil {
		return 0, fmt.Errorf("read server version: %w", err)
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, fmt.Errorf("read server version: unexpected %q", num)
	}
	return n / 10000, nil
}

// replBytes renders a byte count for progress lines and plans.
func replBytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// replIdent quotes one identifier.
func replIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

// replIsUndefined reports SQLSTATE 42704 (undefined_object) and friends
// that idempotent drops treat as "already gone".
func replIsUndefined(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42704" || pgErr.Code == "42P01")
}

// isObjectInUse reports SQLSTATE 55006 (object_in_use): a slot someone
// holds, a subscription whose workers still run.
func isObjectInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}

// workerErrors reads the error counters of a subscription's workers
// (pg_stat_subscription_stats, PostgreSQL 15+); -1, -1 where the view does
// not exist.
func workerErrors(ctx context.Context, db replQuerier, subOID uint32) (syncErrors, applyErrors int64, err error) {
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
