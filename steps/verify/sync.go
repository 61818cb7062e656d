package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/pg"
)

// replSync waits until green has applied blue's WAL up to a position, read
// on green from the subscription's replication origin (advances with every
// applied commit) or on blue from the slot's confirmed flush position
// (advances also when blue is idle, through keepalives).
type replSync struct {
	subscription string
	origin       string // pg_<subscription oid>
	slot         string
	timeout      time.Duration
	originOK     bool // false once reading the origin was refused (privileges)
}

const subscriptionSQL = `
SELECT 'pg_' || s.oid::text, coalesce(s.subslotname::text, ''), s.subenabled
  FROM pg_catalog.pg_subscription s
  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
 WHERE s.subname = $1 AND d.datname = pg_catalog.current_database()`

// lookupSync finds the subscription on green. A disabled subscription is an
// error: re-checks would wait for it forever.
func lookupSync(ctx context.Context, green *side, subscription string, timeout time.Duration) (*replSync, error) {
	s := &replSync{subscription: subscription, timeout: timeout, originOK: true}
	var enabled bool
	err := green.conn.QueryRow(ctx, subscriptionSQL, subscription).Scan(&s.origin, &s.slot, &enabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("green: subscription %q not found in this database: verify compares a replicating pair (create the subscription first)", subscription)
	}
	if err != nil {
		return nil, pg.OnSide("green", fmt.Errorf("green: read subscription %q: %w", subscription, err))
	}
	if !enabled {
		return nil, fmt.Errorf("green: subscription %q is disabled, so green is not following blue: enable it (ALTER SUBSCRIPTION ... ENABLE) and verify again", subscription)
	}
	return s, nil
}

// currentLSN is blue's WAL insert position: every commit visible to a
// snapshot taken before this call lies before it.
func currentLSN(ctx context.Context, blue *side) (string, error) {
	var lsn string
	if err := blue.conn.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", pg.OnSide("blue", fmt.Errorf("blue: read WAL position: %w", err))
	}
	return lsn, nil
}

// waitApplied returns once green has applied everything blue committed
// before lsn.
func (s *replSync) waitApplied(ctx context.Context, blue, green *side, lsn string) error {
	deadline := time.Now().Add(s.timeout)
	pause := 5 * time.Millisecond
	for {
		if s.originOK {
			var done bool
			err := green.conn.QueryRow(ctx,
				"SELECT coalesce(pg_catalog.pg_replication_origin_progress($1, false) >= $2::text::pg_lsn, false)",
				s.origin, lsn).Scan(&done)
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "42501":
				s.originOK = false // not allowed to read origins: the slot alone tells
			case err != nil:
				return pg.OnSide("green", fmt.Errorf("green: read progress of subscription %q: %w", s.subscription, err))
			case done:
				return nil
			}
		}
		if s.slot != "" {
			var done bool
			err := blue.conn.QueryRow(ctx,
				"SELECT coalesce((SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $1), false)",
				s.slot, lsn).Scan(&done)
			if err != nil {
				return pg.OnSide("blue", fmt.Errorf("blue: read slot %q: %w", s.slot, err))
			}
			if done {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("green has not applied blue's WAL up to %s within %s (subscription %q, slot %q): check that the subscription is enabled and its worker running (pg_stat_subscription on green) and the lag, then verify again",
				lsn, s.timeout, s.subscription, s.slot)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		if pause < 100*time.Millisecond {
			pause *= 2
		}
	}
}
