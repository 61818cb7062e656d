package cutover

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
)

// Draining proves that green has applied everything blue committed before
// the freeze, as green itself confirms it:
//
//  1. After the freeze, a transactional logical message is written on blue
//     (pg_logical_emit_message): its commit is flushed at once, and its LSN
//     is after the commit of every transaction that ran before the freeze.
//  2. The slot's confirmed_flush_lsn on blue only moves when the subscriber
//     reports positions whose transactions it has applied and flushed
//     locally; once it reaches the marker, every earlier transaction is
//     applied on green. (Merely sent is not enough: sent_lsn says nothing
//     about green.)
//
// The subscriber reports a position only when its local commits are
// flushed; with the subscription's default synchronous_commit = off that
// waits for green's WAL writer and the apply worker's next wake-up, up to a
// second. The cutover sets synchronous_commit = on on the subscription before
// the freeze, and lets its worker take the change (it rereads its settings
// at its next transaction or idle wake-up), so that green confirms at once.

// drainPoll is how often the drain and the worker stop are polled.
const drainPoll = 2 * time.Millisecond

// emitMarker writes the drain marker on db and returns its LSN.
func emitMarker(ctx context.Context, db *pgxpool.Pool, content string) (string, error) {
	var lsn string
	if err := db.QueryRow(ctx, "SELECT pg_logical_emit_message(true, 'pgshift', $1)::text", content).Scan(&lsn); err != nil {
		return "", fmt.Errorf("write the drain marker: %w", err)
	}
	return lsn, nil
}

// waitConfirmed waits until the slot's subscriber confirmed lsn.
func waitConfirmed(ctx context.Context, db *pgxpool.Pool, slot, lsn string) error {
	for {
		var ok, active bool
		err := db.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn >= $2::pg_lsn, false), active
		                           FROM pg_replication_slots WHERE slot_name = $1`, slot, lsn).Scan(&ok, &active)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("replication slot %q is gone", slot)
		}
		if err != nil {
			return fmt.Errorf("read replication slot %q: %w", slot, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			state := "its subscriber is connected"
			if !active {
				state = "no subscriber is connected to it"
			}
			return fmt.Errorf("slot %q has not confirmed %s (%s): %w", slot, lsn, state, ctx.Err())
		case <-time.After(drainPoll):
		}
	}
}

// drainAndCopySequences is the heart of both pauses (the cutover's and its
// rollback's): with the side that took writes (from) frozen, it copies every
// sequence to the other side while proving, by a marker the slot's
// subscriber confirms, that the other side has applied all of from's rows.
// Both run at once: sequences are not replicated, and from's values are
// final once it is frozen. what is the marker's content.
func drainAndCopySequences(ctx context.Context, from, to *pgxpool.Pool, slot string, margin int64, what string) (marker string, seq SequenceReport, drainErr, seqErr error) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seq, seqErr = SyncSequences(ctx, from, to, margin)
	}()
	marker, drainErr = emitMarker(ctx, from, what)
	if drainErr == nil {
		drainErr = waitConfirmed(ctx, from, slot, marker)
	}
	wg.Wait()
	return marker, seq, drainErr, seqErr
}

// subscriptionSyncCommit reads a subscription's synchronous_commit.
func subscriptionSyncCommit(ctx context.Context, db *pgxpool.Pool, name string) (string, error) {
	var v string
	err := db.QueryRow(ctx, `SELECT subsynccommit FROM pg_subscription
	                          WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("read subscription %q: %w", name, err)
	}
	return v, nil
}

// applyWorkerNap is how long an idle apply worker sleeps between looks at
// its subscription's settings (NAPTIME_PER_CYCLE, one second), plus a margin.
const applyWorkerNap = 1200 * time.Millisecond

// syncCommitOn sets the subscription's synchronous_commit to on and returns
// the time from which its apply worker surely uses it: the worker reads a
// changed setting when it next starts a transaction or wakes up idle.
func syncCommitOn(ctx context.Context, db *pgxpool.Pool, name string) (time.Time, error) {
	v, err := subscriptionSyncCommit(ctx, db, name)
	if err != nil {
		return time.Time{}, err
	}
	if v == "on" {
		return time.Now(), nil
	}
	if err := setSubscriptionSyncCommit(ctx, db, name, "on"); err != nil {
		return time.Time{}, err
	}
	return time.Now().Add(applyWorkerNap), nil
}

