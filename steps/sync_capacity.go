package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
)

// defaultSyncWorkers is PostgreSQL's default max_sync_workers_per_subscription,
// assumed when green cannot be read.
const defaultSyncWorkers = 2

// syncCapacity is what the native initial copy (replication.initial_copy.method:
// subscription) takes at once beside the subscription's own slot, WAL sender
// and apply worker: each table-sync worker on green is a logical replication
// worker (and a background worker) there, and creates a temporary slot on
// blue, streamed by a WAL sender of its own.
type syncCapacity struct {
	// Need is how many table-sync workers run at once: min(tables still to
	// copy, green's max_sync_workers_per_subscription).
	Need int
	// Workers is green's max_sync_workers_per_subscription; Tables the
	// tables still to copy.
	Workers, Tables int
	// HeldSlots and HeldSenders are the table-sync slots on blue (and those
	// of them streaming) pgshift's subscription already holds, counted among
	// blue's slots in use; RunningWorkers the table-sync workers running on
	// green, counted among green's workers in use.
	HeldSlots, HeldSenders, RunningWorkers int
	// SubscriptionOID is pgshift's subscription on green (0: none or unknown),
	// whose table-sync slots on blue are named pg_<oid>_sync_<relid>_<sysid>.
	SubscriptionOID uint32
	// Assumed says that green could not be read, so that Workers is
	// PostgreSQL's default.
	Assumed bool
}

// why says where the number comes from, for messages.
func (c syncCapacity) why() string {
	if c.Assumed {
		return fmt.Sprintf("%s to copy, green's max_sync_workers_per_subscription assumed to be PostgreSQL's default of %d: green is out of reach",
			words.Plural(c.Tables, "table", "tables"), c.Workers)
	}
	return fmt.Sprintf("%s to copy, max_sync_workers_per_subscription=%d on green", words.Plural(c.Tables, "table", "tables"), c.Workers)
}

// readSyncCapacity computes the table-sync workers the initial copy runs at
// once. With the snapshot copy method there are none: pgshift copies, and
// the subscription only streams. blue may be nil (out of reach): all of
// green's sync workers are assumed busy then.
func readSyncCapacity(ctx context.Context, env *engine.Env, blue pg.Querier) (syncCapacity, error) {
	var c syncCapacity
	if env.Spec.Replication.InitialCopy.Method == "snapshot" {
		return c, nil
	}
	c.Workers = defaultSyncWorkers
	c.Tables = -1
	if blue != nil {
		tables, err := pg.SelectedTables(ctx, blue, env.Spec.Tables.Include, env.Spec.Tables.Exclude)
		if err != nil {
			return c, fmt.Errorf("blue: %w", err)
		}
		c.Tables = len(tables)
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		c.Assumed = true
	} else {
		v, err := pg.Setting(ctx, green, "max_sync_workers_per_subscription")
		if err != nil {
			return c, fmt.Errorf("green: %w", err)
		}
		if c.Workers, err = strconv.Atoi(v); err != nil {
			return c, fmt.Errorf("green: max_sync_workers_per_subscription %q: %w", v, err)
		}
		// Once pgshift's subscription exists, only its tables not yet
		// ready still take a sync worker.
		var oid uint32
		var notReady, running int
		err = green.QueryRow(ctx, `
SELECT s.oid,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')::int,
       (SELECT count(*) FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NOT NULL AND w.pid IS NOT NULL)::int
  FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
 WHERE d.datname = current_database() AND s.subname = $1`, env.Spec.SubscriptionName()).Scan(&oid, &notReady, &running)
		switch {
		case err == nil:
			c.SubscriptionOID, c.Tables, c.RunningWorkers = oid, notReady, running
		case !errors.Is(err, pgx.ErrNoRows):
			return c, fmt.Errorf("green: read subscription %q: %w", env.Spec.SubscriptionName(), err)
		}
	}
	if c.Tables < 0 {
		c.Tables = c.Workers
	}
	c.Need = min(c.Tables, c.Workers)
	if blue != nil && c.SubscriptionOID != 0 {
		err := blue.QueryRow(ctx, `
SELECT count(*)::int, count(*) FILTER (WHERE active)::int
  FROM pg_replication_slots WHERE slot_name LIKE $1`, syncSlotPattern(c.SubscriptionOID)).Scan(&c.HeldSlots, &c.HeldSenders)
		if err != nil {
			return c, fmt.Errorf("blue: read table-sync slots: %w", err)
		}
	}
	return c, nil
}

// syncSlotPattern is a LIKE pattern for the table-sync slots of a
// subscription: pg_<suboid>_sync_<relid>_<system identifier>.
func syncSlotPattern(subOID uint32) string {
	return `pg\_` + strconv.FormatUint(uint64(subOID), 10) + `\_sync\_%`
}