// settle waits until t.
func settle(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func setSubscriptionSyncCommit(ctx context.Context, db *pgxpool.Pool, name, value string) error {
	if _, err := db.Exec(ctx, fmt.Sprintf("ALTER SUBSCRIPTION %s SET (synchronous_commit = %s)", pg.QuoteIdent(name), pg.QuoteLiteral(value))); err != nil {
		return fmt.Errorf("subscription %q: set synchronous_commit = %s: %w", name, value, err)
	}
	return nil
}

// stopSubscription disables a subscription and ends its apply worker
// rather than waiting for the worker to notice (up to a second): it has
// applied everything by then, so nothing is lost.
func stopSubscription(ctx context.Context, db *pgxpool.Pool, name string) error {
	if _, err := db.Exec(ctx, "ALTER SUBSCRIPTION "+pg.QuoteIdent(name)+" DISABLE"); err != nil {
		return fmt.Errorf("disable subscription %q: %w", name, err)
	}
	for {
		var workers int
		err := db.QueryRow(ctx, `
SELECT count(pg_terminate_backend(w.pid))
  FROM pg_stat_subscription w
  JOIN pg_subscription s ON s.oid = w.subid
 WHERE s.subname = $1 AND w.pid IS NOT NULL
   AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name).Scan(&workers)
		if err != nil {
			return fmt.Errorf("stop the workers of subscription %q: %w", name, err)
		}
		if workers == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("subscription %q: its workers have not exited: %w", name, ctx.Err())
		case <-time.After(drainPoll):
		}
	}
}

func enableSubscription(ctx context.Context, db *pgxpool.Pool, name string) error {
	if _, err := db.Exec(ctx, "ALTER SUBSCRIPTION "+pg.QuoteIdent(name)+" ENABLE"); err != nil {
		return fmt.Errorf("enable subscription %q: %w", name, err)
	}
	return nil
}

// waitLagUnder waits until the slot's lag is at most max bytes, writing a
// tiny marker now and then so that an idle publisher still gets a fresh
// confirmation.
func waitLagUnder(ctx context.Context, env *engine.Env, db *pgxpool.Pool, slot string, max int64, budget time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	started := time.Now()
	lastLog := started
	var lastNudge time.Time
	for {
		st, err := pg.ReadSlot(ctx, db, slot)
		if err != nil {
			return err
		}
		if !st.Exists {
			return fmt.Errorf("replication slot %q does not exist", slot)
		}
		// A subscriber must also be streaming: the drain inside the freeze
		// waits for its confirmation, and a worker just enabled again
		// (after an abort, or a killed run) may take seconds to connect
		// (the launcher waits wal_retrieve_retry_interval between starts).
		if st.LagBytes >= 0 && st.LagBytes <= max && st.Active {
			return nil
		}
		if time.Since(lastNudge) > 500*time.Millisecond {
			lastNudge = time.Now()
			if _, err := db.Exec(ctx, "SELECT pg_logical_emit_message(false, 'pgshift', 'cutover catch-up')"); err != nil {
				env.Log.Debug("could not write a catch-up marker", "error", err)
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			env.Log.Info("waiting for replication to catch up before the freeze", "slot", slot, "lag", words.Bytes(st.LagBytes), "target", words.Bytes(max))
		}
		select {
		case <-ctx.Done():
			if !st.Active {
				return fmt.Errorf("no subscriber streams from replication slot %q after %s: its subscription's apply worker is not connected; check that the subscription is enabled and read the subscriber's server log, then run again", slot, budget)
			}
			return fmt.Errorf("replication through slot %q did not get under %s of lag within %s (lag %s): writes outpace the subscriber; try again at a quieter time or raise cutover.max_lag_bytes",
				slot, words.Bytes(max), budget, words.Bytes(st.LagBytes))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// refreshMaterializedViews refreshes, on green, the materialized views
// that also exist on blue: logical replication does not carry them. It
// runs before the freeze, so the views are as stale as the freeze is late.
func refreshMaterializedViews(ctx context.Context, env *engine.Env, blue, green *pgxpool.Pool) (int, error) {
	const list = `SELECT schemaname, matviewname FROM pg_matviews
	               WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`
	onBlue := map[string]bool{}
	rows, err := blue.Query(ctx, list)
	if err != nil {
		return 0, fmt.Errorf("blue: list materialized views: %w", err)
	}
	for rows.Next() {
		var s, n string
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return 0, err
		}
		onBlue[s+"\x00"+n] = true
	}
	rows.Close()
	rows, err = green.Query(ctx, list)
	if err != nil {
		return 0, fmt.Errorf("green: list materialized views: %w", err)
	}
	var todo [][2]string
	for rows.Next() {
		var s, n string
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return 0, err
		}
		if onBlue[s+"\x00"+n] {
			todo = append(todo, [2]string{s, n})
		}
	}
	rows.Close()
	for _, v := range todo {
		if _, err := green.Exec(ctx, "REFRESH MATERIALIZED VIEW "+pgx.Identifier{v[0], v[1]}.Sanitize()); err != nil {
			return 0, fmt.Errorf("green: refresh materialized view %s: %w", pg.DisplayName(v[0], v[1]), err)
		}
		env.Log.Info("materialized view refreshed on green", "view", pg.DisplayName(v[0], v[1]))
	}
	return len(todo), nil
}
